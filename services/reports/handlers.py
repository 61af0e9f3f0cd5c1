"""Reports's HTTP handlers: the Happo reports API (and the endpoints outside its reference that
the real clients call), diff images and status badges. Each parses HTTP, calls the domain and
answers HTTP."""

from __future__ import annotations

import hmac
from datetime import datetime
from typing import Any

from aiohttp import web

from services.reports import domain, repo
from services.reports.comparing import Comparisons, job_status
from services.reports.config import ReportsConfig
from services.reports.domain import Comparison, Entry, Job, Report
from services.reports.mail import parse_addresses
from services.reports.notices import Notices
from services.reports.render_requests import RenderItem, RenderRequests
from services.reports.submissions import Submissions
from shared import errors
from shared.http import Principal, read_json_object, read_multipart, require_account
from shared.runtime import POOL, STORE
from shared.storage import BlobNotFound

CONFIG = web.AppKey("reports.config", ReportsConfig)
COMPARISONS = web.AppKey("reports.comparisons", Comparisons)
SUBMISSIONS = web.AppKey("reports.submissions", Submissions)
RENDER_REQUESTS = web.AppKey("reports.render_requests", RenderRequests)
NOTICES = web.AppKey("reports.notices", Notices)

_FLAKE_PAGE = 50


# --- reading requests -------------------------------------------------------------------------


async def _body(request: web.Request, known: frozenset[str] | None = None) -> dict[str, Any]:
    """The JSON object body; an absent body is ``{}`` (curl posts ``complete`` with none)."""
    if not request.body_exists:
        return {}
    config = request.app[CONFIG]
    body = await read_json_object(request, config.max_report_bytes)
    if known is not None:
        domain.refuse_unknown(body, known, "the body")
    return body


def _project(request: web.Request, body: dict[str, Any]) -> str:
    """``project`` from the body, else the query (GETs carry it there)."""
    if "project" in body:
        return domain.parse_project(body["project"])
    return domain.parse_project(request.query.get("project"))


def _sha(request: web.Request, name: str = "sha") -> str:
    return domain.parse_sha(request.match_info[name], name)


def _when(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def _account(principal: Principal) -> str:
    return str(principal.account_id)


# --- answers ----------------------------------------------------------------------------------


def _report_status(config: ReportsConfig, report: Report) -> dict[str, Any]:
    return {
        "id": report.id,
        "sha": report.sha,
        "project": report.project,
        "url": config.public(f"/reports/{report.id}"),
        "completedAt": _when(report.completed_at),
        "createdAt": _when(report.created_at),
        "snapshotCount": report.snapshot_count,
    }


def _urls(config: ReportsConfig, comparison: Comparison) -> dict[str, str]:
    signature = domain.badge_signature(config.signing_key, comparison.id)
    return {
        "compareUrl": config.public(f"/comparisons/{comparison.id}"),
        "statusImageUrl": config.public(f"/badges/{comparison.id}-{signature}.svg"),
    }


def _comparison_status(config: ReportsConfig, comparison: Comparison) -> dict[str, Any]:
    return {
        "id": comparison.id,
        "sha1": comparison.sha1,
        "sha2": comparison.sha2,
        "project": comparison.project,
        "status": comparison.status,
        "url": config.public(f"/comparisons/{comparison.id}"),
        "createdAt": _when(comparison.created_at),
    }


def _comparison_answer(
    config: ReportsConfig, comparison: Comparison, entries: list[Entry]
) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "id": comparison.id,
        "sha1": comparison.sha1,
        "sha2": comparison.sha2,
        "beforeSha": comparison.before_sha,
        "project": comparison.project,
        "status": domain.build_status(comparison.status),
        **_urls(config, comparison),
        "createdAt": _when(comparison.created_at),
        "completedAt": _when(comparison.completed_at),
    }
    if not comparison.done:
        return answer
    diffs, images, added, deleted, unchanged = [], [], [], [], []
    for position, entry in enumerate(entries):
        if entry.kind == "diff" and entry.before and entry.after:
            diffs.append([entry.before.to_api(), entry.after.to_api()])
            images.append(
                {
                    "snapshot1Id": entry.before.id,
                    "snapshot2Id": entry.after.id,
                    "component": entry.after.component,
                    "variant": entry.after.variant,
                    "target": entry.after.target,
                    "changedPixels": entry.changed_pixels,
                    "totalPixels": entry.total_pixels,
                    "bbox": entry.bbox,
                    "error": entry.error,
                    "url": config.public(f"/comparisons/{comparison.id}/diffs/{position}.png")
                    if entry.diff_key
                    else None,
                }
            )
        elif entry.kind == "added" and entry.after:
            added.append(entry.after.to_api())
        elif entry.kind == "deleted" and entry.before:
            deleted.append(entry.before.to_api())
        elif entry.kind == "unchanged" and entry.after:
            unchanged.append(entry.after.to_api())
    answer.update(
        equal=comparison.equal,
        summary=comparison.summary,
        diffs=diffs,
        added=added,
        deleted=deleted,
        unchanged=unchanged,
        diffImages=images,
    )
    return answer


async def _job_answer(request: web.Request, conn: Any, job: Job) -> dict[str, Any]:
    config = request.app[CONFIG]
    answer: dict[str, Any] = {
        "id": job.id,
        "url": config.public(f"/jobs/{job.id}"),
        "sha1": job.sha1,
        "sha2": job.sha2,
        "status": await job_status(conn, job),
        "createdAt": _when(job.created_at),
    }
    if job.project is None:
        answer["projects"] = [child.project for child in await repo.children(conn, job.id)]
    else:
        answer["project"] = job.project
    if job.cancelled_status is not None:
        answer["cancelled"] = True
        answer["cancelMessage"] = job.cancel_message
    return answer


# --- reports ----------------------------------------------------------------------------------


async def create_report(request: web.Request) -> web.Response:
    """``POST /api/reports/:sha`` → ReportStatus (overwrites, or amends with ``partial``)."""
    principal = require_account(request)
    config = request.app[CONFIG]
    sha = _sha(request)
    body = await _body(request, domain.REPORT_FIELDS)
    if "snaps" not in body:
        raise errors.InvalidRequest("`snaps` is required (a list of snapshot objects)")
    snaps = domain.parse_snaps(
        body["snaps"], _account(principal), config.public_url, config.max_snapshots
    )
    report = await request.app[SUBMISSIONS].post(
        principal,
        _project(request, body),
        sha,
        snaps,
        link=domain.parse_text(body.get("link"), "link"),
        message=domain.parse_text(body.get("message"), "message"),
        partial=domain.parse_flag(body.get("partial"), "partial"),
    )
    return web.json_response(_report_status(config, report))


async def get_report(request: web.Request) -> web.Response:
    """``GET /api/reports/:sha`` → Array<Snapshot>."""
    principal = require_account(request)
    submissions = request.app[SUBMISSIONS]
    async with request.app[POOL].acquire() as conn:
        report = await submissions.require(conn, principal, _project(request, {}), _sha(request))
        base = request.app[COMPARISONS].image_base(_account(principal))
        snapshots = await repo.snapshots(conn, report.id, base)
    return web.json_response([s.to_api() for s in snapshots])


async def report_status(request: web.Request) -> web.Response:
    """``GET /api/reports/:sha/status`` → ReportStatus."""
    principal = require_account(request)
    async with request.app[POOL].acquire() as conn:
        report = await request.app[SUBMISSIONS].require(
            conn, principal, _project(request, {}), _sha(request)
        )
    return web.json_response(_report_status(request.app[CONFIG], report))


async def complete_report(request: web.Request) -> web.Response:
    """``POST /api/reports/:sha/complete`` → ReportStatus."""
    principal = require_account(request)
    body = await _body(request, frozenset({"project"}))
    report = await request.app[SUBMISSIONS].complete(
        principal, _project(request, body), _sha(request)
    )
    return web.json_response(_report_status(request.app[CONFIG], report))


async def clone_report(request: web.Request) -> web.Response:
    """``POST /api/reports/:fromSha/clone/:toSha`` → ReportStatus of the clone."""
    principal = require_account(request)
    body = await _body(request, frozenset({"project", "link", "message"}))
    report = await request.app[SUBMISSIONS].clone(
        principal,
        _project(request, body),
        _sha(request, "fromSha"),
        _sha(request, "toSha"),
        link=domain.parse_text(body.get("link"), "link"),
        message=domain.parse_text(body.get("message"), "message"),
    )
    return web.json_response(_report_status(request.app[CONFIG], report))


async def find_baseline(request: web.Request) -> web.Response:
    """``POST /api/reports/:sha/find-baseline`` ``{project, shas}`` → ``{sha}``: the first of
    ``shas`` with a complete report (happo v6's ``--skip/--only``)."""
    principal = require_account(request)
    body = await _body(request, frozenset({"project", "shas"}))
    shas = domain.parse_shas(body.get("shas"), "shas")
    project = _project(request, body)
    async with request.app[POOL].acquire() as conn:
        report = await repo.first_report(conn, _account(principal), project, shas)
    if report is None:
        raise errors.NotFound("None of the shas has a complete report")
    return web.json_response({"sha": report.sha, "id": report.id})


# --- comparisons ------------------------------------------------------------------------------


async def compare(request: web.Request) -> web.Response:
    """``POST /api/reports/:sha1/compare/:sha2`` → Comparison (``isAsync``: at once)."""
    principal = require_account(request)
    config = request.app[CONFIG]
    comparisons = request.app[COMPARISONS]
    sha1, sha2 = _sha(request, "sha1"), _sha(request, "sha2")
    body = await _body(request, domain.COMPARE_FIELDS)
    project = _project(request, body)
    is_async = domain.parse_flag(body.get("isAsync"), "isAsync")
    fallbacks = domain.parse_shas(body.get("fallbackShas"), "fallbackShas")
    link = domain.parse_text(body.get("link"), "link")
    message = domain.parse_text(body.get("message"), "message")
    notify = _addresses(body.get("notify"))
    if sha1 == sha2:
        raise errors.InvalidRequest("A report cannot be compared with itself")
    account_id = _account(principal)
    async with request.app[POOL].acquire() as conn, conn.transaction():
        existing = await repo.comparison(conn, account_id, project, sha1, sha2)
        before, after = await comparisons.resolve(conn, account_id, project, sha1, sha2, fallbacks)
        if not is_async and (before is None or after is None):
            await _refuse_incomparable(conn, account_id, project, sha1, sha2, fallbacks)
        if existing is not None and await _still_current(conn, existing, before, after, config):
            comparison = existing
        else:
            comparison_id = await repo.schedule_comparison(
                conn,
                account_id,
                project,
                sha1,
                sha2,
                fallback_shas=fallbacks,
                link=link,
                message=message,
                notify=notify,
                threshold=config.diff_threshold,
                include_anti_aliasing=config.diff_include_anti_aliasing,
            )
            comparison = await comparisons.advance(conn, comparison_id)
    if is_async:
        return web.json_response(_comparison_answer(config, comparison, []))
    if not comparison.done:
        finished = await comparisons.wait(comparison.id, config.compare_wait_seconds)
        if finished is None:
            raise errors.Unavailable(
                "The comparison is still being diffed; post it again to wait for it",
                retry_after=5,
            )
        comparison = finished
    async with request.app[POOL].acquire() as conn:
        entries = await repo.entries(conn, comparison.id)
    return web.json_response(_comparison_answer(config, comparison, entries))


def _addresses(value: object) -> list[str]:
    return parse_addresses(value) if value not in (None, "", []) else []


async def _refuse_incomparable(
    conn: Any, account_id: str, project: str, sha1: str, sha2: str, fallbacks: list[str]
) -> None:
    """Why a synchronous compare cannot run now: 404 when a report is missing, 409 while one
    is still being assembled from partials."""
    after = await repo.report(conn, account_id, project, sha2)
    if after is None:
        raise errors.NotFound(f"No report for sha {sha2}")
    if not after.complete:
        raise errors.Conflict(f"Report {sha2} is not complete yet")
    before = await repo.report(conn, account_id, project, sha1)
    if before is not None:
        raise errors.Conflict(f"Report {sha1} is not complete yet")
    raise errors.NotFound(f"No report for sha {sha1}" + (" or its fallbacks" if fallbacks else ""))


async def _still_current(
    conn: Any,
    existing: Comparison,
    before: Report | None,
    after: Report | None,
    config: ReportsConfig,
) -> bool:
    """True when an earlier comparison of these shas compared ``before`` and ``after`` as
    they are now (a client's retry, or a second look) and no diff of it was ignored since: it
    is reused, with its review."""
    return (
        existing.state != "scheduled"
        and before is not None
        and after is not None
        and existing.before_report_id == before.id
        and existing.after_report_id == after.id
        and existing.before_revision == before.revision
        and existing.after_revision == after.revision
        and existing.threshold == config.diff_threshold
        and existing.include_anti_aliasing == config.diff_include_anti_aliasing
        and not await repo.ignores_a_diff_of(conn, existing)
    )


async def comparison_status(request: web.Request) -> web.Response:
    """``GET /api/reports/:sha1/compare/:sha2/status`` → ComparisonStatus."""
    principal = require_account(request)
    project = _project(request, {})
    sha1, sha2 = _sha(request, "sha1"), _sha(request, "sha2")
    async with request.app[POOL].acquire() as conn:
        comparison = await repo.comparison(conn, _account(principal), project, sha1, sha2)
    if comparison is None:
        raise errors.NotFound(f"No comparison of {sha1} with {sha2}")
    return web.json_response(_comparison_status(request.app[CONFIG], comparison))


async def comparison_statuses(request: web.Request) -> web.Response:
    """``GET /api/reports/:sha/comparison-statuses`` → Array<ComparisonStatus>."""
    principal = require_account(request)
    async with request.app[POOL].acquire() as conn:
        found = await repo.comparisons_of_sha(
            conn, _account(principal), _project(request, {}), _sha(request)
        )
    config = request.app[CONFIG]
    return web.json_response([_comparison_status(config, c) for c in found])


async def ignore_diff(request: web.Request) -> web.Response:
    """``POST /api/ignored-diffs`` ``{snapshot1Id, snapshot2Id}``: that pair of images counts
    as equal in every later comparison."""
    principal = require_account(request)
    body = await _body(request, frozenset({"snapshot1Id", "snapshot2Id"}))
    ids = [_snapshot_id(body.get(name), name) for name in ("snapshot1Id", "snapshot2Id")]
    account_id = _account(principal)
    async with request.app[POOL].acquire() as conn:
        base = request.app[COMPARISONS].image_base(account_id)
        found = await repo.account_snapshots(conn, account_id, ids, base)
        if any(i not in found for i in ids):
            raise errors.NotFound("No snapshot with that id in this account")
        first, second = found[ids[0]], found[ids[1]]
        if first.key != second.key:
            raise errors.InvalidRequest(
                "The two snapshots show different component/variant/target combinations"
            )
        created = await repo.ignore_diff(conn, account_id, first, second)
    return web.json_response(
        {"snapshot1Id": ids[0], "snapshot2Id": ids[1], "created": created},
        status=201 if created else 200,
    )


def _snapshot_id(value: object, name: str) -> int:
    if isinstance(value, str):
        value = domain.parse_id(value)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise errors.InvalidRequest(f"`{name}` must be a snapshot id")
    return value


async def flake(request: web.Request) -> web.Response:
    """``GET /api/flake`` → the ignored diffs as a list (happo v6's ``happo flake``)."""
    principal = require_account(request)
    query = request.query
    limit = _whole(query.get("limit"), _FLAKE_PAGE, 500)
    page = _whole(query.get("page"), 1, 1_000_000)
    async with request.app[POOL].acquire() as conn:
        rows = await repo.flaky_snapshots(
            conn,
            _account(principal),
            component=query.get("component"),
            variant=query.get("variant"),
            target=query.get("target"),
            limit=limit,
            offset=(page - 1) * limit,
        )
    return web.json_response(
        [
            {
                "component": row["component"],
                "variant": row["variant"],
                "target": row["target"],
                "snapshot1Id": row["snapshot1_id"],
                "snapshot2Id": row["snapshot2_id"],
                "createdAt": _when(row["created_at"]),
            }
            for row in rows
        ]
    )


def _whole(raw: str | None, default: int, high: int) -> int:
    if raw is None:
        return default
    value = domain.parse_id(raw, high)
    if value is None:
        raise errors.BadRequest(f"Expected a whole number from 1 to {high}, got {raw!r}")
    return value


# --- jobs -------------------------------------------------------------------------------------


async def create_job(request: web.Request) -> web.Response:
    """``POST /api/jobs/:sha1/:sha2`` → Job: the orchestration job of these shas when one
    covers the project, else this project's job (created once; retries get the same)."""
    principal = require_account(request)
    body = await _body(request, frozenset({"project", "link", "message"}))
    project = _project(request, body)
    sha1, sha2 = _sha(request, "sha1"), _sha(request, "sha2")
    account_id = _account(principal)
    link = domain.parse_text(body.get("link"), "link")
    message = domain.parse_text(body.get("message"), "message")
    async with request.app[POOL].acquire() as conn, conn.transaction():
        parent = await repo.job(conn, account_id, sha1, sha2, None)
        job = await repo.create_job(
            conn,
            account_id,
            sha1,
            sha2,
            project,
            parent_id=parent.id if parent else None,
            link=link,
            message=message,
        )
        answer = await _job_answer(request, conn, parent or job)
    return web.json_response(answer)


async def orchestrate(request: web.Request) -> web.Response:
    """``POST /api/jobs/:sha1/:sha2/orchestrate`` ``{projects}`` → Job with one combined
    status over its projects' comparisons."""
    principal = require_account(request)
    body = await _body(request, frozenset({"projects", "link", "message"}))
    projects = body.get("projects")
    if (
        not isinstance(projects, list)
        or not projects
        or len(projects) > 100
        or not all(isinstance(p, str) for p in projects)
    ):
        raise errors.InvalidRequest("`projects` must be a list of 1 to 100 project names")
    names = list(dict.fromkeys(domain.parse_project(p) for p in projects))
    sha1, sha2 = _sha(request, "sha1"), _sha(request, "sha2")
    account_id = _account(principal)
    link = domain.parse_text(body.get("link"), "link")
    message = domain.parse_text(body.get("message"), "message")
    async with request.app[POOL].acquire() as conn, conn.transaction():
        parent = await repo.create_job(
            conn, account_id, sha1, sha2, None, parent_id=None, link=link, message=message
        )
        for name in names:
            await repo.create_job(
                conn, account_id, sha1, sha2, name, parent_id=parent.id, link=link, message=message
            )
        answer = await _job_answer(request, conn, parent)
    return web.json_response(answer)


async def cancel_job(request: web.Request) -> web.Response:
    """``POST /api/jobs/:sha1/:sha2/cancel`` (and the deprecated ``…/fail``): settle a job
    with ``status`` (default ``failure``); 404 ``No job found`` for an unknown one."""
    principal = require_account(request)
    body = await _body(request, frozenset({"project", "status", "link", "message"}))
    status = body.get("status", domain.FAILURE)
    if status not in (domain.FAILURE, domain.SUCCESS):
        raise errors.InvalidRequest('`status` must be "failure" or "success"')
    project = _project(request, body)
    sha1, sha2 = _sha(request, "sha1"), _sha(request, "sha2")
    account_id = _account(principal)
    message = domain.parse_text(body.get("message"), "message")
    domain.parse_text(body.get("link"), "link")
    async with request.app[POOL].acquire() as conn, conn.transaction():
        job = await repo.job(conn, account_id, sha1, sha2, project)
        if job is None:
            raise errors.NotFound(f"No job found for {sha1}..{sha2}")
        await repo.cancel_job(conn, job.id, status, message)
        shown = await repo.job_by_id(conn, job.parent_id or job.id)
        assert shown is not None
        answer = await _job_answer(request, conn, shown)
    return web.json_response(answer)


# --- skip, subscriptions, components ----------------------------------------------------------


async def skip(request: web.Request) -> web.Response:
    """``POST /api/skip/:sha`` ``{project, label}``: a successful status for the sha."""
    principal = require_account(request)
    body = await _body(request, frozenset({"project", "label"}))
    project = _project(request, body)
    sha = _sha(request)
    label = domain.parse_text(body.get("label"), "label", 200) or "Skipped"
    async with request.app[POOL].acquire() as conn:
        created = await repo.skip(conn, _account(principal), project, sha, label)
    return web.json_response(
        {
            "sha": sha,
            "project": project,
            "status": domain.SUCCESS,
            "label": label,
            "createdAt": _when(created),
        }
    )


async def subscribe(request: web.Request) -> web.Response:
    """``POST /api/subscriptions/:component`` ``{emailAddresses}`` → the subscribers now."""
    return await _subscriptions(request, repo.subscribe)


async def unsubscribe(request: web.Request) -> web.Response:
    """``DELETE /api/subscriptions/:component`` ``{emailAddresses}`` → the subscribers now."""
    return await _subscriptions(request, repo.unsubscribe_many)


async def _subscriptions(request: web.Request, change: Any) -> web.Response:
    principal = require_account(request)
    body = await _body(request, frozenset({"emailAddresses"}))
    component = request.match_info["component"]
    if not component or len(component) > domain.MAX_NAME:
        raise errors.InvalidRequest("The component name is 1 to 500 characters")
    value = body.get("emailAddresses")
    if not isinstance(value, list) or not value:
        raise errors.InvalidRequest("`emailAddresses` must be a non-empty list of addresses")
    emails = parse_addresses(value, field="emailAddresses")
    async with request.app[POOL].acquire() as conn, conn.transaction():
        now = await change(conn, _account(principal), component, emails)
    return web.json_response({"component": component, "emailAddresses": now})


async def latest_snapshot(request: web.Request) -> web.Response:
    """``GET /api/components/:component/:variant/:target`` → the latest Snapshot."""
    principal = require_account(request)
    info = request.match_info
    key = (info["component"], info["variant"], info["target"])
    account_id = _account(principal)
    async with request.app[POOL].acquire() as conn:
        snapshot = await repo.latest_snapshot(
            conn,
            account_id,
            _project(request, {}),
            key,
            request.app[COMPARISONS].image_base(account_id),
        )
    if snapshot is None:
        raise errors.NotFound("No snapshot of that component, variant and target")
    return web.json_response(snapshot.to_api())


# --- async reports and snap requests ----------------------------------------------------------


async def async_report(request: web.Request) -> web.Response:
    """``POST /api/async-reports/:sha`` ``{requestIds, project?, link?, message?, nonce?}`` →
    ``{id, url}`` (happo.io ``--async``, happo-e2e)."""
    principal = require_account(request)
    body = await _body(request, frozenset({"requestIds", "project", "link", "message", "nonce"}))
    ids = body.get("requestIds")
    if not isinstance(ids, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) and i > 0 for i in ids
    ):
        raise errors.InvalidRequest("`requestIds` must be a list of snap request ids")
    nonce = domain.parse_text(body.get("nonce"), "nonce", 200)
    report = await request.app[SUBMISSIONS].async_report(
        principal,
        _project(request, body),
        _sha(request),
        ids,
        link=domain.parse_text(body.get("link"), "link"),
        message=domain.parse_text(body.get("message"), "message"),
        nonce=nonce or None,
    )
    return web.json_response(_report_status(request.app[CONFIG], report))


async def finalize_async_report(request: web.Request) -> web.Response:
    """``POST /api/async-reports/:sha/finalize`` ``{project?, nonce, skippedExamples? | skip?}``
    → ReportStatus: the parallel runs under ``nonce`` are all in."""
    principal = require_account(request)
    body = await _body(request, frozenset({"project", "nonce", "skippedExamples", "skip"}))
    nonce = domain.parse_text(body.get("nonce"), "nonce", 200)
    if not nonce:
        raise errors.InvalidRequest("`nonce` is required")
    skipped = domain.parse_skipped(body.get("skip", body.get("skippedExamples")))
    report = await request.app[SUBMISSIONS].finalize(
        principal, _project(request, body), _sha(request), nonce, skipped
    )
    return web.json_response(_report_status(request.app[CONFIG], report))


async def snap_request_with_results(request: web.Request) -> web.Response:
    """``POST /api/snap-requests/with-results`` ``{snaps}`` → ``{requestId}``."""
    principal = require_account(request)
    config = request.app[CONFIG]
    body = await _body(request, frozenset({"snaps"}))
    snaps = domain.parse_snaps(
        body.get("snaps"), _account(principal), config.public_url, config.max_snapshots
    )
    request_id = await request.app[SUBMISSIONS].snap_request(principal, snaps)
    return web.json_response({"requestId": request_id})


async def snap_request_extends(request: web.Request) -> web.Response:
    """``POST /api/snap-requests/extends-report`` ``{extendedSnaps, extendsSha, project?}`` →
    ``{requestId}``: the matching snapshots of an earlier report."""
    principal = require_account(request)
    body = await _body(request, frozenset({"extendedSnaps", "extendsSha", "project"}))
    extends_sha = body.get("extendsSha")
    if not isinstance(extends_sha, str):
        raise errors.InvalidRequest("`extendsSha` is required")
    wanted = domain.parse_skipped(body.get("extendedSnaps"))
    request_id = await request.app[SUBMISSIONS].extends_request(
        principal, _project(request, body), domain.parse_sha(extends_sha, "extendsSha"), wanted
    )
    return web.json_response({"requestId": request_id})


async def create_snap_request(request: web.Request) -> web.Response:
    """``POST /api/snap-requests`` (multipart ``type``, ``targetName``, ``payloadHash``,
    ``payload`` = payload.json, ``extendsSha?``) → ``{requestId}``: a request to render."""
    principal = require_account(request)
    config = request.app[CONFIG]
    form = await read_multipart(request, "payload", config.max_snap_request_bytes)
    payload = form.file if form.file is not None else form.fields.get("payload", "")
    text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
    item = RenderItem(
        request_type=form.fields.get("type", ""),
        target_name=form.fields.get("targetName", ""),
        payload=text,
        extends_sha=form.fields.get("extendsSha"),
    )
    request_id = await request.app[RENDER_REQUESTS].create(principal, item)
    return web.json_response({"requestId": request_id})


async def bulk_snap_requests(request: web.Request) -> web.Response:
    """``POST /api/snap-requests/bulk`` ``{items: [{type, targetName, payloadString,
    payloadHash, extendsSha?}]}`` (at most 50) → ``{results: [{requestId} | {error}]}`` in the
    items' order."""
    principal = require_account(request)
    config = request.app[CONFIG]
    body = await read_json_object(request, config.max_snap_request_bytes)
    items = body.get("items")
    if not isinstance(items, list):
        raise errors.InvalidRequest("`items` must be a list of snap requests")
    results = await request.app[RENDER_REQUESTS].create_many(principal, items)
    return web.json_response({"results": results})


async def get_snap_request(request: web.Request) -> web.Response:
    """``GET /api/snap-requests/:id`` → ``{status: "done", result: [snapshots]}``; ``{status:
    "pending"}`` while it renders; 422 with the reason once it failed (a client polls until
    "done", so a failure must be an error, never a status)."""
    principal = require_account(request)
    request_id = domain.parse_id(request.match_info["id"])
    if request_id is None:
        raise errors.NotFound("No such snap request")
    account_id = _account(principal)
    async with request.app[POOL].acquire() as conn:
        found = await repo.snap_requests(conn, account_id, [request_id])
    if not found:
        raise errors.NotFound("No such snap request")
    snap_request = found[request_id]
    if snap_request.pending:
        return web.json_response({"id": request_id, "status": "pending"})
    if snap_request.state == "failed":
        raise errors.InvalidRequest(f"Snap request {request_id} failed: {snap_request.error}")
    base = request.app[COMPARISONS].image_base(account_id)
    result = [
        {
            "component": s["component"],
            "variant": s["variant"],
            "target": s["target"],
            "url": base + s["image_hash"],
            "width": s["width"],
            "height": s["height"],
        }
        for s in snap_request.snaps
    ]
    return web.json_response({"id": request_id, "status": "done", "result": result})


async def render_job(request: web.Request) -> web.Response:
    """Internal ``GET /internal/snap-requests/:id`` → ``{id, state, type, targetName,
    payload}``: what a renderer needs of a request of the calling account."""
    principal = require_account(request)
    request_id = domain.parse_id(request.match_info["id"])
    spec = (
        await request.app[RENDER_REQUESTS].spec(principal, request_id)
        if request_id is not None
        else None
    )
    if spec is None:
        raise errors.NotFound("No such snap request to render")
    return web.json_response(spec)


# --- images -----------------------------------------------------------------------------------


async def diff_image(request: web.Request) -> web.Response:
    """``GET /comparisons/:id/diffs/:position.png``: an entry's diff image, for the account."""
    principal = require_account(request)
    comparison_id, position = _whole_id(request, "id"), _whole_id(request, "position", 0)
    async with request.app[POOL].acquire() as conn:
        comparison = await repo.comparison_by_id(conn, comparison_id)
        if comparison is None or comparison.account_id != _account(principal):
            raise errors.NotFound("No such comparison")
        key = await repo.entry_diff_key(conn, comparison_id, position)
    if key is None:
        raise errors.NotFound("That entry has no diff image")
    try:
        data = await request.app[STORE].read(key)
    except BlobNotFound as exc:
        raise errors.NotFound("The diff image is gone") from exc
    return web.Response(
        body=data,
        content_type="image/png",
        headers={"Cache-Control": "private, max-age=31536000, immutable"},
    )


async def status_badge(request: web.Request) -> web.Response:
    """``GET /badges/:id-:signature.svg``: the comparison's status as an SVG badge (public,
    for pull requests and READMEs; the signature keeps ids from being enumerated)."""
    config = request.app[CONFIG]
    raw_id, _, signature = request.match_info["badge"].partition("-")
    comparison_id = domain.parse_id(raw_id)
    if comparison_id is None:
        raise errors.NotFound("No such badge")
    expected = domain.badge_signature(config.signing_key, comparison_id)
    if not hmac.compare_digest(signature.encode(), expected.encode()):
        raise errors.NotFound("No such badge")
    async with request.app[POOL].acquire() as conn:
        comparison = await repo.comparison_by_id(conn, comparison_id)
        counts = await repo.kind_counts(conn, comparison_id) if comparison else {}
    if comparison is None:
        raise errors.NotFound("No such badge")
    tally = domain.Tally.of(counts) if comparison.done else None
    status = comparison.status
    svg = domain.status_badge(status, domain.badge_message(status, tally))
    return web.Response(
        text=svg,
        content_type="image/svg+xml",
        headers={"Cache-Control": "no-cache, max-age=0"},
    )


def _whole_id(request: web.Request, name: str, minimum: int = 1) -> int:
    value = domain.parse_id(request.match_info[name], 2**31 - 1, minimum)
    if value is None:
        raise errors.NotFound("Not found")
    return value
