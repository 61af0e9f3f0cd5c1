"""Reports's web pages: a report, a comparison (the review workspace: the list of changes, each
diff side by side, as an overlay and as the diff image, accepted, rejected or ignored one by
one), a job, and the unsubscribe link of the notification e-mails.

Each handler parses HTTP, calls a use case (or reads a page of records), and renders a
template of ``templates/`` on the shared layout. The pages are server-rendered and work without
script: the overlay's fade and flicker are radio buttons and CSS, decisions are plain forms.
``review.js`` (a same-origin file, which the shared ``default-src 'self'`` policy allows) adds
the keyboard, the opacity and swipe sliders, the zoom and decisions without a reload.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import groupby
from operator import attrgetter
from pathlib import Path
from urllib.parse import quote

from aiohttp import web

from services.reports import domain, repo
from services.reports.comparing import own_comparison
from services.reports.domain import CHANGE_KINDS, ENTRY_DECISIONS, Comparison, Decisions
from services.reports.handlers import CONFIG, JOBS, REVIEWS, SUBSCRIPTIONS
from services.reports.matching import Entry, Tally
from services.reports.reviewing import Verdict
from services.reports.statuses import repo as statuses_repo
from shared import errors
from shared.delivery import serve_asset
from shared.http import Principal, principal_of, read_form
from shared.logging import get_logger
from shared.pages import Pages, page_user, redirect
from shared.runtime import INTERNAL, POOL

log = get_logger("darkroom.reports.pages")

PAGES = web.AppKey("reports.pages", Pages)
TEMPLATES = Path(__file__).with_name("templates")
STATIC = Path(__file__).with_name("static")
#: The pages' scripts (same-origin files: the pages' policy allows no inline script).
SCRIPTS = {"review.js": "application/javascript; charset=utf-8"}

#: Lines of a comparison's diffs list per page: a comparison of thousands of snapshots is read
#: and drawn a page at a time.
DIFFS_PER_PAGE = 20
#: Snapshots per page of a report (a report may hold 20 000).
SNAPSHOTS_PER_PAGE = 100
#: The changes a comparison page's list names at most (the pages below show every one).
CHANGES_LISTED = 2000
#: The commit statuses a comparison page lists (its commit's newest first).
STATUSES_LISTED = 20
#: What "… all remaining" may decide.
REMAINING_DECISIONS = {"accept": "accepted", "reject": "rejected"}
#: How the pages name each kind of entry, and the sections of a comparison page in order.
KIND_NAMES = {"diff": "diff", "added": "added", "deleted": "deleted", "unchanged": "unchanged"}
SECTION_TITLES = (
    ("diff", "Diffs"),
    ("added", "Added"),
    ("deleted", "Deleted"),
    ("unchanged", "Unchanged"),
)
#: The list's mark for each decision (the words are beside it for screen readers).
MARKS = {None: "·", "accepted": "✓", "rejected": "✗", "ignored": "~"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_pages(public_url: str, signing_key: str) -> Pages:
    """The reports templates on the shared layout, with the filters they use."""
    pages = Pages(TEMPLATES, signing_key)
    pages.env.filters["when"] = when
    pages.env.filters["project_name"] = project_name
    pages.env.filters["web_link"] = web_link
    pages.env.filters["local"] = functools.partial(local_url, public_url.rstrip("/"))
    pages.env.globals.update(
        KIND_NAMES=KIND_NAMES, CHANGE_KINDS=CHANGE_KINDS, MARKS=MARKS, SECTION_TITLES=SECTION_TITLES
    )
    return pages


# --- small rules ------------------------------------------------------------------------------


def when(value: datetime | None) -> str:
    """A timestamp as people read it, in UTC (the pages are shared across time zones)."""
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def project_name(project: str | None) -> str:
    """The default project is stored as ``""``."""
    return project if project else "default project"


def web_link(value: str | None) -> str | None:
    """``value`` when it is an http(s) URL, else None: a report's ``link`` is client input and
    a ``javascript:`` one must not become a clickable ``href``."""
    if value and value.lower().startswith(("https://", "http://")):
        return value
    return None


def local_url(public_url: str, url: str) -> str:
    """The path of one of our own absolute URLs: the page's origin is the browser's, which
    ``default-src 'self'`` allows even when it reached us by another name than the public URL."""
    if url.startswith(public_url + "/"):
        return url[len(public_url) :]
    return url


@dataclass(frozen=True)
class Pager:
    """Page ``page`` of a list of ``total`` items, ``size`` a page."""

    page: int
    size: int
    total: int

    @classmethod
    def of(cls, page: int, size: int, total: int) -> Pager:
        """The pager; 404 for a page past the last (page 1 of an empty list is empty)."""
        pager = cls(page, size, total)
        if page > pager.pages:
            raise errors.NotFound(f"There is no page {page}: the last is {pager.pages}")
        return pager

    @property
    def offset(self) -> int:
        """Items before this page."""
        return (self.page - 1) * self.size

    @property
    def pages(self) -> int:
        """How many pages there are (at least one)."""
        return max(1, -(-self.total // self.size))

    @property
    def first(self) -> int:
        """The 1-based number of this page's first item (0 when there is none)."""
        return min(self.offset + 1, self.total)

    @property
    def last(self) -> int:
        """The 1-based number of this page's last item."""
        return min(self.offset + self.size, self.total)


def windows(
    counts: Mapping[str, int], kinds: Sequence[str], offset: int, limit: int
) -> list[tuple[str, int, int]]:
    """The ``(kind, offset, limit)`` reads that make up items ``offset`` to ``offset + limit``
    of a list of ``kinds`` one after another (each kind in its own order), so a page is read
    straight off the (comparison, kind, position) index, one query per kind on it."""
    reads = []
    for kind in kinds:
        count = counts.get(kind, 0)
        if limit <= 0:
            break
        if offset >= count:
            offset -= count
            continue
        take = min(limit, count - offset)
        reads.append((kind, offset, take))
        limit -= take
        offset = 0
    return reads


# --- request parsing and access ---------------------------------------------------------------


class _SignInFirst(Exception):
    """Nobody is signed in: off to the sign-in page, then back to ``next_path``."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def page_handler(handler: Handler) -> Handler:
    """A page handler: anonymous visitors are sent to sign in; client errors are a page."""

    @functools.wraps(handler)
    async def page(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except _SignInFirst as exc:
            return redirect("/signin?next=" + quote(exc.next_path, safe="/"))
        except errors.DarkroomError as exc:
            if exc.status >= 500:
                raise  # outages keep the JSON shape and Retry-After of the error middleware
            return request.app[PAGES].render(
                "problem.html",
                status=exc.status,
                user=await header_user(request, principal_of(request)),
                principal=principal_of(request),
                status_code=exc.status,
                message=exc.message,
            )

    return page


def viewer(request: web.Request) -> Principal:
    """Whoever may look at an account's pages: a signed-in person or API credentials."""
    principal = principal_of(request)
    if not principal.authenticated:
        raise _SignInFirst(request.path_qs)
    return principal


def _object_id(request: web.Request) -> int:
    value = domain.parse_id(request.match_info["id"])
    if value is None:
        raise errors.NotFound("Not found")
    return value


def page_number(request: web.Request) -> int:
    """The ``page`` of the query (1 when absent); 400 for anything but a whole number."""
    value = domain.parse_id(request.query.get("page", "1"), 1_000_000)
    if value is None:
        raise errors.BadRequest("`page` must be a whole number from 1")
    return value


async def header_user(request: web.Request, principal: Principal) -> dict[str, str] | None:
    """Who the layout's header names: for a session, the user as auth knows them (this service
    does not keep people's names; see :func:`shared.pages.page_user` for when auth cannot
    say); nobody for API credentials, which cannot sign out."""
    if principal.kind != "session":
        return None
    return await page_user(
        request.app[INTERNAL], request.app[CONFIG].service_url("auth"), principal
    )


# --- report -----------------------------------------------------------------------------------


@page_handler
async def report_page(request: web.Request) -> web.StreamResponse:
    """``GET /reports/:id``: a report's snapshots grouped by component, a page at a time."""
    principal = viewer(request)
    report_id, page = _object_id(request), page_number(request)
    async with request.app[POOL].acquire() as conn:
        report = await repo.reports.report_by_id(conn, report_id)
        if report is None or report.account_id != principal.account_id:
            raise errors.NotFound("No such report")
        pager = Pager.of(page, SNAPSHOTS_PER_PAGE, report.snapshot_count)
        base = domain.image_base(request.app[CONFIG].public_url, report.account_id)
        snapshots = await repo.reports.snapshot_page(
            conn, report.id, base, limit=pager.size, offset=pager.offset
        )
    groups = [
        (component, list(snaps))
        for component, snaps in groupby(snapshots, key=attrgetter("component"))
    ]
    return request.app[PAGES].render(
        "report.html",
        user=await header_user(request, principal),
        principal=principal,
        report=report,
        groups=groups,
        pager=pager,
    )


# --- comparison -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    """One shown line of a comparison: its entry and position (which names its diff image)."""

    position: int
    entry: Entry


@dataclass(frozen=True)
class ListedChange:
    """One change as the review list names it, with the page that shows it."""

    position: int
    kind: str
    target: str
    decision: str | None
    page: int


@dataclass(frozen=True)
class ChangeGroup:
    """The changes of one component and variant, across targets."""

    component: str
    variant: str
    items: list[ListedChange]


def change_groups(rows: Sequence[Mapping], per_page: int) -> list[ChangeGroup]:
    """Group the listed changes (in page order) by component and variant, in the order each
    group first appears, so one change seen on several targets reads as one line of work."""
    groups: dict[tuple[str, str], ChangeGroup] = {}
    for index, row in enumerate(rows):
        key = (row["component"], row["variant"] or "")
        group = groups.setdefault(key, ChangeGroup(key[0], key[1], []))
        group.items.append(
            ListedChange(
                position=row["position"],
                kind=row["kind"],
                target=row["target"] or "",
                decision=row["decision"],
                page=index // per_page + 1,
            )
        )
    return list(groups.values())


@page_handler
async def comparison_page(request: web.Request) -> web.StreamResponse:
    """``GET /comparisons/:id[?unchanged=1]``: the review workspace. Status and summary, the
    list of changes grouped by component and variant, then a page of changes (diffs, added,
    deleted; unchanged snapshots too when asked for), each with its decision."""
    principal = viewer(request)
    comparison_id, page = _object_id(request), page_number(request)
    with_unchanged = request.query.get("unchanged") == "1"
    kinds = (*CHANGE_KINDS, "unchanged") if with_unchanged else CHANGE_KINDS
    sections: dict[str, list[Line]] = {kind: [] for kind in kinds}
    async with request.app[POOL].acquire() as conn:
        comparison = await own_comparison(conn, principal, comparison_id)
        counts = await repo.comparisons.kind_counts(conn, comparison.id)
        decisions = Decisions.of(await repo.comparisons.decision_counts(conn, comparison.id))
        listed = await repo.comparisons.changes(conn, comparison.id, CHANGES_LISTED)
        posted = await statuses_repo.statuses_of_commit(
            conn, comparison.account_id, comparison.sha2, STATUSES_LISTED
        )
        pager = Pager.of(page, DIFFS_PER_PAGE, sum(counts.get(k, 0) for k in kinds))
        for kind, offset, limit in windows(counts, kinds, pager.offset, pager.size):
            found = await repo.comparisons.entries(
                conn, comparison.id, (kind,), limit=limit, offset=offset
            )
            sections[kind] = [Line(entry.position or 0, entry) for entry in found]
    session = principal.kind == "session"
    return request.app[PAGES].render(
        "comparison.html",
        user=await header_user(request, principal),
        principal=principal,
        comparison=comparison,
        outcome=comparison.status,
        tally=Tally.of(counts),
        decisions=decisions,
        groups=change_groups(listed, DIFFS_PER_PAGE),
        listed_all=len(listed),
        sections=sections,
        with_unchanged=with_unchanged,
        pager=pager,
        reviewer=_reviewer(comparison, principal),
        can_review=session and comparison.done,
        posted=posted,
    )


async def review_script(request: web.Request) -> web.StreamResponse:
    """``GET /comparisons/review.js``: the workspace's script (keyboard, sliders, zoom)."""
    return serve_asset(STATIC, "review.js", SCRIPTS, "public, max-age=300")


def _reviewer(comparison: Comparison, principal: Principal) -> str | None:
    """Who decided, as the viewer reads it. Only the user id is stored with a review, and auth
    answers only about the caller, so another member is not named."""
    if comparison.review is None:
        return None
    if comparison.reviewed_by is not None and comparison.reviewed_by == principal.user_id:
        return "you"
    if comparison.reviewed_by is None:
        return "someone"
    return f"another member of this account (user {comparison.reviewed_by[:8]})"


async def _review_form(request: web.Request, comparison_id: int) -> tuple[Principal, dict]:
    """The signed-in reviewer and their form (its anti-forgery token checked)."""
    principal = principal_of(request)
    if not principal.authenticated:
        raise _SignInFirst(f"/comparisons/{comparison_id}")
    if principal.kind != "session":
        raise errors.Forbidden("A comparison is reviewed by a person signed in on its page")
    form = dict(await read_form(request))
    request.app[PAGES].check_form_token(principal, form)
    return principal, form


def _reviewed(request: web.Request, form: Mapping, verdict: Verdict) -> web.StreamResponse:
    """The answer to a review form: JSON for review.js, else back to the page it came from."""
    if request.headers.get("Accept", "").startswith("application/json"):
        return web.json_response(verdict.to_api(), headers={"Cache-Control": "no-store"})
    back = f"/comparisons/{verdict.comparison_id}"
    page = domain.parse_id(str(form.get("page", "")), 1_000_000)
    if page is not None and page > 1:
        back += f"?page={page}"
    if verdict.position is not None:
        back += f"#entry-{verdict.position}"
    return redirect(back)


@page_handler
async def review(request: web.Request) -> web.StreamResponse:
    """``POST /comparisons/:id/review`` (form ``decision=accept|reject``, ``csrf``): a signed-in
    person of the account accepts or rejects every change of a finished comparison that nobody
    decided yet; back to its page (303), or the verdict as JSON when asked for."""
    comparison_id = _object_id(request)
    principal, form = await _review_form(request, comparison_id)
    decision = REMAINING_DECISIONS.get(str(form.get("decision", "")))
    if decision is None:
        raise errors.InvalidRequest("`decision` must be accept or reject")
    verdict = await request.app[REVIEWS].decide_remaining(principal, comparison_id, decision)
    log.info("comparison.reviewed", comparison_id=comparison_id, remaining=decision)
    return _reviewed(request, form, verdict)


@page_handler
async def review_change(request: web.Request) -> web.StreamResponse:
    """``POST /comparisons/:id/changes/:position`` (form ``decision=accept|reject|ignore|undo``,
    ``csrf``): a signed-in person decides one change (``undo`` takes the decision back)."""
    comparison_id = _object_id(request)
    position = domain.parse_id(request.match_info["position"], 10_000_000, minimum=0)
    if position is None:
        raise errors.NotFound("No such change")
    principal, form = await _review_form(request, comparison_id)
    word = str(form.get("decision", ""))
    if word != "undo" and word not in ENTRY_DECISIONS:
        raise errors.InvalidRequest("`decision` must be accept, reject, ignore or undo")
    decision = ENTRY_DECISIONS.get(word)
    verdict = await request.app[REVIEWS].decide(principal, comparison_id, position, decision)
    log.info("comparison.change_reviewed", comparison_id=comparison_id, position=position)
    return _reviewed(request, form, verdict)


# --- job --------------------------------------------------------------------------------------


@page_handler
async def job_page(request: web.Request) -> web.StreamResponse:
    """``GET /jobs/:id``: the shas, each project's status and comparison, the combined status."""
    principal = viewer(request)
    job, status, lines = await request.app[JOBS].lines(principal, _object_id(request))
    return request.app[PAGES].render(
        "job.html",
        user=await header_user(request, principal),
        principal=principal,
        job=job,
        outcome=status,
        lines=lines,
    )


# --- unsubscribe ------------------------------------------------------------------------------


@page_handler
async def unsubscribe_page(request: web.Request) -> web.StreamResponse:
    """``GET /unsubscribe/:token``: asks first. Mail scanners and link previews fetch links,
    so a GET changes nothing; the button (or a mail client's one-click POST) does."""
    _, components, email = request.app[SUBSCRIPTIONS].link_target(request.match_info["token"])
    return request.app[PAGES].render(
        "unsubscribe.html",
        user=None,
        component=", ".join(components),
        email=email,
        token=request.match_info["token"],
        done=False,
    )


@page_handler
async def unsubscribe(request: web.Request) -> web.StreamResponse:
    """``POST /unsubscribe/:token``: the confirm button, and RFC 8058 one-click (a mail client
    posts ``List-Unsubscribe=One-Click``). The signed token is the authority, so the body is
    not needed; the address stays unsubscribed even if the API adds it again."""
    components, email = await request.app[SUBSCRIPTIONS].opt_out(request.match_info["token"])
    log.info("subscription.opted_out", components=len(components))
    return request.app[PAGES].render(
        "unsubscribe.html",
        user=None,
        component=", ".join(components),
        email=email,
        token="",
        done=True,
    )
