"""Auth's HTTP handlers: parse the request, call the domain and the repo, answer."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
from aiohttp import web

from services.auth import domain, repo
from services.auth.config import AuthConfig
from shared import errors
from shared.http import (
    REVOKED_HEADER,
    Principal,
    principal_of,
    read_json_object,
    require_account,
)
from shared.pages import Pages, redirect, safe_next
from shared.runtime import POOL

CONFIG = web.AppKey("auth.config", AuthConfig)
BOX = web.AppKey("auth.secret_box", domain.SecretBox)
PAGES = web.AppKey("auth.pages", Pages)


# --- credential resolution (called by the gateway) -------------------------------------------


async def resolve(request: web.Request) -> web.Response:
    """``POST /internal/resolve {authorization?, session?}`` → the principal, or 401."""
    body = await read_json_object(request)
    authorization, session = body.get("authorization"), body.get("session")
    if isinstance(authorization, str) and authorization:
        credential = domain.parse_authorization(authorization)
    elif isinstance(session, str) and session:
        credential = domain.SessionCredential(session)
    else:
        raise errors.BadCredentials("No credentials")
    async with request.app[POOL].acquire() as conn:
        kind, owner = await _owner_of(conn, request.app, credential)
    principal = Principal(
        kind=kind,
        account_id=str(owner.account_id),
        user_id=str(owner.user_id),
        credential_id=str(owner.credential_id),
    )
    return web.json_response({"principal": principal.__dict__})


async def _owner_of(
    conn: asyncpg.Connection, app: web.Application, credential: domain.Credential
) -> tuple[str, repo.CredentialOwner]:
    if isinstance(credential, domain.BasicCredential | domain.JwtCredential):
        row = (
            await repo.live_api_key(conn, credential.key)
            if domain.is_api_key(credential.key)
            else None
        )
        if row is None:
            raise errors.BadCredentials("Invalid API key or secret")
        secret = app[BOX].open(row.secret_encrypted, row.id.bytes)
        if isinstance(credential, domain.BasicCredential):
            if not domain.secrets_equal(secret, credential.secret):
                raise errors.BadCredentials("Invalid API key or secret")
            kind = "basic"
        else:
            domain.verify_jwt(credential.token, row.key, secret, leeway=app[CONFIG].jwt_leeway)
            kind = "jwt"
        await repo.touch(conn, "api_keys", row.id)
        return kind, repo.CredentialOwner(row.account_id, row.user_id, row.id)
    if isinstance(credential, domain.TokenCredential):
        owner = await repo.live_token(conn, domain.digest(credential.token))
        if owner is None:
            raise errors.BadCredentials("Unknown or invalidated token")
        await repo.touch(conn, "api_tokens", owner.credential_id)
        return "token", owner
    owner = await repo.live_session(conn, domain.digest(credential.token))
    if owner is None:
        raise errors.BadCredentials("Session expired or signed out")
    return "session", owner


# --- JSON API ---------------------------------------------------------------------------------


async def get_user(request: web.Request) -> web.Response:
    """``GET /user`` → ``{id, name, email}`` of the caller."""
    user = await _current_user(request)
    return web.json_response({"id": str(user.id), "name": user.name, "email": user.email})


async def list_credentials(request: web.Request) -> web.Response:
    """``GET /api/keys`` → the account's key pairs and tokens (no secrets)."""
    principal = require_account(request)
    async with request.app[POOL].acquire() as conn:
        found = await repo.credentials_of(conn, uuid.UUID(principal.account_id))
    return web.json_response(
        {
            "keys": [_credential_json(k, "api_key") for k in found["keys"]],
            "tokens": [_credential_json(t, "token") for t in found["tokens"]],
        }
    )


async def create_credential(request: web.Request) -> web.Response:
    """``POST /api/keys {kind: "token"|"key", name?}`` → the new credential, shown once."""
    body = await read_json_object(request)
    unknown = set(body) - {"kind", "name"}
    if unknown:
        raise errors.InvalidRequest(f"Unknown fields: {', '.join(sorted(unknown))}")
    kind, name = body.get("kind", "token"), body.get("name", "")
    if kind not in {"token", "key"} or not isinstance(name, str) or len(name) > 200:
        raise errors.InvalidRequest('kind must be "token" or "key"; name a string of ≤200')
    user = await _current_user(request)
    return web.json_response(await _issue(request.app, user, kind, name), status=201)


async def revoke_credential(request: web.Request) -> web.Response:
    """``DELETE /api/keys/{id}`` → invalidates one of the account's credentials."""
    principal = require_account(request)
    credential_id = _uuid(request.match_info["credential_id"])
    async with request.app[POOL].acquire() as conn:
        kind = await repo.revoke_credential(conn, uuid.UUID(principal.account_id), credential_id)
    if kind is None:
        raise errors.NotFound("No such live credential in this account")
    return web.json_response(
        {"id": str(credential_id), "kind": kind, "revoked": True},
        headers={REVOKED_HEADER: str(credential_id)},
    )


# --- web pages --------------------------------------------------------------------------------


async def home_page(request: web.Request) -> web.Response:
    """``GET /``: what Darkroom is, with links to sign in or to the keys."""
    return request.app[PAGES].render("home.html", user=await _page_user(request))


async def sign_up_page(request: web.Request) -> web.Response:
    """``GET /signup``."""
    return request.app[PAGES].render("signup.html", user=None, error=None, name="", email="")


async def sign_up(request: web.Request) -> web.Response:
    """``POST /signup`` (form): create the account, sign in, go to the keys page."""
    form = await request.post()
    name, email = str(form.get("name", "")), str(form.get("email", ""))
    try:
        fields = domain.validate_sign_up(name, email, str(form.get("password", "")))
        password_hash = await asyncio.to_thread(domain.hash_password, fields.password)
        async with request.app[POOL].acquire() as conn:
            user = await repo.create_account(
                conn, name=fields.name, email=fields.email, password_hash=password_hash
            )
            response = redirect("/keys")
            await _start_session(request.app, conn, user, response)
    except errors.InvalidRequest as exc:
        return _sign_up_error(request, exc.message, name, email, 422)
    except asyncpg.UniqueViolationError:
        return _sign_up_error(request, "That e-mail already has an account.", name, email, 409)
    return response


def _sign_up_error(request: web.Request, message: str, name: str, email: str, status: int):
    return request.app[PAGES].render(
        "signup.html", status=status, user=None, error=message, name=name, email=email
    )


async def sign_in_page(request: web.Request) -> web.Response:
    """``GET /signin?next=…``."""
    next_path = safe_next(request.query.get("next"), "/keys")
    return request.app[PAGES].render("signin.html", user=None, error=None, email="", next=next_path)


async def sign_in(request: web.Request) -> web.Response:
    """``POST /signin`` (form): check the password, open a session, go to ``next``."""
    form = await request.post()
    email, password = str(form.get("email", "")), str(form.get("password", ""))
    next_path = safe_next(str(form.get("next", "")), "/keys")
    async with request.app[POOL].acquire() as conn:
        found = await repo.user_for_sign_in(conn, email)
        stored_hash = found[1] if found else domain.DUMMY_PASSWORD_HASH
        matches = await asyncio.to_thread(domain.password_matches, stored_hash, password)
        if found is None or not matches:
            return request.app[PAGES].render(
                "signin.html",
                status=401,
                user=None,
                error="Wrong e-mail or password.",
                email=email,
                next=next_path,
            )
        response = redirect(next_path)
        await _start_session(request.app, conn, found[0], response)
    return response


async def sign_out(request: web.Request) -> web.Response:
    """``POST /signout``: revoke the session and clear the cookie."""
    principal = principal_of(request)
    response = redirect("/")
    if principal.kind == "session" and principal.credential_id:
        async with request.app[POOL].acquire() as conn:
            await repo.revoke_credential(
                conn, uuid.UUID(principal.account_id), uuid.UUID(principal.credential_id)
            )
        response.headers[REVOKED_HEADER] = principal.credential_id
    response.del_cookie(domain.SESSION_COOKIE, path="/")
    return response


async def keys_page(request: web.Request) -> web.Response:
    """``GET /keys``: list, generate and invalidate credentials (sign-in required)."""
    user = await _page_user(request)
    if user is None:
        return redirect("/signin?next=/keys")
    return await _render_keys(request, user, created=None)


async def keys_create(request: web.Request) -> web.Response:
    """``POST /keys`` (form ``kind``): generate a token or key pair and show it once."""
    user = await _page_user(request)
    if user is None:
        return redirect("/signin?next=/keys")
    form = await request.post()
    kind = "key" if form.get("kind") == "key" else "token"
    created = await _issue(request.app, user, kind, "")
    return await _render_keys(request, user, created=created, status=201)


async def keys_revoke(request: web.Request) -> web.Response:
    """``POST /keys/{id}/revoke`` (form): invalidate, then back to the list."""
    user = await _page_user(request)
    if user is None:
        return redirect("/signin?next=/keys")
    async with request.app[POOL].acquire() as conn:
        kind = await repo.revoke_credential(
            conn, user.account_id, _uuid(request.match_info["credential_id"])
        )
    if kind is None:
        raise errors.NotFound("No such live credential in this account")
    response = redirect("/keys")
    response.headers[REVOKED_HEADER] = request.match_info["credential_id"]
    return response


# --- helpers ----------------------------------------------------------------------------------


async def _render_keys(
    request: web.Request, user: repo.User, *, created: dict | None, status: int = 200
) -> web.Response:
    async with request.app[POOL].acquire() as conn:
        found = await repo.credentials_of(conn, user.account_id)
    return request.app[PAGES].render(
        "keys.html",
        status=status,
        user=user,
        created=created,
        keys=found["keys"],
        tokens=found["tokens"],
        public_url=request.app[CONFIG].public_url,
    )


async def _issue(app: web.Application, user: repo.User, kind: str, name: str) -> dict:
    async with app[POOL].acquire() as conn:
        if kind == "key":
            key_id, key, secret = await repo.issue_key_pair(conn, app[BOX], user, name)
            return {"id": str(key_id), "kind": "api_key", "api_key": key, "api_secret": secret}
        token_id, token = await repo.issue_token(conn, user, name)
        return {"id": str(token_id), "kind": "token", "token": token}


async def _start_session(
    app: web.Application, conn: asyncpg.Connection, user: repo.User, response: web.StreamResponse
) -> None:
    token = domain.new_session_token()
    lifetime = timedelta(days=app[CONFIG].session_days)
    await repo.create_session(conn, user.id, domain.digest(token), datetime.now(UTC) + lifetime)
    response.set_cookie(
        domain.SESSION_COOKIE,
        token,
        max_age=int(lifetime.total_seconds()),
        path="/",
        httponly=True,
        samesite="Lax",
        secure=app[CONFIG].public_url.startswith("https://"),
    )


async def _current_user(request: web.Request) -> repo.User:
    principal = require_account(request)
    async with request.app[POOL].acquire() as conn:
        user = await repo.user_by_id(conn, uuid.UUID(principal.user_id))
    if user is None:
        raise errors.BadCredentials("The credential's user no longer exists")
    return user


async def _page_user(request: web.Request) -> repo.User | None:
    principal = principal_of(request)
    if not principal.authenticated or principal.user_id is None:
        return None
    async with request.app[POOL].acquire() as conn:
        return await repo.user_by_id(conn, uuid.UUID(principal.user_id))


def _credential_json(row: dict, kind: str) -> dict:
    shown = {"id": str(row["id"]), "kind": kind, "name": row["name"]}
    if kind == "api_key":
        shown["api_key"] = row["key"]
    else:
        shown["prefix"] = row["display_prefix"]
    for field in ("created_at", "last_used_at", "revoked_at"):
        shown[field] = row[field].isoformat() if row[field] else None
    return shown


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise errors.NotFound("No such credential") from exc
