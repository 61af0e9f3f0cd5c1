"""The Happo Image API through the gateway, as the Happo clients use it: the three-step flow
with a legacy (no ``exp``) JWT, tenant isolation, and every way to misuse an upload URL."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid

import aiohttp
import pytest
import pyvips

from services.ingest.happo.domain import sign_upload_token
from shared.runtime import POOL
from shared.store_keys import blob_key
from tests.clients_support import LIMIT, happo, png_form, post_image, snapshot, upload_url
from tests.images_support import png_bomb, random_png


async def test_three_step_flow_then_already_uploaded(client, stack, account):
    data = random_png(30, 20)
    md5 = hashlib.md5(data).hexdigest()  # noqa: S324 - what the Happo clients send
    before = await snapshot(stack)
    status, first = await upload_url(client, stack, account, md5)
    assert status == 200
    expected_url = f"{stack.url}/img/{account['account_id']}/{md5}"
    assert first["url"] == expected_url
    assert first["uploadUrl"].startswith(f"{stack.url}/api/images/upload/")
    status, uploaded = await post_image(client, first["uploadUrl"], account, data)
    assert (status, uploaded) == (200, {"url": expected_url})
    async with client.get(expected_url) as response:  # public: <img> tags and report pages
        assert response.status == 200
        assert response.headers["Content-Type"] == "image/png"
        assert response.headers["ETag"] == f'"{hashlib.sha256(data).hexdigest()}"'
        assert await response.read() == data
    async with client.get(expected_url, headers={"Range": "bytes=0-7"}) as response:
        assert response.status == 206
        assert await response.read() == data[:8]
    status, second = await upload_url(client, stack, account, md5)
    assert (status, second) == (
        200,
        {"message": "This image has already been uploaded", "uploadUrl": None, "url": expected_url},
    )
    after = await snapshot(stack)
    assert after[0] == sorted([*before[0], blob_key(hashlib.sha256(data).hexdigest())])
    assert after[1][:4] == (before[1][0] + 1, before[1][1], before[1][2] + 1, before[1][3] + 1)
    envelope = await stack.apps["ingest"][POOL].fetchval(
        "SELECT envelope FROM outbox WHERE type = 'image.stored'"
        " AND envelope->'data'->>'happo_hash' = $1",
        md5,
    )
    assert envelope["data"]["account_id"] == account["account_id"]
    assert (envelope["data"]["width"], envelope["data"]["height"]) == (30, 20)


async def test_another_tenant_cannot_see_or_fetch_the_image(client, stack, account, other_account):
    data = random_png()
    md5 = hashlib.md5(data).hexdigest()  # noqa: S324
    _, grant = await upload_url(client, stack, account, md5)
    await post_image(client, grant["uploadUrl"], account, data)
    before = await snapshot(stack)
    status, theirs = await upload_url(client, stack, other_account, md5)
    assert status == 200 and theirs["uploadUrl"]  # not "already uploaded": nothing leaks
    assert theirs["url"] == f"{stack.url}/img/{other_account['account_id']}/{md5}"
    async with client.get(theirs["url"]) as response:
        assert response.status == 404
        assert (await response.json())["error"]["code"] == "not_found"
    assert await snapshot(stack) == before
    # When they upload the same bytes, the blob is shared.
    status, _ = await post_image(client, theirs["uploadUrl"], other_account, data)
    after = await snapshot(stack)
    assert status == 200 and after[0] == before[0]
    assert after[1][2] == before[1][2] + 1


async def test_upload_url_requires_credentials(client, stack):
    async with client.get(f"{stack.url}/api/images/{'a' * 32}/upload-url") as response:
        assert response.status == 401
        assert (await response.json())["error"]["code"] == "bad_credentials"


def _tamper(url: str) -> str:
    head, _, token = url.rpartition("/")
    payload, _, mac = token.partition(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["hash"] = "somethingelse"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"{head}/{forged}.{mac}"


@pytest.mark.parametrize(
    "case",
    [
        "reused",
        "expired",
        "tampered",
        "md5 mismatch",
        "sha256 mismatch",
        "jpeg",
        "png header on garbage",
        "decompression bomb",
        "over the limit",
        "missing file",
        "path hash",
        "path hash encoded",
    ],
)
async def test_bad_upload_is_refused_and_changes_nothing(client, stack, account, case):
    data = random_png()
    md5 = hashlib.md5(data).hexdigest()  # noqa: S324
    _, grant = await upload_url(client, stack, account, md5)
    url = grant["uploadUrl"]
    if case == "reused":
        assert (await post_image(client, url, account, data))[0] == 200
        data = random_png()  # and a different image, so nothing else could be the reason
    before = await snapshot(stack)
    body = png_form(data)
    expected = {
        "reused": (409, "conflict"),
        "expired": (403, "forbidden"),
        "tampered": (403, "forbidden"),
        "md5 mismatch": (422, "invalid_request"),
        "sha256 mismatch": (422, "invalid_request"),
        "jpeg": (415, "unsupported_media_type"),
        "png header on garbage": (422, "invalid_request"),
        "decompression bomb": (422, "invalid_request"),
        "over the limit": (413, "payload_too_large"),
        "missing file": (400, "bad_request"),
        "path hash": (400, "bad_request"),
        "path hash encoded": (400, "bad_request"),
    }[case]
    method = "POST"
    if case == "expired":
        token = sign_upload_token(
            stack.env["DARKROOM_SIGNING_KEY"], account["account_id"], md5, int(time.time()) - 1
        )
        url = f"{stack.url}/api/images/upload/{token}"
    elif case == "tampered":
        url = _tamper(url)
    elif case == "md5 mismatch":
        body = png_form(random_png())
    elif case == "sha256 mismatch":
        other_hash = hashlib.sha256(random_png()).hexdigest()
        _, other = await upload_url(client, stack, account, other_hash)
        url = other["uploadUrl"]
    elif case == "jpeg":
        jpeg = pyvips.Image.black(8, 8).write_to_buffer(".jpg")
        body = png_form(jpeg)
    elif case == "png header on garbage":
        body = png_form(data[:33] + b"\x00garbage" * 50)
    elif case == "decompression bomb":
        body = png_form(png_bomb())
    elif case == "over the limit":
        body = png_form(data + b"\x00" * LIMIT)
    elif case == "missing file":
        body = aiohttp.FormData({"image": "nothing"}, default_to_multipart=True)
    elif case == "path hash":
        method, url, body = "GET", f"{stack.url}/api/images/..%2E/upload-url", None
    elif case == "path hash encoded":
        method, url, body = "GET", f"{stack.url}/api/images/..%2F..%2Fetc/upload-url", None
    async with client.request(
        method,
        aiohttp.client.URL(url, encoded=True),
        data=body,
        headers=happo(account),
    ) as response:
        assert response.status == expected[0], await response.text()
        answer = await response.json()
        assert answer["error"]["code"] == expected[1]
        assert answer["error"]["message"]
    assert await snapshot(stack) == before


async def test_upload_url_hash_is_bound_to_the_account(client, stack, account, other_account):
    # The signed URL, not the bearer, decides where the image goes (happo-e2e sends its JWT).
    data = random_png()
    md5 = hashlib.md5(data).hexdigest()  # noqa: S324
    _, grant = await upload_url(client, stack, account, md5)
    status, answer = await post_image(client, grant["uploadUrl"], other_account, data)
    assert answer == {"url": f"{stack.url}/img/{account['account_id']}/{md5}"}
    assert status == 200
    _, again = await upload_url(client, stack, other_account, md5)
    assert again["uploadUrl"]  # nothing landed in the other account
    opaque = f"screenshot-{uuid.uuid4().hex}"
    _, grant = await upload_url(client, stack, account, opaque)
    status, answer = await post_image(client, grant["uploadUrl"], account, random_png())
    assert status == 200 and answer["url"].endswith(f"/img/{account['account_id']}/{opaque}")
