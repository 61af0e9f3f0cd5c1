"""Subscriptions: addresses that get an e-mail when a component changes; the API adds and
removes them, and the unsubscribe link of every notice lets its reader leave for good."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import asyncpg

from services.reports import domain, repo
from shared import errors
from shared.http import Principal
from shared.signing import Signer

Change = Callable[[asyncpg.Connection, str, str, Sequence[str]], Awaitable[list[str]]]


class Subscriptions:
    """The use cases of subscriptions."""

    def __init__(self, pool: asyncpg.Pool, unsubscribe_signer: Signer) -> None:
        self.pool = pool
        self.unsubscribe_signer = unsubscribe_signer

    async def subscribe(self, principal: Principal, component: str, emails: list[str]) -> list[str]:
        """Add subscribers (one who left by a link stays out); the subscribers now."""
        return await self._change(repo.subscriptions.subscribe, principal, component, emails)

    async def unsubscribe(
        self, principal: Principal, component: str, emails: list[str]
    ) -> list[str]:
        """Remove subscribers; the subscribers now."""
        return await self._change(repo.subscriptions.unsubscribe_many, principal, component, emails)

    async def _change(
        self, change: Change, principal: Principal, component: str, emails: list[str]
    ) -> list[str]:
        async with self.pool.acquire() as conn, conn.transaction():
            return await change(conn, str(principal.account_id), component, emails)

    def link_target(self, token: str) -> tuple[str, list[str], str]:
        """``(account_id, components, email)`` an unsubscribe link names; 404 for a link that
        is not ours."""
        found = domain.read_unsubscribe_token(self.unsubscribe_signer, token)
        if found is None:
            raise errors.NotFound("This unsubscribe link is not valid")
        return found

    async def opt_out(self, token: str) -> tuple[list[str], str]:
        """The reader of a notice leaves the subscriptions its link names, for good (the
        signed token is the authority); ``(components, email)``."""
        account_id, components, email = self.link_target(token)
        async with self.pool.acquire() as conn, conn.transaction():
            for component in components:
                await repo.subscriptions.opt_out(conn, account_id, component, email)
        return components, email
