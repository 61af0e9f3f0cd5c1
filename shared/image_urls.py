"""The public URL formats of stored images, built and parsed here and nowhere else.

- Happo Image API: ``/img/<account id>/<hash>`` — the hash is the client's name for the image;
  reports store snapshot URLs in this form and parse them back from compare and report calls.
- Hash file host: ``/f/<sha256>``, ``/f/<sha256>.<ext>`` or ``/f/<sha256>/<file name>``, all the
  same bytes.
- Progimage: ``/uploads/image/file/<image id>/[thumb_|mini_]<image id>.<ext>``, the seed's shape.

Paths are answered here; the absolute URL a client receives is the public URL followed by the
path (``DARKROOM_PUBLIC_URL``, see :mod:`shared.config`).
"""

from __future__ import annotations

import re
from urllib.parse import quote, urlsplit

from shared.store_keys import is_sha256

#: The route of a Happo image (aiohttp route syntax).
HAPPO_IMAGE_ROUTE = "/img/{account_id}/{hash}"
#: What a Happo client may name an image by.
HAPPO_HASH = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_HAPPO_IMAGE_PATH = re.compile(r"^/img/(?P<account>[0-9a-f-]{36})/(?P<hash>[A-Za-z0-9_-]{1,128})$")
#: A URL longer than this is never one of ours.
_MAX_URL = 2048

#: The route of a hash-host file (aiohttp route syntax; ``tail`` is parsed by
#: :func:`file_hash_of_path`).
FILE_ROUTE = "/f/{tail:.+}"
FILE_PREFIX = "/f/"

#: The route of a Progimage variant (aiohttp route syntax).
PROGIMAGE_FILE_ROUTE = "/uploads/image/file/{image_id}/{name}"
_PROGIMAGE_NAME = re.compile(r"^(?:(thumb|mini)_)?([0-9a-f-]{36})\.([a-z]{3,4})$")


def happo_images_path(account_id: str) -> str:
    """The path prefix of an account's Happo images (the hash follows)."""
    return f"/img/{account_id}/"


def happo_image_path(account_id: str, happo_hash: str) -> str:
    """The path of the image ``account_id`` uploaded under ``happo_hash``."""
    return f"{happo_images_path(account_id)}{happo_hash}"


def happo_hash_of_url(url: object, account_id: str, public_url: str) -> str | None:
    """The Image API hash an image URL of ``account_id`` names (absolute under ``public_url``,
    or the path alone), or None for anything else: another account's image, a query or
    fragment, a foreign host, an over-long or non-string value."""
    if not isinstance(url, str) or len(url) > _MAX_URL:
        return None
    base = public_url.rstrip("/")
    if url.startswith(base + "/"):
        url = url[len(base) :]
    elif not url.startswith("/"):
        return None
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        return None
    match = _HAPPO_IMAGE_PATH.match(parts.path)
    if match is None or match["account"] != account_id:
        return None
    return match["hash"]


def file_paths(sha256: str, filename: str, extension: str) -> dict[str, str]:
    """The paths a hash-host file answers at: ``hash``, ``ext`` (with its extension) and
    ``full`` (with its file name, percent-encoded)."""
    return {
        "full": f"{FILE_PREFIX}{sha256}/{quote(filename, safe='')}",
        "ext": f"{FILE_PREFIX}{sha256}.{extension}",
        "hash": f"{FILE_PREFIX}{sha256}",
    }


def file_hash_of_path(tail: str) -> str | None:
    """The SHA-256 named by a ``/f/`` path tail: ``<hash>``, ``<hash>.<ext>``, ``<hash>/<name>``
    (any case); None for anything else."""
    sha256, rest = tail[:64].lower(), tail[64:]
    if not is_sha256(sha256) or (rest and rest[0] not in "./"):
        return None
    return sha256


def progimage_file_path(image_id: str, variant: str, extension: str) -> str:
    """The public path of a Progimage variant (``file``, ``thumb`` or ``mini``)."""
    prefix = "" if variant == "file" else f"{variant}_"
    return f"/uploads/image/file/{image_id}/{prefix}{image_id}.{extension}"


def progimage_variant_of(image_id: str, name: str) -> str | None:
    """The variant a ``/uploads/image/file/{image_id}/{name}`` path names, or None."""
    match = _PROGIMAGE_NAME.match(name)
    if match is None or match.group(2) != image_id:
        return None
    return match.group(1) or "file"
