"""Processing replicas are competing consumers on one queue: a second processing *process*
started beside the test stack takes its share of a 20-item Progimage bulk request."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter

from shared.runtime import POOL
from tests.conftest import ROOT, free_port
from tests.images_support import photo
from tests.progimage_support import b64, bearer, fetch_image
from tests.workers_support import wait_healthy


async def test_two_processing_processes_share_a_bulk_request(stack, http, account):
    port = free_port()
    env = {**os.environ, **stack.env, "DARKROOM_PROCESSING_PORT": str(port)}
    replica = subprocess.Popen(
        [sys.executable, "-m", "services.processing"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert await wait_healthy(http, port, 30), "the second processing process did not start"
        items = [
            {"file": b64(photo(480, 360, ".jpg", seed=1000 + n)), "filter": "toaster"}
            for n in range(20)
        ]
        response = await http.post(
            f"{stack.url}/user/images", json={"process": items}, headers=bearer(account)
        )
        assert response.status == 201, await response.text()
        data = (await response.json())["data"]
        assert len(data) == 20
        for item in data:
            image, _, _ = await fetch_image(http, item["url"])
            assert (image.width, image.height) == (480, 360)
        ids = [item["id"] for item in data]
        variants = await stack.apps["ingest"][POOL].fetch(
            "SELECT variants FROM progimage_images WHERE id = ANY($1::uuid[])", ids
        )
        keys = [v["key"] for row in variants for v in row["variants"].values()]
        assert len(set(keys)) == 60
        rows = await stack.apps["processing"][POOL].fetch(
            "SELECT worker FROM derivatives WHERE key = ANY($1::text[])", keys
        )
    finally:
        replica.send_signal(signal.SIGTERM)
        try:
            replica.wait(timeout=20)
        except subprocess.TimeoutExpired:
            replica.kill()
            replica.wait()
    assert len(rows) == 60  # each derivative computed once
    by_worker = Counter(row["worker"] for row in rows)
    assert len(by_worker) == 2, by_worker
    assert min(by_worker.values()) >= 6, by_worker
    assert any(worker.endswith(f":{replica.pid}") for worker in by_worker), by_worker
    assert replica.returncode == 0, replica.stderr.read().decode() if replica.stderr else ""
