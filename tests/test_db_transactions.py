"""A short transaction whose process goes silent is ended by PostgreSQL, and its locks with it
(what lets another processing replica write the derivative a cut-off one was recording)."""

from __future__ import annotations

import asyncio
import time

import asyncpg

from shared import db


async def test_a_short_transaction_left_idle_is_ended_and_its_lock_released(database_url):
    holder = await asyncpg.connect(database_url)
    other = await asyncpg.connect(database_url)
    try:
        await holder.execute("CREATE TABLE IF NOT EXISTS idle_probe (k text PRIMARY KEY)")
        await holder.execute("DELETE FROM idle_probe")
        transaction = db.short_transaction(holder)
        await transaction.__aenter__()  # entered and never left: the process went silent
        await holder.execute("INSERT INTO idle_probe VALUES ('key')")
        started = time.monotonic()
        # The same row from another session waits on the silent one's lock until PostgreSQL
        # ends that transaction, then goes through.
        await other.execute("INSERT INTO idle_probe VALUES ('key') ON CONFLICT DO NOTHING")
        waited = time.monotonic() - started
        assert db.SHORT_TRANSACTION_IDLE_SECONDS - 1 < waited < 30, waited
        assert await other.fetchval("SELECT count(*) FROM idle_probe") == 1
        # its session was terminated by the server, not by anything of ours
        gone = await other.fetchval(
            "SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $1", holder.get_server_pid()
        )
        assert gone
    finally:
        await other.execute("DROP TABLE IF EXISTS idle_probe")
        await other.close()
        holder.terminate()
        await asyncio.sleep(0)
