"""The direct derivative call (rule 2 of the design) under a processing crash: an upload is
all-or-nothing, so a Progimage upload whose only processing replica is killed mid-call answers
503 and leaves nothing half-written — no image record, no blob row, no original in the store —
and the same upload works once processing is back."""

from __future__ import annotations

import asyncio
import hashlib
import signal
import time
from pathlib import Path

from shared.runtime import POOL
from shared.store_keys import blob_key
from tests.conftest import free_port, start_platform
from tests.images_support import photo
from tests.progimage_support import b64
from tests.workers_support import Process, wait_healthy

ITEMS = 4


async def test_processing_killed_mid_upload_answers_503_and_keeps_nothing(
    http, secrets_env, tmp_path, inbox, run_id, resilience
):
    port = free_port()
    async for platform in start_platform(
        f"darkroom_chaos_{run_id}_derive",
        secrets_env,
        tmp_path,
        inbox,
        without=("processing",),
        DARKROOM_PROCESSING_URL=f"http://127.0.0.1:{port}",
        DARKROOM_RATE_OAUTH="1000/1",
    ):
        account = platform.create_account("Derive")
        token = {"Authorization": f"Bearer {account['token']}"}
        # Slow full-size work (~0.5 s each: a free rotation and a filter), so the calls are in
        # flight when the kill lands.
        originals = [photo(1800, 1350, ".jpg", seed=7000 + n) for n in range(ITEMS)]
        hashes = [hashlib.sha256(data).hexdigest() for data in originals]
        body = {
            "process": [{"file": b64(data), "rotation": 45, "filter": "lomo"} for data in originals]
        }
        blob_dir = Path(platform.env["DARKROOM_BLOB_DIR"])
        env = {**platform.env, "DARKROOM_PROCESSING_PORT": str(port)}
        worker = Process("services.processing", env)
        restarted: Process | None = None
        try:
            assert await wait_healthy(http, port, 30), worker.stderr()
            upload = asyncio.ensure_future(
                http.post(f"{platform.url}/user/images", json=body, headers=token)
            )
            # The originals are written just before the derivatives are asked for.
            first = blob_dir.joinpath(*blob_key(hashes[-1]).split("/"))
            deadline = time.monotonic() + 20
            while not first.exists() and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)
            worker.popen.send_signal(signal.SIGKILL)
            started = time.monotonic()
            answer = await upload
            crashed_status = answer.status
            crashed_body = await answer.json(content_type=None)
            answered_in = time.monotonic() - started
            await asyncio.to_thread(worker.popen.wait, 10)
            ingest = platform.apps["ingest"]
            images = await ingest[POOL].fetchval(
                "SELECT count(*) FROM progimage_images WHERE sha256 = ANY($1::text[])", hashes
            )
            blob_rows = await ingest[POOL].fetchval(
                "SELECT count(*) FROM blobs WHERE sha256 = ANY($1::text[])", hashes
            )
            stored = [h for h in hashes if blob_dir.joinpath(*blob_key(h).split("/")).exists()]
            restarted = Process("services.processing", env)
            assert await wait_healthy(http, port, 30), restarted.stderr()
            async with http.post(f"{platform.url}/user/images", json=body, headers=token) as again:
                retried_status = again.status
                retried = await again.json(content_type=None)
        finally:
            worker.kill()
            if restarted is not None:
                restarted.kill()
    resilience.row(
        "faults",
        "processing killed mid-call during a Progimage upload (one replica)",
        injected=f"kill -9 of the only processing process while a {ITEMS}-item Progimage"
        " upload waited for its derivatives (direct calls), then a restart and the same upload",
        observed=f"the upload answered {crashed_status} after {answered_in:.1f} s; image"
        f" records {images}, blob rows {blob_rows}, originals left in the store {len(stored)};"
        f" the retry answered {retried_status}",
        accepted=1,
        effects=int(retried_status == 201),
        duplicates=0,
        # The crashed request's own 503 is the injected fault; none after it.
        errors_5xx=int(retried_status >= 500),
    )
    assert worker.popen.returncode == -signal.SIGKILL
    assert crashed_status == 503, crashed_body
    assert crashed_body["error"]["code"] == "unavailable"
    assert answered_in < 5
    assert images == 0 and blob_rows == 0 and stored == []
    assert retried_status == 201, retried
    assert len(retried["data"]) == ITEMS
