"""Web sessions: signing up (an account, its first user and a session), signing in and
signing out."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import asyncpg

from services.auth import domain, repo
from services.auth.logins import password_user
from shared import errors
from shared.http import Principal


@dataclass(frozen=True)
class Session:
    """A session just opened: its cookie value (shown to the browser only) and lifetime."""

    user: repo.User
    token: str
    lifetime: timedelta
    #: The session the browser held before signing in, now revoked (never kept: it may have
    #: been planted by someone else).
    ended: str | None = None


class Sessions:
    """Sign-up, sign-in and sign-out of the web pages."""

    def __init__(self, pool: asyncpg.Pool, session_days: int) -> None:
        self.pool = pool
        self.lifetime = timedelta(days=session_days)

    async def sign_up(self, name: str, email: str, password: str) -> Session:
        """Create an account and its first user, and sign them in; 422 ``invalid_request``
        naming a bad field, 409 ``conflict`` when the e-mail already has an account."""
        fields = domain.validate_sign_up(name, email, password)
        password_hash = await asyncio.to_thread(domain.hash_password, fields.password)
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                user = await repo.create_account(
                    conn, name=fields.name, email=fields.email, password_hash=password_hash
                )
                return await self._open(conn, user)
        except asyncpg.UniqueViolationError as exc:
            raise errors.Conflict("That e-mail already has an account.") from exc

    async def sign_in(self, email: str, password: str, held: Principal) -> Session | None:
        """A new session for the user with this e-mail and password (None when they do not
        match), ending the session the browser ``held``, if any."""
        async with self.pool.acquire() as conn:
            user = await password_user(conn, email, password)
            if user is None:
                return None
            ended = None
            async with conn.transaction():
                session = await self._open(conn, user)
                if held.kind == "session" and held.credential_id:
                    await repo.revoke_credential(
                        conn, uuid.UUID(held.account_id), uuid.UUID(held.credential_id)
                    )
                    ended = held.credential_id
        return replace(session, ended=ended)

    async def sign_out(self, principal: Principal) -> str | None:
        """Revoke the caller's session; returns its id (None when the caller has none)."""
        if principal.kind != "session" or not principal.credential_id:
            return None
        async with self.pool.acquire() as conn, conn.transaction():
            await repo.revoke_credential(
                conn, uuid.UUID(principal.account_id), uuid.UUID(principal.credential_id)
            )
        return principal.credential_id

    async def _open(self, conn: asyncpg.Connection, user: repo.User) -> Session:
        token = domain.new_session_token()
        expires_at = datetime.now(UTC) + self.lifetime
        await repo.create_session(conn, user.id, domain.digest(token), expires_at)
        return Session(user, token, self.lifetime)
