"""The rules of Happo reports as plain values: what a valid request is (shas, projects,
snapshots, e-mail addresses, ...), what a comparison and a job's status are, what the signed
public links carry, and the records the use cases pass around. No I/O here. How two reports'
snapshots are matched and judged is :mod:`matching`'s.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from email.errors import HeaderParseError
from email.headerregistry import Address
from typing import Any

from shared.errors import BadRequest, InvalidRequest
from shared.image_urls import happo_hash_of_url, happo_images_path
from shared.signing import Signer

DEFAULT_PROJECT = ""
#: The longest report identifier (a commit sha, a branch-qualified name, a nonce).
MAX_SHA = 200
_SHA = re.compile(rf"^[\w.:@+~=-]{{1,{MAX_SHA}}}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: Control characters no e-mail value may carry (C0, DEL, C1, and the Unicode line breaks).
MAIL_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
MAX_NAME = 500
MAX_TEXT = 2000
#: Ignored diffs per page of ``GET /api/flake``, by default and at most.
FLAKE_PAGE = 50
MAX_FLAKE_PAGE = 500
#: Most ids, projects or shas one request may list.
MAX_LISTED = 100
#: Most addresses one ``notify`` value may name.
MAX_ADDRESSES = 100
#: RFC 5321's limit on a forward path (256 octets) less its angle brackets.
MAX_ADDRESS_LENGTH = 254
#: Hex digits of the signature of a status-badge URL and of an unsubscribe link (the wire
#: format of links already in READMEs and sent e-mails: they must keep working).
BADGE_DIGITS = 24
UNSUBSCRIBE_DIGITS = 32

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
    """A report identifier (a commit sha in practice): 1 to :data:`MAX_SHA` letters, digits or
    ``._:@+~=-``."""
    if not _SHA.match(value):
        raise BadRequest(f"`{name}` must be 1 to {MAX_SHA} letters, digits or ._:@+~=- characters")
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
    if len(value) > MAX_LISTED:
        raise InvalidRequest(f"`{name}` takes at most {MAX_LISTED} ids")
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
    image_hash = happo_hash_of_url(item.get("url"), account_id, public_url)
    if image_hash is None:
        raise InvalidRequest(
            f"{where}: `url` must be the url of an image this account uploaded"
            " (GET /api/images/:hash/upload-url gives it)"
        )
    return SnapInput(image_hash=image_hash, **names, **sizes)


def parse_id(raw: str | None, limit: int = 10**18, minimum: int = 1) -> int | None:
    """A whole number from ``minimum`` to ``limit`` written in ASCII digits, else None
    (``str.isdigit`` alone accepts "²", which ``int`` refuses)."""
    if raw is None or not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        return None
    value = int(raw)
    return value if minimum <= value <= limit else None


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


def parse_projects(value: object) -> list[str]:
    """An orchestration's ``projects``: 1 to 100 project names, each once."""
    if (
        not isinstance(value, list)
        or not value
        or len(value) > MAX_LISTED
        or not all(isinstance(p, str) for p in value)
    ):
        raise InvalidRequest(f"`projects` must be a list of 1 to {MAX_LISTED} project names")
    return list(dict.fromkeys(parse_project(p) for p in value))


def parse_cancel_status(body: Mapping[str, Any]) -> str:
    """The status a cancelled job settles with (absent: ``failure``)."""
    status = body.get("status", FAILURE)
    if status not in (FAILURE, SUCCESS):
        raise InvalidRequest('`status` must be "failure" or "success"')
    return str(status)


def parse_request_ids(value: object) -> list[int]:
    """An async report's ``requestIds``: snap request ids."""
    if not isinstance(value, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) and i > 0 for i in value
    ):
        raise InvalidRequest("`requestIds` must be a list of snap request ids")
    return value


def parse_snapshot_id(value: object, name: str) -> int:
    """A snapshot id, as a number or a string of digits."""
    if isinstance(value, str):
        value = parse_id(value)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidRequest(f"`{name}` must be a snapshot id")
    return value


def parse_whole(raw: str | None, default: int, high: int) -> int:
    """An optional query number from 1 to ``high`` (a page, a page size)."""
    if raw is None:
        return default
    value = parse_id(raw, high)
    if value is None:
        raise BadRequest(f"Expected a whole number from 1 to {high}, got {raw!r}")
    return value


def parse_component(value: str) -> str:
    """A component named in a subscription's path."""
    if not value or len(value) > MAX_NAME:
        raise InvalidRequest("The component name is 1 to 500 characters")
    return value


def parse_subscribers(value: object) -> list[str]:
    """A subscription change's ``emailAddresses``: a non-empty list of addresses."""
    if not isinstance(value, list) or not value:
        raise InvalidRequest("`emailAddresses` must be a non-empty list of addresses")
    return parse_addresses(value, field="emailAddresses")


@dataclass(frozen=True)
class CompareRequest:
    """A compare call as the client made it."""

    project: str
    sha1: str
    sha2: str
    is_async: bool
    fallback_shas: list[str]
    link: str | None
    message: str | None
    notify: list[str]


def parse_compare(body: Mapping[str, Any], project: str, sha1: str, sha2: str) -> CompareRequest:
    """The body of ``POST /api/reports/:sha1/compare/:sha2``; a report is never compared with
    itself."""
    request = CompareRequest(
        project=project,
        sha1=sha1,
        sha2=sha2,
        is_async=parse_flag(body.get("isAsync"), "isAsync"),
        fallback_shas=parse_shas(body.get("fallbackShas"), "fallbackShas"),
        link=parse_text(body.get("link"), "link"),
        message=parse_text(body.get("message"), "message"),
        notify=parse_addresses(body.get("notify")),
    )
    if sha1 == sha2:
        raise InvalidRequest("A report cannot be compared with itself")
    return request


# --- e-mail addresses -------------------------------------------------------------------------

# RFC 5322 dot-atom: what real mailboxes use; quoted local parts are valid but not plausible.
_LOCAL_PART = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


def _shown(value: str) -> str:
    """``value`` quoted for an error message: escaped, and cut when long."""
    return repr(value if len(value) <= 80 else value[:77] + "...")


def _address(item: object, field: str) -> str:
    """One plausible address, domain lower-cased (IDNA-encoded when not ASCII), or 422."""
    if not isinstance(item, str):
        raise InvalidRequest(f"{field}: every address must be a string")
    bad = InvalidRequest(f"{field}: {_shown(item)} is not a valid e-mail address")
    # Checked before trimming: a CR/LF anywhere is an injection attempt, not whitespace.
    if MAIL_CONTROL.search(item):
        raise bad
    text = item.strip()
    if not text or len(text) > MAX_ADDRESS_LENGTH or "," in text:
        raise bad
    try:
        parsed = Address(addr_spec=text)
    except (ValueError, IndexError, TypeError, HeaderParseError):
        # email's parser raises a zoo of errors on garbage; all mean "not an address".
        raise bad from None
    # The parser tolerates comments and spaces ("a (x) @b.com"): only a round trip is plain.
    if parsed.display_name or parsed.addr_spec != text:
        raise bad
    local, domain = parsed.username, parsed.domain.lower()
    if len(local) > 64 or not _LOCAL_PART.fullmatch(local):
        raise bad
    try:
        domain = domain.encode("idna").decode("ascii") if not domain.isascii() else domain
    except UnicodeError:
        raise bad from None
    labels = domain.split(".")
    if len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels):
        raise bad
    if labels[-1].isdigit():  # an IP address is not a mail domain here
        raise bad
    address = f"{local}@{domain}"
    if len(address) > MAX_ADDRESS_LENGTH:
        raise bad
    return address


def parse_addresses(
    value: object, *, field: str = "notify", limit: int = MAX_ADDRESSES
) -> list[str]:
    """Validate the e-mail addresses of a Happo ``notify`` value.

    ``value`` is a list of strings or one comma-separated string (``None`` or blank: none).
    Each address is trimmed and must be a single plain ``local@domain`` (no display name, no
    comment, no CR/LF, at most 254 characters, a dotted domain); the domain is lower-cased,
    the local part kept as given. Duplicates are dropped, the first kept; more than ``limit``
    distinct addresses is refused. Raises :class:`InvalidRequest` naming the bad value.
    """
    if value is None:
        return []
    if isinstance(value, str):
        # In a comma-separated string an empty piece is a stray separator ("a@x.io, ").
        items: list[object] = [piece for piece in value.split(",") if piece.strip()]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise InvalidRequest(
            f"{field} must be a list of e-mail addresses or a comma-separated string"
        )
    addresses: list[str] = []
    seen: set[str] = set()
    for item in items:
        address = _address(item, field)
        if address in seen:
            continue
        if len(addresses) >= limit:
            raise InvalidRequest(f"{field}: at most {limit} addresses")
        seen.add(address)
        addresses.append(address)
    return addresses


# --- snapshots --------------------------------------------------------------------------------


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


# --- outcomes ---------------------------------------------------------------------------------


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


#: The kinds of entries that are changes a person reviews (the order a comparison page lists
#: them in); unchanged entries are only counted.
CHANGE_KINDS = ("diff", "added", "deleted")
#: A review form's word for what a person decides about a change, and the decision stored.
#: ``ignore`` applies to diffs only: it also marks the pair of images as noise for later runs.
ENTRY_DECISIONS = {"accept": "accepted", "reject": "rejected", "ignore": "ignored"}


@dataclass(frozen=True)
class Decisions:
    """How a comparison's changes stand: how many wait and how many were decided each way."""

    undecided: int = 0
    accepted: int = 0
    rejected: int = 0
    ignored: int = 0

    @classmethod
    def of(cls, counts: Mapping[str | None, int]) -> Decisions:
        """From counts by stored decision (None for a change nobody decided yet)."""
        return cls(
            undecided=counts.get(None, 0),
            accepted=counts.get("accepted", 0),
            rejected=counts.get("rejected", 0),
            ignored=counts.get("ignored", 0),
        )

    @property
    def review(self) -> str | None:
        """The comparison's review, derived from its changes: ``rejected`` as soon as one
        is, ``accepted`` once every change is accepted or ignored, None while any waits (a
        comparison without changes needs no review)."""
        if self.rejected:
            return "rejected"
        if self.undecided == 0 and (self.accepted or self.ignored):
            return "accepted"
        return None


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


# --- public links ---------------------------------------------------------------------------


def image_base(public_url: str, account_id: str) -> str:
    """The prefix of the account's absolute Happo image URLs (the hash follows)."""
    return public_url.rstrip("/") + happo_images_path(account_id)


def unsubscribe_token(signer: Signer, account_id: str, components: list[str], email: str) -> str:
    """A link token that lets one address leave the subscriptions of the components a mail
    was about (permanent: a sent e-mail's link must keep working)."""
    return signer.seal([account_id, components, email])


def read_unsubscribe_token(signer: Signer, token: str) -> tuple[str, list[str], str] | None:
    """``(account_id, components, email)`` of a valid token, else None."""
    try:
        account_id, components, email = signer.unseal(token)
    except (ValueError, TypeError):
        return None
    if not isinstance(components, list) or not all(isinstance(c, str) for c in components):
        return None
    return str(account_id), components, str(email)


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
