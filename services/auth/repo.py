"""All of auth's SQL."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from services.auth import domain, events
from shared.events import record_event


@dataclass(frozen=True)
class User:
    """A user as the API shows it."""

    id: uuid.UUID
    account_id: uuid.UUID
    name: str
    email: str


@dataclass(frozen=True)
class ApiKeyRow:
    """A key pair with its secret still sealed."""

    id: uuid.UUID
    account_id: uuid.UUID
    user_id: uuid.UUID
    key: str
    secret_encrypted: bytes


@dataclass(frozen=True)
class CredentialOwner:
    """The account, user and credential a valid credential resolves to."""

    account_id: uuid.UUID
    user_id: uuid.UUID
    credential_id: uuid.UUID


async def create_account(
    conn: asyncpg.Connection, *, name: str, email: str, password_hash: str
) -> User:
    """Insert an account and its first user; raises ``UniqueViolationError`` on a taken e-mail."""
    account_id, user_id = uuid.uuid4(), uuid.uuid4()
    async with conn.transaction():
        await conn.execute("INSERT INTO accounts (id, name) VALUES ($1, $2)", account_id, name)
        await conn.execute(
            "INSERT INTO users (id, account_id, name, email, password_hash)"
            " VALUES ($1, $2, $3, $4, $5)",
            user_id,
            account_id,
            name,
            email,
            password_hash,
        )
        await record_event(
            conn,
            events.ACCOUNT_CREATED,
            {"account_id": str(account_id), "user_id": str(user_id), "name": name},
        )
    return User(user_id, account_id, name, email)


async def user_by_id(conn: asyncpg.Connection, user_id: uuid.UUID) -> User | None:
    """The user with ``user_id``, if any."""
    row = await conn.fetchrow(
        "SELECT id, account_id, name, email FROM users WHERE id = $1", user_id
    )
    return User(**row) if row else None


async def user_for_sign_in(conn: asyncpg.Connection, email: str) -> tuple[User, str] | None:
    """The user with ``email`` and their password hash, if any."""
    row = await conn.fetchrow(
        "SELECT id, account_id, name, email, password_hash FROM users WHERE lower(email) = $1",
        email.strip().lower(),
    )
    if row is None:
        return None
    return User(row["id"], row["account_id"], row["name"], row["email"]), row["password_hash"]


async def add_api_key(
    conn: asyncpg.Connection,
    *,
    key_id: uuid.UUID,
    user: User,
    key: str,
    secret_encrypted: bytes,
    name: str = "",
) -> None:
    """Store a new key pair for ``user``."""
    await conn.execute(
        "INSERT INTO api_keys (id, account_id, user_id, key, secret_encrypted, name)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        key_id,
        user.account_id,
        user.id,
        key,
        secret_encrypted,
        name,
    )


async def add_api_token(
    conn: asyncpg.Connection, *, user: User, token_hash: bytes, display_prefix: str, name: str = ""
) -> uuid.UUID:
    """Store a new bearer token (its hash) for ``user``; returns its id."""
    token_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO api_tokens (id, account_id, user_id, token_hash, display_prefix, name)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        token_id,
        user.account_id,
        user.id,
        token_hash,
        display_prefix,
        name,
    )
    return token_id


async def live_api_key(conn: asyncpg.Connection, key: str) -> ApiKeyRow | None:
    """The unrevoked key pair named ``key``, if any."""
    row = await conn.fetchrow(
        "SELECT id, account_id, user_id, key, secret_encrypted FROM api_keys"
        " WHERE key = $1 AND revoked_at IS NULL",
        key,
    )
    return ApiKeyRow(**row) if row else None


async def live_token(conn: asyncpg.Connection, token_hash: bytes) -> CredentialOwner | None:
    """The owner of the unrevoked token with ``token_hash``, if any."""
    row = await conn.fetchrow(
        "SELECT account_id, user_id, id AS credential_id FROM api_tokens"
        " WHERE token_hash = $1 AND revoked_at IS NULL",
        token_hash,
    )
    return CredentialOwner(**row) if row else None


async def live_session(conn: asyncpg.Connection, token_hash: bytes) -> CredentialOwner | None:
    """The owner of the unexpired, unrevoked session with ``token_hash``, if any."""
    row = await conn.fetchrow(
        "SELECT u.account_id, s.user_id, s.id AS credential_id FROM sessions s"
        " JOIN users u ON u.id = s.user_id"
        " WHERE s.token_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > now()",
        token_hash,
    )
    return CredentialOwner(**row) if row else None


async def touch(conn: asyncpg.Connection, table: str, credential_id: uuid.UUID) -> None:
    """Record use of a key or token, at most once a minute per credential."""
    assert table in {"api_keys", "api_tokens"}
    await conn.execute(
        f"UPDATE {table} SET last_used_at = now() WHERE id = $1"
        " AND (last_used_at IS NULL OR last_used_at < now() - interval '60 seconds')",
        credential_id,
    )


async def create_session(
    conn: asyncpg.Connection, user_id: uuid.UUID, token_hash: bytes, expires_at: datetime
) -> uuid.UUID:
    """Open a web session for ``user_id``."""
    session_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO sessions (id, user_id, token_hash, expires_at) VALUES ($1, $2, $3, $4)",
        session_id,
        user_id,
        token_hash,
        expires_at,
    )
    return session_id


async def credentials_of(conn: asyncpg.Connection, account_id: uuid.UUID) -> dict[str, list[dict]]:
    """Every key pair and token of an account, newest first, without secrets."""
    keys = await conn.fetch(
        "SELECT id, key, name, created_at, last_used_at, revoked_at FROM api_keys"
        " WHERE account_id = $1 ORDER BY created_at DESC",
        account_id,
    )
    tokens = await conn.fetch(
        "SELECT id, display_prefix, name, created_at, last_used_at, revoked_at FROM api_tokens"
        " WHERE account_id = $1 ORDER BY created_at DESC",
        account_id,
    )
    return {"keys": [dict(r) for r in keys], "tokens": [dict(r) for r in tokens]}


async def revoke_credential(
    conn: asyncpg.Connection, account_id: uuid.UUID, credential_id: uuid.UUID
) -> str | None:
    """Revoke the account's key pair, token or session ``credential_id`` and publish
    ``credential.revoked``; returns its kind, or None when the account has no such live one."""
    async with conn.transaction():
        kind = None
        for table, kind_name in (("api_keys", "api_key"), ("api_tokens", "token")):
            revoked = await conn.fetchval(
                f"UPDATE {table} SET revoked_at = now()"
                " WHERE id = $1 AND account_id = $2 AND revoked_at IS NULL RETURNING id",
                credential_id,
                account_id,
            )
            if revoked:
                kind = kind_name
                break
        if kind is None:
            revoked = await conn.fetchval(
                "UPDATE sessions s SET revoked_at = now() FROM users u"
                " WHERE s.id = $1 AND u.id = s.user_id AND u.account_id = $2"
                " AND s.revoked_at IS NULL RETURNING s.id",
                credential_id,
                account_id,
            )
            kind = "session" if revoked else None
        if kind is not None:
            await record_event(
                conn,
                events.CREDENTIAL_REVOKED,
                {"credential_id": str(credential_id), "kind": kind, "account_id": str(account_id)},
            )
    return kind


async def issue_key_pair(
    conn: asyncpg.Connection, box: domain.SecretBox, user: User, name: str = ""
) -> tuple[uuid.UUID, str, str]:
    """Create a key pair for ``user``, its secret sealed; returns ``(id, key, secret)``."""
    key_id = uuid.uuid4()
    key, secret = domain.new_api_key()
    await add_api_key(
        conn,
        key_id=key_id,
        user=user,
        key=key,
        secret_encrypted=box.seal(secret, key_id.bytes),
        name=name,
    )
    return key_id, key, secret


async def issue_token(
    conn: asyncpg.Connection, user: User, name: str = ""
) -> tuple[uuid.UUID, str]:
    """Create a bearer token for ``user``; returns ``(id, token)`` (the token is not stored)."""
    token = domain.new_token()
    token_id = await add_api_token(
        conn,
        user=user,
        token_hash=domain.digest(token),
        display_prefix=domain.display_prefix(token),
        name=name,
    )
    return token_id, token
