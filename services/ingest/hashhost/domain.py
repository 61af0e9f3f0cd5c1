"""The hash file host's rules: display file names, the extension of a file's ``ext`` URL,
anonymous uploads' delete tokens, how many files one request may carry, the pages' paging,
sizes and thumbnails, and the ShareX uploader configuration.

Nothing here touches the database or the network. The ``/f/`` paths are
:mod:`shared.image_urls`'.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import unicodedata

from shared.derivatives import Transform

#: The longest display file name kept (characters; a longer one is cut).
MAX_FILENAME = 200
#: The most files one upload request may carry (``files[]`` or repeated ``file`` fields); their
#: bytes together are bounded by ``DARKROOM_MAX_UPLOAD_BYTES``, like a single file's.
MAX_FILES_PER_UPLOAD = 10
#: The fields an upload's files may come in: ours (the seed's) and pomf's.
FILE_FIELD, POMF_FIELD = "file", "files[]"
FILE_FIELDS = (FILE_FIELD, POMF_FIELD)
#: Files per page of "my files" and of ``GET /api/files`` (newest first; ``page_size`` may ask
#: for fewer, never more).
FILES_PER_PAGE = 50
#: The web image types "my files" shows a thumbnail of (browsers draw them; nothing else is).
THUMBNAIL_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
#: Edge of the square thumbnail box on "my files" (CSS pixels).
THUMBNAIL_EDGE = 64
#: The thumbnail drawn in that box: made once by processing and stored like any derivative,
#: twice the box for high-density screens, so a page of 50 files costs a few kB each instead of
#: the originals.
THUMBNAIL = Transform(
    format="webp", quality=75, thumb_w=2 * THUMBNAIL_EDGE, thumb_h=2 * THUMBNAIL_EDGE
)
#: Thumbnails are shown to their owner only; the bytes never change for a key.
THUMBNAIL_CACHE_CONTROL = "private, max-age=31536000, immutable"
#: What the ShareX configuration carries where the user's API token goes.
TOKEN_PLACEHOLDER = "PASTE_YOUR_API_TOKEN_HERE"  # noqa: S105 (a placeholder, not a secret)
#: Where a file is deleted through the API (its hash follows).
DELETE_PREFIX = "/api/files/"
#: The ``source`` of hash-host files in ``image.stored`` / ``file.stored``.
SOURCE = "hashhost"

_EXTENSION = re.compile(r"^[A-Za-z0-9]{1,10}$")


def clean_filename(name: str | None) -> str:
    """A display filename from what the client sent: no path, no control characters."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if unicodedata.category(ch)[0] != "C").strip(" .")
    return base[:MAX_FILENAME] or "file"


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


def human_size(size: int) -> str:
    """A byte count as people read it: ``"512 bytes"``, ``"1.5 kB"``, ``"23 MB"`` (SI units)."""
    if size < 1000:
        return f"{size} byte" if size == 1 else f"{size} bytes"
    value = float(size)
    for unit in ("kB", "MB", "GB", "TB"):
        value /= 1000
        # One decimal below 10 (as rounded), whole numbers above; 999.7 kB reads "1.0 MB".
        if round(value, 1) < 10:
            return f"{value:.1f} {unit}"
        if round(value) < 1000 or unit == "TB":
            return f"{value:.0f} {unit}"
    raise AssertionError("unreachable")


def page_count(count: int, per_page: int) -> int:
    """How many pages ``count`` items fill (an empty list is one empty page)."""
    return max(1, -(-count // per_page))


def sharex_config(upload_url: str, host: str) -> dict:
    """The ShareX custom uploader (``.sxcu``) for ``upload_url``: pomf's ``files[]`` field,
    the first file's URL from the answer, the error's description, and the user's API token
    as the bearer token (a placeholder the user replaces; without it uploads are refused)."""
    return {
        "Version": "15.0.0",
        "Name": f"Darkroom ({host})",
        "DestinationType": "ImageUploader, TextUploader, FileUploader",
        "RequestMethod": "POST",
        "RequestURL": upload_url,
        "Headers": {"Authorization": f"Bearer {TOKEN_PLACEHOLDER}"},
        "Body": "MultipartFormData",
        "FileFormName": POMF_FIELD,
        "URL": "{json:files[0].url}",
        "ErrorMessage": "{json:description}",
    }
