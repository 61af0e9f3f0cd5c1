"""The OAuth 2.0 authorization server (Progimage dialect) through the gateway, as a standard
client library and a browser see it: the code flow with PKCE, consent and its anti-forgery
token, the seed's token answer, denied, replayed and expired codes, redirect URI matching and
the authorization errors sent back to the client.

The token endpoint's other grants and revocation are tested in tests/test_oauth_tokens.py,
applications and the operator CLI in tests/test_oauth_applications.py; what they share is in
tests/oauth_support.py."""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import urlencode

import httpx2
import pyvips
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from shared.runtime import POOL
from tests import oauth_support
from tests.oauth_support import (
    REDIRECT,
    Forms,
    assert_seed_answer,
    bearer,
    browser,
    consent,
    exchange,
    get_code,
    loopback,
    query_of,
    sign_in,
    user_status,
)

user = oauth_support.user
developer = oauth_support.developer
app_client = oauth_support.app_client


async def test_authlib_client_completes_the_code_flow_with_pkce(stack, user, app_client):
    raw_answers: list[dict] = []

    def capture(response):
        raw_answers.append(response.json())
        return response

    transport = httpx2.AsyncHTTPTransport(local_address=loopback())
    async with AsyncOAuth2Client(
        app_client["client_id"],
        app_client["client_secret"],
        redirect_uri=REDIRECT,
        code_challenge_method="S256",
        transport=transport,
    ) as oauth_client:
        oauth_client.register_compliance_hook("access_token_response", capture)
        verifier = generate_token(64)
        url, state = oauth_client.create_authorization_url(
            f"{stack.url}/oauth/authorize", code_verifier=verifier
        )
        assert "code_challenge=" in url and "code_challenge_method=S256" in url
        async with browser() as session:
            callback = await consent(session, stack, user, url)
        assert callback.startswith(REDIRECT + "?") and query_of(callback)["state"] == state
        token = await oauth_client.fetch_token(  # client_secret_basic: Basic through the gateway
            f"{stack.url}/oauth/token", authorization_response=callback, code_verifier=verifier
        )
        response = await oauth_client.get(f"{stack.url}/user")
        png = pyvips.Image.black(40, 30, bands=3).write_to_buffer(".png")
        uploaded = await oauth_client.post(
            f"{stack.url}/user/images",
            json={"process": {"file": base64.b64encode(png).decode(), "rotation": "90"}},
        )
        listed = await oauth_client.get(f"{stack.url}/user/images")
    assert response.status_code == 200
    assert uploaded.status_code == 201, uploaded.text
    image = uploaded.json()["data"]
    assert image["user_id"] == user["user_id"]
    assert [item["id"] for item in listed.json()["data"]] == [image["id"]]
    assert response.json() == {"id": user["user_id"], "name": user["name"], "email": user["email"]}
    assert_seed_answer(raw_answers[0])
    assert token["access_token"] == raw_answers[0]["access_token"]
    pool = stack.apps["auth"][POOL]
    stored = await pool.fetchrow(
        "SELECT account_id, user_id FROM oauth_tokens WHERE access_hash = $1",
        hashlib.sha256(token["access_token"].encode()).digest(),
    )
    assert stored is not None and str(stored["user_id"]) == user["user_id"]
    assert str(stored["account_id"]) == user["account_id"]


async def test_the_seeds_own_exchange_works(stack, client, user, app_client):
    """``redirect_url`` on the authorization, then only client_id, client_secret and code."""
    query = {
        "client_id": app_client["client_id"],
        "response_type": "code",
        "redirect_url": REDIRECT,
    }
    async with browser() as session:
        location = await consent(
            session, stack, user, f"{stack.url}/oauth/authorize?{urlencode(query)}"
        )
    assert "state" not in query_of(location)
    status, answer, headers = await exchange(
        client, stack, app_client, code=query_of(location)["code"]
    )
    assert status == 200, answer
    assert_seed_answer(answer)
    assert headers["Cache-Control"] == "no-store"
    async with client.get(f"{stack.url}/user", headers=bearer(answer["access_token"])) as r:
        assert r.status == 200 and (await r.json())["email"] == user["email"]
    # The same exchange as JSON (what many seed-era clients post).
    code = await get_code(stack, user, app_client)
    body = {"client_id": app_client["client_id"], "client_secret": app_client["client_secret"]}
    async with client.post(f"{stack.url}/oauth/token", json={**body, "code": code}) as r:
        assert r.status == 200
        assert_seed_answer(await r.json())


async def test_denying_redirects_with_access_denied_and_state(stack, user, app_client):
    query = {"client_id": app_client["client_id"], "response_type": "code", "state": "xyz"}
    async with browser() as session:
        location = await consent(
            session, stack, user, f"{stack.url}/oauth/authorize?{urlencode(query)}", "deny"
        )
    answer = query_of(location)
    assert location.startswith(REDIRECT + "?")
    assert answer["error"] == "access_denied" and answer["state"] == "xyz"
    assert "code" not in answer


async def test_a_reused_code_is_refused_and_revokes_its_token(
    stack, client, user, app_client, resilience
):
    code = await get_code(stack, user, app_client)
    status, first, _ = await exchange(client, stack, app_client, code=code)
    assert status == 200
    assert await user_status(client, stack, first["access_token"]) == 200  # cached by gateway
    replays = [await exchange(client, stack, app_client, code=code) for _ in range(3)]
    access_after = await user_status(client, stack, first["access_token"])
    refreshed_status, refreshed, _ = await exchange(
        client, stack, app_client, grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    accepted = sum(status == 200 for status, _, _ in replays) + (refreshed_status == 200)
    resilience.row(
        "auth",
        "OAuth authorization code replay",
        injected="a code exchanged once, then 3 more times; then the first grant's access and"
        " refresh tokens used",
        observed="every replay 400 invalid_grant, and the replay revoked the first grant: its"
        f" access token {access_after}, its refresh token {refreshed_status}",
        accepted=accepted + (access_after != 401),
        errors_5xx=sum(status >= 500 for status, _, _ in replays),
    )
    for status, again, _ in replays:
        assert status == 400 and again["error"] == "invalid_grant"
        assert isinstance(again["error_description"], str)
    assert access_after == 401
    assert refreshed_status == 400 and refreshed["error"] == "invalid_grant"


async def test_an_expired_code_is_invalid_grant(stack, client, user, app_client):
    code = await get_code(stack, user, app_client)
    pool = stack.apps["auth"][POOL]
    moved = await pool.execute(
        "UPDATE oauth_codes SET expires_at = now() - interval '1 second' WHERE code_hash = $1",
        hashlib.sha256(code.encode()).digest(),
    )
    assert moved == "UPDATE 1"
    status, answer, _ = await exchange(client, stack, app_client, code=code)
    assert status == 400 and answer["error"] == "invalid_grant"
    assert "expired" in answer["error_description"]


async def test_codes_live_ten_minutes_by_default(stack, user, app_client):
    code = await get_code(stack, user, app_client)
    lifetime = await stack.apps["auth"][POOL].fetchval(
        "SELECT extract(epoch FROM expires_at - created_at) FROM oauth_codes WHERE code_hash = $1",
        hashlib.sha256(code.encode()).digest(),
    )
    assert 599 <= float(lifetime) <= 601


async def test_redirect_uri_variants_get_an_error_page_not_a_redirect(
    stack, user, app_client, resilience
):
    variants = [
        REDIRECT + "/",
        REDIRECT + "?extra=1",
        "https://evil.example/callback",
        "http://app.example/callback",
        "https://app.example.evil.example/callback",
        "https://app.example/callback#x",
        "https://app.example@evil.example/callback",
        "https://app.example/callback/../evil",
        "https://APP.example/callback",
        "https://app.example:443/callback",
        "https://app.example/callback%2F..%2Fevil",
        "//evil.example/callback",
    ]
    asked = 0
    async with browser() as session:
        # Signed in, so a mistake here would go straight to consent or to the URI.
        location = await sign_in(session, stack, user, "/signin?next=/keys")
        assert location == "/keys"
        for variant in variants:
            for name in ("redirect_uri", "redirect_url"):
                query = {
                    "client_id": app_client["client_id"],
                    "response_type": "code",
                    name: variant,
                }
                asked += 1
                async with session.get(
                    f"{stack.url}/oauth/authorize?{urlencode(query)}", allow_redirects=False
                ) as r:
                    assert r.status == 400, (variant, name)
                    assert "Location" not in r.headers
                    assert r.content_type == "text/html"
                    assert "does not match" in await r.text()
        for query in (
            {"client_id": "no-such-client", "response_type": "code"},
            {"response_type": "code", "redirect_uri": REDIRECT},
            {
                "client_id": app_client["client_id"],
                "redirect_uri": REDIRECT,
                "redirect_url": "https://evil.example/",
            },
        ):
            async with session.get(
                f"{stack.url}/oauth/authorize?{urlencode(query)}", allow_redirects=False
            ) as r:
                assert r.status == 400 and "Location" not in r.headers, query
        # A tampered consent form is held to the same rule.
        good = {"client_id": app_client["client_id"], "response_type": "code"}
        async with session.get(f"{stack.url}/oauth/authorize?{urlencode(good)}") as r:
            fields = Forms(await r.text()).form("/oauth/authorize")["fields"]
        async with session.post(
            f"{stack.url}/oauth/authorize",
            data={**fields, "redirect_uri": "https://evil.example/callback", "decision": "approve"},
            headers={"Origin": stack.url},
            allow_redirects=False,
        ) as r:
            assert r.status == 400 and "Location" not in r.headers
    count = await stack.apps["auth"][POOL].fetchval(
        "SELECT count(*) FROM oauth_codes c JOIN oauth_clients a ON a.id = c.client_id"
        " WHERE a.client_id = $1 AND c.redirect_uri <> $2",
        app_client["client_id"],
        REDIRECT,
    )
    resilience.row(
        "auth",
        "OAuth redirect URI variants",
        injected=f"{asked} authorization requests of a signed-in user with {len(variants)}"
        " variants of the registered URI in redirect_uri and redirect_url (trailing slash, extra"
        " query, other host, http, suffix host, fragment, userinfo, dot segments, case, port,"
        " encoded slash, scheme-relative), 3 broken requests and a tampered consent form",
        observed="an error page (400, no Location) for every one; no code issued to another URI",
        accepted=count,
        effects=count,
    )
    assert count == 0


async def test_other_authorization_mistakes_go_back_to_the_client(stack, user, app_client):
    base = {"client_id": app_client["client_id"], "state": "st"}
    async with browser() as session:
        await sign_in(session, stack, user, "/signin?next=/keys")
        for query, error in (
            ({**base, "response_type": "token"}, "unsupported_response_type"),
            ({**base}, "invalid_request"),
            ({**base, "response_type": "code", "scope": "admin"}, "invalid_scope"),
        ):
            async with session.get(
                f"{stack.url}/oauth/authorize?{urlencode(query)}", allow_redirects=False
            ) as r:
                assert r.status == 303
                answer = query_of(r.headers["Location"])
                assert r.headers["Location"].startswith(REDIRECT + "?")
                assert answer["error"] == error and answer["state"] == "st", query


async def test_pkce_is_s256_only_and_enforced(stack, client, user, app_client, resilience):
    verifier = generate_token(64)
    challenge = create_s256_code_challenge(verifier)
    pkce = {"code_challenge": challenge, "code_challenge_method": "S256"}
    downgrades = {
        "a wrong verifier": (pkce, {"code_verifier": "x" * 64}),
        "no verifier": (pkce, {}),
        "a verifier for a code without a challenge": ({}, {"code_verifier": verifier}),
    }
    exchanged = {}
    for name, (challenge_params, verifier_params) in downgrades.items():
        code = await get_code(stack, user, app_client, **challenge_params)
        exchanged[name] = await exchange(client, stack, app_client, code=code, **verifier_params)
    code = await get_code(stack, user, app_client, **pkce)
    right = await exchange(client, stack, app_client, code=code, code_verifier=verifier)

    refused = {
        "method plain": {"code_challenge": generate_token(43), "code_challenge_method": "plain"},
        "no method (plain)": {"code_challenge": challenge},
        "a method without a challenge": {"code_challenge_method": "S256"},
        "a short challenge": {"code_challenge": "short", "code_challenge_method": "S256"},
    }
    sent_back = {}
    async with browser() as session:
        await sign_in(session, stack, user, "/signin?next=/keys")
        for name, extra in refused.items():
            query = {"client_id": app_client["client_id"], "response_type": "code", "state": "p"}
            async with session.get(
                f"{stack.url}/oauth/authorize?{urlencode({**query, **extra})}",
                allow_redirects=False,
            ) as r:
                sent_back[name] = (r.status, query_of(r.headers.get("Location", "")))
    accepted = [n for n, (status, _, _) in exchanged.items() if status == 200]
    accepted += [n for n, (_, answer) in sent_back.items() if "code" in answer]
    resilience.row(
        "auth",
        "OAuth PKCE downgrade",
        injected=f"codes exchanged with {', '.join(downgrades)}; authorization requests with"
        f" {', '.join(refused)}",
        observed="exchanges 400 invalid_grant, requests sent back with invalid_request and no"
        f" code; the right S256 verifier alone gets a token ({right[0]})"
        if not accepted
        else f"accepted: {accepted}",
        accepted=len(accepted),
        errors_5xx=sum(status >= 500 for status, _, _ in exchanged.values()),
    )
    for name, (status, answer, _) in exchanged.items():
        assert status == 400 and answer["error"] == "invalid_grant", name
    assert "code_verifier" in exchanged["no verifier"][1]["error_description"]
    assert right[0] == 200, right[1]
    for name, (status, answer) in sent_back.items():
        assert status == 303, name
        assert answer["error"] == "invalid_request" and answer["state"] == "p", name
        assert "code" not in answer, name


async def test_consent_needs_the_sessions_csrf_token_and_our_origin(stack, user, app_client):
    query = {"client_id": app_client["client_id"], "response_type": "code", "state": "c"}
    async with browser() as session:
        await sign_in(session, stack, user, "/signin?next=/keys")
        async with session.get(f"{stack.url}/oauth/authorize?{urlencode(query)}") as r:
            fields = Forms(await r.text()).form("/oauth/authorize")["fields"]
        async with session.post(
            f"{stack.url}/oauth/authorize",
            data={**fields, "csrf": "0" * 64, "decision": "approve"},
            headers={"Origin": stack.url},
            allow_redirects=False,
        ) as r:
            assert r.status == 403 and "Location" not in r.headers
        async with session.post(
            f"{stack.url}/oauth/authorize",
            data={**fields, "decision": "approve"},
            headers={"Origin": "https://evil.example"},
            allow_redirects=False,
        ) as r:
            assert r.status == 403 and "Location" not in r.headers
    # Another session's token is not this one's.
    async with browser() as other:
        await sign_in(other, stack, user, "/signin?next=/keys")
        async with other.post(
            f"{stack.url}/oauth/authorize",
            data={**fields, "decision": "approve"},
            headers={"Origin": stack.url},
            allow_redirects=False,
        ) as r:
            assert r.status == 403
