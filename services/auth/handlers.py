"""Auth's HTTP handlers: parse the request, call one use case, answer."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from urllib.parse import urlencode, urlsplit

from aiohttp import web

from services.auth import domain, home, oauth, repo
from services.auth.applications import Applications
from services.auth.config import AuthConfig
from services.auth.credentials import Credentials
from services.auth.grants import Grants
from services.auth.logins import Logins, LoginTokens, Refused
from services.auth.sessions import Session, Sessions
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
from shared.runtime import INTERNAL

CONFIG = web.AppKey("auth.config", AuthConfig)
PAGES = web.AppKey("auth.pages", Pages)
CREDENTIALS = web.AppKey("auth.credentials", Credentials)
SESSIONS = web.AppKey("auth.sessions", Sessions)
LOGINS = web.AppKey("auth.logins", Logins)
GRANTS = web.AppKey("auth.grants", Grants)
APPLICATIONS = web.AppKey("auth.applications", Applications)


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
    principal = await request.app[CREDENTIALS].resolve(credential)
    return web.json_response({"principal": principal.__dict__})


# --- JSON API ---------------------------------------------------------------------------------


async def get_user(request: web.Request) -> web.Response:
    """``GET /user`` → ``{id, name, email}`` of the caller."""
    user = await _current_user(request)
    return web.json_response({"id": str(user.id), "name": user.name, "email": user.email})


async def list_credentials(request: web.Request) -> web.Response:
    """``GET /api/keys`` → the account's key pairs and tokens (no secrets)."""
    principal = _credential_manager(request)
    found = await request.app[CREDENTIALS].of_account(uuid.UUID(principal.account_id))
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
    created = await request.app[CREDENTIALS].issue(user, kind, name)
    return web.json_response(created, status=201)


async def revoke_credential(request: web.Request) -> web.Response:
    """``DELETE /api/keys/{id}`` → invalidates one of the account's credentials."""
    principal = _credential_manager(request)
    credential_id = _uuid(request.match_info["credential_id"])
    kind = await request.app[CREDENTIALS].revoke(uuid.UUID(principal.account_id), credential_id)
    return web.json_response(
        {"id": str(credential_id), "kind": kind, "revoked": True},
        headers={REVOKED_HEADER: str(credential_id)},
    )


# --- web pages --------------------------------------------------------------------------------


async def home_page(request: web.Request) -> web.Response:
    """``GET /``: what Darkroom is and how to start; signed in, the account's work too (its
    projects, recent reports, comparisons awaiting review and jobs, as reports summarises
    them: see :mod:`services.auth.home`)."""
    user = await _page_user(request)
    summary = home.Summary()
    if user is not None:
        summary = await home.account_work(
            request.app[INTERNAL], request.app[CONFIG].service_url("reports"), principal_of(request)
        )
    return request.app[PAGES].render(
        "home.html", user=user, principal=principal_of(request), summary=summary
    )


async def sign_up_page(request: web.Request) -> web.Response:
    """``GET /signup``."""
    return request.app[PAGES].render("signup.html", user=None, error=None, name="", email="")


async def sign_up(request: web.Request) -> web.Response:
    """``POST /signup`` (form): create the account, sign in, go to the keys page."""
    form = await read_form(request)
    name, email = str(form.get("name", "")), str(form.get("email", ""))
    try:
        session = await request.app[SESSIONS].sign_up(name, email, str(form.get("password", "")))
    except (errors.InvalidRequest, errors.Conflict) as exc:
        return request.app[PAGES].render(
            "signup.html", status=exc.status, user=None, error=exc.message, name=name, email=email
        )
    return _with_session(request, redirect("/keys"), session)


async def sign_in_page(request: web.Request) -> web.Response:
    """``GET /signin?next=…``."""
    next_path = safe_next(request.query.get("next"), "/keys")
    return request.app[PAGES].render("signin.html", user=None, error=None, email="", next=next_path)


async def sign_in(request: web.Request) -> web.Response:
    """``POST /signin`` (form): check the password, open a session, go to ``next``."""
    form = await read_form(request)
    email, password = str(form.get("email", "")), str(form.get("password", ""))
    next_path = safe_next(str(form.get("next", "")), "/keys")
    session = await request.app[SESSIONS].sign_in(email, password, principal_of(request))
    if session is None:
        return request.app[PAGES].render(
            "signin.html",
            status=401,
            user=None,
            error="Wrong e-mail or password.",
            email=email,
            next=next_path,
        )
    response = _with_session(request, redirect(next_path), session)
    if session.ended:
        response.headers[REVOKED_HEADER] = session.ended
    return response


async def sign_out(request: web.Request) -> web.Response:
    """``POST /signout``: revoke the session and clear the cookie."""
    principal = principal_of(request)
    if forged := await _forged(request, await read_form(request)):
        return forged
    response = redirect("/")
    if ended := await request.app[SESSIONS].sign_out(principal):
        response.headers[REVOKED_HEADER] = ended
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
    created = await request.app[CREDENTIALS].issue(user, kind, "")
    return await _render_keys(request, user, created=created, status=201)


async def keys_revoke_confirm(request: web.Request) -> web.Response:
    """``GET /keys/{id}/revoke``: "Invalidate this credential?", a form that posts it (with
    the page's token) and a way back; nothing changes until it is posted."""
    user = await _page_user(request)
    if user is None:
        return redirect("/signin?next=/keys")
    credential_id = str(_uuid(request.match_info["credential_id"]))
    found = await request.app[CREDENTIALS].of_account(user.account_id)
    live = [
        (kind, c)
        for kind in ("tokens", "keys")
        for c in found[kind]
        if str(c["id"]) == credential_id and not c["revoked_at"]
    ]
    if not live:
        raise errors.NotFound("No such live credential in this account")
    kind, credential = live[0]
    return request.app[PAGES].render(
        "keys_revoke.html",
        user=user,
        principal=principal_of(request),
        kind=kind,
        credential=credential,
    )


async def keys_revoke(request: web.Request) -> web.Response:
    """``POST /keys/{id}/revoke`` (form): invalidate, then back to the list."""
    user = await _page_user(request)
    if user is None:
        return redirect("/signin?next=/keys")
    if forged := await _forged(request, await read_form(request)):
        return forged
    credential_id = _uuid(request.match_info["credential_id"])
    await request.app[CREDENTIALS].revoke(user.account_id, credential_id)
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
    tokens = await request.app[LOGINS].log_in(fields["username"], fields["password"])
    return _login_answer(tokens)


async def api_refresh(request: web.Request) -> web.Response:
    """``POST /api/v1/auth/refresh/ {refresh_token}`` → a new ``access_token`` and a rotated
    ``refresh_token`` (plus ``company_id``, ``id``); the old pair stops working.

    An unknown, expired or revoked refresh token → 401 ``bad_credentials``; one that was
    already used is a replay: every token of that login is revoked, and 401.
    """
    fields = await _api_fields(request, ("refresh_token",))
    refreshed = await request.app[LOGINS].refresh(fields["refresh_token"])
    if isinstance(refreshed, Refused):
        response = web.json_response(refreshed.error.body(), status=refreshed.error.status)
        return _with_revoked(response, refreshed.revoked)
    return _login_answer(refreshed)


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


def _login_answer(tokens: LoginTokens) -> web.Response:
    response = web.json_response(
        {
            "access_token": tokens.access_token,
            "refresh_token": tokens.refresh_token,
            "company_id": str(tokens.account_id),
            "id": str(tokens.user_id),
        },
        headers={"Cache-Control": "no-store"},
    )
    return _with_revoked(response, tokens.revoked)


def _with_revoked(response: web.Response, revoked: list[uuid.UUID]) -> web.Response:
    # The gateway that carries this answer evicts one credential at once; with rotation a
    # family has one live pair, and any other reaches every gateway as credential.revoked.
    if revoked:
        response.headers[REVOKED_HEADER] = str(revoked[0])
    return response


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
    code = await request.app[GRANTS].approve(client, user, authorization)
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
        outcome = await request.app[GRANTS].token(request.headers.get("Authorization"), params)
    except oauth.OAuthError as exc:
        return _oauth_answer(exc.body(), exc.status, [])
    if isinstance(outcome.answer, oauth.OAuthError):
        error = outcome.answer
        return _oauth_answer(error.body(), error.status, outcome.revoked)
    return _oauth_answer(outcome.answer, 200, outcome.revoked)


async def revoke(request: web.Request) -> web.Response:
    """``POST /oauth/revoke`` (RFC 7009): revoke an access or refresh token — and with it the
    rest of its grant — and answer 200. A token that is unknown or another client's also gets
    200 and is left alone, so the endpoint tells nobody which tokens exist. Errors answer in
    RFC 6749 §5.2 JSON like ``/oauth/token``."""
    try:
        params = await _oauth_params(request)
        revoked = await request.app[GRANTS].revoke(request.headers.get("Authorization"), params)
    except oauth.OAuthError as exc:
        return _oauth_answer(exc.body(), exc.status, [])
    response = web.Response(status=200, headers={"Cache-Control": "no-store"})
    return _with_revoked(response, revoked)


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
    created = await request.app[APPLICATIONS].register(user, name, redirect_uri)
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
    client_pk = _uuid(request.match_info["client_pk"])
    revoked = await request.app[APPLICATIONS].delete(user.account_id, client_pk)
    return _with_revoked(redirect("/applications"), revoked)


async def _check_authorization(
    request: web.Request, pairs: list[tuple[str, str]]
) -> web.Response | tuple[oauth.Client, oauth.AuthorizationRequest]:
    try:
        params = oauth.single_values(pairs)
        client = None
        if params.get("client_id"):
            client = await request.app[GRANTS].client(params["client_id"])
        redirect_uri = oauth.choose_redirect_uri(client, params)
    except (ValueError, oauth.AuthorizePageError) as exc:
        return await _error_page(request, str(exc), 400)
    assert client is not None
    try:
        return client, oauth.check_authorization(client, redirect_uri, params)
    except oauth.OAuthError as exc:
        error = {"error": exc.error, "error_description": exc.description}
        return redirect(oauth.redirect_with(redirect_uri, {**error, "state": params.get("state")}))


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


def _oauth_answer(body: dict, status: int, revoked: list[uuid.UUID]) -> web.Response:
    headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="darkroom"'
    return _with_revoked(web.json_response(body, status=status, headers=headers), revoked)


# --- helpers ----------------------------------------------------------------------------------


def _with_session(
    request: web.Request, response: web.StreamResponse, session: Session
) -> web.StreamResponse:
    response.set_cookie(
        domain.SESSION_COOKIE,
        session.token,
        max_age=int(session.lifetime.total_seconds()),
        path="/",
        httponly=True,
        samesite="Lax",
        secure=request.app[CONFIG].public_url.startswith("https://"),
    )
    return response


async def _current_user(request: web.Request) -> repo.User:
    principal = require_account(request)
    user = await request.app[CREDENTIALS].user(uuid.UUID(principal.user_id))
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
    return await request.app[CREDENTIALS].user(uuid.UUID(principal.user_id))


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


async def _render_keys(
    request: web.Request, user: repo.User, *, created: dict | None, status: int = 200
) -> web.Response:
    found = await request.app[CREDENTIALS].of_account(user.account_id)
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


async def _render_applications(
    request: web.Request,
    user: repo.User,
    *,
    created: dict | None = None,
    error: str | None = None,
    form: object = None,
    status: int = 200,
) -> web.Response:
    applications = await request.app[APPLICATIONS].of_account(user.account_id)
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
