"""What the process-kill and outage tests share: how many jobs they publish, the answers and
the database effects of those jobs, and a check that a count reached zero."""

from __future__ import annotations

import asyncio
import json
import time

import asyncpg

from tests.workers_support import Jobs

JOBS = 8


async def _answers(jobs: Jobs, keys: set[str], seconds: float) -> list[dict]:
    """Every answer to ``keys`` until each has one (then a second more, to catch repeats)."""
    found: list[dict] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        answered = {a["data"]["key"] for a in found}
        if keys <= answered:
            deadline = min(deadline, time.monotonic() + 1.0)
        message = await jobs.answers.get(no_ack=True, fail=False)
        if message is None:
            await asyncio.sleep(0.05)
            continue
        body = json.loads(message.body)
        if body["data"].get("key") in keys:
            found.append(body)
    return found


async def _effects(env: dict[str, str], keys: set[str]) -> dict[str, int]:
    conn = await asyncpg.connect(env["DATABASE_URL"], server_settings={"search_path": "processing"})
    try:
        rows = await conn.fetch(
            "SELECT key, count(*) AS n FROM derivatives WHERE key = ANY($1) GROUP BY key",
            list(keys),
        )
        return {row["key"]: row["n"] for row in rows}
    finally:
        await conn.close()


async def _zero(value) -> bool:
    return await value == 0
