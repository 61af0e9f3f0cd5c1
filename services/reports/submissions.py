"""Writing reports: whole, in partials, cloned, or assembled from snap requests (the async
reports of happo-e2e), each snapshot checked against the image the account stored; and
reading them back.

A report that becomes complete records ``report.completed`` in the same transaction, which
starts the comparisons scheduled on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from services.reports import domain, events, repo
from services.reports.domain import Report, SnapInput, SnapRequest, Snapshot
from shared import errors
from shared.events import record_event
from shared.http import InternalClient, Principal
from shared.image_urls import happo_hash_of_url


class Submissions:
    """The use cases that write reports and snap requests, and read them."""

    def __init__(
        self, pool: asyncpg.Pool, internal: InternalClient, ingest_url: str, public_url: str
    ) -> None:
        self.pool = pool
        self.internal = internal
        self.ingest_url = ingest_url
        self.public_url = public_url

    async def images_of(
        self, principal: Principal, snaps: Sequence[SnapInput], what: str = "snaps"
    ) -> dict[str, dict[str, Any]]:
        """The stored image behind every snapshot; 422 naming the first snapshot whose image
        the account does not hold or whose size disagrees with it."""
        hashes = sorted({snap.image_hash for snap in snaps})
        if not hashes:
            return {}
        status, body = await self.internal.call(
            "POST",
            self.ingest_url,
            "/internal/happo-images",
            principal,
            json_body={"hashes": hashes},
        )
        if status != 200 or not isinstance(body, dict):
            raise errors.Unavailable("The image store did not answer; try again", retry_after=2)
        images = body["images"]
        for i, snap in enumerate(snaps):
            image = images.get(snap.image_hash)
            if image is None:
                raise errors.InvalidRequest(
                    f"{what}[{i}]: `url` names no image this account uploaded"
                )
            size = (image.get("width"), image.get("height"))
            if None not in size and size != (snap.width, snap.height):
                raise errors.InvalidRequest(
                    f"{what}[{i}]: `width`x`height` is {snap.width}x{snap.height} but the image"
                    f" is {size[0]}x{size[1]}"
                )
        return images

    async def post(
        self,
        principal: Principal,
        project: str,
        sha: str,
        snaps: list[SnapInput],
        *,
        link: str | None,
        message: str | None,
        partial: bool,
    ) -> Report:
        """Create or overwrite a report, or amend it with a partial."""
        images = await self.images_of(principal, snaps)
        account_id = str(principal.account_id)
        async with self.pool.acquire() as conn, conn.transaction():
            existing = await repo.reports.report(conn, account_id, project, sha, lock=True)
            if partial and existing is not None and existing.partial and not existing.complete:
                report_id = existing.id
                await repo.reports.amend_report(conn, report_id, link, message)
            else:
                report_id = await repo.reports.start_report(
                    conn, account_id, project, sha, link=link, message=message, partial=partial
                )
            await repo.reports.add_snapshots(conn, report_id, snaps, images)
            if not partial:
                await self._completed(conn, report_id)
            return await self._reread(conn, report_id)

    async def complete(self, principal: Principal, project: str, sha: str) -> Report:
        """Mark a partial report complete (409 for one that is not partial or is done)."""
        async with self.pool.acquire() as conn, conn.transaction():
            report = await self.require(conn, principal, project, sha, lock=True)
            if not report.partial:
                raise errors.Conflict("This report was not posted in partials; it is complete")
            if not report.complete:
                await repo.reports.complete_report(conn, report.id)
                await self._completed(conn, report.id)
            return await self._reread(conn, report.id)

    async def clone(
        self,
        principal: Principal,
        project: str,
        from_sha: str,
        to_sha: str,
        *,
        link: str | None,
        message: str | None,
    ) -> Report:
        """Copy a complete report to another sha (its snapshots are not counted as new)."""
        if from_sha == to_sha:
            raise errors.InvalidRequest("A report cannot be cloned onto itself")
        account_id = str(principal.account_id)
        async with self.pool.acquire() as conn, conn.transaction():
            source = await self.require(conn, principal, project, from_sha)
            if not source.complete:
                raise errors.Conflict(f"Report {from_sha} is not complete yet")
            report_id = await repo.reports.start_report(
                conn,
                account_id,
                project,
                to_sha,
                link=link if link is not None else source.link,
                message=message if message is not None else source.message,
                partial=False,
                cloned_from=source.id,
            )
            await repo.reports.copy_snapshots(conn, source.id, report_id)
            await self._completed(conn, report_id)
            return await self._reread(conn, report_id)

    async def snap_request(self, principal: Principal, snaps: list[SnapInput]) -> int:
        """Store a batch of snapshots (happo-e2e's local screenshots); its request id."""
        images = await self.images_of(principal, snaps)
        records = [
            _snap_record(s, images[s.image_hash]["sha256"], images[s.image_hash]["key"])
            for s in snaps
        ]
        async with self.pool.acquire() as conn:
            return await repo.snap_requests.create_snap_request(
                conn, str(principal.account_id), records
            )

    async def extends_request(
        self,
        principal: Principal,
        project: str,
        extends_sha: str,
        wanted: list[list[str]] | None,
        *,
        target: str | None = None,
    ) -> int:
        """A snap request holding the snapshots of ``extends_sha``'s report that match
        ``wanted`` (component, or component and variant; None: all of them), of ``target``
        only when given."""
        account_id = str(principal.account_id)
        async with self.pool.acquire() as conn:
            source = await self.require(conn, principal, project, extends_sha)
            base = domain.image_base(self.public_url, account_id)
            snaps = await repo.reports.snapshots(conn, source.id, base)
            keys = None if wanted is None else {tuple(key) for key in wanted}
            chosen = [
                s
                for s in snaps
                if (keys is None or s.key[:1] in keys or s.key[:2] in keys)
                and (target is None or s.target == target)
            ]
            records = [
                _snap_record(
                    SnapInput(
                        s.component,
                        s.variant,
                        s.target,
                        _hash_of(s, account_id, self.public_url),
                        s.width,
                        s.height,
                    ),
                    s.sha256,
                    s.blob_key,
                )
                for s in chosen
            ]
            return await repo.snap_requests.create_snap_request(conn, account_id, records)

    async def async_report(
        self,
        principal: Principal,
        project: str,
        sha: str,
        request_ids: list[int],
        *,
        link: str | None,
        message: str | None,
        nonce: str | None,
    ) -> Report:
        """Build a report from snap requests. Without a nonce it is complete once every request
        it names is done (at once when none is still rendering); with one it collects the
        requests of every parallel run until :meth:`finalize`. The same ids posted again add
        nothing."""
        account_id = str(principal.account_id)
        async with self.pool.acquire() as conn, conn.transaction():
            found = await repo.snap_requests.snap_requests(conn, account_id, request_ids)
            missing = sorted(set(request_ids) - set(found))
            if missing:
                raise errors.InvalidRequest(f"Unknown snap request id: {missing[0]}")
            pending = {rid for rid, request in found.items() if request.pending}
            existing = await repo.reports.report(conn, account_id, project, sha, lock=True)
            if (
                nonce is not None
                and existing is not None
                and existing.nonce == nonce
                and not existing.complete
            ):
                report_id = existing.id
                await repo.reports.amend_report(conn, report_id, link, message)
            else:
                report_id = await repo.reports.start_report(
                    conn,
                    account_id,
                    project,
                    sha,
                    link=link,
                    message=message,
                    partial=nonce is not None,
                    nonce=nonce,
                    awaiting_renders=nonce is None and bool(pending),
                )
            fresh = await repo.reports.attach_requests(conn, report_id, request_ids, pending)
            await self._apply(conn, report_id, [found[rid] for rid in fresh if rid not in pending])
            if nonce is None and not pending:
                await self._completed(conn, report_id)
            return await self._reread(conn, report_id)

    async def finalize(
        self, principal: Principal, project: str, sha: str, nonce: str, skipped: list[list[str]]
    ) -> Report:
        """Complete an async report whose parallel runs are all in (the nonce must match);
        while some of its requests are still rendering, the last of them completes it."""
        async with self.pool.acquire() as conn, conn.transaction():
            report = await self.require(conn, principal, project, sha, lock=True)
            if report.nonce != nonce:
                raise errors.Conflict("No report is being collected under this nonce for the sha")
            if not report.complete:
                if await repo.reports.requests_pending(conn, report.id):
                    await repo.reports.complete_report_later(conn, report.id, skipped)
                else:
                    await repo.reports.complete_report(conn, report.id, skipped)
                    await self._completed(conn, report.id)
            return await self._reread(conn, report.id)

    async def rendered(
        self,
        conn: asyncpg.Connection,
        account_id: str,
        request_id: int,
        snaps: list[dict[str, Any]] | None,
        error: str | None,
    ) -> None:
        """A renderer finished snap request ``request_id`` (``snaps``, or failed with
        ``error``): put it into the reports waiting for it, and complete those whose last
        pending request it was. A repeated outcome changes nothing."""
        finished = await repo.snap_requests.finish_render_request(
            conn, account_id, request_id, snaps, error
        )
        if finished is None:
            return
        request = domain.SnapRequest(
            id=request_id,
            state="failed" if error is not None else "done",
            snaps=finished["snaps"],
            target_name=finished["target_name"],
            error=error,
        )
        for report_id in await repo.reports.reports_waiting_for(conn, request_id):
            await self._apply(conn, report_id, [request])
            report = await self._reread(conn, report_id)
            if (
                report.complete_when_rendered
                and not report.complete
                and not await repo.reports.requests_pending(conn, report_id)
            ):
                await repo.reports.complete_report(conn, report_id)
                await self._completed(conn, report_id)

    async def _apply(
        self, conn: asyncpg.Connection, report_id: int, requests: list[domain.SnapRequest]
    ) -> None:
        """Add finished requests to a report: their snapshots, or why they failed."""
        records = [record for request in requests for record in request.snaps]
        images = {r["image_hash"]: {"sha256": r["sha256"], "key": r["key"]} for r in records}
        await repo.reports.add_snapshots(conn, report_id, [_snap_input(r) for r in records], images)
        await repo.reports.add_render_errors(
            conn,
            report_id,
            [
                {"requestId": r.id, "target": r.target_name, "message": r.error}
                for r in requests
                if r.state == "failed"
            ],
        )

    # --- reading ------------------------------------------------------------------------------

    async def status(self, principal: Principal, project: str, sha: str) -> Report:
        """The caller's report of a sha, or 404."""
        async with self.pool.acquire() as conn:
            return await self.require(conn, principal, project, sha)

    async def snapshots(self, principal: Principal, project: str, sha: str) -> list[Snapshot]:
        """The snapshots of the caller's report of a sha (404 without one)."""
        base = domain.image_base(self.public_url, str(principal.account_id))
        async with self.pool.acquire() as conn:
            report = await self.require(conn, principal, project, sha)
            return await repo.reports.snapshots(conn, report.id, base)

    async def baseline(self, principal: Principal, project: str, shas: list[str]) -> Report:
        """The first of ``shas`` with a complete report (happo v6's ``--skip/--only``), or
        404."""
        async with self.pool.acquire() as conn:
            report = await repo.reports.first_report(conn, str(principal.account_id), project, shas)
        if report is None:
            raise errors.NotFound("None of the shas has a complete report")
        return report

    async def latest_snapshot(
        self, principal: Principal, project: str, key: tuple[str, str, str]
    ) -> Snapshot:
        """The snapshot of ``key`` in the caller's latest complete report, or 404."""
        account_id = str(principal.account_id)
        async with self.pool.acquire() as conn:
            snapshot = await repo.reports.latest_snapshot(
                conn, account_id, project, key, domain.image_base(self.public_url, account_id)
            )
        if snapshot is None:
            raise errors.NotFound("No snapshot of that component, variant and target")
        return snapshot

    async def snap_request_of(self, principal: Principal, request_id: int) -> SnapRequest:
        """The caller's snap request, or 404."""
        async with self.pool.acquire() as conn:
            found = await repo.snap_requests.snap_requests(
                conn, str(principal.account_id), [request_id]
            )
        if not found:
            raise errors.NotFound("No such snap request")
        return found[request_id]

    # --- internals ----------------------------------------------------------------------------

    async def require(
        self,
        conn: asyncpg.Connection,
        principal: Principal,
        project: str,
        sha: str,
        *,
        lock: bool = False,
    ) -> Report:
        """The caller's report of a sha, or 404."""
        report = await repo.reports.report(conn, str(principal.account_id), project, sha, lock=lock)
        if report is None:
            raise errors.NotFound(f"No report for sha {sha}" + _in_project(project))
        return report

    async def _completed(self, conn: asyncpg.Connection, report_id: int) -> None:
        report = await repo.reports.report_by_id(conn, report_id)
        assert report is not None
        await record_event(
            conn,
            events.REPORT_COMPLETED,
            {
                "report_id": report.id,
                "account_id": report.account_id,
                "project": report.project,
                "sha": report.sha,
                "snapshot_count": report.snapshot_count,
            },
        )

    @staticmethod
    async def _reread(conn: asyncpg.Connection, report_id: int) -> Report:
        report = await repo.reports.report_by_id(conn, report_id)
        assert report is not None
        return report


def _snap_record(snap: SnapInput, sha256: str, key: str) -> dict[str, Any]:
    """How a snap request keeps a snapshot: what it shows and the stored image it is
    (the inverse of :func:`_snap_input`)."""
    return {
        "component": snap.component,
        "variant": snap.variant,
        "target": snap.target,
        "image_hash": snap.image_hash,
        "width": snap.width,
        "height": snap.height,
        "sha256": sha256,
        "key": key,
    }


def _snap_input(record: dict[str, Any]) -> SnapInput:
    return SnapInput(
        component=record["component"],
        variant=record["variant"],
        target=record["target"],
        image_hash=record["image_hash"],
        width=record["width"],
        height=record["height"],
    )


def _hash_of(snapshot: Snapshot, account_id: str, public_url: str) -> str:
    """The Image API hash of a stored snapshot (its URL was built from it)."""
    image_hash = happo_hash_of_url(snapshot.url, account_id, public_url)
    assert image_hash is not None, "a stored snapshot's URL names its image"
    return image_hash


def _in_project(project: str) -> str:
    return f" in project {project!r}" if project != domain.DEFAULT_PROJECT else ""
