"""The chaos suite (``make chaos``): real processes killed, real connections cut, under load.

Processing workers here are ``python -m services.processing`` subprocesses on an exchange and a
database of their own (the ``workers_env`` of tests/test_lifecycle.py), so a worker killed with
SIGKILL takes nothing of the session's in-process stack with it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.conftest import PG_ADMIN, Stack, delete_topology, stack_env, start_stack, stop_stack
from tests.test_lifecycle import workers_env  # noqa: F401  (a fixture these tests share)


async def start_platform(
    exchange: str, secrets_env: dict[str, str], tmp_path, inbox, *, via=None, without=(), **env
) -> AsyncIterator[Stack]:
    """A second platform on a database and an exchange of its own: sharing the session's
    database would let the session's outbox relays publish this platform's events to the
    session's exchange. ``via`` (a TcpProxy) carries its database connections; ``env``
    overrides settings; ``without`` names services the test runs as processes itself."""
    name = f"{exchange}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    database_url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    if via is not None:
        database_url = via.url_for(database_url)
    platform_env = stack_env(database_url, name, secrets_env, tmp_path, inbox.port) | env
    running = await start_stack(platform_env, without=without)
    try:
        yield running
    finally:
        await stop_stack(running)
        await delete_topology(name)
        admin = await asyncpg.connect(PG_ADMIN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/chaos/" in item.nodeid:
            item.add_marker(pytest.mark.chaos)
