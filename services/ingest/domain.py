"""Ingest's rules as plain computation: content sniffing, image validation (libvips), blob
keys, signed URLs, client hashes, file paths, HTTP delivery (ETag, Range), Progimage requests
and the Haut.ai-style subjects API's fields, dictionaries and list parameters.

Nothing here touches the database or the network; libvips runs on bytes already in memory.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import secrets
import unicodedata
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

import pyvips

from shared import errors
from shared.derivatives import (
    OPTION_NAMES,
    Transform,
    derivatives_prefix,
    output_format,
    parse_options,
)
from shared.imaging import refuse_untrusted_loaders
from shared.signing import sign_token, verify_token

if TYPE_CHECKING:
    from services.ingest.config import IngestConfig

refuse_untrusted_loaders()

#: Prefix of every content-addressed key in the blob store.
BLOB_PREFIX = "sha256/"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_BLOB_KEY = re.compile(r"^sha256/([0-9a-f]{2})/([0-9a-f]{2})/([0-9a-f]{64})$")
#: What a Happo client may use as an image hash (md5 hex in practice; any URL-safe token).
HAPPO_HASH = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_EXTENSION = re.compile(r"^[A-Za-z0-9]{1,10}$")
#: Bytes read for sniffing (the longest signature we look at is well inside).
SNIFF_BYTES = 512


@dataclass(frozen=True)
class Kind:
    """A sniffed content type: its media type, usual extension and whether it is an image."""

    media_type: str
    extension: str
    image: bool = False


PNG = Kind("image/png", "png", image=True)
JPEG = Kind("image/jpeg", "jpg", image=True)
GIF = Kind("image/gif", "gif", image=True)
WEBP = Kind("image/webp", "webp", image=True)
PDF = Kind("application/pdf", "pdf")
ZIP = Kind("application/zip", "zip")
HTML = Kind("text/html", "html")
TEXT = Kind("text/plain", "txt")
BINARY = Kind("application/octet-stream", "bin")

#: Media types served inline; everything else is an attachment in a sandbox.
INLINE_TYPES = frozenset(k.media_type for k in (PNG, JPEG, GIF, WEBP))
_IMAGE_FORMATS = {
    PNG.media_type: "png",
    JPEG.media_type: "jpeg",
    GIF.media_type: "gif",
    WEBP.media_type: "webp",
}
_HTML_MARKERS = (b"<!doctype html", b"<html", b"<head", b"<body", b"<script", b"<iframe", b"<svg")


def sniff(head: bytes) -> Kind:
    """The type of content starting with ``head``, from its bytes alone (never from a name)."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith((b"GIF87a", b"GIF89a")):
        return GIF
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return WEBP
    if head.startswith(b"%PDF-"):
        return PDF
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return ZIP
    stripped = head.removeprefix(b"\xef\xbb\xbf").lstrip().lower()
    if stripped.startswith(_HTML_MARKERS) or (
        stripped.startswith(b"<?xml") and b"<svg" in stripped
    ):
        return HTML
    if b"\x00" not in head and _is_text(head):
        return TEXT
    return BINARY


def _is_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut by the sniff window is still text.
        if exc.start < len(head) - 3:
            return False
        text = head[: exc.start].decode("utf-8")
    return all(ch in "\t\n\r\f" or unicodedata.category(ch)[0] != "C" for ch in text)


@dataclass(frozen=True)
class Limits:
    """What an upload may be: bytes, and for images pixels (all frames) and frames."""

    max_bytes: int
    max_pixels: int
    max_frames: int

    @classmethod
    def of(cls, config: IngestConfig) -> Limits:
        """The limits the configuration sets on every upload."""
        return cls(config.max_upload_bytes, config.max_pixels, config.max_frames)


@dataclass(frozen=True)
class Content:
    """Validated upload content: its digest, size, type and, for images, its geometry."""

    sha256: str
    size: int
    media_type: str
    extension: str
    format: str | None = None
    width: int | None = None
    height: int | None = None
    frames: int | None = None

    @property
    def image(self) -> bool:
        """True for the image formats we decode."""
        return self.format is not None


def examine(data: bytes, limits: Limits, *, accept: frozenset[Kind] | None = None) -> Content:
    """Validate ``data`` and describe it; CPU-bound (decodes images), run it off the loop.

    Images are checked against the pixel and frame limits from their header, before any pixel
    is decoded, then decoded fully once so truncated or fake images are refused (422). With
    ``accept``, content of any other sniffed kind is refused (415).
    """
    if not data:
        raise errors.BadRequest("The file is empty")
    if len(data) > limits.max_bytes:
        raise errors.PayloadTooLarge(f"The file exceeds {limits.max_bytes} bytes")
    kind = sniff(data[:SNIFF_BYTES])
    if accept is not None and kind not in accept:
        names = ", ".join(sorted(k.extension.upper() for k in accept))
        raise errors.UnsupportedMediaType(f"Only {names} files are accepted here")
    digest = hashlib.sha256(data).hexdigest()
    if not kind.image:
        return Content(digest, len(data), kind.media_type, kind.extension)
    width, height, frames = _image_geometry(data, kind, limits)
    return Content(
        digest,
        len(data),
        kind.media_type,
        kind.extension,
        format=_IMAGE_FORMATS[kind.media_type],
        width=width,
        height=height,
        frames=frames,
    )


def _image_geometry(data: bytes, kind: Kind, limits: Limits) -> tuple[int, int, int]:
    name = _IMAGE_FORMATS[kind.media_type].upper()
    try:
        # Opening reads the header only: no pixel is decoded yet.
        header = pyvips.Image.new_from_buffer(data, "", access="sequential", fail=True)
        if header.get("vips-loader") != f"{_IMAGE_FORMATS[kind.media_type]}load_buffer":
            raise errors.InvalidRequest(f"The file is not a valid {name} image")
        frames = header.get("n-pages") if header.get_typeof("n-pages") else 1
        width, height = header.width, header.height
    except pyvips.Error as exc:
        raise errors.InvalidRequest(f"The file is not a valid {name} image") from exc
    if frames > limits.max_frames:
        raise errors.InvalidRequest(f"The image has {frames} frames; at most {limits.max_frames}")
    if width * height * frames > limits.max_pixels:
        raise errors.InvalidRequest(
            f"The image is {width}x{height} pixels x {frames} frames;"
            f" at most {limits.max_pixels} pixels in all"
        )
    try:
        options = {"n": -1} if frames > 1 else {}
        decoded = pyvips.Image.new_from_buffer(data, "", access="sequential", fail=True, **options)
        # Forces every pixel through the decoder once: truncated or corrupt data fails here.
        decoded.avg()
    except pyvips.Error as exc:
        raise errors.InvalidRequest(f"The file is not a valid {name} image") from exc
    return width, height, frames


def stored_event_data(content: Content, account_id: str | None, source: str) -> dict:
    """The ``image.stored`` / ``file.stored`` payload of a new record of ``content``."""
    data = {
        "hash": content.sha256,
        "account_id": account_id,
        "bytes": content.size,
        "media_type": content.media_type,
        "source": source,
    }
    if content.image:
        data.update(
            format=content.format,
            width=content.width,
            height=content.height,
            frames=content.frames,
        )
    return data


def blob_key(sha256: str) -> str:
    """The store key of the bytes whose SHA-256 is ``sha256`` (fanned out on two levels)."""
    if not _SHA256.match(sha256):
        raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")
    return f"{BLOB_PREFIX}{sha256[:2]}/{sha256[2:4]}/{sha256}"


def sha256_of_key(key: str) -> str | None:
    """The digest a well-formed content key names, or ``None`` for anything else."""
    match = _BLOB_KEY.match(key)
    if match is None or match[3][:2] != match[1] or match[3][2:4] != match[2]:
        return None
    return match[3]


_DERIVATIVE_KEY = re.compile(r"^derived/[0-9a-f]{2}/[0-9a-f]{2}/([0-9a-f]{64})/[^/]+$")


def sha256_of_derivative_key(key: str) -> str | None:
    """The original's hash in a derivative's store key, or None for any other key."""
    match = _DERIVATIVE_KEY.match(key)
    return match.group(1) if match else None


def is_sha256(value: str) -> bool:
    """True when ``value`` is a lower-case SHA-256 hex digest."""
    return bool(_SHA256.match(value))


def file_hash_of_path(tail: str) -> str | None:
    """The SHA-256 named by a ``/f/`` path tail: ``<hash>``, ``<hash>.<ext>``, ``<hash>/<name>``."""
    sha256, rest = tail[:64].lower(), tail[64:]
    if not _SHA256.match(sha256) or (rest and rest[0] not in "./"):
        return None
    return sha256


def check_client_hash(client_hash: str, data: bytes) -> None:
    """Refuse (422) bytes that do not match a hash the client says is an md5 or SHA-256 hex.

    Any other hash is the client's opaque name for the image and is taken as given.
    """
    algorithm = {32: "md5", 64: "sha256"}.get(len(client_hash))
    if algorithm is None or not re.fullmatch(r"[0-9a-fA-F]+", client_hash):
        return
    actual = hashlib.new(algorithm, data).hexdigest()
    if actual != client_hash.lower():
        raise errors.InvalidRequest(f"The file's {algorithm} is {actual}, not {client_hash}")


def clean_filename(name: str | None) -> str:
    """A display filename from what the client sent: no path, no control characters."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if unicodedata.category(ch)[0] != "C").strip(" .")
    return base[:200] or "file"


def extension_for(filename: str, kind_extension: str) -> str:
    """The extension for a file's ``ext`` URL: the name's own when sane, else the sniffed one."""
    _, dot, ext = filename.rpartition(".")
    return ext.lower() if dot and _EXTENSION.match(ext) else kind_extension


def new_delete_token() -> str:
    """A fresh delete token for an anonymous upload (shown once, stored as a digest)."""
    return secrets.token_urlsafe(24)


def token_digest(token: str) -> bytes:
    """SHA-256 of a token: what is stored and compared (tokens carry 192 bits of entropy)."""
    return hashlib.sha256(token.encode()).digest()


# --- signed URLs (Happo uploads; Haut.ai uploads and files) --------------------------------


@dataclass(frozen=True)
class UploadGrant:
    """What a signed upload URL allows: one upload of ``hash`` into ``account_id`` before
    ``expires_at`` (Unix seconds); ``jti`` makes it single-use."""

    account_id: str
    hash: str
    expires_at: int
    jti: str


def sign_upload_token(key: str, account_id: str, happo_hash: str, expires_at: int) -> str:
    """A Happo upload token granting one upload of ``happo_hash`` into ``account_id``."""
    return sign_token(key, {"account": account_id, "hash": happo_hash}, expires_at)


def verify_upload_token(key: str, token: str, now: float) -> UploadGrant:
    """The grant a Happo upload token carries; 403 ``forbidden`` when tampered with or
    expired."""
    claims = verify_token(key, token, now, None, "upload URL")
    try:
        return UploadGrant(
            str(claims["account"]), str(claims["hash"]), int(claims["exp"]), str(claims["jti"])
        )
    except KeyError as exc:
        raise errors.Forbidden("The upload URL is not valid") from exc


# --- delivery ----------------------------------------------------------------------------------


class RangeNotSatisfiable(errors.DarkroomError):
    """The requested byte range lies outside the blob (416)."""

    status, code, default_message = 416, "range_not_satisfiable", "Range not satisfiable"


@dataclass(frozen=True)
class Delivery:
    """How to answer a GET of a blob: status, headers, and the bytes ``[start, end)``."""

    status: int
    headers: dict[str, str]
    start: int = 0
    end: int = 0


CACHE_FOREVER = "public, max-age=31536000, immutable"
_SANDBOX = "sandbox; default-src 'none'"


def plan_delivery(
    sha256: str,
    size: int,
    media_type: str,
    *,
    if_none_match: str | None,
    range_header: str | None,
    if_range: str | None,
) -> Delivery:
    """Decide the answer for content-addressed bytes: 304, 206, 416 (raised) or 200.

    Content never changes under its URL, hence the strong ETag and the year-long cache.
    Anything that is not one of our inline image types is an attachment in a CSP sandbox, so
    an uploaded HTML or SVG file can never run in our origin.
    """
    etag = f'"{sha256}"'
    headers = {
        "ETag": etag,
        "Cache-Control": CACHE_FOREVER,
        "Accept-Ranges": "bytes",
        "X-Content-Type-Options": "nosniff",
        "Content-Type": media_type,
    }
    if media_type not in INLINE_TYPES:
        headers["Content-Disposition"] = "attachment"
        headers["Content-Security-Policy"] = _SANDBOX
    if if_none_match is not None and _etag_listed(if_none_match, sha256):
        return Delivery(304, {k: v for k, v in headers.items() if k != "Content-Type"})
    byte_range = None
    if range_header is not None and (if_range is None or if_range.strip() == etag):
        byte_range = parse_range(range_header, size)
    if byte_range is None:
        return Delivery(200, headers, 0, size)
    start, end = byte_range
    headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    return Delivery(206, headers, start, end)


def _etag_listed(header: str, sha256: str) -> bool:
    for candidate in header.split(","):
        tag = candidate.strip().removeprefix("W/")
        if tag == "*" or tag == f'"{sha256}"':
            return True
    return False


def _digits(text: str) -> bool:
    # str.isdigit() is true of "²" and of non-Latin digits, which int() refuses or misreads:
    # numbers in HTTP are ASCII.
    return text.isascii() and text.isdigit()


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """``[start, end)`` of a single ``bytes=`` range; ``None`` to answer the whole body.

    Malformed or multi-range headers are ignored (RFC 9110 allows serving the whole body);
    a well-formed range outside the blob raises :class:`RangeNotSatisfiable`.
    """
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash or not (_digits(first) or _digits(last)):
        return None
    if (first and not _digits(first)) or (last and not _digits(last)):
        return None
    if not first:
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable()
        return max(0, size - suffix), size
    start = int(first)
    end = min(int(last) + 1, size) if last else size
    if last and int(last) < start:
        return None
    if start >= size:
        raise RangeNotSatisfiable()
    return start, end


# --- Progimage: POST /user/images -------------------------------------------------------------

#: Sources an item of ``process`` may name; exactly one per item.
PROGIMAGE_SOURCES = ("file", "remote_file_url", "image_id")
#: The box of the ``thumb`` variant when the client gives neither ``thumb_w`` nor ``thumb_h``.
DEFAULT_THUMB_BOX = 300
#: The box of the ``mini`` variant (always square; the seed's single answer lists it).
MINI_BOX = 64
_DATA_URI = re.compile(r"^data:[\w.+-]+/[\w.+-]+;base64,", re.IGNORECASE)


@dataclass(frozen=True)
class ProcessItem:
    """One item of a ``process`` request: where its image comes from and what to do to it."""

    index: int
    source: str
    value: str
    transform: Transform


@dataclass(frozen=True)
class ProcessRequest:
    """A whole ``POST /user/images``: its items and whether the client sent an array."""

    items: tuple[ProcessItem, ...]
    bulk: bool


class ItemRefused(errors.InvalidRequest):
    """One item of a ``process`` request is wrong; the message names it (422)."""


def item_label(index: int, bulk: bool) -> str:
    """How an error names an item: ``process[3]`` in a bulk request, ``process`` otherwise."""
    return f"process[{index}]" if bulk else "process"


def parse_process_request(body: dict, max_items: int) -> ProcessRequest:
    """Validate the JSON body of ``POST /user/images`` (numbers may come as strings, as in the
    seed's examples); unknown fields are refused so that a typo is not silently ignored."""
    unknown = set(body) - {"process"}
    if unknown:
        raise errors.InvalidRequest(f"Unknown field: {sorted(unknown)[0]}")
    process = body.get("process")
    if isinstance(process, dict):
        raw_items, bulk = [process], False
    elif isinstance(process, list):
        raw_items, bulk = process, True
    else:
        raise errors.InvalidRequest("process: an image hash or an array of image hashes")
    if not raw_items:
        raise errors.InvalidRequest("process: at least one image")
    if len(raw_items) > max_items:
        raise errors.InvalidRequest(f"process: at most {max_items} images per request")
    items = []
    for index, raw in enumerate(raw_items):
        label = item_label(index, bulk)
        if not isinstance(raw, dict):
            raise ItemRefused(f"{label}: must be an object")
        items.append(_parse_item(index, label, raw))
    return ProcessRequest(tuple(items), bulk)


def _parse_item(index: int, label: str, raw: dict) -> ProcessItem:
    unknown = set(raw) - set(PROGIMAGE_SOURCES) - OPTION_NAMES
    if unknown:
        raise ItemRefused(f"{label}: unknown field {sorted(unknown)[0]}")
    sources = [name for name in PROGIMAGE_SOURCES if raw.get(name) not in (None, "")]
    if len(sources) != 1:
        raise ItemRefused(
            f"{label}: exactly one of remote_file_url, file or image_id is required"
            + (f" (got {', '.join(sources)})" if sources else "")
        )
    source = sources[0]
    value = raw[source]
    if not isinstance(value, str):
        raise ItemRefused(f"{label}.{source}: must be a string")
    try:
        transform = parse_options(raw)
    except errors.InvalidRequest as exc:
        raise ItemRefused(f"{label}.{exc.message}") from None
    if source == "image_id":
        try:
            value = str(uuid.UUID(value))
        except ValueError:
            raise ItemRefused(f"{label}.image_id: no such image") from None
    return ProcessItem(index, source, value, transform)


def decode_base64_image(text: str, max_bytes: int) -> bytes:
    """The bytes of a ``file`` value: base64 (standard or URL-safe alphabet, padding optional,
    an optional ``data:`` URI prefix); :class:`errors.InvalidRequest` when it is not."""
    text = _DATA_URI.sub("", text.strip(), count=1)
    text = "".join(text.split())
    if len(text) > (max_bytes + 2) // 3 * 4 + 4:
        raise errors.InvalidRequest(f"file: larger than {max_bytes} bytes")
    text = text.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise errors.InvalidRequest("file: not valid base64") from None
    if not data:
        raise errors.InvalidRequest("file: empty")
    return data


@dataclass(frozen=True)
class Variants:
    """The three derivatives of a Progimage image: the processed file, its thumb and mini."""

    file: Transform
    thumb: Transform
    mini: Transform

    def items(self) -> tuple[tuple[str, Transform], ...]:
        """``(name, transform)`` pairs, file first."""
        return (("file", self.file), ("thumb", self.thumb), ("mini", self.mini))


def progimage_variants(transform: Transform, media_type: str) -> Variants:
    """What an item produces: the transform at full size, fitted in the thumb box, and mini.

    The client's ``thumb_w``/``thumb_h`` size the thumbnail only; the file keeps its size.
    """
    whole = transform.boxed(None, None).with_format(output_format(media_type))
    if transform.thumb_w is None and transform.thumb_h is None:
        thumb = whole.boxed(DEFAULT_THUMB_BOX, DEFAULT_THUMB_BOX)
    else:
        thumb = whole.boxed(transform.thumb_w, transform.thumb_h)
    return Variants(whole, thumb, whole.boxed(MINI_BOX, MINI_BOX))


#: The query parameters of ``GET /user/images/{id}/derived``: the process options, and the
#: output format.
DERIVED_QUERY = OPTION_NAMES | {"format"}


def parse_derived_query(pairs: Iterable[tuple[str, str]], media_type: str) -> Transform:
    """The transform a ``GET /user/images/{id}/derived`` query (its ``(name, value)`` pairs)
    names, for an original of ``media_type``: the process options as ``POST /user/images``
    takes them, the box sizing the output, and ``format`` (``jpeg``, ``png``, ``webp``; by
    default the original's own, GIF becoming PNG). Unknown or repeated parameters are
    refused, so that a typo is not silently another image."""
    query: dict[str, str] = {}
    for name, value in pairs:
        if name not in DERIVED_QUERY:
            raise errors.InvalidRequest(f"Unknown parameter: {name}")
        if name in query:
            raise errors.InvalidRequest(f"{name}: given more than once")
        query[name] = value
    transform = parse_options(query)
    output = query.get("format") or output_format(media_type)
    return transform.with_format(output.strip().lower())


def upload_path(image_id: str, variant: str, extension: str) -> str:
    """The public path of a variant, shaped like the seed's ``/uploads/image/file/…`` URLs."""
    prefix = "" if variant == "file" else f"{variant}_"
    return f"/uploads/image/file/{image_id}/{prefix}{image_id}.{extension}"


_UPLOAD_NAME = re.compile(r"^(?:(thumb|mini)_)?([0-9a-f-]{36})\.([a-z]{3,4})$")


def parse_upload_path(image_id: str, name: str) -> str | None:
    """The variant a ``/uploads/image/file/{image_id}/{name}`` path names, or None."""
    match = _UPLOAD_NAME.match(name)
    if match is None or match.group(2) != image_id:
        return None
    return match.group(1) or "file"


def iso_millis(moment: datetime) -> str:
    """``2016-12-04T06:34:37.650Z``: the seed's timestamp spelling."""
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


# --- Haut.ai-style subjects, batches and images ------------------------------------------------


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

#: ``use`` claims of the signed grants of the Haut.ai API: one upload of one image; reading
#: the bytes of an image or one of its aux images.
HAUT_UPLOAD = "haut_upload"
HAUT_FILE = "haut_file"
#: What a signed upload URL says to send, and what its ``PUT`` enforces.
UPLOAD_METHOD = "PUT"
UPLOAD_CONTENT_TYPE = "application/octet-stream"
LENGTH_RANGE_HEADER = "X-Goog-Content-Length-Range"

#: An image's ``status``: waiting for its bytes, uploaded, sent to compute, analysed, or the
#: analysis could not run at all.
PENDING, UPLOADED, COMPUTING, DONE, FAILED = "pending", "uploaded", "computing", "done", "failed"

#: Paging of every list: ``page_size`` defaults to this and is capped at ``MAX_PAGE_SIZE``.
PAGE_SIZE, MAX_PAGE_SIZE = 20, 100
#: ``signed_url_expiration``: seconds a signed file URL stays valid (default, and most).
SIGNED_URL_SECONDS, MAX_SIGNED_URL_SECONDS = 60, 7 * 24 * 3600

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
_MAX_NAME = 200
_MAX_META_BYTES = 16 * 1024


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


def parse_uuid(text: str) -> uuid.UUID | None:
    """A UUID from a path segment or a field, or None when it is not one."""
    try:
        return uuid.UUID(text)
    except (ValueError, TypeError, AttributeError):
        return None


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
    if not isinstance(value, str) or not value.strip() or len(value) > _MAX_NAME:
        raise errors.InvalidRequest(f"{name}: a non-empty string of at most {_MAX_NAME} characters")
    return value.strip()


def _json_object(body: dict, name: str) -> dict | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise errors.InvalidRequest(f"{name}: a JSON object or null")
    if len(json.dumps(value)) > _MAX_META_BYTES:
        raise errors.InvalidRequest(f"{name}: at most {_MAX_META_BYTES} bytes of JSON")
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
    if len(raw) > _MAX_NAME:
        raise errors.BadRequest(f"search: at most {_MAX_NAME} characters")
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
