"""The core ingest flow on the S3 backend: a second platform (the ``s3_stack`` fixture of
conftest) whose ingest keeps its blobs in a bucket of a real S3-protocol server (moto) on
loopback, with its own database and exchange."""

from __future__ import annotations

import hashlib

import aiohttp

from services.ingest.blobs import OrphanSweeper
from shared.runtime import POOL, STORE
from shared.storage import S3BlobStore
from shared.store_keys import blob_key
from tests.clients_support import snapshot
from tests.images_support import random_png


async def test_upload_serve_dedupe_delete_and_sweep_on_s3(s3_stack, http):
    store = s3_stack.apps["ingest"][STORE]
    assert isinstance(store, S3BlobStore)
    account, other = s3_stack.create_account(), s3_stack.create_account("Other")
    data = random_png()
    sha256 = hashlib.sha256(data).hexdigest()
    before = await snapshot(s3_stack)
    for who in (account, other):
        form = aiohttp.FormData()
        form.add_field("file", data, filename="x.png", content_type="image/png")
        async with http.post(
            f"{s3_stack.url}/api/upload",
            data=form,
            headers={"Authorization": f"Bearer {who['token']}"},
        ) as response:
            assert response.status == 200
            urls = (await response.json())["urls"]
    after = await snapshot(s3_stack)
    assert after[0] == sorted([*before[0], blob_key(sha256)])  # one blob for two accounts
    for url in (urls["hash"], urls["ext"], urls["full"]):
        async with http.get(url, headers={"Range": "bytes=0-3"}) as response:
            assert response.status == 206
            assert await response.read() == data[:4]
        async with http.get(url) as response:
            assert await response.read() == data
    for who in (account, other):
        async with http.delete(
            f"{s3_stack.url}/api/files/{sha256}",
            headers={"Authorization": f"Bearer {who['token']}"},
        ) as response:
            assert response.status == 200
    assert (await snapshot(s3_stack))[0] == before[0]
    orphan = b"left behind by a crash"
    orphan_key = blob_key(hashlib.sha256(orphan).hexdigest())
    await store.put(orphan_key, orphan)
    await OrphanSweeper(s3_stack.apps["ingest"][POOL], store, 0).sweep_once()
    assert not await store.exists(orphan_key)
