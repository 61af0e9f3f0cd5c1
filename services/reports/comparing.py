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

from services.reports import domain, events, matching, repo
from services.reports.config import ReportsConfig
from services.reports.domain import CompareRequest, Comparison, Report
from services.reports.matching import Entry, PixelResult
from services.reports.statuses import posting
from shared import errors
from shared.events import BroadcastListener, Broker, Envelope, record_event
from shared.http import Principal
from shared.logging import get_logger

log = get_logger("darkroom.reports.comparing")

#: How often a waiter looks at the database, in case a broadcast was missed.
_POLL_SECONDS = 0.5


class Comparisons:
    """Starts, advances, awaits and reads comparisons (reviewing them is :mod:`reviewing`)."""

    def __init__(self, pool: asyncpg.Pool, broker: Broker, config: ReportsConfig) -> None:
        self.pool = pool
        self.config = config
        self.public_url = config.public_url.rstrip("/")
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

    # --- calls -------------------------------------------------------------------------------

    async def compare(
        self, principal: Principal, request: CompareRequest
    ) -> tuple[Comparison, list[Entry]]:
        """Compare two reports: the comparison and its entries once done (a synchronous call
        waits for the pixel diffs, 503 with Retry-After past the wait); an async one answers at
        once with no entries. An earlier comparison of the same shas that is still current
        (:meth:`_reusable`) is answered again, with its review; else it is (re)scheduled and run
        as far as it can go now."""
        account_id = str(principal.account_id)
        project, sha1, sha2 = request.project, request.sha1, request.sha2
        async with self.pool.acquire() as conn, conn.transaction():
            existing = await repo.comparisons.comparison(conn, account_id, project, sha1, sha2)
            before, after = await self.resolve(
                conn, account_id, project, sha1, sha2, request.fallback_shas
            )
            if not request.is_async and (before is None or after is None):
                await _refuse_incomparable(conn, account_id, request)
            if existing is not None and await self._reusable(conn, existing, before, after):
                comparison = existing
            else:
                comparison_id = await repo.comparisons.schedule_comparison(
                    conn,
                    account_id,
                    project,
                    sha1,
                    sha2,
                    fallback_shas=request.fallback_shas,
                    link=request.link,
                    message=request.message,
                    notify=request.notify,
                    threshold=self.config.diff_threshold,
                    include_anti_aliasing=self.config.diff_include_anti_aliasing,
                )
                comparison = await self.advance(conn, comparison_id)
        if request.is_async:
            return comparison, []
        if not comparison.done:
            finished = await self.wait(comparison.id, self.config.compare_wait_seconds)
            if finished is None:
                raise errors.Unavailable(
                    "The comparison is still being diffed; post it again to wait for it",
                    retry_after=5,
                )
            comparison = finished
        async with self.pool.acquire() as conn:
            return comparison, await repo.comparisons.entries(conn, comparison.id)

    async def _reusable(
        self,
        conn: asyncpg.Connection,
        existing: Comparison,
        before: Report | None,
        after: Report | None,
    ) -> bool:
        """True when an earlier comparison of these shas compared ``before`` and ``after`` as
        they are now (a client's retry, or a second look), with today's diff settings, and no
        diff of it was ignored since: it is reused, with its review."""
        return (
            existing.state != "scheduled"
            and before is not None
            and after is not None
            and existing.before_report_id == before.id
            and existing.after_report_id == after.id
            and existing.before_revision == before.revision
            and existing.after_revision == after.revision
            and existing.threshold == self.config.diff_threshold
            and existing.include_anti_aliasing == self.config.diff_include_anti_aliasing
            and not await repo.ignored_diffs.ignores_a_diff_of(conn, existing)
        )

    async def status(self, principal: Principal, project: str, sha1: str, sha2: str) -> Comparison:
        """The caller's comparison of two shas, or 404."""
        async with self.pool.acquire() as conn:
            comparison = await repo.comparisons.comparison(
                conn, str(principal.account_id), project, sha1, sha2
            )
        if comparison is None:
            raise errors.NotFound(f"No comparison of {sha1} with {sha2}")
        return comparison

    async def of_sha(self, principal: Principal, project: str, sha: str) -> list[Comparison]:
        """The caller's comparisons where ``sha`` is the before or the after report."""
        async with self.pool.acquire() as conn:
            return await repo.comparisons.comparisons_of_sha(
                conn, str(principal.account_id), project, sha
            )

    # --- steps ---------------------------------------------------------------------------------

    async def advance(self, conn: asyncpg.Connection, comparison_id: int) -> Comparison:
        """Run a scheduled comparison as far as it can go now (in the caller's transaction):
        nothing when its reports are not both complete yet; else match the snapshots and either
        finish at once or ask processing for the missing pixel diffs."""
        comparison = await repo.comparisons.comparison_by_id(conn, comparison_id, lock=True)
        if comparison is None or comparison.state != "scheduled":
            assert comparison is not None
            return comparison
        before, after = await self.reports_of(conn, comparison)
        if before is None or after is None:
            return comparison
        base = domain.image_base(self.public_url, comparison.account_id)
        earlier = await repo.reports.snapshots(conn, before.id, base)
        later = await repo.reports.snapshots(conn, after.id, base)
        by_key = {s.key: s for s in earlier}
        differing = [
            (by_key[s.key].sha256, s.sha256)
            for s in later
            if s.key in by_key and by_key[s.key].sha256 != s.sha256
        ]
        ignored = await repo.ignored_diffs.ignored_pairs(conn, comparison.account_id, differing)
        # Pairs that differ go to processing, which owns the pixel-diff cache: a pair it has
        # diffed before is answered from that cache without decoding an image.
        entries = matching.match_snapshots(
            earlier, later, ignored=ignored, skipped=after.skipped_keys()
        )
        await repo.comparisons.start_diffing(conn, comparison.id, before, after, entries)
        pending = await repo.comparisons.pending_pairs(conn, comparison.id)
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
        result = await repo.comparisons.comparison_by_id(conn, comparison.id)
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
        after = await repo.reports.report(conn, account_id, project, sha2)
        if after is not None and not after.complete:
            after = None
        before = await repo.reports.first_report(conn, account_id, project, [sha1, *fallback_shas])
        return before, after

    async def conclude(self, conn: asyncpg.Connection, comparison_id: int) -> None:
        """Record the outcome of a comparison whose entries are all judged, and the fact."""
        tally = matching.Tally.of(await repo.comparisons.kind_counts(conn, comparison_id))
        await repo.comparisons.finish_comparison(
            conn, comparison_id, tally.equal, matching.summary(tally)
        )
        comparison = await repo.comparisons.comparison_by_id(conn, comparison_id)
        assert comparison is not None
        changed = await repo.comparisons.entries(conn, comparison_id, ("diff", "added", "deleted"))
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
                "diff_components": matching.diff_components(changed),
                "notify": comparison.notify,
            },
        )
        await posting.post_comparison(conn, self.public_url, comparison.id)

    # --- consumers -----------------------------------------------------------------------------

    async def diffed(self, conn: asyncpg.Connection, envelope: Envelope) -> None:
        """``comparison.diffed``: judge the pending entries, and finish when none is left."""
        data = envelope.data
        comparison_id = data.get("comparison_id")
        if not isinstance(comparison_id, int):
            log.warning("comparison.diffed_malformed", event_id=envelope.id)
            return
        comparison = await repo.comparisons.comparison_by_id(conn, comparison_id, lock=True)
        if comparison is None or comparison.state != "diffing":
            return
        results = parse_results(data.get("results"))
        await repo.comparisons.settle_pairs(conn, comparison_id, results)
        if not await repo.comparisons.pending_pairs(conn, comparison_id):
            await self.conclude(conn, comparison_id)

    async def report_completed(self, conn: asyncpg.Connection, envelope: Envelope) -> None:
        """``report.completed``: run the comparisons that were waiting for this report."""
        data = envelope.data
        try:
            account_id, project, sha = str(data["account_id"]), str(data["project"]), data["sha"]
        except KeyError:
            log.warning("report.completed_malformed", event_id=envelope.id)
            return
        for comparison_id in await repo.comparisons.scheduled_comparisons(
            conn, account_id, project, sha
        ):
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
                    comparison = await repo.comparisons.comparison_by_id(conn, comparison_id)
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


async def own_comparison(
    conn: asyncpg.Connection, principal: Principal, comparison_id: int, *, lock: bool = False
) -> Comparison:
    """The caller's comparison of that id, or 404 (another account's does not exist for it:
    no telling ids apart)."""
    comparison = await repo.comparisons.comparison_by_id(conn, comparison_id, lock=lock)
    if comparison is None or comparison.account_id != principal.account_id:
        raise errors.NotFound("No such comparison")
    return comparison


async def _refuse_incomparable(
    conn: asyncpg.Connection, account_id: str, request: CompareRequest
) -> None:
    """Why a synchronous compare cannot run now: 404 when a report is missing, 409 while one
    is still being assembled from partials."""
    project, sha1, sha2 = request.project, request.sha1, request.sha2
    after = await repo.reports.report(conn, account_id, project, sha2)
    if after is None:
        raise errors.NotFound(f"No report for sha {sha2}")
    if not after.complete:
        raise errors.Conflict(f"Report {sha2} is not complete yet")
    before = await repo.reports.report(conn, account_id, project, sha1)
    if before is not None:
        raise errors.Conflict(f"Report {sha1} is not complete yet")
    raise errors.NotFound(
        f"No report for sha {sha1}" + (" or its fallbacks" if request.fallback_shas else "")
    )
