"""What the reports tests share: Happo credentials, screenshots with known pixels, and uploading
them through the Image API the way the clients do."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from dataclasses import dataclass

import aiohttp
import pyvips

from services.auth.domain import sign_jwt


def jwt_auth(account: dict) -> dict[str, str]:
    """What happo.io v13 sends: an HS256 JWT with no exp."""
    return {"Authorization": f"Bearer {sign_jwt(account['api_key'], account['api_secret'])}"}


def basic_auth(account: dict) -> dict[str, str]:
    """HTTP Basic with apiKey:apiSecret, as the API reference allows."""
    raw = f"{account['api_key']}:{account['api_secret']}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def screenshot(
    width: int = 64,
    height: int = 48,
    colour: tuple[int, int, int] = (240, 240, 240),
    patch: tuple[int, int, int, int] | None = None,
    patch_colour: tuple[int, int, int] = (20, 90, 200),
) -> bytes:
    """A PNG of one colour, with an optional ``patch`` (left, top, width, height) painted."""
    image = pyvips.Image.black(width, height, bands=3).new_from_image(list(colour))
    image = image.cast("uchar")
    if patch is not None:
        left, top, w, h = patch
        block = pyvips.Image.black(w, h, bands=3).new_from_image(list(patch_colour))
        image = image.insert(block.cast("uchar"), left, top)
    return image.pngsave_buffer(compression=6)


@dataclass(frozen=True)
class Uploaded:
    """An image uploaded through the Image API."""

    url: str
    width: int
    height: int
    data: bytes


async def upload(client: aiohttp.ClientSession, stack, account: dict, data: bytes) -> Uploaded:
    """GET upload-url, then POST the PNG when the account does not hold it yet."""
    md5 = hashlib.md5(data).hexdigest()  # noqa: S324 - what the Happo clients send
    headers = jwt_auth(account)
    async with client.get(f"{stack.url}/api/images/{md5}/upload-url", headers=headers) as r:
        assert r.status == 200, await r.text()
        answer = await r.json()
    if answer.get("uploadUrl"):
        form = aiohttp.FormData()
        form.add_field("file", data, filename="image.png", content_type="image/png")
        async with client.post(answer["uploadUrl"], data=form, headers=headers) as r:
            assert r.status == 200, await r.text()
            answer = await r.json()
    image = pyvips.Image.new_from_buffer(data, "")
    return Uploaded(answer["url"], image.width, image.height, data)


async def compare(
    client: aiohttp.ClientSession, url: str, headers: dict[str, str], sha1: str, sha2: str
) -> dict:
    """A synchronous compare, retried as the Happo clients do on the 503 a busy machine may
    answer when the pixel diff outlasts DARKROOM_COMPARE_WAIT; asserts it ends in a 200."""
    path = f"{url}/api/reports/{sha1}/compare/{sha2}"
    for _ in range(5):
        async with client.post(path, json={}, headers=headers) as r:
            status, text = r.status, await r.text()
        if status != 503:
            break
    assert status == 200, f"POST {path}: {status} {text[:500]}"
    return json.loads(text)


def snap(image: Uploaded, component: str, variant: str = "default", target: str = "chrome") -> dict:
    """A snapshot object as the clients post it."""
    return {
        "component": component,
        "variant": variant,
        "target": target,
        "url": image.url,
        "width": image.width,
        "height": image.height,
    }


def sha() -> str:
    return uuid.uuid4().hex[:12]


async def call(client, stack, method, path, auth, json=None, status=200):
    async with client.request(method, f"{stack.url}{path}", json=json, headers=auth) as r:
        body = await r.json(content_type=None)
        assert r.status == status, (r.status, body)
        return body


async def post_report(client, stack, account, report_sha, snaps, auth=None, **extra):
    return await call(
        client,
        stack,
        "POST",
        f"/api/reports/{report_sha}",
        auth or jwt_auth(account),
        {"snaps": snaps, **extra},
    )
