"""HTTP helpers for the hash file host and the Happo Image API, as their clients call them, the
upload limit of the test stack, and a snapshot of what ingest has stored."""

from __future__ import annotations

import aiohttp

from services.auth.domain import sign_jwt
from shared.runtime import POOL, STORE

LIMIT = 3 * 1024 * 1024  # DARKROOM_MAX_UPLOAD_BYTES of the test stack


def form(data: bytes, filename: str = "image.png", field: str = "file", **fields: str):
    body = aiohttp.FormData()
    for name, value in fields.items():
        body.add_field(name, value)
    body.add_field(field, data, filename=filename, content_type="application/octet-stream")
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def snapshot(stack) -> tuple:
    """The store's blob keys and the row counts of every ingest table."""
    store = stack.apps["ingest"][STORE]
    pool = stack.apps["ingest"][POOL]
    keys = sorted([key async for key in store.keys("sha256/")])
    counts = []
    for table in ("blobs", "files", "happo_images", "used_upload_urls", "outbox"):
        counts.append(await pool.fetchval(f"SELECT count(*) FROM {table}"))
    return keys, tuple(counts)


async def upload(client, stack, data: bytes, headers=None, **kwargs) -> dict:
    async with client.post(
        f"{stack.url}/api/upload", data=form(data, **kwargs), headers=headers or {}
    ) as response:
        assert response.status == 200, await response.text()
        return await response.json()


def happo(account: dict) -> dict[str, str]:
    """What happo.io v13 sends: an HS256 JWT with no exp."""
    return {"Authorization": f"Bearer {sign_jwt(account['api_key'], account['api_secret'])}"}


def png_form(data: bytes) -> aiohttp.FormData:
    body = aiohttp.FormData()
    body.add_field("file", data, filename="image.png", content_type="image/png")
    return body


async def upload_url(client, stack, account, image_hash: str) -> tuple[int, dict]:
    async with client.get(
        f"{stack.url}/api/images/{image_hash}/upload-url", headers=happo(account)
    ) as response:
        return response.status, await response.json()


async def post_image(client, url: str, account, data: bytes) -> tuple[int, dict]:
    async with client.post(url, data=png_form(data), headers=happo(account)) as response:
        return response.status, await response.json()
