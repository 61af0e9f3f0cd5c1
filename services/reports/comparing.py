"""Running comparisons: match two reports' snapshots, ask processing for the pixel diffs that
are not known yet, record the outcome, and wake whoever waits for it.

A comparison is a row that moves ``scheduled`` → ``diffing`` → ``done``. Every step runs in a
transaction holding the comparison's row lock, so an HTTP request, a retry and a consumer
never step on each other; the facts that move it on (``report.completed``,
``comparison.diffed``) arrive on durable queues, so a killed process loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import asyncpg

from services.reports import domain, events, repo
from services.reports.domain import Comparison, Job, PixelResult, Report
from shared.events import BroadcastListener, Broker, Envelope, record_event
from shared.logging import get_logger

log = get_logger("darkroom.reports.comparing")

#: How often a waiter looks at the database, in case a broadcast was missed.
_POLL_SECONDS = 0.5


class Comparisons:
    """Starts, advances and awaits comparisons."""

    def __init__(self, pool: asyncpg.Pool, broker: Broker, public_url: str) -> None:
        self.pool = pool
        self.public_url = public_url.rstrip("/")
        self._waiting: dict[int, asyncio.Event] = {}
        self._listener = BroadcastListener(
            broker, "reports.completions", (events.COMPARISON_COMPLETED,), self._completed
        )

    async def start(self) -> None:
        """Begin hearing about completed comparisons (to wake synchronous compares)."""
        await self._listener.start()

    async def stop(self) -> None:
        """Stop listening; waiters fall back to polling until their deadline."""
        await self._listener.stop()

    def image_base(self, account_id: str) -> str:
        """The prefix of the account's image URLs (the hash follows)."""
        return f"{self.public_url}/img/{account_id}/"

    # --- steps ---------------------------------------------------------------------------------

    async def advance(self, conn: asyncpg.Connection, comparison_id: int) -> Comparison:
        """Run a scheduled comparison as far as it can go now (in the caller's transaction):
        nothing when its reports are not both complete yet; else match the snapshots and either
        finish at once or ask processing for the missing pixel diffs."""
        comparison = await repo.comparison_by_id(conn, comparison_id, lock=True)
        if comparison is None or comparison.state != "scheduled":
            assert comparison is not None
            return comparison
        before, after = await self.reports_of(conn, comparison)
        if before is None or after is None:
            return comparison
        base = self.image_base(comparison.account_id)
        earlier = await repo.snapshots(conn, before.id, base)
        later = await repo.snapshots(conn, after.id, base)
        by_key = {s.key: s for s in earlier}
        differing = [
            (by_key[s.key].sha256, s.sha256)
            for s in later
            if s.key in by_key and by_key[s.key].sha256 != s.sha256
        ]
        ignored = await repo.ignored_pairs(conn, comparison.account_id, differing)
        known = await repo.known_diffs(
            conn, differing, comparison.threshold, comparison.include_anti_aliasing
        )
        entries = domain.match_snapshots(
            earlier, later, ignored=ignored, skipped=after.skipped_keys(), known=known
        )
        await repo.start_diffing(conn, comparison.id, before, after, entries)
        pending = await repo.pending_pairs(conn, comparison.id)
        if pending:
            await record_event(
                conn,
                events.COMPARISON_REQUESTED,
                {
                    "comparison_id": comparison.id,
                    "account_id": comparison.account_id,
                    "threshold": comparison.threshold,
                    "include_anti_aliasing": comparison.include_anti_aliasing,
                    "pairs": [
                        {
                            "before": {"sha256": row["before_sha256"], "key": row["before_key"]},
                            "after": {"sha256": row["after_sha256"], "key": row["after_key"]},
                        }
                        for row in pending
                    ],
                },
            )
        else:
            await self.conclude(conn, comparison.id)
        result = await repo.comparison_by_id(conn, comparison.id)
        assert result is not None
        return result

    async def reports_of(
        self, conn: asyncpg.Connection, comparison: Comparison
    ) -> tuple[Report | None, Report | None]:
        """The complete reports a comparison would compare now (see :meth:`resolve`)."""
        return await self.resolve(
            conn,
            comparison.account_id,
            comparison.project,
            comparison.sha1,
            comparison.sha2,
            comparison.fallback_shas,
        )

    @staticmethod
    async def resolve(
        conn: asyncpg.Connection,
        account_id: str,
        project: str,
        sha1: str,
        sha2: str,
        fallback_shas: list[str],
    ) -> tuple[Report | None, Report | None]:
        """The complete before report (``sha1``, else the first fallback that has one) and the
        complete after report, each None while missing."""
        after = await repo.report(conn, account_id, project, sha2)
        if after is not None and not after.complete:
            after = None
        before = await repo.first_report(conn, account_id, project, [sha1, *fallback_shas])
        return before, after

    async def conclude(self, conn: asyncpg.Connection, comparison_id: int) -> None:
        """Record the outcome of a comparison whose entries are all judged, and the fact."""
        tally = domain.Tally.of(await repo.kind_counts(conn, comparison_id))
        await repo.finish_comparison(conn, comparison_id, tally.equal, domain.summary(tally))
        comparison = await repo.comparison_by_id(conn, comparison_id)
        assert comparison is not None
        changed = await repo.entries(conn, comparison_id, ("diff", "added", "deleted"))
        await record_event(
            conn,
            events.COMPARISON_COMPLETED,
            {
                "comparison_id": comparison.id,
                "account_id": comparison.account_id,
                "project": comparison.project,
                "sha1": comparison.sha1,
                "sha2": comparison.sha2,
                "status": comparison.status,
                "equal": tally.equal,
                "summary": comparison.summary,
                "compare_url": f"{self.public_url}/comparisons/{comparison.id}",
                "diff_components": domain.diff_components(changed),
                "notify": comparison.notify,
            },
        )

    # --- consumers -----------------------------------------------------------------------------

    async def diffed(self, conn: asyncpg.Connection, envelope: Envelope) -> None:
        """``comparison.diffed``: judge the pending entries, and finish when none is left."""
        data = envelope.data
        comparison_id = data.get("comparison_id")
        if not isinstance(comparison_id, int):
            log.warning("comparison.diffed_malformed", event_id=envelope.id)
            return
        comparison = await repo.comparison_by_id(conn, comparison_id, lock=True)
        if comparison is None or comparison.state != "diffing":
            return
        results = parse_results(data.get("results"))
        await repo.remember_diffs(
            conn, results, comparison.threshold, comparison.include_anti_aliasing
        )
        await repo.settle_pairs(conn, comparison_id, results)
        if not await repo.pending_pairs(conn, comparison_id):
            await self.conclude(conn, comparison_id)

    async def report_completed(self, conn: asyncpg.Connection, envelope: Envelope) -> None:
        """``report.completed``: run the comparisons that were waiting for this report."""
        data = envelope.data
        try:
            account_id, project, sha = str(data["account_id"]), str(data["project"]), data["sha"]
        except KeyError:
            log.warning("report.completed_malformed", event_id=envelope.id)
            return
        for comparison_id in await repo.scheduled_comparisons(conn, account_id, project, sha):
            await self.advance(conn, comparison_id)

    # --- waiting -------------------------------------------------------------------------------

    async def wait(self, comparison_id: int, timeout: float) -> Comparison | None:
        """The comparison once done, or None when ``timeout`` passes first."""
        event = self._waiting.setdefault(comparison_id, asyncio.Event())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while True:
                async with self.pool.acquire() as conn:
                    comparison = await repo.comparison_by_id(conn, comparison_id)
                if comparison is None or comparison.done:
                    return comparison
                left = deadline - loop.time()
                if left <= 0:
                    return None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), min(left, _POLL_SECONDS))
        finally:
            self._waiting.pop(comparison_id, None)

    async def _completed(self, envelope: Envelope) -> None:
        event = self._waiting.get(envelope.data.get("comparison_id"))  # type: ignore[arg-type]
        if event is not None:
            event.set()


async def job_status(conn: asyncpg.Connection, job: Job) -> str:
    """A job's status: an orchestration job's combines its projects'; a project's job is its
    cancel status when cancelled, ``success`` when ``sha2`` was skipped, else its comparison's
    build status (``pending`` until that comparison has run)."""
    if job.project is None:
        return domain.combine(
            [await job_status(conn, child) for child in await repo.children(conn, job.id)]
        )
    if job.cancelled_status is not None:
        return job.cancelled_status
    if await repo.skipped_shas(conn, job.account_id, job.project, [job.sha2]):
        return domain.SUCCESS
    comparison = await repo.comparison(conn, job.account_id, job.project, job.sha1, job.sha2)
    if comparison is None:
        return domain.PENDING
    return domain.build_status(comparison.status)


def parse_results(value: Any) -> dict[tuple[str, str], PixelResult]:
    """The usable results of a ``comparison.diffed`` event, by (before, after) sha256."""
    results: dict[tuple[str, str], PixelResult] = {}
    if not isinstance(value, list):
        return results
    for item in value:
        if not isinstance(item, dict):
            continue
        before, after = item.get("before_sha256"), item.get("after_sha256")
        if not isinstance(before, str) or not isinstance(after, str):
            continue
        bbox = item.get("bbox")
        results[(before, after)] = PixelResult(
            changed_pixels=int(item.get("changed_pixels") or 0),
            total_pixels=int(item.get("total_pixels") or 0),
            bbox=[int(v) for v in bbox] if isinstance(bbox, list) and len(bbox) == 4 else None,
            diff_key=item.get("diff_key") if isinstance(item.get("diff_key"), str) else None,
            error=str(item["error"]) if item.get("error") else None,
        )
    return results
