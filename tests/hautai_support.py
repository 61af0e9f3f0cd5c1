"""What the Haut.ai-style API tests share: a signed-in company and the calls its clients
make (login, datasets and subjects, signed upload URLs and their ``PUT``, compute, polling
for the analysis), photos no other test uploads, and a look at what the platform stored."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from shared.runtime import POOL, STORE
from tests.images_support import jpeg, scene

PASSWORD = "hunter2hunter2"  # the password of every account conftest makes
POLL_SECONDS = 30


def photo(width: int = 640, height: int = 480, blur: float = 0.0) -> bytes:
    """A JPEG photo-like scene no other test uploads; ``blur``: Gaussian sigma in pixels."""
    image = scene(width, height, seed=random.randint(1, 10**9))
    if blur:
        image = image.gaussblur(blur).cast("uchar")
    return jpeg(image)


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    token: str | None = None,
    *,
    expect: int = 200,
    **kwargs,
):
    """One request; asserts the status and returns the decoded JSON (None for no body)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.request(method, url, headers=headers, **kwargs) as response:
        text = await response.text()
        assert response.status == expect, (method, url, response.status, text)
        return await response.json() if text else None


async def refused(http, method: str, url: str, token: str | None, status: int, code: str, **kw):
    """Assert one refusal in the platform's error shape; returns its message."""
    body = await call(http, method, url, token, expect=status, **kw)
    assert body["error"]["code"] == code, body
    assert body["error"]["message"]
    return body["error"]["message"]


@dataclass
class Company:
    """A signed-in company on a platform: its token and the base of its paths."""

    stack: object
    token: str
    id: str
    user_id: str

    def url(self, path: str) -> str:
        return f"{self.stack.url}/api/v1/companies/{self.id}{path}"


async def login(http, stack, account: dict) -> Company:
    body = await call(
        http,
        "POST",
        f"{stack.url}/api/v1/login/",
        json={"username": account["email"], "password": PASSWORD},
    )
    assert body["company_id"] == account["account_id"] and body["id"] == account["user_id"]
    return Company(stack, body["access_token"], body["company_id"], body["id"])


async def new_subject(http, company: Company, **fields) -> tuple[dict, dict]:
    dataset = await call(
        http, "POST", company.url("/datasets/"), company.token, expect=201, json={"name": "Study"}
    )
    subject = await call(
        http,
        "POST",
        company.url(f"/datasets/{dataset['id']}/subjects/"),
        company.token,
        expect=201,
        json={"name": "Jane", **fields},
    )
    return dataset, subject


async def signed_upload(http, company: Company, subject: dict, **body) -> dict:
    return await call(
        http,
        "POST",
        company.url(f"/subjects/{subject['id']}/signed_upload_url/"),
        company.token,
        expect=201,
        json=body or None,
    )


async def put(http, upload_url: dict, data, headers: dict | None = None, expect: int = 200):
    headers = upload_url["headers"] if headers is None else headers
    async with http.put(upload_url["url"], data=data, headers=headers) as response:
        text = await response.text()
        assert response.status == expect, (response.status, text)
        return await response.json() if text else None


async def compute(http, company: Company, batch_id: str, expect: int = 200, **body):
    return await call(
        http,
        "POST",
        company.url(f"/batches/{batch_id}/compute/"),
        company.token,
        expect=expect,
        json=body or None,
    )


async def analysed(http, company: Company, image_ids: list[str]) -> dict[str, dict]:
    """Poll ``GET …/images/{id}/`` until processing's answer filled every image in."""
    deadline = time.monotonic() + POLL_SECONDS
    while True:
        images = {
            image_id: await call(http, "GET", company.url(f"/images/{image_id}/"), company.token)
            for image_id in image_ids
        }
        if all(image["status"] in {"done", "failed"} for image in images.values()):
            return images
        if time.monotonic() > deadline:
            pytest.fail(f"no analysis after {POLL_SECONDS} s: {images}")
        await asyncio.sleep(0.25)


async def stored(stack) -> list[str]:
    return sorted([key async for key in stack.apps["ingest"][STORE].keys("")])


async def snapshot(stack) -> tuple:
    """The store's keys and the row counts of the subjects API's tables and of blobs."""
    pool = stack.apps["ingest"][POOL]
    counts = []
    for table in ("blobs", "haut_images", "image_batches", "aux_images", "used_upload_urls"):
        counts.append(await pool.fetchval(f"SELECT count(*) FROM {table}"))
    statuses = await pool.fetch("SELECT id, status FROM haut_images ORDER BY id")
    return await stored(stack), tuple(counts), [tuple(row) for row in statuses]


async def curl_put(upload_url: dict, path: Path) -> tuple[int, str]:
    """``curl -X PUT {url} -H … --upload-file {path}``, as the seed says."""
    args = ["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", "-X", upload_url["method"]]
    args.append(upload_url["url"])
    for name, value in upload_url["headers"].items():
        args += ["-H", f"{name}: {value}"]
    args += ["--upload-file", str(path)]
    process = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE)
    out, _ = await process.communicate()
    body, _, status = out.decode().rpartition("\n")
    return int(status), body
