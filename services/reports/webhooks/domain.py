"""Webhooks as plain values: the event types an endpoint may subscribe to and what of each goes
out, endpoints, their secrets, the Standard Webhooks body and signature, the retry schedule,
and what an answer means for a delivery (delivered, retry when, or give up and disable).

The scheme is Standard Webhooks (https://www.standardwebhooks.com): the body is
``{"type", "timestamp", "data"}``; the headers ``webhook-id`` (the event's id, the same on
every attempt and redelivery, so receivers deduplicate on it), ``webhook-timestamp`` (unix
seconds at send time) and ``webhook-signature`` (``v1,`` + base64 HMAC-SHA256 of
``{id}.{timestamp}.{body}`` keyed by the base64-decoded part of the ``whsec_`` secret).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from yarl import URL

from services.reports import outbound
from shared import remote
from shared.errors import InvalidRequest
from shared.events import Envelope

REPORT_COMPLETED = "report.completed"
COMPARISON_COMPLETED = "comparison.completed"
COMPARISON_REVIEWED = "comparison.reviewed"
JOB_CANCELLED = "job.cancelled"
RENDER_FAILED = "render.failed"

#: What of each event's data goes out, by type: an allow-list, so a field added to an event
#: later (an internal one like ``notify``, the addresses a compare asked to e-mail) stays in.
PUBLIC_FIELDS: dict[str, tuple[str, ...]] = {
    REPORT_COMPLETED: ("report_id", "account_id", "project", "sha", "snapshot_count"),
    COMPARISON_COMPLETED: (
        "comparison_id", "account_id", "project", "sha1", "sha2", "status", "equal", "summary",
        "compare_url", "diff_components",
    ),
    COMPARISON_REVIEWED: (
        "comparison_id", "account_id", "project", "sha1", "sha2", "status", "previous_status",
        "review", "reviewed_by", "summary", "compare_url",
    ),
    JOB_CANCELLED: (
        "job_id", "account_id", "project", "sha1", "sha2", "status", "message", "job_url",
    ),
    RENDER_FAILED: ("request_id", "account_id", "reason"),
}  # fmt: skip
#: The event types an endpoint may subscribe to, in the order the docs list them.
EVENT_TYPES = tuple(PUBLIC_FIELDS)

SECRET_PREFIX = "whsec_"  # noqa: S105 - the form's prefix, not a secret
#: Random bytes of a secret (the spec asks for 24 to 64).
SECRET_BYTES = 32
MAX_URL = 2000
#: Seconds before each retry after the first attempt fails (the spec's suggested schedule:
#: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: about 27 hours in all); the setting
#: ``DARKROOM_WEBHOOK_RETRY_SCHEDULE`` replaces it.
DEFAULT_SCHEDULE = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
#: A receiver asking (``Retry-After``) to wait longer than this is waited on only this long.
LONGEST_ASKED_WAIT = 10 * 3600.0
#: Deliveries one replica claims per round, and how long a claimed one is its own.
CLAIM_BATCH = 20
CLAIM_LEASE_SECONDS = 60.0
#: Seconds between looks at the table when no notification arrives.
POLL_SECONDS = 5.0
#: The NOTIFY channel (suffixed with the schema) a recorded delivery wakes the senders on.
CHANNEL = "darkroom_webhooks"
#: Deliveries ``webhook deliveries`` lists, newest first.
LISTED_DELIVERIES = 50


@dataclass(frozen=True)
class Endpoint:
    """Where an account's webhooks go (its secret stays sealed in the row; never here)."""

    id: int
    account_id: str
    url: str
    event_types: tuple[str, ...]
    disabled: str | None
    disabled_since: Any
    created_at: Any

    def to_api(self) -> dict[str, Any]:
        """The JSON the CLI prints: never the secret."""
        return {
            "id": self.id,
            "account_id": self.account_id,
            "url": self.url,
            "events": list(self.event_types),
            "enabled": self.disabled is None,
            "disabled": self.disabled,
            "disabled_since": _iso(self.disabled_since),
            "created_at": _iso(self.created_at),
        }


def _iso(value: Any) -> str | None:
    return value.isoformat() if value else None


# --- parsing an endpoint ---------------------------------------------------------------------


def parse_url(value: str, allowed_networks: tuple[remote.IPNetwork, ...]) -> str:
    """The receiver's URL: http(s), a host, no user name or password, at most
    :data:`MAX_URL` characters; a literal address on the SSRF deny list (and not in
    ``DARKROOM_REMOTE_ALLOW_NETWORKS``) is refused here, a name is checked at every send."""
    try:
        url = URL(value.strip())
    except ValueError:
        raise InvalidRequest(f"URL {value[:200]!r} is not a URL") from None
    if len(value) > MAX_URL or url.scheme not in ("http", "https") or not url.host:
        raise InvalidRequest("URL must be an http(s) URL with a host, like https://ci.example/hook")
    try:
        remote.check_url(url, allowed_networks)
    except InvalidRequest as exc:
        raise InvalidRequest(outbound.unprefixed(exc.message)) from None
    if url.raw_fragment:
        raise InvalidRequest("URL must have no fragment")
    return str(url)


def parse_events(value: str | list[str]) -> tuple[str, ...]:
    """Subscribed event types: comma-separated (or a list), each of :data:`EVENT_TYPES`,
    at least one; returned once each, in the documented order."""
    names = value.split(",") if isinstance(value, str) else value
    wanted = {name.strip() for name in names if name.strip()}
    unknown = sorted(wanted - set(EVENT_TYPES))
    if unknown or not wanted:
        raise InvalidRequest(
            f"events must be some of {', '.join(EVENT_TYPES)}"
            + (f"; unknown: {', '.join(unknown)}" if unknown else "")
        )
    return tuple(name for name in EVENT_TYPES if name in wanted)


def new_secret() -> str:
    """A fresh signing secret in the Standard Webhooks form, ``whsec_<base64>``."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def parse_schedule(raw: str) -> tuple[float, ...]:
    """``DARKROOM_WEBHOOK_RETRY_SCHEDULE``: comma-separated seconds, each above 0."""
    steps = tuple(float(part) for part in raw.split(",") if part.strip())
    if not steps or any(not step > 0 for step in steps):
        raise ValueError("a retry schedule is one or more positive numbers of seconds")
    return steps


# --- what goes out ---------------------------------------------------------------------------


def body_of(envelope: Envelope) -> str:
    """The JSON body of an event's webhook: its type, when it happened, and its public data
    (:data:`PUBLIC_FIELDS`); sent byte for byte the same on every attempt."""
    fields = PUBLIC_FIELDS[envelope.type]
    data = {name: envelope.data[name] for name in fields if name in envelope.data}
    return json.dumps(
        {"type": envelope.type, "timestamp": envelope.occurred_at, "data": data},
        separators=(",", ":"),
        ensure_ascii=False,
    )


def signature(secret: str, message_id: str, timestamp: int, body: str) -> str:
    """``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`` keyed by the secret's bytes
    (the base64 after ``whsec_``)."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.{body}".encode()
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers_of(secret: str, message_id: str, timestamp: int, body: str) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt (and the body's type)."""
    return {
        "Content-Type": "application/json",
        "User-Agent": "Darkroom-Webhooks",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, message_id, timestamp, body),
    }


# --- what an answer means --------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """What to do after an attempt: ``delivered``; ``retry`` after ``wait`` seconds; or
    ``failed`` for good, which disables the endpoint (``error`` says why)."""

    outcome: str
    error: str | None = None
    wait: float | None = None


def judge(
    answer: outbound.Answer,
    attempts: int,
    schedule: tuple[float, ...],
    now: datetime,
    rng: random.Random | None = None,
) -> Verdict:
    """Read the receiver's answer to attempt number ``attempts``: a 2xx is delivered; 410 Gone
    (the spec's "stop sending") and a refused address fail for good; anything else (no answer,
    3xx, 4xx, 5xx) is retried, after ``Retry-After`` when the receiver says one, else the
    schedule's next step; past the schedule's end the delivery fails for good."""
    if answer.status is not None and 200 <= answer.status < 300:
        return Verdict("delivered")
    if answer.status is None:
        error = answer.error or "no answer"
        if answer.address_refused:
            return Verdict("failed", error)
    else:
        said = answer.message()
        error = f"{answer.status}: {said}" if said else str(answer.status)
        if answer.status == 410:
            return Verdict("failed", f"{error} (the receiver asked to stop)")
        if 300 <= answer.status < 400:
            where = outbound.header(answer.headers, "location") or "elsewhere"
            error = f"{answer.status}: redirected to {where[:200]} (redirects are not followed)"
    if attempts > len(schedule):
        return Verdict("failed", f"{error} (after {attempts} attempts)")
    asked = outbound.retry_after(answer.headers, now)
    if asked is not None:
        return Verdict("retry", error, min(asked, LONGEST_ASKED_WAIT))
    # Up to a tenth less than the step, so endpoints that failed together spread out.
    step = schedule[attempts - 1]
    return Verdict("retry", error, step - (rng or random).uniform(0, step / 10))
