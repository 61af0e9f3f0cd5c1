"""What the process-kill and outage tests share: how many jobs they publish, the answers and
the effects of those jobs (one ``analyses`` row per original, its aux images stored), and a
check that a count reached zero."""

from __future__ import annotations

import asyncio
import json
import time

import asyncpg

from shared.analysis import ALGORITHM, AUX_IMAGE_TYPES, aux_image_key
from shared.storage import BlobStore
from tests.workers_support import Jobs, answer_key

JOBS = 8


async def _answers(jobs: Jobs, keys: set[str], seconds: float) -> list[dict]:
    """Every answer to ``keys`` until each has one (then a second more, to catch repeats)."""
    found: list[dict] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        answered = {answer_key(a) for a in found}
        if keys <= answered:
            deadline = min(deadline, time.monotonic() + 1.0)
        message = await jobs.answers.get(no_ack=True, fail=False)
        if message is None:
            await asyncio.sleep(0.05)
            continue
        body = json.loads(message.body)
        if answer_key(body) in keys:
            found.append(body)
    return found


async def _effects(env: dict[str, str], keys: set[str]) -> dict[str, int]:
    """The ``analyses`` rows of the originals ``keys`` (SHA-256s), counted by original."""
    conn = await asyncpg.connect(env["DATABASE_URL"], server_settings={"search_path": "processing"})
    try:
        rows = await conn.fetch(
            "SELECT sha256, count(*) AS n FROM analyses"
            " WHERE sha256 = ANY($1) AND algorithm = $2 GROUP BY sha256",
            list(keys),
            ALGORITHM,
        )
        return {row["sha256"]: row["n"] for row in rows}
    finally:
        await conn.close()


async def _stored(store: BlobStore, keys: set[str]) -> int:
    """How many of the originals ``keys`` have every aux image of their analysis stored."""
    stored = 0
    for key in keys:
        found = [await store.exists(aux_image_key(key, kind)) for kind in AUX_IMAGE_TYPES]
        stored += all(found)
    return stored


async def _zero(value) -> bool:
    return await value == 0
