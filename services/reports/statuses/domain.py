"""Commit statuses as plain values: the providers and their APIs, integrations, which
repository a pull-request link names, the state each provider calls ours, the text a status
carries, and what an answer means for the delivery (delivered, retry when, or give up why)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

from yarl import URL

from services.reports import outbound
from shared.errors import InvalidRequest

GITHUB, GITLAB, GITEA = "github", "gitlab", "gitea"
PROVIDERS = (GITHUB, GITLAB, GITEA)
#: The status's name (its context) when the integration names none.
DEFAULT_NAME = "Happo"
MAX_NAME = 100
MAX_TOKEN = 1000
MAX_BASE_URL = 500
#: GitHub cuts a status description at 140 characters; every provider gets the same text.
MAX_DESCRIPTION = 140
#: Attempts before a status is abandoned: with the back-off below, about a day of retries.
MAX_ATTEMPTS = 30
FIRST_RETRY_SECONDS = 5.0
LONGEST_RETRY_SECONDS = 3600.0
#: A provider asking to wait longer than this is waited on only this long.
LONGEST_ASKED_WAIT = 6 * 3600.0
#: Statuses one replica claims per round, and how long a claimed one is its own.
CLAIM_BATCH = 20
CLAIM_LEASE_SECONDS = 60.0
#: Seconds between looks at the table when no notification arrives.
POLL_SECONDS = 5.0
#: The NOTIFY channel (suffixed with the schema) a recorded status wakes the senders on.
CHANNEL = "darkroom_statuses"

PENDING, SUCCESS, FAILURE, ERROR = "pending", "success", "failure", "error"

# Each provider's word for our states (GitLab says "failed"; the others say what we say).
_STATES = {
    GITHUB: {PENDING: "pending", SUCCESS: "success", FAILURE: "failure", ERROR: "error"},
    GITLAB: {PENDING: "pending", SUCCESS: "success", FAILURE: "failed", ERROR: "failed"},
    GITEA: {PENDING: "pending", SUCCESS: "success", FAILURE: "failure", ERROR: "error"},
}
_SEGMENT = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Integration:
    """Where an account's statuses go (its token stays sealed in the row; never here)."""

    id: int
    account_id: str
    project: str | None
    provider: str
    base_url: str
    name: str
    failing: str | None
    failing_since: Any
    created_at: Any

    def to_api(self) -> dict[str, Any]:
        """The JSON the CLI prints (and pages will show): never the token."""
        return {
            "id": self.id,
            "account_id": self.account_id,
            "project": self.project,
            "provider": self.provider,
            "base_url": self.base_url,
            "name": self.name,
            "failing": self.failing,
            "failing_since": self.failing_since.isoformat() if self.failing_since else None,
            "created_at": self.created_at.isoformat() if self.created_at else None,
        }


@dataclass(frozen=True)
class Status:
    """What to post about one commit, before it is addressed to an integration."""

    state: str
    description: str
    target_url: str
    job_id: int | None = None
    comparison_id: int | None = None


# --- parsing an integration ------------------------------------------------------------------


def parse_provider(value: str) -> str:
    """One of :data:`PROVIDERS`."""
    if value not in PROVIDERS:
        raise InvalidRequest(f"provider must be one of {', '.join(PROVIDERS)}, not {value!r}")
    return value


def parse_base_url(value: str) -> str:
    """The provider's web address (``https://github.com``, a GitHub Enterprise or self-managed
    GitLab host, any Gitea/Forgejo): http(s), a host, no credentials, query or fragment;
    returned without a trailing slash."""
    try:
        url = URL(value.strip())
    except ValueError:
        raise InvalidRequest(f"base URL {value[:200]!r} is not a URL") from None
    if len(value) > MAX_BASE_URL or url.scheme not in ("http", "https") or not url.host:
        raise InvalidRequest("base URL must be an http(s) URL with a host, like https://github.com")
    if url.raw_user or url.raw_password or url.raw_query_string or url.raw_fragment:
        raise InvalidRequest("base URL must have no user name, password, query or fragment")
    return str(url).rstrip("/")


def parse_token(value: str) -> str:
    """A provider token: printable, no whitespace, at most :data:`MAX_TOKEN` characters."""
    if (
        not value
        or len(value) > MAX_TOKEN
        or not value.isprintable()
        or any(c.isspace() for c in value)
    ):
        raise InvalidRequest(f"token must be 1 to {MAX_TOKEN} printable characters, no spaces")
    return value


def parse_name(value: str | None, project: str | None) -> str:
    """The status's name: as given, else ``Happo``, or ``Happo (<project>)`` for an
    integration of one project (so several projects on one repository keep apart)."""
    if value is None or not value.strip():
        return f"{DEFAULT_NAME} ({project})" if project else DEFAULT_NAME
    name = value.strip()
    if len(name) > MAX_NAME or not name.isprintable():
        raise InvalidRequest(f"name must be 1 to {MAX_NAME} printable characters")
    return name


# --- addressing a status ---------------------------------------------------------------------


def repository_of(provider: str, base_url: str, link: str | None) -> str | None:
    """The repository a client's ``link`` names on this integration's host, or None (no link,
    another host, not a repository URL). GitHub and Gitea: ``/{owner}/{repo}/…``
    (``…/pull/N``, ``…/pulls/N``, ``…/commit/SHA``); GitLab: ``/{group/…/project}/-/…``
    (``…/-/merge_requests/N``), below the base URL's own path."""
    if not link:
        return None
    try:
        url, base = URL(link), URL(base_url)
    except ValueError:
        return None
    if url.scheme not in ("http", "https") or not url.host:
        return None
    if (_site(url.host), url.port) != (_site(base.host or ""), base.port):
        return None
    prefix = [s for s in base.path.split("/") if s]
    segments = [s for s in url.path.split("/") if s]
    if segments[: len(prefix)] != prefix:
        return None
    segments = segments[len(prefix) :]
    if provider == GITLAB:
        path = segments[: segments.index("-")] if "-" in segments else segments
        if len(path) < 2:
            return None
    else:
        if len(segments) < 2:
            return None
        path = segments[:2]
        path[1] = path[1].removesuffix(".git")
    if not all(_SEGMENT.match(s) for s in path):
        return None
    return "/".join(path)


def _site(host: str) -> str:
    # GitHub's API lives on api.github.com; a base URL naming it still means github.com.
    host = host.lower().rstrip(".")
    return "github.com" if host == "api.github.com" else host


def context_of(integration: Integration, project: str | None) -> str:
    """The status's context: the integration's name; a project's status through an
    account-wide integration adds `` (<project>)`` (the default project adds nothing), so the
    projects of one commit keep apart; an orchestration's combined status is the name."""
    if integration.project is not None or not project:
        return integration.name
    return f"{integration.name} ({project})"


def request_of(
    integration: Integration, token: str, repository: str, sha: str, context: str, status: Status
) -> tuple[str, dict[str, str], dict[str, Any]]:
    """The provider's commit-status call: URL, headers, JSON body."""
    state = _STATES[integration.provider][status.state]
    base = integration.base_url
    sha_part = quote(sha, safe="")
    if integration.provider == GITHUB:
        site = URL(base)
        api = (
            "https://api.github.com" if _site(site.host or "") == "github.com" else base + "/api/v3"
        )
        return (
            f"{api}/repos/{repository}/statuses/{sha_part}",
            {
                "Authorization": f"Bearer {token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
            },
            {
                "state": state,
                "target_url": status.target_url,
                "description": status.description,
                "context": context,
            },
        )
    if integration.provider == GITLAB:
        return (
            f"{base}/api/v4/projects/{quote(repository, safe='')}/statuses/{sha_part}",
            {"PRIVATE-TOKEN": token},
            {
                "state": state,
                "name": context,
                "target_url": status.target_url,
                "description": status.description,
            },
        )
    return (
        f"{base}/api/v1/repos/{repository}/statuses/{sha_part}",
        {"Authorization": f"token {token}"},
        {
            "state": state,
            "target_url": status.target_url,
            "description": status.description,
            "context": context,
        },
    )


# --- the text of a status --------------------------------------------------------------------


def shorten(text: str) -> str:
    """``text`` on one line, cut to :data:`MAX_DESCRIPTION` characters."""
    line = " ".join(text.split())
    return line if len(line) <= MAX_DESCRIPTION else line[: MAX_DESCRIPTION - 1] + "…"


def comparison_text(diffs: int, added: int, deleted: int, review: str | None) -> str:
    """ "3 diffs, 1 added — awaiting review": the changes, and where their review stands."""
    parts = [
        f"{n} {noun if n == 1 else noun + 's'}" if noun == "diff" else f"{n} {noun}"
        for n, noun in ((diffs, "diff"), (added, "added"), (deleted, "deleted"))
        if n
    ]
    if not parts:
        return "No differences"
    standing = {"accepted": "accepted", "rejected": "rejected"}.get(review or "", "awaiting review")
    return f"{', '.join(parts)} — {standing}"


def orchestration_text(statuses: list[str]) -> str:
    """The combined status's text: how many projects are compared, failing or passed."""
    total = len(statuses)
    waiting = statuses.count(PENDING)
    if waiting:
        return f"{total - waiting} of {total} projects compared"
    failing = statuses.count(FAILURE)
    if failing:
        return f"{failing} of {total} projects failing"
    return f"All {total} projects passed"


# --- what an answer means --------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """What to do after an attempt: ``delivered``; ``retry`` after ``wait`` seconds; or give
    up: ``rejected`` (this status is wrong) or ``refused`` (the token or address is)."""

    outcome: str
    error: str | None = None
    wait: float | None = None


def judge(provider: str, answer: outbound.Answer, attempts: int, now: datetime) -> Verdict:
    """Read a provider's answer to attempt number ``attempts``. Rate limits (429; GitHub's
    403 with ``x-ratelimit-remaining: 0`` or ``retry-after``) and server trouble are retried,
    after the wait the provider asks for when it says one; 401, any other 403 and 404 mean the
    token cannot post there (the integration is failing); other 4xx reject the status."""
    if answer.status is None:
        if answer.address_refused:
            return Verdict("refused", answer.error)
        return _retry(answer, attempts, now, answer.error or "no answer", rate_limited=False)
    status = answer.status
    if 200 <= status < 300:
        return Verdict("delivered")
    said = answer.message()
    error = f"{status}: {said}" if said else str(status)
    headers = answer.headers
    rate_limited = status == 429 or (
        status == 403
        and (
            outbound.header(headers, "x-ratelimit-remaining") == "0"
            or outbound.header(headers, "retry-after") is not None
        )
    )
    if rate_limited or status >= 500 or status == 408:
        return _retry(answer, attempts, now, error, rate_limited=rate_limited)
    if status in (401, 403, 404):
        return Verdict("refused", error)
    if 300 <= status < 400:
        where = outbound.header(headers, "location") or "elsewhere"
        return Verdict("rejected", f"{status}: redirected to {where[:200]}; fix the base URL")
    return Verdict("rejected", error)


def _retry(
    answer: outbound.Answer, attempts: int, now: datetime, error: str, *, rate_limited: bool
) -> Verdict:
    asked = outbound.retry_after(answer.headers, now)
    # Every GitHub answer carries its window's reset time; it is the wait only when the
    # answer is a rate limit (GitLab's is ratelimit-reset).
    for reset in ("x-ratelimit-reset", "ratelimit-reset"):
        if asked is None and rate_limited:
            asked = outbound.reset_after(answer.headers, reset, now)
    if asked is not None:
        wait = min(asked, LONGEST_ASKED_WAIT)
    else:
        wait = outbound.backoff(attempts, FIRST_RETRY_SECONDS, LONGEST_RETRY_SECONDS)
    return Verdict("retry", error, wait)
