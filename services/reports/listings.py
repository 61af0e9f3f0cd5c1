"""Finding things: the account's reports and comparisons as pages (``/reports``, ``/comparisons``
with its "awaiting review" filter), newest first a page at a time, the summary the signed-in
home page shows (``/internal/summary``, asked by auth, which serves ``/``), and where the
account's statuses and webhooks go, with how their deliveries went (``/integrations``).

Reads only: each handler parses, reads one page of records through :mod:`repo.listings`, and
answers. Pages follow the rules of the other reports pages (:mod:`services.reports.pages`):
signed-out visitors are sent to sign in, client errors are a page.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiohttp import web

from services.reports import repo
from services.reports.domain import Comparison, Job
from services.reports.jobs import job_status
from services.reports.matching import Tally
from services.reports.pages import (
    PAGES,
    Pager,
    header_user,
    page_handler,
    page_number,
    project_name,
    viewer,
)
from services.reports.statuses import repo as statuses_repo
from services.reports.webhooks import repo as webhooks_repo
from shared import errors
from shared.http import Principal, require_account
from shared.runtime import POOL

#: Lines of the reports and comparisons lists per page.
LINES_PER_PAGE = 25
#: How many of each the home page shows (it links to the full lists).
SUMMARY_LINES = 5
#: Deliveries the integrations page lists per webhook endpoint (newest first).
DELIVERIES_LISTED = 10
#: The comparisons list's filter: ``?status=awaiting-review``.
AWAITING_FILTER = "awaiting-review"


@dataclass(frozen=True)
class ComparisonLine:
    """A comparison as its list shows it: its status and how many entries of each kind."""

    comparison: Comparison
    tally: Tally


@page_handler
async def reports_page(request: web.Request) -> web.StreamResponse:
    """``GET /reports``: the viewer's account's reports, newest first, a page at a time."""
    principal = viewer(request)
    page = page_number(request)
    async with request.app[POOL].acquire() as conn:
        total = await repo.listings.count_reports(conn, principal.account_id)
        pager = Pager.of(page, LINES_PER_PAGE, total)
        reports = await repo.listings.reports(
            conn, principal.account_id, limit=pager.size, offset=pager.offset
        )
    return request.app[PAGES].render(
        "reports.html",
        user=await header_user(request, principal),
        principal=principal,
        reports=reports,
        pager=pager,
    )


@page_handler
async def comparisons_page(request: web.Request) -> web.StreamResponse:
    """``GET /comparisons[?status=awaiting-review]``: the viewer's account's comparisons (or
    only those awaiting review), newest first, a page at a time."""
    principal = viewer(request)
    page = page_number(request)
    awaiting = _awaiting(request)
    async with request.app[POOL].acquire() as conn:
        total = await repo.listings.count_comparisons(conn, principal.account_id, awaiting=awaiting)
        pager = Pager.of(page, LINES_PER_PAGE, total)
        lines = await _comparison_lines(
            conn, principal, awaiting=awaiting, limit=pager.size, offset=pager.offset
        )
    return request.app[PAGES].render(
        "comparisons.html",
        user=await header_user(request, principal),
        principal=principal,
        lines=lines,
        pager=pager,
        awaiting=awaiting,
        awaiting_filter=AWAITING_FILTER,
    )


async def summary(request: web.Request) -> web.Response:
    """``GET /internal/summary`` (internal; auth's home page asks it for the signed-in
    viewer): the account's projects, its latest reports and jobs, and the comparisons awaiting
    review with how many there are. Times are ISO 8601 in UTC; URLs are paths of the site."""
    principal = require_account(request)
    account = principal.account_id
    async with request.app[POOL].acquire() as conn:
        projects = await repo.listings.projects(conn, account)
        reports = await repo.listings.reports(conn, account, limit=SUMMARY_LINES)
        awaiting = await repo.listings.count_comparisons(conn, account, awaiting=True)
        waiting = await _comparison_lines(conn, principal, awaiting=True, limit=SUMMARY_LINES)
        jobs = [
            _job_json(job, await job_status(conn, job))
            for job in await repo.listings.jobs(conn, account, limit=SUMMARY_LINES)
        ]
    return web.json_response(
        {
            "projects": [
                {
                    "name": row["project"],
                    "label": project_name(row["project"]),
                    "reports": row["reports"],
                    "latest": _iso(row["latest"]),
                }
                for row in projects
            ],
            "reports": [
                {
                    "id": r.id,
                    "url": f"/reports/{r.id}",
                    "project": project_name(r.project),
                    "sha": r.sha,
                    "snapshots": r.snapshot_count,
                    "created_at": _iso(r.created_at),
                }
                for r in reports
            ],
            "awaiting_review": {
                "count": awaiting,
                "url": f"/comparisons?status={AWAITING_FILTER}",
                "comparisons": [_comparison_json(line) for line in waiting],
            },
            "jobs": jobs,
        }
    )


# --- helpers ----------------------------------------------------------------------------------


def _awaiting(request: web.Request) -> bool:
    value = request.query.get("status")
    if value is None or value == "":
        return False
    if value != AWAITING_FILTER:
        raise errors.BadRequest(f"`status` may only be {AWAITING_FILTER}")
    return True


async def _comparison_lines(
    conn: asyncpg.Connection,
    principal: Principal,
    *,
    awaiting: bool,
    limit: int,
    offset: int = 0,
) -> list[ComparisonLine]:
    found = await repo.listings.comparisons(
        conn, principal.account_id, awaiting=awaiting, limit=limit, offset=offset
    )
    counts = await repo.listings.kind_counts(conn, [c.id for c in found])
    return [ComparisonLine(c, Tally.of(counts[c.id])) for c in found]


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat(timespec="seconds") if value else None


def _comparison_json(line: ComparisonLine) -> dict[str, Any]:
    c, tally = line.comparison, line.tally
    return {
        "id": c.id,
        "url": f"/comparisons/{c.id}",
        "project": project_name(c.project),
        "sha1": c.sha1,
        "sha2": c.sha2,
        "status": c.status,
        "diffs": tally.diffs,
        "added": tally.added,
        "deleted": tally.deleted,
        "created_at": _iso(c.created_at),
    }


def _job_json(job: Job, status: str) -> dict[str, Any]:
    return {
        "id": job.id,
        "url": f"/jobs/{job.id}",
        "project": None if job.project is None else project_name(job.project),
        "sha1": job.sha1,
        "sha2": job.sha2,
        "status": status,
        "created_at": _iso(job.created_at),
    }


@page_handler
async def integrations_page(request: web.Request) -> web.StreamResponse:
    """``GET /integrations``: where the account's commit statuses and webhooks go (made with
    the operator CLI), whether each works (failing or disabled, and why), and each webhook
    endpoint's newest deliveries with their attempts: the delivery log."""
    principal = viewer(request)
    async with request.app[POOL].acquire() as conn:
        integrations = await statuses_repo.integrations(conn, principal.account_id)
        endpoints = await webhooks_repo.endpoints(conn, principal.account_id)
        deliveries = {
            endpoint.id: await webhooks_repo.deliveries(
                conn, principal.account_id, endpoint.id, DELIVERIES_LISTED
            )
            for endpoint, _state in endpoints
        }
    return request.app[PAGES].render(
        "integrations.html",
        user=await header_user(request, principal),
        principal=principal,
        integrations=integrations,
        endpoints=endpoints,
        deliveries=deliveries,
    )
