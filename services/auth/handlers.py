"""Auth's HTTP handlers: parse the request, call the domain and the repo, answer."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode, urlsplit

import asyncpg
from aiohttp import web

from services.auth import domain, oauth, repo
from services.auth.config import AuthConfig
from shared import errors
from shared.http import (
    REVOKED_HEADER,
    Principal,
    principal_of,
    read_form,
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
    if isinstance(credential, domain.LoginCredential):
        owner = await repo.live_login_token(conn, domain.digest(credential.token))
        if owner is None:
            raise errors.BadCredentials("Unknown, expired or revoked access token")
        await repo.touch(conn, "login_tokens", owner.credential_id)
        return "token", owner
    if isinstance(credential, domain.OAuthCredential):
        owner = await repo.live_oauth_token(conn, domain.digest(credential.token))
        if owner is None:
            raise errors.BadCredentials("Unknown, expired or revoked access token")
        await repo.touch(conn, "oauth_tokens", owner.credential_id)
        return "oauth", owner
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
    principal = _credential_manager(request)
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
    valid_kind = isinstance(kind, str) and kind in {"token", "key"}
    if not valid_kind or not isinstance(name, str) or len(name) > 200:
        raise errors.InvalidRequest('kind must be "token" or "key"; name a string of ≤200')
    _credential_manager(request)
    user = await _current_user(request)
    return web.json_response(await _issue(request.app, user, kind, name), status=201)


async def revoke_credential(request: web.Request) -> web.Response:
    """``DELETE /api/keys/{id}`` → invalidates one of the account's credentials."""
    principal = _credential_manager(request)
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
    return request.app[PAGES].render(
        "home.html", user=await _page_user(request), principal=principal_of(request)
    )


async def sign_up_page(request: web.Request) -> web.Response:
    """``GET /signup``."""
    return request.app[PAGES].render("signup.html", user=None, error=None, name="", email="")


async def sign_up(request: web.Request) -> web.Response:
    """``POST /signup`` (form): create the account, sign in, go to the keys page."""
    form = await read_form(request)
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
    form = await read_form(request)
    email, password = str(form.get("email", "")), str(form.get("password", ""))
    next_path = safe_next(str(form.get("next", "")), "/keys")
    async with request.app[POOL].acquire() as conn:
        user = await _password_user(conn, email, password)
        if user is None:
            return request.app[PAGES].render(
                "signin.html",
                status=401,
                user=None,
                error="Wrong e-mail or password.",
                email=email,
                next=next_path,
            )
        response = redirect(next_path)
        await _start_session(request.app, conn, user, response)
        # A session the browser already held (perhaps planted by someone else) ends here:
        # signing in never keeps a session identifier the browser brought.
        held = principal_of(request)
        if held.kind == "session" and held.credential_id:
            await repo.revoke_credential(
                conn, uuid.UUID(held.account_id), uuid.UUID(held.credential_id)
            )
            response.headers[REVOKED_HEADER] = held.credential_id
    return response


async def sign_out(request: web.Request) -> web.Response:
    """``POST /signout``: revoke the session and clear the cookie."""
    principal = principal_of(request)
    if forged := await _forged(request, await read_form(request)):
        return forged
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
    form = await read_form(request)
    if forged := await _forged(request, form):
        return forged
    kind = "key" if form.get("kind") == "key" else "token"
    created = await _issue(request.app, user, kind, "")
    return await _render_keys(request, user, created=created, status=201)


async def keys_revoke(request: web.Request) -> web.Response:
    """``POST /keys/{id}/revoke`` (form): invalidate, then back to the list."""
    user = await _page_user(request)
    if user is None:
        return redirect("/signin?next=/keys")
    if forged := await _forged(request, await read_form(request)):
        return forged
    async with request.app[POOL].acquire() as conn:
        kind = await repo.revoke_credential(
            conn, user.account_id, _uuid(request.match_info["credential_id"])
        )
    if kind is None:
        raise errors.NotFound("No such live credential in this account")
    response = redirect("/keys")
    response.headers[REVOKED_HEADER] = request.match_info["credential_id"]
    return response


# --- API login (Haut.ai dialect) ---------------------------------------------------------------


async def api_login(request: web.Request) -> web.Response:
    """``POST /api/v1/login/ {username, password}`` (JSON or a form; ``username`` is the
    e-mail) → ``{access_token, refresh_token, company_id, id}``.

    The access token is a bearer credential for one hour; the refresh token gets a new pair
    from ``/api/v1/auth/refresh/``. A wrong e-mail or password → 401 ``bad_credentials`` (one
    answer for both); missing fields → 422 ``invalid_request``. Every call counts against the
    caller's address in the gateway's anonymous rate bucket, so guessing is rate-limited.
    """
    fields = await _api_fields(request, ("username", "password"))
    async with request.app[POOL].acquire() as conn:
        user = await _password_user(conn, fields["username"], fields["password"])
        if user is None:
            raise errors.BadCredentials("Wrong username or password")
        async with conn.transaction():
            access, refresh = await repo.issue_login_tokens(
                conn,
                user=user,
                family_id=uuid.uuid4(),
                lifetime=timedelta(seconds=domain.LOGIN_ACCESS_SECONDS),
                refresh_lifetime=timedelta(seconds=domain.LOGIN_REFRESH_SECONDS),
            )
    return _login_answer(user.account_id, user.id, access, refresh, [])


async def api_refresh(request: web.Request) -> web.Response:
    """``POST /api/v1/auth/refresh/ {refresh_token}`` → a new ``access_token`` and a rotated
    ``refresh_token`` (plus ``company_id``, ``id``); the old pair stops working.

    An unknown, expired or revoked refresh token → 401 ``bad_credentials``; one that was
    already used is a replay: every token of that login is revoked, and 401.
    """
    fields = await _api_fields(request, ("refresh_token",))
    async with request.app[POOL].acquire() as conn, conn.transaction():
        pair = await repo.lock_login_refresh(conn, domain.digest(fields["refresh_token"]))
        if pair is None or (pair.revoked_at is not None and pair.rotated_at is None):
            raise errors.BadCredentials("Unknown or revoked refresh token")
        if pair.rotated_at is not None:
            revoked = await repo.revoke_login_family(conn, pair.family_id)
            # Committed despite the error answer: the replay must cost the thief the family.
            return _login_error(
                errors.BadCredentials("The refresh token was already used; sign in again"),
                revoked,
            )
        if pair.refresh_expires_at <= datetime.now(UTC):
            raise errors.BadCredentials("The refresh token has expired; sign in again")
        user = await repo.user_by_id(conn, pair.user_id)
        if user is None:
            raise errors.BadCredentials("The user no longer exists")
        revoked = await repo.rotate_login_pair(conn, pair.id)
        access, refresh = await repo.issue_login_tokens(
            conn,
            user=user,
            family_id=pair.family_id,
            lifetime=timedelta(seconds=domain.LOGIN_ACCESS_SECONDS),
            refresh_lifetime=timedelta(seconds=domain.LOGIN_REFRESH_SECONDS),
        )
    return _login_answer(user.account_id, user.id, access, refresh, revoked)


async def _api_fields(request: web.Request, names: tuple[str, ...]) -> dict[str, str]:
    if request.content_type == "application/x-www-form-urlencoded":
        body: dict = dict(await read_form(request))
    else:
        body = await read_json_object(request)
    fields = {}
    for name in names:
        value = body.get(name)
        if not isinstance(value, str) or not value or len(value) > 1024:
            raise errors.InvalidRequest(f"{name} is required (a string)")
        fields[name] = value
    return fields


def _login_answer(
    account_id: uuid.UUID,
    user_id: uuid.UUID,
    access: str,
    refresh: str,
    revoked: list[uuid.UUID],
) -> web.Response:
    response = web.json_response(
        {
            "access_token": access,
            "refresh_token": refresh,
            "company_id": str(account_id),
            "id": str(user_id),
        },
        headers={"Cache-Control": "no-store"},
    )
    if revoked:
        response.headers[REVOKED_HEADER] = str(revoked[0])
    return response


def _login_error(error: errors.DarkroomError, revoked: list[uuid.UUID]) -> web.Response:
    response = web.json_response(error.body(), status=error.status)
    if revoked:
        response.headers[REVOKED_HEADER] = str(revoked[0])
    return response


# --- helpers ----------------------------------------------------------------------------------


async def _password_user(conn: asyncpg.Connection, email: str, password: str) -> repo.User | None:
    """The user whose e-mail and password these are, or None; as slow for an unknown e-mail as
    for a wrong password, so timing does not tell which e-mails exist."""
    found = await repo.user_for_sign_in(conn, email)
    stored_hash = found[1] if found else domain.DUMMY_PASSWORD_HASH
    matches = await asyncio.to_thread(domain.password_matches, stored_hash, password)
    return found[0] if found is not None and matches else None


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
        principal=principal_of(request),
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


def _credential_manager(request: web.Request) -> Principal:
    # An application the user authorised acts on the API for them; it must not mint
    # credentials that outlive its grant, nor revoke the user's own.
    principal = require_account(request)
    if principal.kind == "oauth":
        raise errors.Forbidden("OAuth access tokens cannot manage credentials")
    return principal


async def _page_user(request: web.Request) -> repo.User | None:
    principal = principal_of(request)
    if not principal.authenticated or principal.user_id is None or principal.kind == "oauth":
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


# --- OAuth 2.0 authorization server -----------------------------------------------------------


async def authorize_page(request: web.Request) -> web.Response:
    """``GET /oauth/authorize?client_id&response_type=code&redirect_url|redirect_uri&state``:
    sign in first, then the consent page. An unknown client or redirect URI gets a 400 page
    and no redirect; other errors go back to the client's redirect URI."""
    checked = await _check_authorization(request, list(request.query.items()))
    if isinstance(checked, web.Response):
        return checked
    client, authorization = checked
    user = await _session_user(request)
    if user is None:
        return redirect("/signin?" + urlencode({"next": request.raw_path}))
    response = request.app[PAGES].render(
        "consent.html",
        user=user,
        client=client,
        redirect_uri=authorization.redirect_uri,
        fields=authorization.form_fields(),
        principal=principal_of(request),
    )
    # Browsers hold a form's redirect to form-action too: allow the one we will send them to.
    parts = urlsplit(authorization.redirect_uri)
    csp = response.headers["Content-Security-Policy"]
    response.headers["Content-Security-Policy"] = csp.replace(
        "form-action 'self'", f"form-action 'self' {parts.scheme}://{parts.netloc}"
    )
    return response


async def authorize_decision(request: web.Request) -> web.Response:
    """``POST /oauth/authorize`` (the consent form): approve → redirect with ``code`` and
    ``state``; anything else → ``error=access_denied``."""
    form = await read_form(request)
    pairs = [
        (name, value)
        for name, value in form.items()
        if isinstance(value, str) and name not in {"csrf", "decision"}
    ]
    checked = await _check_authorization(request, pairs)
    if isinstance(checked, web.Response):
        return checked
    client, authorization = checked
    user = await _session_user(request)
    if user is None:
        query = urlencode(authorization.form_fields())
        return redirect("/signin?" + urlencode({"next": f"/oauth/authorize?{query}"}))
    if forged := await _forged(request, form):
        return forged
    if form.get("decision") != "approve":
        params = {"error": "access_denied", "error_description": "The user denied access"}
        return redirect(
            oauth.redirect_with(
                authorization.redirect_uri, {**params, "state": authorization.state}
            )
        )
    async with request.app[POOL].acquire() as conn:
        code = await repo.create_oauth_code(
            conn,
            client_pk=client.id,
            user_id=user.id,
            redirect_uri=authorization.redirect_uri,
            code_challenge=authorization.code_challenge,
            lifetime=timedelta(seconds=request.app[CONFIG].oauth_code_seconds),
        )
    return redirect(
        oauth.redirect_with(
            authorization.redirect_uri, {"code": code, "state": authorization.state}
        )
    )


async def token(request: web.Request) -> web.Response:
    """``POST /oauth/token``: exchange a code (``grant_type=authorization_code``, or no
    grant_type as in the seed) or a refresh token for the seed's token answer.

    Client authentication by HTTP Basic or ``client_id``/``client_secret`` in the body (form or
    JSON). Errors answer in RFC 6749 §5.2 JSON, ``{"error": "invalid_grant",
    "error_description": ...}`` with 400 (401 for ``invalid_client``), not in the platform's
    error shape, because standard OAuth 2.0 client libraries parse exactly that.
    """
    try:
        params = await _oauth_params(request)
        client = await _authenticated_client(request, params)
        grant_type = oauth.grant_type_of(params)
        async with request.app[POOL].acquire() as conn:
            if grant_type == "authorization_code":
                outcome, revoked = await _redeem_code(request.app, conn, client, params)
            else:
                oauth.check_scope(params)
                outcome, revoked = await _refresh(request.app, conn, client, params)
    except oauth.OAuthError as exc:
        outcome, revoked = exc, []
    if isinstance(outcome, oauth.OAuthError):
        return _oauth_answer(outcome.body(), outcome.status, revoked)
    return _oauth_answer(outcome, 200, revoked)


async def revoke(request: web.Request) -> web.Response:
    """``POST /oauth/revoke`` (RFC 7009): revoke an access or refresh token — and with it the
    rest of its grant — and answer 200. A token that is unknown or another client's also gets
    200 and is left alone, so the endpoint tells nobody which tokens exist. Errors answer in
    RFC 6749 §5.2 JSON like ``/oauth/token``."""
    try:
        params = await _oauth_params(request)
        client = await _authenticated_client(request, params)
        value = params.get("token")
        if not value:
            raise oauth.OAuthError("invalid_request", "token is required")
        revoked: list[uuid.UUID] = []
        async with request.app[POOL].acquire() as conn:
            pair = await repo.oauth_pair_of(conn, domain.digest(value))
            if pair is not None and pair.client_pk == client.id:
                revoked = await repo.revoke_oauth_grant(conn, pair.code_id)
    except oauth.OAuthError as exc:
        return _oauth_answer(exc.body(), exc.status, [])
    response = web.Response(status=200, headers={"Cache-Control": "no-store"})
    if revoked:
        response.headers[REVOKED_HEADER] = str(revoked[0])
    return response


async def applications_page(request: web.Request) -> web.Response:
    """``GET /applications``: the account's OAuth applications, and a form to register one."""
    user = await _session_user(request)
    if user is None:
        return redirect("/signin?next=/applications")
    return await _render_applications(request, user)


async def applications_create(request: web.Request) -> web.Response:
    """``POST /applications`` (form ``name``, ``redirect_uri``): register an application and
    show its secret once."""
    user = await _session_user(request)
    if user is None:
        return redirect("/signin?next=/applications")
    form = await read_form(request)
    if forged := await _forged(request, form):
        return forged
    name, redirect_uri = str(form.get("name", "")).strip(), str(form.get("redirect_uri", ""))
    try:
        if not 1 <= len(name) <= 200:
            raise errors.InvalidRequest("name must be 1 to 200 characters")
        redirect_uri = oauth.validate_redirect_uri(redirect_uri)
    except errors.InvalidRequest as exc:
        return await _render_applications(request, user, error=exc.message, form=form, status=422)
    async with request.app[POOL].acquire() as conn:
        _client_pk, client_id, secret = await repo.create_oauth_client(
            conn,
            account_id=user.account_id,
            redirect_uri=redirect_uri,
            name=name,
            created_by=user.id,
        )
    created = {"client_id": client_id, "client_secret": secret}
    return await _render_applications(request, user, created=created, status=201)


async def applications_delete(request: web.Request) -> web.Response:
    """``POST /applications/{id}/delete`` (form): delete the application and revoke every
    token it holds (the gateways evict them on ``credential.revoked``)."""
    user = await _session_user(request)
    if user is None:
        return redirect("/signin?next=/applications")
    form = await read_form(request)
    if forged := await _forged(request, form):
        return forged
    async with request.app[POOL].acquire() as conn:
        revoked = await repo.delete_oauth_client(
            conn, user.account_id, _uuid(request.match_info["client_pk"])
        )
    if revoked is None:
        raise errors.NotFound("No such application in this account")
    response = redirect("/applications")
    if revoked:
        response.headers[REVOKED_HEADER] = str(revoked[0])
    return response


async def _check_authorization(
    request: web.Request, pairs: list[tuple[str, str]]
) -> web.Response | tuple[oauth.Client, oauth.AuthorizationRequest]:
    try:
        params = oauth.single_values(pairs)
        client = None
        if params.get("client_id"):
            async with request.app[POOL].acquire() as conn:
                client = await repo.live_oauth_client(conn, params["client_id"])
        redirect_uri = oauth.choose_redirect_uri(client, params)
    except (ValueError, oauth.AuthorizePageError) as exc:
        return await _error_page(request, str(exc), 400)
    assert client is not None
    try:
        return client, oauth.check_authorization(client, redirect_uri, params)
    except oauth.OAuthError as exc:
        error = {"error": exc.error, "error_description": exc.description}
        return redirect(oauth.redirect_with(redirect_uri, {**error, "state": params.get("state")}))


async def _redeem_code(
    app: web.Application, conn: asyncpg.Connection, client: oauth.Client, params: dict[str, str]
) -> tuple[dict | oauth.OAuthError, list[uuid.UUID]]:
    # Errors are returned, not raised, inside the transaction: spending the code and revoking
    # a replayed code's tokens must commit even though the client gets an error.
    value = params.get("code")
    if not value:
        return oauth.OAuthError("invalid_request", "code is required"), []
    async with conn.transaction():
        code = await repo.lock_oauth_code(conn, domain.digest(value))
        if code is None or code.client_pk != client.id:
            return oauth.OAuthError("invalid_grant", "Unknown authorization code"), []
        if code.used_at is not None:
            revoked = await repo.revoke_oauth_grant(conn, code.id)
            message = "The authorization code was already used; its tokens are revoked"
            return oauth.OAuthError("invalid_grant", message), revoked
        await repo.spend_oauth_code(conn, code.id)
        try:
            oauth.check_code(code, datetime.now(UTC), params)
        except oauth.OAuthError as exc:
            return exc, []
        answer = await _issue_oauth(app, conn, client, code.account_id, code.user_id, code.id)
    return answer, []


async def _refresh(
    app: web.Application, conn: asyncpg.Connection, client: oauth.Client, params: dict[str, str]
) -> tuple[dict | oauth.OAuthError, list[uuid.UUID]]:
    value = params.get("refresh_token")
    if not value:
        return oauth.OAuthError("invalid_request", "refresh_token is required"), []
    async with conn.transaction():
        pair = await repo.lock_oauth_refresh(conn, domain.digest(value))
        if pair is None or pair.client_pk != client.id:
            return oauth.OAuthError("invalid_grant", "Unknown refresh token"), []
        if pair.rotated_at is not None:
            revoked = await repo.revoke_oauth_grant(conn, pair.code_id)
            message = "The refresh token was already used; its grant is revoked"
            return oauth.OAuthError("invalid_grant", message), revoked
        if pair.revoked_at is not None or pair.refresh_expires_at <= datetime.now(UTC):
            return oauth.OAuthError("invalid_grant", "The refresh token is revoked or expired"), []
        revoked = await repo.rotate_oauth_pair(conn, pair.id)
        answer = await _issue_oauth(app, conn, client, pair.account_id, pair.user_id, pair.code_id)
    return answer, revoked


async def _issue_oauth(
    app: web.Application,
    conn: asyncpg.Connection,
    client: oauth.Client,
    account_id: uuid.UUID,
    user_id: uuid.UUID,
    code_id: uuid.UUID,
) -> dict:
    config = app[CONFIG]
    _token_id, access, refresh, created_at = await repo.issue_oauth_tokens(
        conn,
        client_pk=client.id,
        account_id=account_id,
        user_id=user_id,
        code_id=code_id,
        lifetime=timedelta(seconds=config.oauth_token_seconds),
        refresh_lifetime=timedelta(seconds=config.oauth_refresh_seconds),
    )
    return oauth.token_answer(access, refresh, created_at, config.oauth_token_seconds)


async def _oauth_params(request: web.Request) -> dict[str, str]:
    if request.content_type == "application/json":
        try:
            body = await request.json()
        except ValueError as exc:
            raise oauth.OAuthError("invalid_request", "Body must be valid JSON") from exc
        if not isinstance(body, dict) or not all(isinstance(v, str) for v in body.values()):
            raise oauth.OAuthError("invalid_request", "Body must be a JSON object of strings")
        return body
    if request.content_type != "application/x-www-form-urlencoded":
        raise oauth.OAuthError(
            "invalid_request", "Send application/x-www-form-urlencoded (or JSON) parameters"
        )
    form = await read_form(request)
    try:
        return oauth.single_values([(k, str(v)) for k, v in form.items()])
    except ValueError as exc:
        raise oauth.OAuthError("invalid_request", str(exc)) from exc


async def _authenticated_client(request: web.Request, params: dict[str, str]) -> oauth.Client:
    client_id, secret = oauth.client_credentials(request.headers.get("Authorization"), params)
    async with request.app[POOL].acquire() as conn:
        client = await repo.live_oauth_client(conn, client_id)
    return oauth.authenticate_client(client, secret)


def _oauth_answer(body: dict, status: int, revoked: list[uuid.UUID]) -> web.Response:
    headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="darkroom"'
    if revoked:
        # The gateway that carries this answer evicts one credential at once; with rotation a
        # grant has one live pair, and any other reaches every gateway as credential.revoked.
        headers[REVOKED_HEADER] = str(revoked[0])
    return web.json_response(body, status=status, headers=headers)


async def _session_user(request: web.Request) -> repo.User | None:
    # Consent and application forms need a person in a browser session: no API credential
    # may approve an application or register one.
    principal = principal_of(request)
    if principal.kind != "session" or not principal.credential_id:
        return None
    return await _page_user(request)


async def _forged(request: web.Request, form: Mapping[str, object]) -> web.Response | None:
    """The 403 page when a session's form lacks its anti-forgery token, else None."""
    try:
        request.app[PAGES].check_form_token(principal_of(request), form)
    except errors.Forbidden as exc:
        return await _error_page(request, exc.message, 403)
    return None


async def _error_page(request: web.Request, message: str, status: int) -> web.Response:
    return request.app[PAGES].render(
        "oauth_error.html",
        status=status,
        user=await _page_user(request),
        principal=principal_of(request),
        message=message,
    )


async def _render_applications(
    request: web.Request,
    user: repo.User,
    *,
    created: dict | None = None,
    error: str | None = None,
    form: object = None,
    status: int = 200,
) -> web.Response:
    async with request.app[POOL].acquire() as conn:
        applications = await repo.oauth_clients_of(conn, user.account_id)
    return request.app[PAGES].render(
        "applications.html",
        status=status,
        user=user,
        applications=applications,
        created=created,
        error=error,
        form=form or {},
        principal=principal_of(request),
        public_url=request.app[CONFIG].public_url,
    )
