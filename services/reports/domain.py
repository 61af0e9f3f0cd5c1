"""The rules of Happo reports as plain values: what a valid sha, project and snapshot are, how
two reports' snapshots are matched and judged, what a comparison and a job's status are, and
the signed public links. No I/O here."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from html import escape
from typing import Any
from urllib.parse import urlsplit

from shared.errors import BadRequest, InvalidRequest

DEFAULT_PROJECT = ""
_SHA = re.compile(r"^[\w.:@+~=-]{1,200}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_IMAGE_PATH = re.compile(r"^/img/(?P<account>[0-9a-f-]{36})/(?P<hash>[A-Za-z0-9_-]{1,128})$")
MAX_NAME = 500
MAX_TEXT = 2000

#: Fields the real clients send to compare besides the seed's (accepted, not all used).
COMPARE_FIELDS = frozenset(
    {
        "project",
        "link",
        "message",
        "notify",
        "isAsync",
        "fallbackShas",
        "author",
        "skipStatusPost",
        "deepCompare",
    }
)
REPORT_FIELDS = frozenset({"snaps", "project", "link", "message", "partial"})
SNAP_FIELDS = frozenset({"component", "variant", "target", "url", "width", "height"})
#: Sent by happo.io along with a snapshot; carried no meaning for us.
SNAP_EXTRA_FIELDS = frozenset({"snapRequestId", "stacked", "id"})

PENDING = "pending"
SUCCESS = "success"
FAILURE = "failure"
AWAITING_REVIEW = "awaiting review"


# --- input ----------------------------------------------------------------------------------


def parse_sha(value: str, name: str = "sha") -> str:
    """A report identifier (a commit sha in practice): 1 to 200 letters, digits or ``._:@+~=-``."""
    if not _SHA.match(value):
        raise BadRequest(f"`{name}` must be 1 to 200 letters, digits or ._:@+~=- characters")
    return value


def parse_project(value: object) -> str:
    """The project name (absent or null: the default project)."""
    if value is None:
        return DEFAULT_PROJECT
    return parse_text(value, "project", MAX_NAME) or DEFAULT_PROJECT


def parse_text(value: object, name: str, limit: int = MAX_TEXT) -> str | None:
    """An optional one-line string (``link``, ``message``, ``label``)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"`{name}` must be a string")
    if len(value) > limit or _CONTROL.search(value.replace("\n", " ").replace("\t", " ")):
        raise InvalidRequest(f"`{name}` must be at most {limit} printable characters")
    return value


def parse_flag(value: object, name: str) -> bool:
    """An optional boolean (absent: false)."""
    if value is None:
        return False
    if not isinstance(value, bool):
        raise InvalidRequest(f"`{name}` must be true or false")
    return value


def refuse_unknown(body: Mapping[str, Any], known: frozenset[str], what: str) -> None:
    """422 naming the first field of ``body`` that ``known`` does not list."""
    unknown = sorted(set(body) - known)
    if unknown:
        raise InvalidRequest(f"Unknown field in {what}: `{unknown[0]}`")


def parse_shas(value: object, name: str) -> list[str]:
    """A list of shas; a comma-separated string is split (older clients send one)."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidRequest(f"`{name}` must be a list of report ids")
    if len(value) > 100:
        raise InvalidRequest(f"`{name}` takes at most 100 ids")
    return [parse_sha(v, name) for v in value]


@dataclass(frozen=True)
class SnapInput:
    """A snapshot as a client posted it, before its image is looked up."""

    component: str
    variant: str
    target: str
    image_hash: str
    width: int
    height: int

    @property
    def key(self) -> tuple[str, str, str]:
        """What matches it with the other report's snapshot."""
        return (self.component, self.variant, self.target)


def parse_snaps(
    value: object, account_id: str, public_url: str, limit: int, what: str = "snaps"
) -> list[SnapInput]:
    """Validate a list of snapshot objects; their ``url`` must name an image of this account
    (``<public url>/img/<account id>/<hash>``, or that path alone)."""
    if not isinstance(value, list):
        raise InvalidRequest(f"`{what}` must be a list of snapshot objects")
    if len(value) > limit:
        raise InvalidRequest(f"`{what}` holds at most {limit} snapshots")
    return [_parse_snap(item, i, account_id, public_url, what) for i, item in enumerate(value)]


def _parse_snap(item: object, i: int, account_id: str, public_url: str, what: str) -> SnapInput:
    where = f"{what}[{i}]"
    if not isinstance(item, dict):
        raise InvalidRequest(f"{where} must be an object")
    refuse_unknown(item, SNAP_FIELDS | SNAP_EXTRA_FIELDS, where)
    names = {}
    for name in ("component", "variant", "target"):
        text = item.get(name)
        if not isinstance(text, str) or not text.strip():
            raise InvalidRequest(f"{where}: `{name}` is required (a non-empty string)")
        if len(text) > MAX_NAME or _CONTROL.search(text):
            raise InvalidRequest(f"{where}: `{name}` must be at most {MAX_NAME} printable chars")
        names[name] = text
    sizes = {}
    for name in ("width", "height"):
        number = item.get(name)
        if isinstance(number, bool) or not isinstance(number, int) or not 0 < number <= 100_000:
            raise InvalidRequest(f"{where}: `{name}` must be a positive whole number of pixels")
        sizes[name] = number
    image_hash = image_hash_of(item.get("url"), account_id, public_url)
    if image_hash is None:
        raise InvalidRequest(
            f"{where}: `url` must be the url of an image this account uploaded"
            " (GET /api/images/:hash/upload-url gives it)"
        )
    return SnapInput(image_hash=image_hash, **names, **sizes)


def image_hash_of(url: object, account_id: str, public_url: str) -> str | None:
    """The Image API hash in an image ``url`` of this account, or None."""
    if not isinstance(url, str) or len(url) > 2048:
        return None
    base = public_url.rstrip("/")
    if url.startswith(base + "/"):
        url = url[len(base) :]
    elif not url.startswith("/"):
        return None
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        return None
    match = _IMAGE_PATH.match(parts.path)
    if match is None or match["account"] != account_id:
        return None
    return match["hash"]


def parse_id(raw: str | None, limit: int = 10**18, minimum: int = 1) -> int | None:
    """A whole number from ``minimum`` to ``limit`` written in ASCII digits, else None
    (``str.isdigit`` alone accepts "²", which ``int`` refuses)."""
    if raw is None or not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        return None
    value = int(raw)
    return value if minimum <= value <= limit else None


# --- snapshots and matching -------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """A stored snapshot: what it shows and the image it is."""

    id: int
    component: str
    variant: str
    target: str
    url: str
    sha256: str
    blob_key: str
    width: int
    height: int

    @property
    def key(self) -> tuple[str, str, str]:
        """What matches it with the other report's snapshot."""
        return (self.component, self.variant, self.target)

    def to_api(self) -> dict[str, Any]:
        """The seed's Snapshot object."""
        return {
            "id": self.id,
            "url": self.url,
            "component": self.component,
            "variant": self.variant,
            "target": self.target,
            "width": self.width,
            "height": self.height,
        }

    def to_record(self) -> dict[str, Any]:
        """Everything, for the copy a comparison keeps."""
        return asdict(self)

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Snapshot:
        """The inverse of :meth:`to_record`."""
        return cls(**{name: record[name] for name in cls.__dataclass_fields__})


def ignored_pair(first_sha256: str, second_sha256: str) -> tuple[str, str]:
    """An ignored diff's key: the two images in a fixed order (either order is the same)."""
    return (
        (first_sha256, second_sha256)
        if first_sha256 <= second_sha256
        else (
            second_sha256,
            first_sha256,
        )
    )


@dataclass
class Entry:
    """One line of a comparison."""

    kind: str  # added, deleted, unchanged, diff, pending (waiting for the pixel diff)
    component: str
    before: Snapshot | None
    after: Snapshot | None
    ignored: bool = False
    changed_pixels: int | None = None
    total_pixels: int | None = None
    bbox: list[int] | None = None
    diff_key: str | None = None
    error: str | None = None
    #: Its place in the comparison once stored (names its diff image).
    position: int | None = None


@dataclass(frozen=True)
class PixelResult:
    """What processing found for a pair of images."""

    changed_pixels: int
    total_pixels: int
    bbox: list[int] | None
    diff_key: str | None
    error: str | None = None

    @property
    def differs(self) -> bool:
        """True when the pair counts as a diff."""
        return self.error is not None or self.changed_pixels > 0


def match_snapshots(
    before: Iterable[Snapshot],
    after: Iterable[Snapshot],
    *,
    ignored: set[tuple[str, str]],
    skipped: set[tuple[str, ...]],
    known: Mapping[tuple[str, str], PixelResult],
) -> list[Entry]:
    """Pair the snapshots of two reports by (component, variant, target) and judge each pair.

    Same content is ``unchanged`` without looking at a pixel; an ignored pair is ``unchanged``
    (marked ``ignored``); a pair whose pixel diff is already ``known`` is judged by it; the rest
    are ``pending`` until processing diffs them. A before-snapshot the after report skipped on
    purpose (``skipped`` holds (component,) or (component, variant) or the full key) is not
    ``deleted``.
    """
    earlier = {snapshot.key: snapshot for snapshot in before}
    entries: list[Entry] = []
    for snapshot in after:
        old = earlier.pop(snapshot.key, None)
        if old is None:
            entries.append(Entry("added", snapshot.component, None, snapshot))
        elif old.sha256 == snapshot.sha256:
            entries.append(Entry("unchanged", snapshot.component, old, snapshot))
        elif ignored_pair(old.sha256, snapshot.sha256) in ignored:
            entries.append(Entry("unchanged", snapshot.component, old, snapshot, ignored=True))
        else:
            entry = Entry("pending", snapshot.component, old, snapshot)
            result = known.get((old.sha256, snapshot.sha256))
            if result is not None:
                judge(entry, result)
            entries.append(entry)
    for old in earlier.values():
        key = old.key
        if key[:1] in skipped or key[:2] in skipped or key in skipped:
            continue
        entries.append(Entry("deleted", old.component, old, None))
    return entries


def judge(entry: Entry, result: PixelResult) -> None:
    """Settle a pending entry with its pixel diff."""
    entry.kind = "diff" if result.differs else "unchanged"
    entry.changed_pixels = result.changed_pixels
    entry.total_pixels = result.total_pixels
    entry.bbox = result.bbox
    entry.diff_key = result.diff_key
    entry.error = result.error


def parse_skipped(value: object) -> list[list[str]]:
    """``skip`` (happo v6: ``[{component, variant?, target?}]``) or ``skippedExamples`` (happo-e2e
    v5: the same or strings) as a list of keys of 1 to 3 parts."""
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > 100_000:
        raise InvalidRequest("`skip` must be a list of {component, variant, target} objects")
    keys = []
    for item in value:
        if isinstance(item, str):
            keys.append([item])
            continue
        if not isinstance(item, dict) or not isinstance(item.get("component"), str):
            raise InvalidRequest("each skipped example needs a `component`")
        key = [item["component"]]
        for name in ("variant", "target"):
            if isinstance(item.get(name), str):
                key.append(item[name])
            else:
                break
        keys.append(key)
    return keys


# --- outcomes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tally:
    """How many entries of each kind a comparison has."""

    diffs: int = 0
    added: int = 0
    deleted: int = 0
    unchanged: int = 0
    pending: int = 0

    @classmethod
    def of(cls, kinds: Mapping[str, int]) -> Tally:
        """From counts by kind."""
        return cls(
            diffs=kinds.get("diff", 0),
            added=kinds.get("added", 0),
            deleted=kinds.get("deleted", 0),
            unchanged=kinds.get("unchanged", 0),
            pending=kinds.get("pending", 0),
        )

    @property
    def equal(self) -> bool:
        """True when nothing was added, deleted or changed."""
        return self.diffs == 0 and self.added == 0 and self.deleted == 0 and self.pending == 0


def summary(tally: Tally) -> str:
    """The one-line summary the clients print."""
    if tally.equal:
        return f"No differences ({_count(tally.unchanged, 'unchanged snapshot')})"
    parts = [
        _count(tally.diffs, "diff"),
        f"{tally.added} added",
        f"{tally.deleted} deleted",
        f"{tally.unchanged} unchanged",
    ]
    return ", ".join(parts)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def comparison_status(done: bool, equal: bool | None, review: str | None) -> str:
    """The ComparisonStatus value: ``success`` when equal or accepted, ``failure`` when
    rejected, ``awaiting review`` when it has diffs nobody judged; ``pending`` until the
    comparison has run (an async comparison waiting for its reports or its pixel diffs)."""
    if review == "accepted":
        return SUCCESS
    if review == "rejected":
        return FAILURE
    if not done:
        return PENDING
    return SUCCESS if equal else AWAITING_REVIEW


def build_status(comparison_state: str) -> str:
    """The Comparison object's ``status`` (and a job's): only ``success`` or ``failure`` once
    decided; a comparison awaiting review is a failing build until someone accepts it."""
    return FAILURE if comparison_state == AWAITING_REVIEW else comparison_state


def combine(statuses: Iterable[str]) -> str:
    """An orchestration job's one status from its projects': pending while any is, then
    failure when any failed, else success."""
    values = list(statuses)
    if not values or PENDING in values:
        return PENDING
    return FAILURE if FAILURE in values else SUCCESS


def diff_components(entries: Iterable[Entry]) -> list[str]:
    """Components with a diff, an added or a deleted snapshot (in first-seen order)."""
    seen: dict[str, None] = {}
    for entry in entries:
        if entry.kind in {"diff", "added", "deleted"}:
            seen.setdefault(entry.component, None)
    return list(seen)


# --- signed public links ----------------------------------------------------------------------


def badge_signature(key: str, comparison_id: int) -> str:
    """The part of a status-image URL that makes it unguessable (it is public, for READMEs and
    pull-request pages)."""
    mac = hmac.new(key.encode(), f"badge:{comparison_id}".encode(), hashlib.sha256)
    return mac.hexdigest()[:24]


def unsubscribe_token(key: str, account_id: str, components: list[str], email: str) -> str:
    """A link token that lets one address leave the subscriptions of the components a mail
    was about."""
    payload = json.dumps([account_id, components, email], separators=(",", ":")).encode()
    body = base64.urlsafe_b64encode(payload).decode().rstrip("=")
    mac = hmac.new(key.encode(), b"unsubscribe:" + body.encode(), hashlib.sha256).hexdigest()
    return f"{body}.{mac[:32]}"


def read_unsubscribe_token(key: str, token: str) -> tuple[str, list[str], str] | None:
    """``(account_id, components, email)`` of a valid token, else None."""
    body, _, mac = token.partition(".")
    expected = hmac.new(key.encode(), b"unsubscribe:" + body.encode(), hashlib.sha256)
    if not mac or not hmac.compare_digest(mac.encode(), expected.hexdigest()[:32].encode()):
        return None
    try:
        account_id, components, email = json.loads(base64.urlsafe_b64decode(body + "==="))
    except (ValueError, TypeError):
        return None
    if not isinstance(components, list) or not all(isinstance(c, str) for c in components):
        return None
    return str(account_id), components, str(email)


_BADGE_COLOURS = {
    SUCCESS: "#2e7d32",
    FAILURE: "#c62828",
    AWAITING_REVIEW: "#ef6c00",
    PENDING: "#757575",
}


def status_badge(status: str, message: str) -> str:
    """An SVG badge (shields-style, no external assets) for a comparison's status."""
    label = "darkroom"
    label_w = 8 + 7 * len(label)
    message_w = 10 + 7 * len(message)
    width = label_w + message_w
    colour = _BADGE_COLOURS.get(status, "#757575")
    text = escape(message)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="20" role="img"'
        f' aria-label="{label}: {text}"><title>{label}: {text}</title>'
        f'<rect width="{label_w}" height="20" fill="#555"/>'
        f'<rect x="{label_w}" width="{message_w}" height="20" fill="{colour}"/>'
        '<g fill="#fff" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11">'
        f'<text x="5" y="14">{label}</text>'
        f'<text x="{label_w + 5}" y="14">{text}</text></g></svg>'
    )


def badge_message(status: str, tally: Tally | None) -> str:
    """The words on a comparison's badge."""
    if status == PENDING or tally is None:
        return "pending"
    if status == SUCCESS and tally.equal:
        return "no diffs"
    if status == SUCCESS:
        return "accepted"
    if status == FAILURE and tally.diffs + tally.added + tally.deleted == 0:
        return "rejected"
    changes = tally.diffs + tally.added + tally.deleted
    return f"{changes} diff" if changes == 1 else f"{changes} diffs"


# --- records ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    """A stored report (without its snapshots)."""

    id: int
    account_id: str
    project: str
    sha: str
    link: str | None
    message: str | None
    partial: bool
    nonce: str | None
    completed_at: Any
    created_at: Any
    revision: int
    cloned_from: int | None
    skipped: list
    complete_when_rendered: bool
    render_errors: list
    snapshot_count: int

    @property
    def complete(self) -> bool:
        """True once every partial is in (always for a report posted whole)."""
        return self.completed_at is not None

    def skipped_keys(self) -> set[tuple[str, ...]]:
        """The skipped examples as keys of 1 to 3 parts."""
        return {tuple(key) for key in self.skipped}


@dataclass(frozen=True)
class SnapRequest:
    """A numbered batch of snapshots an async report is assembled from: taken by the client
    (done at once) or rendered here (pending until a renderer finishes it)."""

    id: int
    state: str
    snaps: list
    request_type: str | None = None
    target_name: str | None = None
    error: str | None = None

    @property
    def pending(self) -> bool:
        """True while a renderer has yet to finish it."""
        return self.state == "pending"


@dataclass(frozen=True)
class Comparison:
    """A stored comparison (without its entries)."""

    id: int
    account_id: str
    project: str
    sha1: str
    sha2: str
    fallback_shas: list[str]
    link: str | None
    message: str | None
    notify: list[str]
    state: str
    before_report_id: int | None
    after_report_id: int | None
    before_sha: str | None
    before_revision: int | None
    after_revision: int | None
    threshold: float
    include_anti_aliasing: bool
    equal: bool | None
    summary: str | None
    review: str | None
    reviewed_by: str | None
    reviewed_at: Any
    created_at: Any
    completed_at: Any

    @property
    def done(self) -> bool:
        """True once every entry is judged."""
        return self.state == "done"

    @property
    def status(self) -> str:
        """Its ComparisonStatus value."""
        return comparison_status(self.done, self.equal, self.review)


@dataclass(frozen=True)
class Job:
    """A stored job: one project's, or an orchestration job (``project`` None)."""

    id: int
    account_id: str
    sha1: str
    sha2: str
    project: str | None
    parent_id: int | None
    link: str | None
    message: str | None
    cancelled_status: str | None
    cancel_message: str | None
    created_at: Any
    updated_at: Any
