"""Many clients uploading the same bytes at the same moment: one blob, one record per tenant."""

from __future__ import annotations

import asyncio
import hashlib
import signal
import time
from pathlib import Path

import aiohttp

from shared.runtime import POOL, STORE
from shared.store_keys import blob_key
from tests.clients_support import post_image, upload_url
from tests.conftest import start_platform
from tests.images_support import random_png
from tests.workers_support import Process, wait_healthy

UPLOADS = 20


async def test_twenty_concurrent_identical_uploads_store_one_blob(
    client, stack, account, other_account, resilience
):
    data = random_png(64, 48)
    md5 = hashlib.md5(data).hexdigest()  # noqa: S324 - the Happo clients name images by MD5
    sha256 = hashlib.sha256(data).hexdigest()
    tenants = [account, other_account] * (UPLOADS // 2)
    # Every client asks first (nothing is uploaded yet, so each gets its own one-time URL)...
    asked = await asyncio.gather(*(upload_url(client, stack, t, md5) for t in tenants))
    # ...then all of them upload at once.
    answers = await asyncio.gather(
        *(
            post_image(client, answer["uploadUrl"], tenant, data)
            for (_status, answer), tenant in zip(asked, tenants, strict=True)
        )
    )
    statuses = [status for status, _body in answers]
    pool = stack.apps["ingest"][POOL]
    store = stack.apps["ingest"][STORE]
    blobs = await pool.fetchval("SELECT count(*) FROM blobs WHERE sha256 = $1", sha256)
    records = await pool.fetch(
        "SELECT account_id::text, count(*) AS n FROM happo_images WHERE sha256 = $1"
        " GROUP BY account_id",
        sha256,
    )
    stored_events = await pool.fetchval(
        "SELECT count(*) FROM outbox WHERE type = 'image.stored'"
        " AND envelope->'data'->>'happo_hash' = $1",
        md5,
    )
    stored = [key async for key in store.keys("sha256/") if key == blob_key(sha256)]
    per_tenant = {row["account_id"]: row["n"] for row in records}
    resilience.row(
        "faults",
        "20 concurrent identical uploads from two tenants",
        injected="20 Happo image uploads of the same bytes at once (10 per tenant)",
        observed=f"answers {sorted(set(statuses))}; {len(stored)} stored object, {blobs} blob "
        f"row, records per tenant {sorted(per_tenant.values())}, {stored_events} "
        "`image.stored` events",
        accepted=sum(status == 200 for status in statuses),
        effects=blobs,
        duplicates=sum(per_tenant.values()) - len(per_tenant) + max(blobs - 1, 0),
        errors_5xx=sum(status >= 500 for status in statuses),
    )
    assert all(status == 200 for status, _ in asked)
    assert statuses == [200] * UPLOADS, answers
    assert len(stored) == 1 and blobs == 1
    assert per_tenant == {account["account_id"]: 1, other_account["account_id"]: 1}
    assert stored_events == 2
    assert await store.read(blob_key(sha256)) == data


async def hashhost_upload(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str], data: bytes
) -> tuple[int, str]:
    form = aiohttp.FormData()
    form.add_field("file", data, filename="crash.png", content_type="image/png")
    async with http.post(f"{url}/api/upload", data=form, headers=headers) as response:
        return response.status, await response.text()


async def served(http: aiohttp.ClientSession, url: str, sha256: str) -> int:
    async with http.get(f"{url}/f/{sha256}") as response:
        return response.status


async def test_ingest_killed_between_blob_write_and_commit_leaves_no_record_and_no_orphan(
    http, secrets_env, tmp_path, inbox, run_id, resilience
):
    """The ingest process dies (SIGKILL, at the ``blob.after_put`` fault point) with an
    upload's bytes in the store and its record not committed. After a clean restart: no record
    points anywhere, the bytes nobody references are swept, and the same upload then works."""
    async for platform in start_platform(
        f"darkroom_chaos_{run_id}_crash",
        secrets_env,
        tmp_path,
        inbox,
        without=("ingest",),
        DARKROOM_ORPHAN_GRACE_SECONDS="0",
        DARKROOM_SWEEP_INTERVAL_SECONDS="0.5",
    ):
        port = int(platform.env["DARKROOM_INGEST_PORT"])
        account = platform.create_account("Crash")
        token = {"Authorization": f"Bearer {account['token']}"}
        data = random_png(64, 48)
        sha256 = hashlib.sha256(data).hexdigest()
        blob = Path(platform.env["DARKROOM_BLOB_DIR"]).joinpath(*blob_key(sha256).split("/"))

        armed = Process("services.ingest", {**platform.env, "DARKROOM_FAULTS": "blob.after_put"})
        clean: Process | None = None
        try:
            assert await wait_healthy(http, port, 30), armed.stderr()
            crashed_status, _ = await hashhost_upload(http, platform.url, token, data)
            await asyncio.to_thread(armed.popen.wait, 30)
            orphaned = blob.exists()  # the bytes were written before the crash
            clean = Process("services.ingest", platform.env)
            assert await wait_healthy(http, port, 30), clean.stderr()
            record_after_crash = await served(http, platform.url, sha256)
            deadline = time.monotonic() + 15
            while blob.exists() and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            swept = not blob.exists()
            retried_status, retried = await hashhost_upload(http, platform.url, token, data)
            served_after_retry = await served(http, platform.url, sha256)
        finally:
            armed.kill()
            if clean is not None:
                clean.kill()
    resilience.row(
        "faults",
        "ingest killed between the blob write and the commit",
        injected="kill -9 of the ingest process (fault point blob.after_put) during a hash-host"
        " upload, then a clean restart and the same upload again",
        observed=f"the upload answered {crashed_status} (exit {armed.popen.returncode}); the"
        f" bytes were {'left' if orphaned else 'not'} in the store, no record served them"
        f" ({record_after_crash}), the sweeper {'removed' if swept else 'did not remove'} them;"
        f" the retry {retried_status}, served {served_after_retry}",
        accepted=1,
        effects=int(served_after_retry == 200),
        duplicates=0,
        # The crashed request's own 503 is the injected fault; none after it.
        errors_5xx=sum(s >= 500 for s in (record_after_crash, retried_status, served_after_retry)),
    )
    assert armed.popen.returncode == -signal.SIGKILL
    assert crashed_status in {502, 503}
    assert orphaned and record_after_crash == 404 and swept
    assert retried_status == 200, retried
    assert served_after_retry == 200
