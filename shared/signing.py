"""The one signer of the platform's signed URLs: a grant is ``base64url(JSON claims).
base64url(HMAC-SHA256)`` under a server-only key, with an expiry, a fresh ``jti`` (so a
single-use grant can be spent once) and a ``use`` claim naming its purpose, so a grant made for
one purpose (a Happo image upload, a Haut.ai file, a Happo package upload) never stands in for
another.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import uuid

from shared import errors


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: str, payload: str) -> str:
    return _b64(hmac.new(key.encode(), payload.encode(), hashlib.sha256).digest())


def sign_token(key: str, claims: dict, expires_at: int) -> str:
    """A URL-safe grant of ``claims`` plus ``exp`` (Unix seconds) and a fresh ``jti``. A grant
    names what it is for in its ``use`` claim (checked by :func:`verify_token`)."""
    payload = _b64(
        json.dumps(
            {**claims, "exp": expires_at, "jti": str(uuid.uuid4())}, separators=(",", ":")
        ).encode()
    )
    return f"{payload}.{_mac(key, payload)}"


def verify_token(key: str, token: str, now: float, use: str | None, what: str) -> dict:
    """The claims of a grant made by :func:`sign_token` for ``use``; 403 ``forbidden``, naming
    ``what`` ("upload URL", …), when tampered with, made for another use, or expired.

    Expiry answers 403 too (not 410): the URL no longer authorises anything, and 410 has no
    place in the platform's error codes.
    """
    payload, _, mac = token.partition(".")
    # Bytes: compare_digest refuses str with non-ASCII characters (a forged token may have).
    if not payload or not hmac.compare_digest(_mac(key, payload).encode(), mac.encode()):
        raise errors.Forbidden(f"The {what} is not valid")
    try:
        claims = json.loads(_unb64(payload))
        if not isinstance(claims, dict):
            raise TypeError("claims must be an object")
        int(claims["exp"])
        uuid.UUID(str(claims["jti"]))
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise errors.Forbidden(f"The {what} is not valid") from exc
    if claims.get("use") != use:
        raise errors.Forbidden(f"The {what} is not valid")
    if now >= int(claims["exp"]):
        raise errors.Forbidden(f"The {what} has expired; ask for a new one")
    return claims
