"""Rendering's plain values and rules: how a package is named to clients, where its bytes are
stored, and the grant of a package upload URL. No I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from shared import errors, signing, store_keys
from shared.signing import sign_token, verify_token

#: The name a client gives a package: the md5 hex of the archive's bytes.
PACKAGE_HASH = re.compile(r"^[0-9a-f]{32}$")
#: The ``path`` Darkroom answers for a stored package, echoed back by clients as
#: ``staticPackage`` / ``assetsPackage``: ``packages/<md5>``.
_PATH = re.compile(r"^packages/([0-9a-f]{32})$")
#: The ``use`` claim of a package upload grant.
PACKAGE_UPLOAD = signing.PACKAGE_UPLOAD


@dataclass(frozen=True)
class Package:
    """A package an account stored."""

    md5: str
    sha256: str
    format: str
    bytes: int
    entries: int
    unpacked_bytes: int
    uploaded_at: datetime

    @property
    def path(self) -> str:
        """The opaque path the clients echo back to name this package."""
        return package_path(self.md5)

    @property
    def key(self) -> str:
        """Where the archive's bytes are in the blob store."""
        return store_keys.package_key(self.sha256)


@dataclass(frozen=True)
class UploadGrant:
    """What a package upload URL allows: one PUT of the archive named ``md5`` into
    ``account_id`` before ``expires_at`` (Unix seconds); ``jti`` makes it single-use."""

    account_id: str
    md5: str
    expires_at: int
    jti: str


def parse_package_hash(raw: str) -> str:
    """The md5 hex a client names a package by; 400 for anything else."""
    if not PACKAGE_HASH.match(raw):
        raise errors.BadRequest("A package hash is the md5 of the archive: 32 lowercase hex digits")
    return raw


def package_path(md5: str) -> str:
    """The path answered for the package named ``md5``."""
    return f"packages/{md5}"


def md5_of_path(path: str) -> str | None:
    """The md5 a package path names, or None when it is not one of ours."""
    match = _PATH.match(path)
    return match.group(1) if match else None


def sign_upload_grant(key: str, account_id: str, md5: str, expires_at: int) -> str:
    """A token granting one PUT of the package ``md5`` into ``account_id``."""
    return sign_token(key, {"use": PACKAGE_UPLOAD, "account": account_id, "md5": md5}, expires_at)


def verify_upload_grant(key: str, token: str, now: float) -> UploadGrant:
    """The grant of a package upload token; 403 when tampered with, for another use, or
    expired."""
    claims = verify_token(key, token, now, PACKAGE_UPLOAD, "package upload URL")
    try:
        return UploadGrant(
            str(claims["account"]), str(claims["md5"]), int(claims["exp"]), str(claims["jti"])
        )
    except KeyError as exc:
        raise errors.Forbidden("The package upload URL is not valid") from exc
