"""Ingest's rules as plain computation: content sniffing, image validation (libvips), blob
keys, signed upload URLs, client hashes, file paths and HTTP delivery (ETag, Range).

Nothing here touches the database or the network; libvips runs on bytes already in memory.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import pyvips

from shared import errors
from shared.derivatives import OPTION_NAMES, Transform, output_format, parse_options
from shared.imaging import refuse_untrusted_loaders

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


# --- signed upload URLs ----------------------------------------------------------------------


@dataclass(frozen=True)
class UploadGrant:
    """What a signed upload URL allows: one upload of ``hash`` into ``account_id`` before
    ``expires_at`` (Unix seconds); ``jti`` makes it single-use."""

    account_id: str
    hash: str
    expires_at: int
    jti: str


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: str, payload: str) -> str:
    return _b64(hmac.new(key.encode(), payload.encode(), hashlib.sha256).digest())


def sign_upload_token(key: str, account_id: str, happo_hash: str, expires_at: int) -> str:
    """A token ``base64url(JSON payload).base64url(HMAC-SHA256)`` granting one upload."""
    payload = _b64(
        json.dumps(
            {
                "account": account_id,
                "hash": happo_hash,
                "exp": expires_at,
                "jti": str(uuid.uuid4()),
            },
            separators=(",", ":"),
        ).encode()
    )
    return f"{payload}.{_mac(key, payload)}"


def verify_upload_token(key: str, token: str, now: float) -> UploadGrant:
    """The grant a token carries; 403 ``forbidden`` when tampered with or expired.

    Expiry answers 403 too (not 410): the URL no longer authorises anything, and 410 has no
    place in the platform's error codes.
    """
    payload, _, mac = token.partition(".")
    if not payload or not hmac.compare_digest(_mac(key, payload), mac):
        raise errors.Forbidden("The upload URL is not valid")
    try:
        claims = json.loads(_unb64(payload))
        grant = UploadGrant(
            str(claims["account"]), str(claims["hash"]), int(claims["exp"]), str(claims["jti"])
        )
        uuid.UUID(grant.jti)
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise errors.Forbidden("The upload URL is not valid") from exc
    if now >= grant.expires_at:
        raise errors.Forbidden("The upload URL has expired; ask for a new one")
    return grant


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


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """``[start, end)`` of a single ``bytes=`` range; ``None`` to answer the whole body.

    Malformed or multi-range headers are ignored (RFC 9110 allows serving the whole body);
    a well-formed range outside the blob raises :class:`RangeNotSatisfiable`.
    """
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash or not (first.isdigit() or last.isdigit()):
        return None
    if (first and not first.isdigit()) or (last and not last.isdigit()):
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
