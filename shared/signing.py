"""The one signer of the platform: everything Darkroom signs for someone to hand back later (an
upload URL, a status-badge URL, an unsubscribe link, a form's anti-forgery token) is made and
checked by a :class:`Signer`, one per purpose, holding its purpose, its server-only key and how
long what it signs lasts. Each process builds its signers once, at start. (:func:`sign_token`
and :func:`verify_token` are the expiring form with the key and use passed in; ingest's and
rendering's upload URLs still call them directly.)

What a signer makes comes in two forms:

- **Expiring grants** (a signer with a ``lifetime``): ``base64url(JSON claims).base64url(HMAC-
  SHA256)`` with an expiry, a fresh ``jti`` (so a single-use grant can be spent once) and a
  ``use`` claim naming the purpose, so a grant made for one purpose (a Happo image upload, a
  Haut.ai file, a Happo package upload) never stands in for another.
- **Permanent signatures** (``lifetime`` None), for links meant to last: a status badge embedded
  in a README, the unsubscribe link of a sent e-mail. They are the hex HMAC-SHA256 of
  ``<purpose>:<message>``, cut to the signer's ``digits``. This is the exact wire format those
  links were handed out with (``badge:<id>``, 24 digits; ``unsubscribe:<body>``, 32 digits), so
  every link already out keeps working; no legacy verifier is needed.

A purpose never contains ``:``, so the signed messages of two purposes cannot coincide.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from shared import errors

# Every purpose the platform signs for, in one list so no two can collide. A purpose is the
# ``use`` claim of an expiring grant, or the prefix of a permanent signature's message.
#: Permanent: a comparison's status-badge URL.
BADGE = "badge"
#: Permanent: the unsubscribe link of a sent e-mail.
UNSUBSCRIBE = "unsubscribe"
#: Permanent for a session: the anti-forgery token of a signed-in page's forms.
FORM = "form"
#: Expiring: one upload of a Happo image (``/api/images/upload/<token>``).
HAPPO_UPLOAD = "happo-upload"
#: Expiring: one upload of a Haut.ai-style image (its wire value keeps its first spelling, so
#: URLs handed out before a deploy stay valid).
HAUTAI_UPLOAD = "haut_upload"
#: Expiring: reading a Haut.ai-style image or aux image (``/api/v1/files/<token>``).
HAUTAI_FILE = "haut_file"
#: Expiring: one PUT of a Happo package archive (``/api/package-uploads/<token>``).
PACKAGE_UPLOAD = "package-upload"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: str, payload: str) -> str:
    return _b64(hmac.new(key.encode(), payload.encode(), hashlib.sha256).digest())


def _same(expected: str, sent: str) -> bool:
    # Bytes: compare_digest refuses str with non-ASCII characters (a forged token may have).
    return hmac.compare_digest(expected.encode(), sent.encode())


@dataclass(frozen=True)
class Signer:
    """Signs and checks what is made for one ``purpose`` with ``key``.

    ``lifetime`` (seconds) makes expiring grants (:meth:`grant`, :meth:`redeem`); None makes
    permanent signatures (:meth:`sign`, :meth:`verify`, :meth:`seal`, :meth:`unseal`) of
    ``digits`` hex digits.
    """

    purpose: str
    key: str = field(repr=False)
    lifetime: int | None = None
    digits: int = 64

    def __post_init__(self) -> None:
        if not self.purpose or ":" in self.purpose:
            raise ValueError("a purpose is a non-empty name without ':'")
        if not self.key:
            raise ValueError(f"the {self.purpose} signer has no key")
        if self.lifetime is not None and self.lifetime <= 0:
            raise ValueError("a lifetime is a positive number of seconds")
        if not 16 <= self.digits <= 64:
            raise ValueError("a signature keeps 16 to 64 hex digits")

    # --- permanent signatures ----------------------------------------------------------------

    def sign(self, message: str) -> str:
        """The permanent signature of ``message`` (hex, :attr:`digits` long)."""
        self._permanent()
        text = f"{self.purpose}:{message}".encode()
        return hmac.new(self.key.encode(), text, hashlib.sha256).hexdigest()[: self.digits]

    def verify(self, message: str, signature: str) -> bool:
        """True when ``signature`` is :meth:`sign`'s for ``message`` (compared in constant
        time)."""
        return bool(signature) and _same(self.sign(message), signature)

    def seal(self, value: Any) -> str:
        """``value`` (JSON) as a URL-safe token that carries it: ``base64url(JSON).signature``."""
        body = _b64(json.dumps(value, separators=(",", ":")).encode())
        return f"{body}.{self.sign(body)}"

    def unseal(self, token: str) -> Any | None:
        """The value :meth:`seal` put in ``token``, or None for a token it did not make."""
        body, _, signature = token.partition(".")
        if not self.verify(body, signature):
            return None
        try:
            return json.loads(_unb64(body))
        except (ValueError, binascii.Error):
            return None

    # --- expiring grants ---------------------------------------------------------------------

    def grant(self, claims: dict, now: float) -> str:
        """A grant of ``claims`` for this purpose, valid for :attr:`lifetime` from ``now``."""
        if self.lifetime is None:
            raise TypeError(f"the {self.purpose} signer makes permanent signatures, not grants")
        return sign_token(self.key, {**claims, "use": self.purpose}, int(now) + self.lifetime)

    def redeem(self, token: str, now: float, what: str) -> dict:
        """The claims of a grant :meth:`grant` made; 403 naming ``what`` otherwise (see
        :func:`verify_token`)."""
        return verify_token(self.key, token, now, self.purpose, what)

    def _permanent(self) -> None:
        if self.lifetime is not None:
            raise TypeError(f"the {self.purpose} signer makes expiring grants, not signatures")


def sign_token(key: str, claims: dict, expires_at: int) -> str:
    """A URL-safe grant of ``claims`` plus ``exp`` (Unix seconds) and a fresh ``jti``. A grant
    names what it is for in its ``use`` claim (checked by :func:`verify_token`); a
    :class:`Signer` with a lifetime sets it to its purpose."""
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
    if not payload or not _same(_mac(key, payload), mac):
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
