"""HTTP helpers for the Progimage dialect: base64 bodies, its bearer header, and reading an
image back from a URL."""

from __future__ import annotations

import base64

import aiohttp
import pyvips


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def bearer(account: dict) -> dict[str, str]:
    return {"Authorization": f"Bearer {account['token']}"}


async def fetch_image(http, url: str) -> tuple[pyvips.Image, bytes, aiohttp.ClientResponse]:
    async with http.get(url) as response:
        assert response.status == 200, (url, response.status)
        data = await response.read()
    return pyvips.Image.new_from_buffer(data, ""), data, response
