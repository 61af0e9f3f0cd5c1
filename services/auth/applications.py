"""OAuth applications an account registers, lists and deletes (deleting one revokes every
token it holds)."""

from __future__ import annotations

import uuid

import asyncpg

from services.auth import repo
from shared import errors


class Applications:
    """Registration of the authorization server's clients."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def of_account(self, account_id: uuid.UUID) -> list[dict]:
        """The account's live applications, newest first, with their live token counts."""
        async with self.pool.acquire() as conn:
            return await repo.oauth_clients_of(conn, account_id)

    async def register(self, user: repo.User, name: str, redirect_uri: str) -> dict[str, str]:
        """Register an application of ``user``'s account; returns its ``client_id`` and
        ``client_secret`` (this is the secret's one showing)."""
        async with self.pool.acquire() as conn:
            _client_pk, client_id, secret = await repo.create_oauth_client(
                conn,
                account_id=user.account_id,
                redirect_uri=redirect_uri,
                name=name,
                created_by=user.id,
            )
        return {"client_id": client_id, "client_secret": secret}

    async def delete(self, account_id: uuid.UUID, client_pk: uuid.UUID) -> list[uuid.UUID]:
        """Delete the account's application and revoke its codes and tokens (published as
        ``credential.revoked``); returns the revoked token ids; 404 when there is no such one."""
        async with self.pool.acquire() as conn, conn.transaction():
            revoked = await repo.delete_oauth_client(conn, account_id, client_pk)
        if revoked is None:
            raise errors.NotFound("No such application in this account")
        return revoked
