"""The Happo Image API's rules: its signed upload grants and the check of a client's hash.

Nothing here touches the database or the network. An image's name (``HAPPO_HASH``) and its
``/img/`` URL are :mod:`shared.image_urls`'.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from shared import errors
from shared.signing import HAPPO_UPLOAD, sign_token, verify_token

#: The ``source`` of Happo images in ``image.stored``.
SOURCE = "happo"
#: The answers about a hash already taken and a signed upload URL already spent.
ALREADY_UPLOADED = "This image has already been uploaded"
URL_USED = "This upload URL was used already; ask for a new one"
#: Where a signed upload URL points (the token follows).
UPLOAD_PATH = "/api/images/upload/"
#: How many (account, hash) names each ingest process remembers as taken (about 300 bytes
#: each). A Happo run asks for an upload URL of every snapshot, most of them stored before.
KNOWN_CACHED = 20_000


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
    claims = {"use": HAPPO_UPLOAD, "account": account_id, "hash": happo_hash}
    return sign_token(key, claims, expires_at)


def verify_upload_token(key: str, token: str, now: float) -> UploadGrant:
    """The grant a Happo upload token carries; 403 ``forbidden`` when tampered with or
    expired."""
    claims = verify_token(key, token, now, HAPPO_UPLOAD, "upload URL")
    try:
        return UploadGrant(
            str(claims["account"]), str(claims["hash"]), int(claims["exp"]), str(claims["jti"])
        )
    except KeyError as exc:
        raise errors.Forbidden("The upload URL is not valid") from exc


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


def rendered_hash(data: bytes) -> str:
    """The name of a screenshot the renderer took: the md5 of its bytes, as the Image API's
    clients name their uploads."""
    return hashlib.md5(data).hexdigest()  # noqa: S324 - the Happo clients' image name
