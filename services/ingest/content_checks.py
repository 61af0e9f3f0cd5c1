"""The content checks every upload path shares: what the bytes are (sniffed, never taken from a
name), whether they fit the limits, and for images a header check (pixels, frames) before a
full decode that refuses truncated or fake images.

Nothing here touches the database or the network; libvips runs on bytes already in memory.
"""

from __future__ import annotations

import asyncio
import hashlib
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyvips

from shared import errors, imaging

if TYPE_CHECKING:
    from services.ingest.config import IngestConfig

imaging.refuse_untrusted_loaders()

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

#: The four web image formats: what a Progimage item or a Haut.ai upload may be.
WEB_IMAGES = frozenset({PNG, JPEG, GIF, WEBP})
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
    """Validate ``data`` and describe it; CPU-bound (decodes images), run it off the loop
    (:func:`examine_off_loop`).

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


async def examine_off_loop(
    data: bytes, limits: Limits, accept: frozenset[Kind] | None = None
) -> Content:
    """:func:`examine` in a worker thread: hashing and decoding are CPU work, kept off the
    event loop."""
    return await asyncio.to_thread(examine, data, limits, accept=accept)


def _image_geometry(data: bytes, kind: Kind, limits: Limits) -> tuple[int, int, int]:
    name = _IMAGE_FORMATS[kind.media_type].upper()
    try:
        header = imaging.read_header(data)
    except imaging.UnreadableImage as exc:
        raise errors.InvalidRequest(f"The file is not a valid {name} image") from exc
    # The bytes must decode as what they were sniffed as, not as another allowed format.
    if header.format_name.upper() != name:
        raise errors.InvalidRequest(f"The file is not a valid {name} image")
    if header.frames > limits.max_frames:
        raise errors.InvalidRequest(
            f"The image has {header.frames} frames; at most {limits.max_frames}"
        )
    imaging.check_pixels(header, limits.max_pixels, subject="The image", verb="uploaded")
    if kind is JPEG and not _ends_its_last_scan(data):
        raise errors.InvalidRequest(f"The file is not a valid {name} image")
    frames = header.frames
    try:
        options = {"n": -1} if frames > 1 else {}
        decoded = pyvips.Image.new_from_buffer(data, "", access="sequential", fail=True, **options)
        # Forces every pixel through the decoder once: truncated or corrupt data fails here.
        decoded.avg()
    except pyvips.Error as exc:
        raise errors.InvalidRequest(f"The file is not a valid {name} image") from exc
    return header.width, header.height, frames


def _ends_its_last_scan(data: bytes) -> bool:
    """True when an end-of-image marker follows the JPEG's last start-of-scan. A file cut
    there can still decode without a warning (about one time in ten, when the decoder never
    reads past the last block), so the decode alone does not catch it. Inside a scan a 0xFF
    byte is always stuffed or a restart marker, so ``FF D9`` after the last ``FF DA`` is the
    file's own end, not an embedded thumbnail's."""
    last_scan = data.rfind(b"\xff\xda")
    return last_scan != -1 and data.find(b"\xff\xd9", last_scan + 2) != -1
