"""The hash file host's rules: display file names, the extension of a file's ``ext`` URL, and
anonymous uploads' delete tokens.

Nothing here touches the database or the network. The ``/f/`` paths are
:mod:`shared.image_urls`'.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import unicodedata

#: The longest display file name kept (characters; a longer one is cut).
MAX_FILENAME = 200
#: The most files the "my files" page lists (newest first).
MAX_LISTED_FILES = 1000
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
