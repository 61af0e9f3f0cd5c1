"""Ignored diffs: a team marks the diff between two snapshots' images as noise (a flaky
snapshot), and every later comparison counts that pair of images as unchanged."""

from __future__ import annotations

import asyncpg

from services.reports import domain, repo
from shared import errors
from shared.http import Principal


class IgnoredDiffs:
    """The use cases of ignored diffs."""

    def __init__(self, pool: asyncpg.Pool, public_url: str) -> None:
        self.pool = pool
        self.public_url = public_url

    async def ignore(self, principal: Principal, first_id: int, second_id: int) -> bool:
        """Ignore the diff between two snapshots of the account that show the same component,
        variant and target; False when it already was (404 for a snapshot not of the account,
        422 for two different subjects)."""
        account_id = str(principal.account_id)
        ids = [first_id, second_id]
        async with self.pool.acquire() as conn:
            base = domain.image_base(self.public_url, account_id)
            found = await repo.reports.account_snapshots(conn, account_id, ids, base)
            if any(i not in found for i in ids):
                raise errors.NotFound("No snapshot with that id in this account")
            first, second = found[first_id], found[second_id]
            if first.key != second.key:
                raise errors.InvalidRequest(
                    "The two snapshots show different component/variant/target combinations"
                )
            return await repo.ignored_diffs.ignore_diff(conn, account_id, first, second)

    async def flaky(
        self,
        principal: Principal,
        *,
        component: str | None,
        variant: str | None,
        target: str | None,
        limit: int,
        page: int,
    ) -> list[asyncpg.Record]:
        """A page of the account's ignored diffs, newest first."""
        async with self.pool.acquire() as conn:
            return await repo.ignored_diffs.flaky_snapshots(
                conn,
                str(principal.account_id),
                component=component,
                variant=variant,
                target=target,
                limit=limit,
                offset=(page - 1) * limit,
            )
