"""The Haut.ai-style API's rules: its dictionaries (image types with their sides and lights),
the fields of datasets, subjects and uploads, list parameters, the signed upload URL's
contract, and the reading of processing's analysis answers; and its limits.

Nothing here touches the database or the network.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime

from services.ingest.domain import parse_uuid
from shared import errors, signing
from shared.store_keys import derivatives_prefix

#: The longest name (and ``search`` term) of a dataset, subject or image, in characters.
MAX_NAME = 200
#: The most JSON a ``meta`` or ``app_args`` object may hold, in bytes.
MAX_META_BYTES = 16 * 1024
#: Paging of every list: ``page_size`` defaults to this and is capped at ``MAX_PAGE_SIZE``.
PAGE_SIZE, MAX_PAGE_SIZE = 20, 100
#: ``signed_url_expiration``: seconds a signed file URL stays valid (default, and most).
SIGNED_URL_SECONDS, MAX_SIGNED_URL_SECONDS = 60, 7 * 24 * 3600
#: How often a cascading delete retries when images or subjects keep arriving meanwhile.
CASCADE_ATTEMPTS = 5
#: The ``source`` of Haut.ai images in ``image.stored``.
SOURCE = "hautai"


@dataclass(frozen=True)
class Named:
    """An entry of a dictionary (an image type, a side, a light): ``{id, name, tech_name}``."""

    id: int
    name: str
    tech_name: str

    def as_dict(self) -> dict:
        """The seed's ``{id, name, tech_name}``."""
        return {"id": self.id, "name": self.name, "tech_name": self.tech_name}


@dataclass(frozen=True)
class ImageType(Named):
    """A dataset's kind of image with its sides and lights; the first of each is the default."""

    sides: tuple[Named, ...] = ()
    lights: tuple[Named, ...] = ()

    def side(self, side_id: int | None) -> Named:
        """The side ``side_id`` (the default for None); 422 naming the choices otherwise."""
        return _choose(self.sides, side_id, "side_id")

    def light(self, light_id: int | None) -> Named:
        """The light ``light_id`` (the default for None); 422 naming the choices otherwise."""
        return _choose(self.lights, light_id, "light_id")


def _choose(entries: tuple[Named, ...], wanted: int | None, field_name: str) -> Named:
    if wanted is None:
        return entries[0]
    for entry in entries:
        if entry.id == wanted:
            return entry
    choices = ", ".join(f"{e.id} ({e.tech_name})" for e in entries)
    raise errors.InvalidRequest(f"{field_name}: unknown id {wanted}; one of {choices}")


#: The image types of ``GET /api/v1/dicts/image_types/``, by id (the seed's sides and light).
IMAGE_TYPES = {
    t.id: t
    for t in (
        ImageType(
            1,
            "Face",
            "face",
            sides=(
                Named(1, "Front", "front"),
                Named(2, "Right", "right"),
                Named(3, "Left", "left"),
            ),
            lights=(Named(1, "Regular", "regular"),),
        ),
    )
}
DEFAULT_IMAGE_TYPE = 1

#: ``use`` claims of the signed grants of the Haut.ai API (declared with every purpose in
#: :mod:`shared.signing`): one upload of one image; reading an image or aux image.
HAUTAI_UPLOAD = signing.HAUTAI_UPLOAD
HAUTAI_FILE = signing.HAUTAI_FILE
#: Where a signed upload URL and a signed file URL point (the token follows).
UPLOAD_PATH = "/api/v1/uploads/"
FILE_PATH = "/api/v1/files/"
#: What a signed upload URL says to send, and what its ``PUT`` enforces.
UPLOAD_METHOD = "PUT"
UPLOAD_CONTENT_TYPE = "application/octet-stream"
LENGTH_RANGE_HEADER = "X-Goog-Content-Length-Range"

#: An image's ``status``: waiting for its bytes, uploaded, sent to compute, analysed, or the
#: analysis could not run at all.
PENDING, UPLOADED, COMPUTING, DONE, FAILED = "pending", "uploaded", "computing", "done", "failed"

#: ``ordering`` field → column, per list (``-`` in front: descending); the default ordering.
DATASET_ORDERING = ({"name": "name", "creation_time": "created_at", "id": "id"}, "-creation_time")
SUBJECT_ORDERING = (
    {"name": "name", "creation_time": "created_at", "birth_date": "birth_date", "id": "id"},
    "-creation_time",
)
IMAGE_ORDERING = (
    {
        "created_at": "created_at",
        "creation_time": "created_at",
        "name": "name",
        "quality_score": "quality_score",
        "id": "id",
    },
    "-created_at",
)

BIOLOGICAL_SEXES = ("male", "female")


def upload_headers(max_bytes: int) -> dict[str, str]:
    """The headers a signed upload URL lists (the seed's, with our byte limit)."""
    return {"Content-Type": UPLOAD_CONTENT_TYPE, LENGTH_RANGE_HEADER: f"1,{max_bytes}"}


def check_upload_request(
    content_type: str | None, length_range: str | None, content_length: int | None, max_bytes: int
) -> None:
    """Refuse a ``PUT`` to a signed upload URL that does not send what the URL lists, before
    its body is read: another content type → 415; a missing or different length-range header
    → 400; a declared length of 0 → 400 or above ``max_bytes`` → 413."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type != UPLOAD_CONTENT_TYPE:
        raise errors.UnsupportedMediaType(
            f"Send the image as Content-Type: {UPLOAD_CONTENT_TYPE}, as upload_url.headers says"
        )
    expected = f"1,{max_bytes}"
    if (length_range or "").replace(" ", "") != expected:
        raise errors.BadRequest(
            f"Send {LENGTH_RANGE_HEADER}: {expected}, as upload_url.headers says"
        )
    if content_length == 0:
        raise errors.BadRequest("The body is empty: send the image's bytes")
    if content_length is not None and content_length > max_bytes:
        raise errors.PayloadTooLarge(f"The image exceeds {max_bytes} bytes")


def _check_fields(body: dict, allowed: frozenset[str]) -> None:
    unknown = set(body) - allowed
    if unknown:
        raise errors.InvalidRequest(
            f"Unknown field: {sorted(unknown)[0]}; the fields are {', '.join(sorted(allowed))}"
        )


def _text(body: dict, name: str, *, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise errors.InvalidRequest(f"{name}: required")
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME:
        raise errors.InvalidRequest(f"{name}: a non-empty string of at most {MAX_NAME} characters")
    return value.strip()


def _json_object(body: dict, name: str) -> dict | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise errors.InvalidRequest(f"{name}: a JSON object or null")
    if len(json.dumps(value)) > MAX_META_BYTES:
        raise errors.InvalidRequest(f"{name}: at most {MAX_META_BYTES} bytes of JSON")
    return value


def _whole_number(body: dict, name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    # bool is an int in Python; true is not an id to a JSON client.
    if isinstance(value, bool) or not isinstance(value, int):
        raise errors.InvalidRequest(f"{name}: a whole number or null")
    return value


def _timestamp(body: dict, name: str) -> datetime | None:
    value = body.get(name)
    if value is None:
        return None
    try:
        if not isinstance(value, str):
            raise TypeError(name)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except (ValueError, TypeError):
        raise errors.InvalidRequest(f"{name}: an ISO 8601 date and time or null") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def image_type_of(type_id: int | None) -> ImageType:
    """The image type ``type_id`` (the default for None); 422 naming the choices otherwise."""
    if type_id is None:
        return IMAGE_TYPES[DEFAULT_IMAGE_TYPE]
    if type_id not in IMAGE_TYPES:
        choices = ", ".join(f"{t.id} ({t.tech_name})" for t in IMAGE_TYPES.values())
        raise errors.InvalidRequest(f"image_type_id: unknown id {type_id}; one of {choices}")
    return IMAGE_TYPES[type_id]


def parse_dataset(body: dict, *, partial: bool) -> dict[str, object]:
    """The columns a dataset create (``partial=False``: ``name`` required) or PATCH sets."""
    _check_fields(body, frozenset({"name", "image_type_id"}))
    changes: dict[str, object] = {}
    if "name" in body or not partial:
        changes["name"] = _text(body, "name", required=True)
    if "image_type_id" in body or not partial:
        changes["image_type_id"] = image_type_of(_whole_number(body, "image_type_id")).id
    return changes


def parse_subject(body: dict, *, partial: bool) -> dict[str, object]:
    """The columns a subject create (``partial=False``: ``name`` required) or PATCH sets:
    ``birth_date`` an ISO date, ``biological_sex`` one of :data:`BIOLOGICAL_SEXES`, ``meta`` an
    object; the last three may be null."""
    _check_fields(body, frozenset({"name", "birth_date", "biological_sex", "meta"}))
    changes: dict[str, object] = {}
    if "name" in body or not partial:
        changes["name"] = _text(body, "name", required=True)
    if "birth_date" in body:
        raw = body["birth_date"]
        try:
            changes["birth_date"] = None if raw is None else date.fromisoformat(raw)
        except (ValueError, TypeError):
            raise errors.InvalidRequest("birth_date: a date (YYYY-MM-DD) or null") from None
    if "biological_sex" in body:
        sex = body["biological_sex"]
        if sex is not None and sex not in BIOLOGICAL_SEXES:
            raise errors.InvalidRequest(
                f"biological_sex: one of {', '.join(BIOLOGICAL_SEXES)}, or null"
            )
        changes["biological_sex"] = sex
    if "meta" in body:
        changes["meta"] = _json_object(body, "meta")
    return changes


@dataclass(frozen=True)
class UploadRequest:
    """A validated ``signed_upload_url`` body (every field optional)."""

    batch_id: uuid.UUID | None
    side: Named
    light: Named
    meta: dict | None
    creation_time: datetime | None
    name: str | None
    app_args: dict | None


def parse_upload_request(body: dict, image_type: ImageType) -> UploadRequest:
    """Validate the seed's ``signed_upload_url`` body against the dataset's image type: the
    side and light default to the type's first; unknown ids and fields → 422."""
    _check_fields(
        body,
        frozenset({"batch_id", "side_id", "light_id", "meta", "creation_time", "name", "app_args"}),
    )
    batch_id = None
    if body.get("batch_id") is not None:
        batch_id = parse_uuid(body["batch_id"]) if isinstance(body["batch_id"], str) else None
        if batch_id is None:
            raise errors.InvalidRequest("batch_id: a batch id (UUID) or null")
    return UploadRequest(
        batch_id=batch_id,
        side=image_type.side(_whole_number(body, "side_id")),
        light=image_type.light(_whole_number(body, "light_id")),
        meta=_json_object(body, "meta"),
        creation_time=_timestamp(body, "creation_time"),
        name=_text(body, "name"),
        app_args=_json_object(body, "app_args"),
    )


def parse_compute(body: dict) -> dict | None:
    """The ``app_args`` of a compute request (``{}`` or ``{"app_args": null}``: none)."""
    _check_fields(body, frozenset({"app_args"}))
    return _json_object(body, "app_args")


def parse_ordering(
    raw: str | None, spec: tuple[dict[str, str], str]
) -> tuple[tuple[str, bool], ...]:
    """DRF's ``ordering``: comma-separated fields, ``-`` in front for descending, as
    ``(column, descending)`` pairs; a field not in the list's ``spec`` → 400 ``bad_request``."""
    allowed, default = spec
    text = raw if raw and raw.strip() else default
    order = []
    for part in text.split(","):
        part = part.strip()
        name = part.removeprefix("-")
        if name not in allowed:
            raise errors.BadRequest(
                f"ordering: unknown field {name!r}; order by {', '.join(sorted(allowed))}"
                " (prefix - for descending)"
            )
        order.append((allowed[name], part.startswith("-")))
    return tuple(order)


def search_term(raw: str | None) -> str | None:
    """``search``: a case-insensitive substring of the name (None: no filter)."""
    if raw is None or not raw.strip():
        return None
    if len(raw) > MAX_NAME:
        raise errors.BadRequest(f"search: at most {MAX_NAME} characters")
    return raw.strip()


def query_flag(raw: str | None, name: str) -> bool:
    """A boolean query parameter (``true``/``false``, ``1``/``0``; absent: false)."""
    value = (raw or "false").strip().lower()
    if value not in {"true", "false", "1", "0"}:
        raise errors.BadRequest(f"{name}: true or false")
    return value in {"true", "1"}


def signed_url_seconds(raw: str | None) -> int:
    """``signed_url_expiration``: whole seconds, 1 to seven days (default 60)."""
    if raw is None or raw == "":
        return SIGNED_URL_SECONDS
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_SIGNED_URL_SECONDS:
        raise errors.BadRequest(
            f"signed_url_expiration: whole seconds from 1 to {MAX_SIGNED_URL_SECONDS}"
        )
    return int(raw)


@dataclass(frozen=True)
class AuxSpec:
    """An aux image processing stored for an analysed image."""

    aux_image_type: str
    algo_app: str
    key: str
    media_type: str
    bytes: int
    width: int | None
    height: int | None


@dataclass(frozen=True)
class AnalysisOutcome:
    """What ``analysis.completed`` says about an image."""

    algorithm: str
    quality_score: float | None
    quality_feedback: str | None
    quality_issues: list[str]
    problems: list[str]
    quality_result: dict | None
    aux_images: tuple[AuxSpec, ...]


def read_analysis(data: dict, sha256: str) -> AnalysisOutcome:
    """An ``analysis.completed`` payload as stored fields; ``ValueError`` when malformed. Aux
    images outside the original's derivatives prefix are refused (they would outlive it)."""
    score = data.get("quality_score")
    if score is not None and (isinstance(score, bool) or not isinstance(score, int | float)):
        raise ValueError("quality_score must be a number")
    issues, problems = data.get("quality_issues") or [], data.get("problems") or []
    if not all(isinstance(code, str) for code in [*issues, *problems]):
        raise ValueError("quality_issues and problems must be lists of codes")
    feedback, result = data.get("quality_feedback"), data.get("quality_result")
    if (feedback is not None and not isinstance(feedback, str)) or (
        result is not None and not isinstance(result, dict)
    ):
        raise ValueError("quality_feedback must be a string, quality_result an object")
    prefix = derivatives_prefix(sha256)
    aux = []
    for entry in data.get("aux_images") or []:
        try:
            spec = AuxSpec(
                aux_image_type=str(entry["aux_image_type"]),
                algo_app=str(entry["algo_app"]),
                key=str(entry["key"]),
                media_type=str(entry["media_type"]),
                bytes=int(entry["bytes"]),
                width=None if entry.get("width") is None else int(entry["width"]),
                height=None if entry.get("height") is None else int(entry["height"]),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed aux image: {exc}") from exc
        if not spec.key.startswith(prefix):
            raise ValueError(f"aux image {spec.key} is not under {prefix}")
        aux.append(spec)
    return AnalysisOutcome(
        algorithm=str(data.get("algorithm") or ""),
        quality_score=None if score is None else float(score),
        quality_feedback=feedback,
        quality_issues=list(issues),
        problems=list(problems),
        quality_result=result,
        aux_images=tuple(aux),
    )
