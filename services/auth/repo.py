"""All of auth's SQL."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from services.auth import domain, events, oauth
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
    """Insert an account and its first user (in the caller's transaction); raises
    ``UniqueViolationError`` on a taken e-mail."""
    account_id, user_id = uuid.uuid4(), uuid.uuid4()
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
    assert table in {"api_keys", "api_tokens", "oauth_tokens", "login_tokens"}
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
    ``credential.revoked`` (in the caller's transaction); returns its kind, or None when the
    account has no such live one."""
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


# --- OAuth 2.0 ---------------------------------------------------------------------------------

_CLIENT_COLUMNS = "id, account_id, client_id, secret_hash, name, redirect_uri"
_PAIR_COLUMNS = (
    "id, client_id AS client_pk, account_id, user_id, code_id, refresh_expires_at,"
    " rotated_at, revoked_at"
)


async def account_exists(conn: asyncpg.Connection, account_id: uuid.UUID) -> bool:
    """True when the account ``account_id`` exists."""
    return bool(await conn.fetchval("SELECT 1 FROM accounts WHERE id = $1", account_id))


async def create_oauth_client(
    conn: asyncpg.Connection,
    *,
    account_id: uuid.UUID,
    redirect_uri: str,
    name: str = "",
    created_by: uuid.UUID | None = None,
) -> tuple[uuid.UUID, str, str]:
    """Register an application; returns ``(id, client_id, client_secret)`` (the secret is only
    stored hashed, so this is its one showing)."""
    client_pk = uuid.uuid4()
    client_id, secret = oauth.new_client_credentials()
    await conn.execute(
        "INSERT INTO oauth_clients"
        " (id, account_id, created_by, client_id, secret_hash, name, redirect_uri)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)",
        client_pk,
        account_id,
        created_by,
        client_id,
        domain.digest(secret),
        name,
        redirect_uri,
    )
    return client_pk, client_id, secret


async def live_oauth_client(conn: asyncpg.Connection, client_id: str) -> oauth.Client | None:
    """The undeleted application with ``client_id``, if any."""
    row = await conn.fetchrow(
        f"SELECT {_CLIENT_COLUMNS} FROM oauth_clients WHERE client_id = $1 AND deleted_at IS NULL",
        client_id,
    )
    return oauth.Client(**row) if row else None


async def oauth_clients_of(conn: asyncpg.Connection, account_id: uuid.UUID) -> list[dict]:
    """The account's live applications, newest first, with how many live tokens each has."""
    rows = await conn.fetch(
        "SELECT c.id, c.client_id, c.name, c.redirect_uri, c.created_at,"
        " (SELECT count(*) FROM oauth_tokens t WHERE t.client_id = c.id"
        "  AND t.revoked_at IS NULL AND t.expires_at > now()) AS live_tokens"
        " FROM oauth_clients c WHERE c.account_id = $1 AND c.deleted_at IS NULL"
        " ORDER BY c.created_at DESC",
        account_id,
    )
    return [dict(r) for r in rows]


async def delete_oauth_client(
    conn: asyncpg.Connection, account_id: uuid.UUID, client_pk: uuid.UUID
) -> list[uuid.UUID] | None:
    """Delete the account's application and revoke every token it holds (in the caller's
    transaction); returns the revoked token ids, or None when the account has no such live
    application."""
    deleted = await conn.fetchval(
        "UPDATE oauth_clients SET deleted_at = now()"
        " WHERE id = $1 AND account_id = $2 AND deleted_at IS NULL RETURNING id",
        client_pk,
        account_id,
    )
    if deleted is None:
        return None
    await conn.execute(
        "UPDATE oauth_codes SET used_at = now() WHERE client_id = $1 AND used_at IS NULL",
        client_pk,
    )
    return await _revoke_oauth_tokens(conn, "client_id", client_pk)


async def create_oauth_code(
    conn: asyncpg.Connection,
    *,
    client_pk: uuid.UUID,
    user_id: uuid.UUID,
    redirect_uri: str,
    code_challenge: str | None,
    lifetime: timedelta,
) -> str:
    """Store a new authorization code for ``user_id``'s consent; returns the code."""
    code = oauth.new_token()
    await conn.execute(
        "INSERT INTO oauth_codes"
        " (id, client_id, user_id, code_hash, redirect_uri, code_challenge, expires_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, now() + $7::interval)",
        uuid.uuid4(),
        client_pk,
        user_id,
        domain.digest(code),
        redirect_uri,
        code_challenge,
        lifetime,
    )
    return code


async def lock_oauth_code(conn: asyncpg.Connection, code_hash: bytes) -> oauth.Code | None:
    """The code with ``code_hash``, locked until the transaction ends (so two exchanges of one
    code are serialised and the second sees the first's tokens)."""
    row = await conn.fetchrow(
        "SELECT c.id, c.client_id AS client_pk, c.user_id, u.account_id, c.redirect_uri,"
        " c.code_challenge, c.expires_at, c.used_at"
        " FROM oauth_codes c JOIN users u ON u.id = c.user_id"
        " WHERE c.code_hash = $1 FOR UPDATE OF c",
        code_hash,
    )
    return oauth.Code(**row) if row else None


async def spend_oauth_code(conn: asyncpg.Connection, code_id: uuid.UUID) -> None:
    """Mark a code used: any later presentation is a replay."""
    await conn.execute("UPDATE oauth_codes SET used_at = now() WHERE id = $1", code_id)


async def issue_oauth_tokens(
    conn: asyncpg.Connection,
    *,
    client_pk: uuid.UUID,
    account_id: uuid.UUID,
    user_id: uuid.UUID,
    code_id: uuid.UUID,
    lifetime: timedelta,
    refresh_lifetime: timedelta,
) -> tuple[uuid.UUID, str, str, datetime]:
    """Issue an access/refresh pair of grant ``code_id``; returns ``(id, access_token,
    refresh_token, created_at)`` (only their digests are stored)."""
    token_id, access, refresh = uuid.uuid4(), oauth.new_token(), oauth.new_token()
    created_at = await conn.fetchval(
        "INSERT INTO oauth_tokens (id, client_id, account_id, user_id, code_id, access_hash,"
        " refresh_hash, scope, expires_at, refresh_expires_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now() + $9::interval, now() + $10::interval)"
        " RETURNING created_at",
        token_id,
        client_pk,
        account_id,
        user_id,
        code_id,
        domain.digest(access),
        domain.digest(refresh),
        oauth.SCOPE,
        lifetime,
        refresh_lifetime,
    )
    return token_id, access, refresh, created_at


async def lock_oauth_refresh(
    conn: asyncpg.Connection, refresh_hash: bytes
) -> oauth.TokenPair | None:
    """The pair whose refresh token has ``refresh_hash``, locked until the transaction ends."""
    row = await conn.fetchrow(
        f"SELECT {_PAIR_COLUMNS} FROM oauth_tokens WHERE refresh_hash = $1 FOR UPDATE",
        refresh_hash,
    )
    return oauth.TokenPair(**row) if row else None


async def oauth_pair_of(conn: asyncpg.Connection, token_hash: bytes) -> oauth.TokenPair | None:
    """The pair that ``token_hash`` is the access or the refresh token of, if any."""
    row = await conn.fetchrow(
        f"SELECT {_PAIR_COLUMNS} FROM oauth_tokens WHERE access_hash = $1 OR refresh_hash = $1",
        token_hash,
    )
    return oauth.TokenPair(**row) if row else None


async def rotate_oauth_pair(conn: asyncpg.Connection, token_id: uuid.UUID) -> list[uuid.UUID]:
    """Retire a pair whose refresh token was just used: its access token stops working and a
    later use of its refresh token is recognised as a replay."""
    await conn.execute("UPDATE oauth_tokens SET rotated_at = now() WHERE id = $1", token_id)
    return await _revoke_oauth_tokens(conn, "id", token_id)


async def revoke_oauth_grant(conn: asyncpg.Connection, code_id: uuid.UUID) -> list[uuid.UUID]:
    """Revoke every live pair issued from the code ``code_id`` or refreshed from those; returns
    their ids (with rotation there is at most one)."""
    return await _revoke_oauth_tokens(conn, "code_id", code_id)


async def _revoke_oauth_tokens(
    conn: asyncpg.Connection, column: str, value: uuid.UUID
) -> list[uuid.UUID]:
    assert column in {"id", "code_id", "client_id"}
    return await _revoke_pairs(conn, "oauth_tokens", "oauth_token", column, value)


async def _revoke_pairs(
    conn: asyncpg.Connection, table: str, kind: str, column: str, value: uuid.UUID
) -> list[uuid.UUID]:
    """Revoke the live access/refresh pairs of ``table`` whose ``column`` is ``value`` and
    publish ``credential.revoked`` (of ``kind``) for each; returns their ids."""
    assert table in {"oauth_tokens", "login_tokens"}
    rows = await conn.fetch(
        f"UPDATE {table} SET revoked_at = now() WHERE {column} = $1 AND revoked_at IS NULL"
        " RETURNING id, account_id",
        value,
    )
    for row in rows:
        await record_event(
            conn,
            events.CREDENTIAL_REVOKED,
            {
                "credential_id": str(row["id"]),
                "kind": kind,
                "account_id": str(row["account_id"]),
            },
        )
    return [row["id"] for row in rows]


async def live_oauth_token(conn: asyncpg.Connection, access_hash: bytes) -> CredentialOwner | None:
    """The consenting user of the unexpired, unrevoked access token with ``access_hash`` whose
    application still exists, if any."""
    row = await conn.fetchrow(
        "SELECT t.account_id, t.user_id, t.id AS credential_id FROM oauth_tokens t"
        " JOIN oauth_clients c ON c.id = t.client_id"
        " WHERE t.access_hash = $1 AND t.revoked_at IS NULL AND t.expires_at > now()"
        " AND c.deleted_at IS NULL",
        access_hash,
    )
    return CredentialOwner(**row) if row else None


# --- API login (Haut.ai dialect) ---------------------------------------------------------------


@dataclass(frozen=True)
class LoginPair:
    """An issued login access/refresh pair as stored (the token values only the client has)."""

    id: uuid.UUID
    family_id: uuid.UUID
    account_id: uuid.UUID
    user_id: uuid.UUID
    refresh_expires_at: datetime
    rotated_at: datetime | None
    revoked_at: datetime | None


async def issue_login_tokens(
    conn: asyncpg.Connection,
    *,
    user: User,
    family_id: uuid.UUID,
    lifetime: timedelta,
    refresh_lifetime: timedelta,
) -> tuple[str, str]:
    """Issue an access/refresh pair for ``user`` in ``family_id`` (a new login's own id, or the
    family of the pair a refresh rotates); returns ``(access_token, refresh_token)``."""
    access, refresh = domain.new_login_tokens()
    await conn.execute(
        "INSERT INTO login_tokens (id, family_id, account_id, user_id, access_hash,"
        " refresh_hash, expires_at, refresh_expires_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, now() + $7::interval, now() + $8::interval)",
        uuid.uuid4(),
        family_id,
        user.account_id,
        user.id,
        domain.digest(access),
        domain.digest(refresh),
        lifetime,
        refresh_lifetime,
    )
    return access, refresh


async def lock_login_refresh(conn: asyncpg.Connection, refresh_hash: bytes) -> LoginPair | None:
    """The pair whose refresh token has ``refresh_hash``, locked until the transaction ends."""
    row = await conn.fetchrow(
        "SELECT id, family_id, account_id, user_id, refresh_expires_at, rotated_at, revoked_at"
        " FROM login_tokens WHERE refresh_hash = $1 FOR UPDATE",
        refresh_hash,
    )
    return LoginPair(**row) if row else None


async def rotate_login_pair(conn: asyncpg.Connection, pair_id: uuid.UUID) -> list[uuid.UUID]:
    """Retire a pair whose refresh token was just used (its access token stops working)."""
    await conn.execute("UPDATE login_tokens SET rotated_at = now() WHERE id = $1", pair_id)
    return await _revoke_pairs(conn, "login_tokens", "login_token", "id", pair_id)


async def revoke_login_family(conn: asyncpg.Connection, family_id: uuid.UUID) -> list[uuid.UUID]:
    """Revoke every live pair of a login (a rotated refresh token was replayed)."""
    return await _revoke_pairs(conn, "login_tokens", "login_token", "family_id", family_id)


async def live_login_token(conn: asyncpg.Connection, access_hash: bytes) -> CredentialOwner | None:
    """The owner of the unexpired, unrevoked login access token with ``access_hash``, if any."""
    row = await conn.fetchrow(
        "SELECT account_id, user_id, id AS credential_id FROM login_tokens"
        " WHERE access_hash = $1 AND revoked_at IS NULL AND expires_at > now()",
        access_hash,
    )
    return CredentialOwner(**row) if row else None
