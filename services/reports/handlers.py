"""Reports's HTTP handlers: the Happo reports API (and the endpoints outside its reference that
the real clients call), diff images and status badges. Each parses HTTP, calls one use case
and answers HTTP; the rules are in :mod:`domain` and the use-case modules."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web

from services.reports import domain, repo
from services.reports.badges import Badges
from services.reports.comparing import Comparisons
from services.reports.config import ReportsConfig
from services.reports.domain import Comparison, Report
from services.reports.ignoring import IgnoredDiffs
from services.reports.jobs import Jobs, JobView
from services.reports.matching import Entry
from services.reports.notices import Notices
from services.reports.render_requests import RenderItem, RenderRequests
from services.reports.reviewing import Reviews
from services.reports.submissions import Submissions
from services.reports.subscriptions import Subscriptions
from shared import errors, store_keys
from shared.delivery import serve_blob
from shared.http import Principal, read_json_object, read_multipart, require_account
from shared.image_urls import happo_image_path
from shared.runtime import POOL, STORE

CONFIG = web.AppKey("reports.config", ReportsConfig)
COMPARISONS = web.AppKey("reports.comparisons", Comparisons)
SUBMISSIONS = web.AppKey("reports.submissions", Submissions)
RENDER_REQUESTS = web.AppKey("reports.render_requests", RenderRequests)
NOTICES = web.AppKey("reports.notices", Notices)
JOBS = web.AppKey("reports.jobs", Jobs)
IGNORED_DIFFS = web.AppKey("reports.ignored_diffs", IgnoredDiffs)
SUBSCRIPTIONS = web.AppKey("reports.subscriptions", Subscriptions)
BADGES = web.AppKey("reports.badges", Badges)
REVIEWS = web.AppKey("reports.reviews", Reviews)

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
    request: web.Request, comparison: Comparison, entries: list[Entry]
) -> dict[str, Any]:
    config = request.app[CONFIG]
    answer: dict[str, Any] = {
        "id": comparison.id,
        "sha1": comparison.sha1,
        "sha2": comparison.sha2,
        "beforeSha": comparison.before_sha,
        "project": comparison.project,
        "status": domain.build_status(comparison.status),
        "compareUrl": config.public(f"/comparisons/{comparison.id}"),
        "statusImageUrl": request.app[BADGES].url(comparison.id),
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


def _job_answer(config: ReportsConfig, view: JobView) -> dict[str, Any]:
    job = view.job
    answer: dict[str, Any] = {
        "id": job.id,
        "url": config.public(f"/jobs/{job.id}"),
        "sha1": job.sha1,
        "sha2": job.sha2,
        "status": view.status,
        "createdAt": _when(job.created_at),
    }
    if view.projects is not None:
        answer["projects"] = view.projects
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
        body["snaps"], str(principal.account_id), config.public_url, config.max_snapshots
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
    snapshots = await request.app[SUBMISSIONS].snapshots(
        principal, _project(request, {}), _sha(request)
    )
    return web.json_response([s.to_api() for s in snapshots])


async def report_status(request: web.Request) -> web.Response:
    """``GET /api/reports/:sha/status`` → ReportStatus."""
    principal = require_account(request)
    report = await request.app[SUBMISSIONS].status(principal, _project(request, {}), _sha(request))
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
    report = await request.app[SUBMISSIONS].baseline(principal, _project(request, body), shas)
    return web.json_response({"sha": report.sha, "id": report.id})


# --- comparisons ------------------------------------------------------------------------------


async def compare(request: web.Request) -> web.Response:
    """``POST /api/reports/:sha1/compare/:sha2`` → Comparison (``isAsync``: at once)."""
    principal = require_account(request)
    sha1, sha2 = _sha(request, "sha1"), _sha(request, "sha2")
    body = await _body(request, domain.COMPARE_FIELDS)
    wanted = domain.parse_compare(body, _project(request, body), sha1, sha2)
    comparison, entries = await request.app[COMPARISONS].compare(principal, wanted)
    return web.json_response(_comparison_answer(request, comparison, entries))


async def comparison_status(request: web.Request) -> web.Response:
    """``GET /api/reports/:sha1/compare/:sha2/status`` → ComparisonStatus."""
    principal = require_account(request)
    project = _project(request, {})
    sha1, sha2 = _sha(request, "sha1"), _sha(request, "sha2")
    comparison = await request.app[COMPARISONS].status(principal, project, sha1, sha2)
    return web.json_response(_comparison_status(request.app[CONFIG], comparison))


async def comparison_statuses(request: web.Request) -> web.Response:
    """``GET /api/reports/:sha/comparison-statuses`` → Array<ComparisonStatus>."""
    principal = require_account(request)
    found = await request.app[COMPARISONS].of_sha(principal, _project(request, {}), _sha(request))
    config = request.app[CONFIG]
    return web.json_response([_comparison_status(config, c) for c in found])


async def ignore_diff(request: web.Request) -> web.Response:
    """``POST /api/ignored-diffs`` ``{snapshot1Id, snapshot2Id}``: that pair of images counts
    as equal in every later comparison."""
    principal = require_account(request)
    body = await _body(request, frozenset({"snapshot1Id", "snapshot2Id"}))
    first, second = (
        domain.parse_snapshot_id(body.get(name), name) for name in ("snapshot1Id", "snapshot2Id")
    )
    created = await request.app[IGNORED_DIFFS].ignore(principal, first, second)
    return web.json_response(
        {"snapshot1Id": first, "snapshot2Id": second, "created": created},
        status=201 if created else 200,
    )


async def flake(request: web.Request) -> web.Response:
    """``GET /api/flake`` → the ignored diffs as a list (happo v6's ``happo flake``)."""
    principal = require_account(request)
    query = request.query
    limit = domain.parse_whole(query.get("limit"), domain.FLAKE_PAGE, domain.MAX_FLAKE_PAGE)
    page = domain.parse_whole(query.get("page"), 1, 1_000_000)
    rows = await request.app[IGNORED_DIFFS].flaky(
        principal,
        component=query.get("component"),
        variant=query.get("variant"),
        target=query.get("target"),
        limit=limit,
        page=page,
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


# --- jobs -------------------------------------------------------------------------------------


async def create_job(request: web.Request) -> web.Response:
    """``POST /api/jobs/:sha1/:sha2`` → Job: the orchestration job of these shas when one
    covers the project, else this project's job (created once; retries get the same)."""
    principal = require_account(request)
    body = await _body(request, frozenset({"project", "link", "message"}))
    project = _project(request, body)
    sha1, sha2 = _sha(request, "sha1"), _sha(request, "sha2")
    view = await request.app[JOBS].create(
        principal,
        project,
        sha1,
        sha2,
        link=domain.parse_text(body.get("link"), "link"),
        message=domain.parse_text(body.get("message"), "message"),
    )
    return web.json_response(_job_answer(request.app[CONFIG], view))


async def orchestrate(request: web.Request) -> web.Response:
    """``POST /api/jobs/:sha1/:sha2/orchestrate`` ``{projects}`` → Job with one combined
    status over its projects' comparisons."""
    principal = require_account(request)
    body = await _body(request, frozenset({"projects", "link", "message"}))
    names = domain.parse_projects(body.get("projects"))
    sha1, sha2 = _sha(request, "sha1"), _sha(request, "sha2")
    view = await request.app[JOBS].orchestrate(
        principal,
        names,
        sha1,
        sha2,
        link=domain.parse_text(body.get("link"), "link"),
        message=domain.parse_text(body.get("message"), "message"),
    )
    return web.json_response(_job_answer(request.app[CONFIG], view))


async def cancel_job(request: web.Request) -> web.Response:
    """``POST /api/jobs/:sha1/:sha2/cancel`` (and the deprecated ``…/fail``): settle a job
    with ``status`` (default ``failure``); 404 ``No job found`` for an unknown one."""
    principal = require_account(request)
    body = await _body(request, frozenset({"project", "status", "link", "message"}))
    status = domain.parse_cancel_status(body)
    project = _project(request, body)
    sha1, sha2 = _sha(request, "sha1"), _sha(request, "sha2")
    message = domain.parse_text(body.get("message"), "message")
    domain.parse_text(body.get("link"), "link")
    view = await request.app[JOBS].cancel(principal, project, sha1, sha2, status, message)
    return web.json_response(_job_answer(request.app[CONFIG], view))


# --- skip, subscriptions, components ----------------------------------------------------------


async def skip(request: web.Request) -> web.Response:
    """``POST /api/skip/:sha`` ``{project, label}``: a successful status for the sha."""
    principal = require_account(request)
    body = await _body(request, frozenset({"project", "label"}))
    project = _project(request, body)
    sha = _sha(request)
    label = domain.parse_text(body.get("label"), "label", 200) or "Skipped"
    created = await request.app[JOBS].skip(principal, project, sha, label)
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
    principal, component, emails = await _subscription_change(request)
    now = await request.app[SUBSCRIPTIONS].subscribe(principal, component, emails)
    return web.json_response({"component": component, "emailAddresses": now})


async def unsubscribe(request: web.Request) -> web.Response:
    """``DELETE /api/subscriptions/:component`` ``{emailAddresses}`` → the subscribers now."""
    principal, component, emails = await _subscription_change(request)
    now = await request.app[SUBSCRIPTIONS].unsubscribe(principal, component, emails)
    return web.json_response({"component": component, "emailAddresses": now})


async def _subscription_change(request: web.Request) -> tuple[Principal, str, list[str]]:
    principal = require_account(request)
    body = await _body(request, frozenset({"emailAddresses"}))
    component = domain.parse_component(request.match_info["component"])
    return principal, component, domain.parse_subscribers(body.get("emailAddresses"))


async def latest_snapshot(request: web.Request) -> web.Response:
    """``GET /api/components/:component/:variant/:target`` → the latest Snapshot."""
    principal = require_account(request)
    info = request.match_info
    key = (info["component"], info["variant"], info["target"])
    snapshot = await request.app[SUBMISSIONS].latest_snapshot(principal, _project(request, {}), key)
    return web.json_response(snapshot.to_api())


# --- async reports and snap requests ----------------------------------------------------------


async def async_report(request: web.Request) -> web.Response:
    """``POST /api/async-reports/:sha`` ``{requestIds, project?, link?, message?, nonce?}`` →
    ``{id, url}`` (happo.io ``--async``, happo-e2e)."""
    principal = require_account(request)
    body = await _body(request, frozenset({"requestIds", "project", "link", "message", "nonce"}))
    ids = domain.parse_request_ids(body.get("requestIds"))
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
        body.get("snaps"), str(principal.account_id), config.public_url, config.max_snapshots
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
    snap_request = await request.app[SUBMISSIONS].snap_request_of(principal, request_id)
    if snap_request.pending:
        return web.json_response({"id": request_id, "status": "pending"})
    if snap_request.state == "failed":
        raise errors.InvalidRequest(f"Snap request {request_id} failed: {snap_request.error}")
    config, account_id = request.app[CONFIG], str(principal.account_id)
    result = [
        {
            "component": s["component"],
            "variant": s["variant"],
            "target": s["target"],
            "url": config.public(happo_image_path(account_id, s["image_hash"])),
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
    spec = await request.app[RENDER_REQUESTS].spec(principal, request_id) if request_id else None
    if spec is None:
        raise errors.NotFound("No such snap request to render")
    return web.json_response(spec)


# --- images -----------------------------------------------------------------------------------


async def diff_image(request: web.Request) -> web.StreamResponse:
    """``GET /comparisons/:id/diffs/:position.png``: an entry's diff image, for the account
    (streamed, with its ETag and Range, like every stored blob: :mod:`shared.delivery`)."""
    principal = require_account(request)
    comparison_id, position = _whole_id(request, "id"), _whole_id(request, "position", 0)
    async with request.app[POOL].acquire() as conn:
        comparison = await repo.comparisons.comparison_by_id(conn, comparison_id)
        if comparison is None or comparison.account_id != str(principal.account_id):
            raise errors.NotFound("No such comparison")
        key = await repo.comparisons.entry_diff_key(conn, comparison_id, position)
    if key is None:
        raise errors.NotFound("That entry has no diff image")
    stored = await request.app[STORE].stat(key)
    if stored is None:
        raise errors.NotFound("The diff image is gone")
    return await serve_blob(
        request,
        request.app[STORE],
        key,
        store_keys.entity_tag(key),
        stored.size,
        "image/png",
        # Only the account may see it: no shared cache keeps it.
        cache_control="private, max-age=31536000, immutable",
    )


async def status_badge(request: web.Request) -> web.Response:
    """``GET /badges/:id-:signature.svg``: the comparison's status as an SVG badge (public,
    for pull requests and READMEs; the signature keeps ids from being enumerated)."""
    svg = await request.app[BADGES].svg(request.match_info["badge"])
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
