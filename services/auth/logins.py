"""Logging in with a password: the check itself (shared with the web sign-in), and the API
login of the Haut.ai dialect, whose access/refresh pairs rotate on every refresh."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import timedelta

import asyncpg

from services.auth import domain, refreshing, repo
from services.auth.refreshing import RefreshOutcome
from shared import errors

#: How the API login words each refusal of a refresh token (401 ``bad_credentials``).
_REFUSALS = {
    RefreshOutcome.UNKNOWN: "Unknown or revoked refresh token",
    RefreshOutcome.REVOKED: "Unknown or revoked refresh token",
    RefreshOutcome.REPLAYED: "The refresh token was already used; sign in again",
    RefreshOutcome.EXPIRED: "The refresh token has expired; sign in again",
}

_LOGIN_PAIRS = refreshing.PairStore[repo.LoginPair](
    lock=repo.lock_login_refresh,
    revoke_family=lambda conn, pair: repo.revoke_login_family(conn, pair.family_id),
    retire=lambda conn, pair: repo.rotate_login_pair(conn, pair.id),
)


async def password_user(conn: asyncpg.Connection, email: str, password: str) -> repo.User | None:
    """The user whose e-mail and password these are, or None; as slow for an unknown e-mail as
    for a wrong password, so timing does not tell which e-mails exist."""
    found = await repo.user_for_sign_in(conn, email)
    stored_hash = found[1] if found else domain.DUMMY_PASSWORD_HASH
    matches = await asyncio.to_thread(domain.password_matches, stored_hash, password)
    return found[0] if found is not None and matches else None


@dataclass(frozen=True)
class LoginTokens:
    """A fresh login pair, and the pairs the call retired (the gateway evicts the first)."""

    account_id: uuid.UUID
    user_id: uuid.UUID
    access_token: str
    refresh_token: str
    revoked: list[uuid.UUID]


@dataclass(frozen=True)
class Refused:
    """A refused refresh token, and the pairs revoked because it was a replay."""

    error: errors.BadCredentials
    revoked: list[uuid.UUID]


class Logins:
    """``POST /api/v1/login/`` and ``POST /api/v1/auth/refresh/``."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def log_in(self, email: str, password: str) -> LoginTokens:
        """A new login (its own family) for the user with this e-mail and password; 401
        ``bad_credentials`` with one answer for a wrong e-mail and a wrong password."""
        async with self.pool.acquire() as conn:
            user = await password_user(conn, email, password)
            if user is None:
                raise errors.BadCredentials("Wrong username or password")
            async with conn.transaction():
                return await _issue(conn, user, uuid.uuid4(), [])

    async def refresh(self, refresh_token: str) -> LoginTokens | Refused:
        """Rotate the pair of ``refresh_token`` into a new one of the same login, or refuse it
        (a replay revokes every pair of that login, and that revocation is kept)."""
        async with self.pool.acquire() as conn, conn.transaction():
            rotation = await refreshing.rotate(conn, _LOGIN_PAIRS, refresh_token)
            if rotation.outcome is not RefreshOutcome.ROTATED:
                return Refused(errors.BadCredentials(_REFUSALS[rotation.outcome]), rotation.revoked)
            assert rotation.pair is not None
            user = await repo.user_by_id(conn, rotation.pair.user_id)
            if user is None:
                # Raised, so the transaction rolls the rotation back.
                raise errors.BadCredentials("The user no longer exists")
            return await _issue(conn, user, rotation.pair.family_id, rotation.revoked)


async def _issue(
    conn: asyncpg.Connection, user: repo.User, family_id: uuid.UUID, revoked: list[uuid.UUID]
) -> LoginTokens:
    access, refresh = await repo.issue_login_tokens(
        conn,
        user=user,
        family_id=family_id,
        lifetime=timedelta(seconds=domain.LOGIN_ACCESS_SECONDS),
        refresh_lifetime=timedelta(seconds=domain.LOGIN_REFRESH_SECONDS),
    )
    return LoginTokens(user.account_id, user.id, access, refresh, revoked)
