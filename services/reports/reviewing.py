"""Reviewing a comparison change by change: a person accepts, rejects or ignores one diff, added
or deleted snapshot, or decides every change still waiting at once; the comparison's review
(and so its status, its badge and its jobs') follows from those decisions (``domain.Decisions``).

Each decision is one transaction on the comparison's row lock, so two reviewers deciding at
once, or a comparison being re-run (which drops its entries), never leave a review that does
not match its changes. When the derived review changes, ``comparison.reviewed`` is recorded in
the outbox with it (the fact webhooks will need), and the commit status it changes beside it
(:mod:`services.reports.statuses.posting`).
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from services.reports import events, repo
from services.reports.comparing import own_comparison
from services.reports.domain import Comparison, Decisions, comparison_status
from services.reports.statuses import posting
from shared import errors
from shared.events import record_event
from shared.http import Principal


@dataclass(frozen=True)
class Verdict:
    """Where a comparison stands after a decision."""

    comparison_id: int
    #: The one change decided (None when every waiting change was decided at once).
    position: int | None
    decision: str | None
    decisions: Decisions
    status: str

    def to_api(self) -> dict:
        """The JSON a review form's script reads back."""
        return {
            "comparisonId": self.comparison_id,
            "position": self.position,
            "decision": self.decision,
            "status": self.status,
            "undecided": self.decisions.undecided,
            "accepted": self.decisions.accepted,
            "rejected": self.decisions.rejected,
            "ignored": self.decisions.ignored,
        }


class Reviews:
    """The use cases of reviewing a comparison."""

    def __init__(self, pool: asyncpg.Pool, public_url: str) -> None:
        self.pool = pool
        self.public_url = public_url.rstrip("/")

    async def decide(
        self, principal: Principal, comparison_id: int, position: int, decision: str | None
    ) -> Verdict:
        """Record ``decision`` (accepted, rejected, ignored; None takes it back) on the change
        at ``position``. Ignoring is for diffs only: the pair of images is also recorded as an
        ignored diff, so later comparisons count it unchanged. 404 for no such change, 409
        while the comparison runs, 422 for ignoring an added or deleted snapshot."""
        async with self.pool.acquire() as conn, conn.transaction():
            comparison = await self._reviewable(conn, principal, comparison_id)
            entry = await repo.comparisons.decide(
                conn, comparison.id, position, decision, principal.user_id
            )
            if entry is None:
                raise errors.NotFound(f"Comparison {comparison_id} has no change {position}")
            if decision == "ignored":
                if entry.kind != "diff" or entry.before is None or entry.after is None:
                    raise errors.InvalidRequest(
                        "Only a diff can be ignored: accept or reject an added or deleted snapshot"
                    )
                await repo.ignored_diffs.ignore_diff(
                    conn, comparison.account_id, entry.before, entry.after
                )
            return await self._settle(conn, principal, comparison, position, decision)

    async def decide_remaining(
        self, principal: Principal, comparison_id: int, decision: str
    ) -> Verdict:
        """Give every change nobody decided yet ``decision`` (accepted or rejected): "accept
        all remaining". Changes already decided keep their decision."""
        async with self.pool.acquire() as conn, conn.transaction():
            comparison = await self._reviewable(conn, principal, comparison_id)
            await repo.comparisons.decide_remaining(
                conn, comparison.id, decision, principal.user_id
            )
            return await self._settle(conn, principal, comparison, None, decision)

    async def _reviewable(
        self, conn: asyncpg.Connection, principal: Principal, comparison_id: int
    ) -> Comparison:
        # Locked, so a comparison being re-run (which drops its entries and clears its review)
        # is not reviewed half-way through, and two reviewers' decisions are settled in turn.
        comparison = await own_comparison(conn, principal, comparison_id, lock=True)
        if not comparison.done:
            raise errors.Conflict("The comparison is still running: review it once it is done")
        return comparison

    async def _settle(
        self,
        conn: asyncpg.Connection,
        principal: Principal,
        comparison: Comparison,
        position: int | None,
        decision: str | None,
    ) -> Verdict:
        """Derive the comparison's review from its changes, store it, and record the fact
        when it changed."""
        decisions = Decisions.of(await repo.comparisons.decision_counts(conn, comparison.id))
        review = decisions.review
        await repo.comparisons.review(conn, comparison.id, review, principal.user_id)
        status = comparison_status(comparison.done, comparison.equal, review)
        if review != comparison.review:
            await record_event(
                conn,
                events.COMPARISON_REVIEWED,
                {
                    "comparison_id": comparison.id,
                    "account_id": comparison.account_id,
                    "project": comparison.project,
                    "sha1": comparison.sha1,
                    "sha2": comparison.sha2,
                    "status": status,
                    "previous_status": comparison.status,
                    "review": review,
                    "reviewed_by": principal.user_id if review else None,
                    "summary": comparison.summary,
                    "compare_url": f"{self.public_url}/comparisons/{comparison.id}",
                },
            )
            await posting.post_comparison(conn, self.public_url, comparison.id)
        return Verdict(comparison.id, position, decision, decisions, status)
