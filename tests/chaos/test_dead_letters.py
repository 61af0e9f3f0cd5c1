"""Poison messages: dead-lettered after the delivery limit while the queue keeps flowing, then
listed and replayed by an operator with the ``darkroom`` CLI once the cause is fixed.

The poison is real: a trigger in the workers' database refuses one original's ``analyses`` row,
so its handler fails on every delivery, as a bug or a broken dependency would make it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import aio_pika
import asyncpg

from services.processing.consumers import ANALYSES_CONSUMER
from shared.analysis import ANALYSIS_COMPLETED, ANALYSIS_REQUESTED, AUX_IMAGE_TYPES, aux_image_key
from shared.runtime import STORE
from tests.chaos.jobs_support import _answers, _effects
from tests.conftest import ROOT
from tests.images_support import big_jpeg
from tests.workers_support import Jobs, answer_key, start_worker, until

CONSUMER = ANALYSES_CONSUMER


def darkroom(env: dict[str, str], *args: str) -> dict:
    """Run the operator CLI with ``env``; its JSON answer."""
    done = subprocess.run(
        [sys.executable, "-c", "from services.cli import main; main()", *args],
        env={**os.environ, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout)


async def test_a_poison_message_is_dead_lettered_listed_and_replayed(
    stack, http, workers_env, resilience
):
    env = {**workers_env, "DARKROOM_EVENT_DELIVERY_LIMIT": "2"}
    worker = await start_worker(http, env, 20.0)
    conn = await asyncpg.connect(env["DATABASE_URL"], server_settings={"search_path": "processing"})
    try:
        async with Jobs.open(env["DARKROOM_EXCHANGE"]) as jobs:
            poison_id, poison_key = await jobs.request(stack, big_jpeg(200, seed=500))
            await until(lambda: _has_row(conn, poison_key), 30, "a first job to settle")
            # Refuse this original's analysis from now on: its next request fails every time.
            await conn.execute(
                "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$"
                " BEGIN RAISE EXCEPTION 'poisoned row %', NEW.sha256; END $$"
            )
            await conn.execute("DELETE FROM analyses WHERE sha256 = $1", poison_key)
            await conn.execute(
                "CREATE TRIGGER refuse_poison BEFORE INSERT ON analyses FOR EACH ROW"
                f" WHEN (NEW.sha256 = '{poison_key}') EXECUTE FUNCTION refuse_poison()"
            )
            for kind in AUX_IMAGE_TYPES:
                await stack.apps["processing"][STORE].delete(aux_image_key(poison_key, kind))
            poison_id, poison_key = await jobs.request(stack, big_jpeg(200, seed=500))
            await jobs.broker.exchange.publish(
                aio_pika.Message(b"{not json", message_id="malformed", type="garbage"),
                routing_key=ANALYSIS_REQUESTED,
            )
            good = [await jobs.request(stack, big_jpeg(300, seed=510 + n)) for n in range(3)]
            good_keys = {key for _id, key in good}
            answers = await _answers(jobs, good_keys, 60)
            flowing = {answer_key(a) for a in answers if a["type"] == ANALYSIS_COMPLETED}

            async def both_dead() -> bool:
                return len(darkroom(env, "dead-letters", "list")["dead_letters"]) == 2

            await until(both_dead, 60, "the poison and the malformed message to be dead")
            listed = darkroom(env, "dead-letters", "list", "--consumer", CONSUMER)["dead_letters"]
            reasons = sorted(letter["reason"] for letter in listed)

            await conn.execute("DROP TRIGGER refuse_poison ON analyses")
            replayed = darkroom(env, "dead-letters", "replay", "--event", poison_id)["replayed"]
            after = await _answers(jobs, {poison_key}, 60)
            left = darkroom(env, "dead-letters", "list")["dead_letters"]
            effects = await _effects(env, good_keys | {poison_key})
            resilience.row(
                "faults",
                "poison message → dead-letter queue → `darkroom dead-letters replay`",
                injected="a job whose row the database refuses on every delivery, a malformed "
                "body, then 3 good jobs; delivery limit 2",
                observed=f"good jobs flowed ({len(flowing)}/3 computed) while the poison "
                f"retried; dead letters listed with reasons {reasons}; after the fix the "
                f"replay of {len(replayed.get(CONSUMER, []))} computed it once; "
                f"{len(left)} (the malformed body) left in the dead-letter queue",
                accepted=4,
                effects=sum(effects.values()),
                duplicates=sum(n - 1 for n in effects.values()),
            )
            assert flowing == good_keys
            assert reasons == ["delivery_limit", "rejected"], listed
            assert {letter["event_id"] for letter in listed} == {poison_id, "malformed"}
            assert replayed == {CONSUMER: [poison_id]}
            assert [a["type"] for a in after] == [ANALYSIS_COMPLETED], after
            assert [letter["event_id"] for letter in left] == ["malformed"]
            assert effects == {key: 1 for key in good_keys | {poison_key}}
    finally:
        await conn.close()
        worker.kill()


async def _has_row(conn: asyncpg.Connection, key: str) -> bool:
    return bool(await conn.fetchval("SELECT count(*) FROM analyses WHERE sha256 = $1", key))
