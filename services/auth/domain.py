"""Auth's rules as plain values: credential formats, parsing of Authorization headers, Happo
JWT checks, secret encryption and password hashing. No I/O here."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey

from shared import errors
from shared.sealing import SecretBox  # noqa: F401 - auth's callers name it here

#: The longest name a person may sign up with.
MAX_PERSON_NAME = 200
#: A password's length bounds (the upper one keeps the password hash's work bounded).
MIN_PASSWORD, MAX_PASSWORD = 8, 1024
TOKEN_PREFIX = "drk_"  # noqa: S105 -- a public prefix, not a secret
#: Prefixes of the tokens ``POST /api/v1/login/`` hands out (Haut.ai dialect): an access token
#: is a bearer credential; a refresh token is only ever sent to ``/api/v1/auth/refresh/``.
LOGIN_ACCESS_PREFIX = "drl_"
LOGIN_REFRESH_PREFIX = "drr_"
#: Lifetime of a login access token (the Haut.ai dialect promises one hour) and of its refresh
#: token (each use rotates it).
LOGIN_ACCESS_SECONDS = 3600
LOGIN_REFRESH_SECONDS = 30 * 86400
SESSION_COOKIE = "darkroom_session"
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]{1,63}$")
_HAPPO_KEY = re.compile(r"^[0-9a-f]{10,64}$")
#: The Progimage seed guarantees access tokens of 64 alphanumerical characters: no "drk_"
#: underscore and no JWT dots, so a bearer value is never ambiguous.
OAUTH_TOKEN_LENGTH = 64
_OAUTH_TOKEN = re.compile(rf"^[A-Za-z0-9]{{{OAUTH_TOKEN_LENGTH}}}$")
_MAX_CREDENTIAL = 4096
_passwords = PasswordHasher()


@dataclass(frozen=True)
class BasicCredential:
    """``Authorization: Basic base64(key:secret)``."""

    key: str
    secret: str


@dataclass(frozen=True)
class JwtCredential:
    """``Authorization: Bearer <HS256 JWS>`` whose header ``kid`` names the API key."""

    key: str
    token: str


@dataclass(frozen=True)
class TokenCredential:
    """``Authorization: Bearer drk_…``: a bearer API token."""

    token: str


@dataclass(frozen=True)
class LoginCredential:
    """``Authorization: Bearer drl_…``: an access token from ``POST /api/v1/login/``."""

    token: str


@dataclass(frozen=True)
class OAuthCredential:
    """``Authorization: Bearer <64 alphanumerical characters>``: an OAuth access token."""

    token: str


@dataclass(frozen=True)
class SessionCredential:
    """The web session cookie."""

    token: str


Credential = (
    BasicCredential
    | JwtCredential
    | TokenCredential
    | LoginCredential
    | OAuthCredential
    | SessionCredential
)


def parse_authorization(header: str) -> Credential:
    """Which credential an ``Authorization`` header carries; 401 when it is malformed."""
    if len(header) > _MAX_CREDENTIAL:
        raise errors.BadCredentials("Authorization header too long")
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if not value:
        raise errors.BadCredentials("Malformed Authorization header")
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise errors.BadCredentials("Malformed Basic credentials") from exc
        key, sep, secret = decoded.partition(":")
        if not sep or not key or not secret:
            raise errors.BadCredentials("Basic credentials must be apiKey:apiSecret")
        return BasicCredential(key, secret)
    if scheme.lower() == "bearer":
        if value.startswith(TOKEN_PREFIX):
            return TokenCredential(value)
        if value.startswith(LOGIN_ACCESS_PREFIX):
            return LoginCredential(value)
        if value.count(".") == 2:
            return JwtCredential(jwt_key_id(value), value)
        if _OAUTH_TOKEN.match(value):
            return OAuthCredential(value)
        raise errors.BadCredentials("Unrecognised bearer token")
    raise errors.BadCredentials("Unsupported authorization scheme")


def jwt_key_id(token: str) -> str:
    """The ``kid`` of an HS256 JWS, read from its header before the signature is checked.

    Only ``HS256`` is accepted: ``none``, RS/ES (key confusion) and every other algorithm are
    refused here, before any key is looked up.
    """
    try:
        segment = token.split(".", 1)[0]
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, binascii.Error) as exc:
        raise errors.BadCredentials("Malformed JWT") from exc
    if not isinstance(header, dict) or header.get("alg") != "HS256":
        raise errors.BadCredentials("JWT must be signed with HS256")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise errors.BadCredentials("JWT header must name the API key in kid")
    return kid


def verify_jwt(
    token: str, key: str, secret: str, *, leeway: int = 30, now: float | None = None
) -> dict:
    """Verify a Happo-style JWT signed with the API ``secret``; returns its claims.

    The payload ``key`` must equal ``kid``; ``exp`` and ``nbf`` are enforced when present and
    tokens without them are accepted (the legacy Happo clients send none: revoking the key is
    the cut-off).
    """
    try:
        decoded = jwt.decode(token, OctKey.import_key(secret.encode()), algorithms=["HS256"])
    except (JoseError, ValueError) as exc:
        raise errors.BadCredentials("JWT signature does not verify") from exc
    claims = decoded.claims
    if decoded.header.get("kid") != key or claims.get("key") != key:
        raise errors.BadCredentials("JWT key claim must equal kid")
    moment = time.time() if now is None else now
    exp, nbf = claims.get("exp"), claims.get("nbf")
    if exp is not None and (not isinstance(exp, int | float) or moment > exp + leeway):
        raise errors.BadCredentials("JWT has expired")
    if nbf is not None and (not isinstance(nbf, int | float) or moment + leeway < nbf):
        raise errors.BadCredentials("JWT is not valid yet")
    return claims


def sign_jwt(key: str, secret: str, claims: dict | None = None) -> str:
    """A Happo-style JWT for ``key`` (what the Happo clients send), for tools and tests."""
    return jwt.encode(
        {"alg": "HS256", "kid": key},
        {"key": key, **(claims or {})},
        OctKey.import_key(secret.encode()),
    )


def new_api_key() -> tuple[str, str]:
    """A fresh ``(api_key, api_secret)`` pair in the hex format the Happo clients accept."""
    return secrets.token_hex(16), secrets.token_hex(32)


def is_api_key(value: str) -> bool:
    """True when ``value`` has the shape of an API key (so lookups of junk are skipped)."""
    return bool(_HAPPO_KEY.match(value))


def new_token() -> str:
    """A fresh bearer API token with the recognisable ``drk_`` prefix."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def new_login_tokens() -> tuple[str, str]:
    """A fresh ``(access_token, refresh_token)`` pair for an API login, each with its prefix."""
    return (
        LOGIN_ACCESS_PREFIX + secrets.token_urlsafe(32),
        LOGIN_REFRESH_PREFIX + secrets.token_urlsafe(32),
    )


def new_session_token() -> str:
    """A fresh session cookie value."""
    return secrets.token_urlsafe(32)


def digest(token: str) -> bytes:
    """The stored form of a high-entropy token (SHA-256; no salt needed at 256 bits)."""
    return hashlib.sha256(token.encode()).digest()


def display_prefix(token: str) -> str:
    """The part of a token safe to show in lists."""
    return token[: len(TOKEN_PREFIX) + 6]


def secrets_equal(a: str, b: str) -> bool:
    """Constant-time comparison of two secrets."""
    return hmac.compare_digest(a.encode(), b.encode())


def hash_password(password: str) -> str:
    """An argon2id hash of ``password`` (CPU-bound: call it off the event loop)."""
    return _passwords.hash(password)


def password_matches(password_hash: str, password: str) -> bool:
    """True when ``password`` matches the argon2 hash (CPU-bound: off the event loop)."""
    try:
        return _passwords.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


#: Verified against when the e-mail is unknown, so timing does not reveal which e-mails exist.
DUMMY_PASSWORD_HASH = _passwords.hash("not-a-password")


@dataclass(frozen=True)
class SignUp:
    """A validated sign-up."""

    name: str
    email: str
    password: str


def validate_sign_up(name: str, email: str, password: str) -> SignUp:
    """Check the sign-up fields; 422 ``invalid_request`` naming the first bad one."""
    name, email = name.strip(), email.strip().lower()
    if not 1 <= len(name) <= MAX_PERSON_NAME:
        raise errors.InvalidRequest(f"name must be 1 to {MAX_PERSON_NAME} characters")
    if not _EMAIL.match(email):
        raise errors.InvalidRequest("email is not a valid address")
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise errors.InvalidRequest(f"password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    return SignUp(name, email, password)
