"""PostgreSQL through asyncpg: one schema per service, and the migration runner.

A service's pool sets ``search_path`` to its own schema, so its SQL names no schema and cannot
wander into another service's tables by accident. Migrations are numbered ``NNN_name.sql``
files; the shared ones (outbox, processed events) run first in every schema. They are applied at
start under an advisory lock, each in its own transaction, and recorded, so running them again
does nothing.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from shared.errors import Unavailable

SHARED_MIGRATIONS = Path(__file__).with_name("migrations")
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_MIGRATION_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")

#: Connection failures that mean "the database is not there right now", not a bug.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InterfaceError,
)

#: What PostgreSQL raises for text it cannot store (a NUL character, bytes that are not UTF-8):
#: a client's input, never an outage.
UNSTORABLE_TEXT: tuple[type[BaseException], ...] = (
    asyncpg.CharacterNotInRepertoireError,
    asyncpg.UntranslatableCharacterError,
)


@dataclass(frozen=True)
class Migration:
    """One numbered SQL file."""

    source: str
    version: int
    name: str
    sql: str


def _check_schema(schema: str) -> str:
    if not _SCHEMA_NAME.match(schema):
        raise ValueError(f"not a schema name: {schema!r}")
    return schema


async def _init_connection(conn: asyncpg.Connection) -> None:
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


class BoundedPool(asyncpg.Pool):
    """An asyncpg pool whose ``acquire()`` waits at most ``acquire_timeout`` seconds by
    default, and so does the release at the end of its ``async with``.

    asyncpg's default is no limit: after a statement times out on a database that drops
    packets, giving the connection back waits for the query's cancellation — which never
    arrives — and the request hangs until the network heals. Bounded, it answers 503."""

    def __init__(self, *args: Any, acquire_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.acquire_timeout = acquire_timeout

    def acquire(self, *, timeout: float | None = None) -> Any:
        """A connection within ``timeout`` seconds (default: the pool's ``acquire_timeout``)."""
        return super().acquire(timeout=self.acquire_timeout if timeout is None else timeout)


async def create_pool(
    dsn: str, schema: str, *, max_size: int = 10, timeout: float = 10
) -> asyncpg.Pool:
    """Open a pool whose connections live in ``schema`` and decode JSON columns to Python;
    opening a connection, every statement, waiting for a free connection and giving one back
    each give up after ``timeout`` seconds.

    Raises :class:`shared.errors.Unavailable` naming the server when it cannot be reached.
    """
    _check_schema(schema)
    try:
        return await BoundedPool(
            dsn,
            acquire_timeout=timeout,
            init_size=None,
            min_size=1,
            max_size=max_size,
            max_queries=50000,
            max_inactive_connection_lifetime=300.0,
            connect=None,
            setup=None,
            init=_init_connection,
            reset=_keep_session,
            loop=None,
            connection_class=asyncpg.Connection,
            record_class=asyncpg.Record,
            server_settings={"search_path": schema, "application_name": f"darkroom-{schema}"},
            timeout=timeout,
            command_timeout=timeout,
        )
    except CONNECTION_ERRORS as exc:
        raise Unavailable(f"PostgreSQL at {redact_dsn(dsn)} is not answering: {exc}") from exc


#: How long PostgreSQL lets a short transaction sit idle before it ends it (see
#: :func:`short_transaction`).
SHORT_TRANSACTION_IDLE_SECONDS = 5


@contextlib.asynccontextmanager
async def short_transaction(conn: asyncpg.Connection) -> AsyncIterator[None]:
    """A transaction on ``conn`` that only runs SQL (no computation, no network call inside),
    which PostgreSQL ends if it sits idle for :data:`SHORT_TRANSACTION_IDLE_SECONDS`.

    A process cut off from the network in the middle of one sends no reset: its session would
    otherwise hold the transaction's row locks until TCP keepalive notices, hours later, and
    every other replica writing the same row would wait on them (seen in the multi-host test:
    one derivative key unmakeable for the whole cut). A transaction that waits on work between
    statements (a consumer computing inside its transaction) must not use this.
    """
    async with conn.transaction():
        await conn.execute(
            f"SET LOCAL idle_in_transaction_session_timeout = '{SHORT_TRANSACTION_IDLE_SECONDS}s'"
        )
        yield


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """What a connection needs on its way back to the pool beyond asyncpg's own rollback of
    an open transaction: nothing. Our SQL keeps no session state (locks are
    transaction-scoped, settings ``SET LOCAL``, listeners on connections of their own), and
    asyncpg's default ``RESET ALL; UNLISTEN *; …`` is one more round trip on every request."""


async def connect(dsn: str, schema: str | None = None) -> asyncpg.Connection:
    """One connection (for tools), decoding JSON like the pools, in ``schema`` when given."""
    settings = {"application_name": "darkroom-cli"}
    if schema is not None:
        settings["search_path"] = _check_schema(schema)
    conn = await asyncpg.connect(dsn, timeout=10, server_settings=settings)
    await _init_connection(conn)
    return conn


async def ensure_database(dsn: str) -> bool:
    """Create the database named in ``dsn`` when it is missing; True when it was created."""
    try:
        conn = await asyncpg.connect(dsn, timeout=10)
    except asyncpg.InvalidCatalogNameError:
        pass
    else:
        await conn.close()
        return False
    name = dsn.rsplit("/", 1)[1].split("?", 1)[0]
    admin = await asyncpg.connect(dsn.rsplit("/", 1)[0] + "/postgres", timeout=10)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    except asyncpg.DuplicateDatabaseError:
        return False
    finally:
        await admin.close()
    return True


def read_migrations(folder: Path, source: str) -> list[Migration]:
    """The ``NNN_name.sql`` files of ``folder`` in order; refuses gaps and duplicates."""
    migrations = []
    for path in sorted(folder.glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if not match:
            raise ValueError(f"migration file name must be NNN_name.sql: {path}")
        migrations.append(Migration(source, int(match[1]), match[2], path.read_text()))
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migrations in {folder} must be numbered 001, 002, … without gaps")
    return migrations


async def migrate(conn: asyncpg.Connection, schema: str, folder: Path) -> list[str]:
    """Apply the shared and then the service's pending migrations to ``schema``.

    Holds an advisory lock on the schema name so processes starting together apply each
    migration once. Returns the names applied now.
    """
    _check_schema(schema)
    plan = read_migrations(SHARED_MIGRATIONS, "shared") + read_migrations(folder, schema)
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock(hashtext($1))", f"darkroom.migrate.{schema}")
    try:
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        await conn.execute(
            f"""CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
                    source text NOT NULL,
                    version int NOT NULL,
                    name text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now(),
                    PRIMARY KEY (source, version))"""
        )
        done = {
            (r["source"], r["version"])
            for r in await conn.fetch(f"SELECT source, version FROM {schema}.schema_migrations")
        }
        for migration in plan:
            if (migration.source, migration.version) in done:
                continue
            async with conn.transaction():
                await conn.execute(f"SET LOCAL search_path TO {schema}")
                await conn.execute(migration.sql)
                await conn.execute(
                    f"INSERT INTO {schema}.schema_migrations (source, version, name)"
                    " VALUES ($1, $2, $3)",
                    migration.source,
                    migration.version,
                    migration.name,
                )
            applied_now.append(f"{migration.source}/{migration.version:03d}_{migration.name}")
    finally:
        await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", f"darkroom.migrate.{schema}")
    return applied_now


def redact_dsn(dsn: str) -> str:
    """``dsn`` with its password masked, for messages."""
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", dsn)
