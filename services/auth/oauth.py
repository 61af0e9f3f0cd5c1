"""The OAuth 2.0 authorization server's protocol rules (Progimage dialect), as plain values.

Code flow (RFC 6749 §4.1) with PKCE S256 (RFC 7636), refresh-token rotation and revocation
(RFC 7009). The use cases in ``grants.py`` do the I/O; everything that decides lives here.

Why no server library: authlib's server grants call their storage hooks synchronously (no
async integration, authlib#340), so an adapter over them would need a sync database driver in
a thread. ``aioauth`` 2.0.1 is async, but its answer is not the seed's (``token_type:
"Bearer"``, no ``created_at``, an extra ``refresh_token_expires_in``, 42-character tokens), it
requires ``redirect_uri`` at the token endpoint (the seed's clients send only ``client_id``,
``client_secret`` and ``code``), accepts ``plain`` PKCE, answers a missing verifier with
``invalid_request`` and a wrong one with a non-standard ``mismatching_state``, and only deletes
a reused code instead of revoking what it issued. Overriding all of that would leave more code
than the rules below, so we keep the rules here and borrow authlib's well-reviewed helpers
(token generation, the S256 transform).

Deliberate choices, each for the seed's clients or for safety:

* ``grant_type`` may be omitted when a ``code`` is sent (the seed documents no grant_type).
* ``redirect_uri`` at the token endpoint is checked when sent and may be omitted: a code can
  only ever have been sent to the one registered URI (exact match), so the code-injection
  attack that RFC 6749 §4.1.3 guards against has no second URI to use.
* PKCE is optional, S256 only; a challenge without a method would mean ``plain`` and is
  refused. A verifier sent for a code that had no challenge is refused too (no downgrade).
* A code is spent by its first presentation by its own client, successful or not; a second
  presentation revokes every token issued from it (RFC 6749 §4.1.2). Refresh tokens rotate
  and a replayed one revokes its grant the same way (OAuth 2.0 Security BCP §4.14); that rule
  is ``refreshing.py``'s, shared with the API login's refresh tokens.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import unquote_plus, urlencode, urlsplit

from authlib.common.security import generate_token
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from services.auth.domain import OAUTH_TOKEN_LENGTH, digest
from shared import errors

SCOPE = "api"
TOKEN_TYPE = "bearer"  # noqa: S105 -- the seed's literal token_type, not a secret
_S256_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")
_VERIFIER = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")
_MAX_PARAM = 2048
_MAX_REDIRECT_URI = 2000
_HOST = re.compile(r"^(?:[a-z0-9-]+(?:\.[a-z0-9-]+)*|[0-9a-f:.]+)$")
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


class OAuthError(Exception):
    """An RFC 6749 §5.2 error: ``{"error", "error_description"}``, 400 (401 for a client that
    failed to authenticate). Token and revocation endpoints answer in this shape, not the
    platform's, because standard OAuth client libraries parse exactly this one."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status

    def body(self) -> dict[str, str]:
        """The JSON answer."""
        return {"error": self.error, "error_description": self.description}


def invalid_client(description: str = "Client authentication failed") -> OAuthError:
    """401 ``invalid_client``: unknown client, wrong secret or no client authentication."""
    return OAuthError("invalid_client", description, 401)


class AuthorizePageError(Exception):
    """An authorization request that must not be redirected anywhere (unknown client,
    unregistered redirect URI): the user sees an error page instead (RFC 6749 §4.1.2.1)."""


@dataclass(frozen=True)
class Client:
    """A live registered application."""

    id: uuid.UUID
    account_id: uuid.UUID
    client_id: str
    secret_hash: bytes
    name: str
    redirect_uri: str


@dataclass(frozen=True)
class Code:
    """An authorization code as stored (its value is only known to the client)."""

    id: uuid.UUID
    client_pk: uuid.UUID
    user_id: uuid.UUID
    account_id: uuid.UUID
    redirect_uri: str
    code_challenge: str | None
    expires_at: datetime
    used_at: datetime | None


@dataclass(frozen=True)
class TokenPair:
    """An issued access/refresh pair as stored (the token values are only known to the client)."""

    id: uuid.UUID
    client_pk: uuid.UUID
    account_id: uuid.UUID
    user_id: uuid.UUID
    code_id: uuid.UUID
    refresh_expires_at: datetime
    rotated_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class AuthorizationRequest:
    """A validated ``/oauth/authorize`` request, echoed into the consent form."""

    client_id: str
    redirect_uri: str
    state: str | None
    code_challenge: str | None

    def form_fields(self) -> dict[str, str]:
        """The hidden fields that carry the request through the consent form."""
        fields = {
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "response_type": "code",
        }
        if self.state is not None:
            fields["state"] = self.state
        if self.code_challenge is not None:
            fields["code_challenge"] = self.code_challenge
            fields["code_challenge_method"] = "S256"
        return fields


def new_client_credentials() -> tuple[str, str]:
    """A fresh ``(client_id, client_secret)``; both alphanumerical, so Basic auth needs no
    escaping."""
    return generate_token(24), generate_token(OAUTH_TOKEN_LENGTH)


def new_token() -> str:
    """A fresh access token, refresh token or code: 64 alphanumerical characters (~380 bits)."""
    return generate_token(OAUTH_TOKEN_LENGTH)


def validate_redirect_uri(uri: str) -> str:
    """Check a redirect URI at registration (RFC 6749 §3.1.2): absolute, https (plain http
    only to a loopback host, for local and native apps), a plain host name, no user info, no
    fragment; 422 ``invalid_request`` otherwise."""
    uri = uri.strip()
    if not uri or len(uri) > _MAX_REDIRECT_URI or not uri.isprintable() or " " in uri:
        raise errors.InvalidRequest(f"redirect URI must be 1 to {_MAX_REDIRECT_URI} characters")
    try:
        parts = urlsplit(uri)
        host, _port = parts.hostname, parts.port
    except ValueError as exc:
        raise errors.InvalidRequest("redirect URI is not a valid URL") from exc
    if parts.scheme not in {"http", "https"} or not host:
        raise errors.InvalidRequest("redirect URI must be an absolute https URL")
    if parts.scheme == "http" and host not in _LOOPBACK_HOSTS:
        raise errors.InvalidRequest("redirect URI must use https (http only to a loopback host)")
    # The origin goes into the consent page's Content-Security-Policy: nothing but a host.
    if not _HOST.match(host) or "@" in parts.netloc:
        raise errors.InvalidRequest("redirect URI must have a plain host name and no user info")
    if "#" in uri:
        raise errors.InvalidRequest("redirect URI must not have a fragment")
    return uri


def single_values(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """Request parameters as a dict; ``ValueError`` naming one sent twice (RFC 6749 §3.1)."""
    values: dict[str, str] = {}
    for name, value in pairs:
        if name in values:
            raise ValueError(f"{name} must not be sent more than once")
        values[name] = value
    return values


def choose_redirect_uri(client: Client | None, params: dict[str, str]) -> str:
    """Where the authorization answer goes: the registered URI, which a ``redirect_uri`` (or
    the seed's ``redirect_url``) must equal exactly when sent. Raises
    :class:`AuthorizePageError` when nothing can safely be redirected to."""
    if client is None:
        raise AuthorizePageError("This application is not registered (unknown client_id).")
    given = {params[name] for name in ("redirect_uri", "redirect_url") if params.get(name)}
    if len(given) > 1:
        raise AuthorizePageError("redirect_uri and redirect_url differ.")
    if given and given.pop() != client.redirect_uri:
        raise AuthorizePageError(
            "The redirect URI does not match the one registered for this application."
        )
    return client.redirect_uri


def check_authorization(
    client: Client, redirect_uri: str, params: dict[str, str]
) -> AuthorizationRequest:
    """Validate the rest of an authorization request; raises :class:`OAuthError` to be sent
    back to ``redirect_uri`` (with ``state``)."""
    state = params.get("state")
    if state is not None and len(state) > _MAX_PARAM:
        raise OAuthError("invalid_request", "state is too long")
    response_type = params.get("response_type")
    if not response_type:
        raise OAuthError("invalid_request", "response_type is required")
    if response_type != "code":
        raise OAuthError("unsupported_response_type", "Only response_type=code is supported")
    if not set(params.get("scope", "").split()) <= {SCOPE}:
        raise OAuthError("invalid_scope", f'The only scope is "{SCOPE}"')
    challenge, method = params.get("code_challenge"), params.get("code_challenge_method")
    if method is not None and method != "S256":
        raise OAuthError("invalid_request", "code_challenge_method must be S256 (plain is refused)")
    if challenge is not None and method is None:
        raise OAuthError("invalid_request", "code_challenge_method=S256 is required")
    if method is not None and challenge is None:
        raise OAuthError("invalid_request", "code_challenge is required with its method")
    if challenge is not None and not _S256_CHALLENGE.match(challenge):
        raise OAuthError("invalid_request", "code_challenge must be 43 base64url characters")
    return AuthorizationRequest(client.client_id, redirect_uri, state, challenge)


def redirect_with(redirect_uri: str, params: dict[str, str | None]) -> str:
    """``redirect_uri`` with ``params`` added to its query; the registered URI is kept verbatim
    (including its own query, RFC 6749 §3.1.2)."""
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return f"{redirect_uri}{'&' if '?' in redirect_uri else '?'}{query}"


def client_credentials(authorization: str | None, params: dict[str, str]) -> tuple[str, str]:
    """``(client_id, client_secret)`` from HTTP Basic (RFC 6749 §2.3.1, form-encoded parts) or
    from the body; one method only."""
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() != "basic":
            raise invalid_client("Client authentication must use HTTP Basic or the body")
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise invalid_client("Malformed Basic credentials") from exc
        client_id, sep, secret = decoded.partition(":")
        client_id, secret = unquote_plus(client_id), unquote_plus(secret)
        if not sep or not client_id or not secret:
            raise invalid_client("Basic credentials must be client_id:client_secret")
        if "client_secret" in params:
            raise OAuthError("invalid_request", "Use one client authentication method, not two")
        if params.get("client_id", client_id) != client_id:
            raise OAuthError("invalid_request", "client_id differs from the Basic credentials")
        return client_id, secret
    client_id, secret = params.get("client_id"), params.get("client_secret")
    if not client_id or not secret:
        raise invalid_client("client_id and client_secret are required")
    return client_id, secret


def authenticate_client(client: Client | None, secret: str) -> Client:
    """The client when ``secret`` is its secret; 401 ``invalid_client`` otherwise (one answer
    for an unknown client and a wrong secret)."""
    if client is None or not hmac.compare_digest(client.secret_hash, digest(secret)):
        raise invalid_client()
    return client


def grant_type_of(params: dict[str, str]) -> str:
    """The grant requested; a missing ``grant_type`` with a ``code`` is the seed's exchange."""
    grant_type = params.get("grant_type")
    if grant_type is None and "code" in params:
        return "authorization_code"
    if grant_type not in {"authorization_code", "refresh_token"}:
        raise OAuthError(
            "unsupported_grant_type",
            "grant_type must be authorization_code or refresh_token",
        )
    return grant_type


def check_code(code: Code, now: datetime, params: dict[str, str]) -> None:
    """The checks of a code exchange once the code is known to be this client's and unused:
    expiry, redirect URI and PKCE; raises ``invalid_grant``."""
    if now >= code.expires_at:
        raise OAuthError("invalid_grant", "The authorization code has expired")
    sent_uri = params.get("redirect_uri")
    if sent_uri is not None and sent_uri != code.redirect_uri:
        raise OAuthError("invalid_grant", "redirect_uri differs from the authorization request")
    verifier = params.get("code_verifier")
    if code.code_challenge is None:
        if verifier is not None:
            raise OAuthError("invalid_grant", "code_verifier sent, but no code_challenge was")
        return
    if verifier is None:
        raise OAuthError("invalid_grant", "code_verifier is required (a challenge was sent)")
    if not _VERIFIER.match(verifier) or not hmac.compare_digest(
        create_s256_code_challenge(verifier), code.code_challenge
    ):
        raise OAuthError("invalid_grant", "code_verifier does not match the code_challenge")


def check_scope(params: dict[str, str]) -> None:
    """A refresh may ask for the granted scope or less; there is only ``api``."""
    if not set(params.get("scope", "").split()) <= {SCOPE}:
        raise OAuthError("invalid_scope", f'The only scope is "{SCOPE}"')


def token_answer(
    access_token: str, refresh_token: str, created_at: datetime, expires_in: int
) -> dict[str, object]:
    """Exactly the seed's answer, plus ``refresh_token`` (an extra field clients ignore)."""
    return {
        "access_token": access_token,
        "token_type": TOKEN_TYPE,
        "expires_in": expires_in,
        "scope": SCOPE,
        "created_at": int(created_at.timestamp()),
        "refresh_token": refresh_token,
    }
