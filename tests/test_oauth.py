"""The OAuth 2.0 authorization server (Progimage dialect) through the gateway, as a standard
client library and a browser see it: the code flow with PKCE, consent, the seed's token
answer, refresh rotation, revocation, replayed codes, applications and the operator CLI."""

from __future__ import annotations

import base64
import hashlib
import json
import random
import re
import time
import uuid
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import httpx2
import pytest
import pyvips
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from services.auth import domain, repo
from shared import errors
from shared.runtime import POOL

REDIRECT = "https://app.example/callback"
PASSWORD = "hunter2hunter2"  # what stack.create_account gives every account


def loopback() -> str:
    """A loopback address of the test's own, so its anonymous rate bucket is fresh."""
    return f"127.{random.randint(1, 250)}.{random.randint(1, 250)}.{random.randint(2, 250)}"


def browser() -> aiohttp.ClientSession:
    """Keeps cookies like a browser (also on 127.0.0.1); redirects are followed by hand."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(local_addr=(loopback(), 0)),
        cookie_jar=aiohttp.CookieJar(unsafe=True),
    )


class Forms(HTMLParser):
    """The forms of a page: action → {input name: value}, plus the submit buttons' values."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.forms: list[dict] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append({"action": values.get("action"), "fields": {}, "buttons": []})
        elif tag == "input" and self.forms and "name" in values:
            self.forms[-1]["fields"][values["name"]] = values.get("value", "")
        elif tag == "button" and self.forms and "name" in values:
            self.forms[-1]["buttons"].append((values["name"], values.get("value", "")))

    def form(self, action: str) -> dict:
        found = [f for f in self.forms if f["action"] == action]
        assert found, f"no form posting to {action}"
        return found[0]


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def basic(client: dict) -> dict[str, str]:
    raw = base64.b64encode(f"{client['client_id']}:{client['client_secret']}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def register(stack, account: dict, redirect_uri: str = REDIRECT, name: str = "") -> dict:
    """An application made with the operator CLI; checks it prints exactly the documented JSON."""
    args = ["oauth-client", "create", "--account", account["account_id"]]
    done = stack.cli(*args, "--redirect-uri", redirect_uri, *(["--name", name] if name else []))
    printed = json.loads(done.stdout)
    assert set(printed) == {"client_id", "client_secret"}
    return printed


async def sign_in(session: aiohttp.ClientSession, stack, user: dict, location: str) -> str:
    """Follow ``/signin?next=…`` through the real form; returns where sign-in sends us."""
    async with session.get(stack.url + location, allow_redirects=False) as r:
        assert r.status == 200
        form = Forms(await r.text()).form("/signin")
    fields = {**form["fields"], "email": user["email"], "password": PASSWORD}
    async with session.post(
        f"{stack.url}/signin", data=fields, headers={"Origin": stack.url}, allow_redirects=False
    ) as r:
        assert r.status == 303
        return r.headers["Location"]


async def consent(
    session: aiohttp.ClientSession, stack, user: dict, url: str, decision: str = "approve"
) -> str:
    """Drive ``url`` (an authorization request) like a person: sign in when asked, then press
    the consent button ``decision``. Returns the Location the browser is sent to."""
    async with session.get(url, allow_redirects=False) as r:
        if r.status == 303 and r.headers["Location"].startswith("/signin?"):
            assert query_of(r.headers["Location"])["next"].startswith("/oauth/authorize?")
            back = await sign_in(session, stack, user, r.headers["Location"])
            assert back.startswith("/oauth/authorize?")
            r = await session.get(stack.url + back, allow_redirects=False)
        assert r.status == 200, await r.text()
        page = await r.text()
        csp = r.headers["Content-Security-Policy"]
    form = Forms(page).form("/oauth/authorize")
    assert ("decision", decision) in form["buttons"]
    assert form["fields"]["csrf"]
    assert user["name"] in page
    redirect_origin = "{0.scheme}://{0.netloc}".format(urlsplit(form["fields"]["redirect_uri"]))
    assert f"form-action 'self' {redirect_origin}" in csp  # the browser may follow our 303
    async with session.post(
        f"{stack.url}/oauth/authorize",
        data={**form["fields"], "decision": decision},
        headers={"Origin": stack.url},
        allow_redirects=False,
    ) as r:
        assert r.status == 303, await r.text()
        return r.headers["Location"]


async def get_code(stack, user: dict, client: dict, **params: str) -> str:
    """A fresh authorization code for ``client``, consented by ``user`` in a new browser."""
    query = {"client_id": client["client_id"], "response_type": "code", "state": "s1", **params}
    async with browser() as session:
        location = await consent(
            session, stack, user, f"{stack.url}/oauth/authorize?{urlencode(query)}"
        )
    assert location.startswith(REDIRECT + "?"), location
    answer = query_of(location)
    assert answer["state"] == "s1"
    return answer["code"]


async def exchange(http: aiohttp.ClientSession, stack, client: dict, **params: str):
    """``POST /oauth/token`` with the client's credentials in the form body."""
    form = {"client_id": client["client_id"], "client_secret": client["client_secret"], **params}
    async with http.post(f"{stack.url}/oauth/token", data=form) as r:
        return r.status, await r.json(), r.headers


async def user_status(http: aiohttp.ClientSession, stack, token: str) -> int:
    async with http.get(f"{stack.url}/user", headers=bearer(token)) as r:
        return r.status


def assert_seed_answer(answer: dict) -> None:
    """Exactly the Progimage seed's token answer, plus the refresh token."""
    assert set(answer) == {
        "access_token",
        "token_type",
        "expires_in",
        "scope",
        "created_at",
        "refresh_token",
    }
    assert re.fullmatch(r"[A-Za-z0-9]{64}", answer["access_token"])
    assert answer["token_type"] == "bearer"
    assert answer["expires_in"] == 86400
    assert answer["scope"] == "api"
    assert type(answer["created_at"]) is int and abs(answer["created_at"] - time.time()) < 60
    assert answer["refresh_token"] and answer["refresh_token"] != answer["access_token"]


@pytest.fixture(scope="module")
def user(stack) -> dict:
    """The person who consents (an account made with the CLI, so its password is known)."""
    return stack.create_account("Serg Metelin")


@pytest.fixture(scope="module")
def developer(stack) -> dict:
    """Another tenant, who registers the applications."""
    return stack.create_account("App Developer")


@pytest.fixture(scope="module")
def app_client(stack, developer) -> dict:
    return register(stack, developer, name="Photo Printer")


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


async def test_client_authentication_failures_are_401_invalid_client(
    stack, client, user, app_client
):
    code = await get_code(stack, user, app_client)
    wrong = {**app_client, "client_secret": "0" * 64}
    status, answer, headers = await exchange(client, stack, wrong, code=code)
    assert status == 401 and answer["error"] == "invalid_client"
    assert headers["WWW-Authenticate"].startswith("Basic")
    async with client.post(
        f"{stack.url}/oauth/token", data={"code": code}, headers=basic(wrong)
    ) as r:
        assert r.status == 401 and (await r.json())["error"] == "invalid_client"
    unknown = {"client_id": "nobody", "client_secret": app_client["client_secret"]}
    assert (await exchange(client, stack, unknown, code=code))[0] == 401
    async with client.post(f"{stack.url}/oauth/token", data={"code": code}) as r:
        assert r.status == 401 and (await r.json())["error"] == "invalid_client"
    # Two methods at once is a malformed request.
    async with client.post(
        f"{stack.url}/oauth/token",
        data={"code": code, "client_secret": app_client["client_secret"]},
        headers=basic(app_client),
    ) as r:
        assert r.status == 400 and (await r.json())["error"] == "invalid_request"
    async with client.post(
        f"{stack.url}/oauth/token",
        data={"grant_type": "password", "username": "x", "password": "y"},
        headers=basic(app_client),
    ) as r:
        assert r.status == 400 and (await r.json())["error"] == "unsupported_grant_type"
    # Failed client authentication spent nothing: the right client still redeems the code.
    async with client.post(
        f"{stack.url}/oauth/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT},
        headers=basic(app_client),
    ) as r:
        assert r.status == 200
        assert_seed_answer(await r.json())


async def test_refresh_rotates_and_the_old_refresh_token_is_refused(
    stack, client, user, app_client
):
    code = await get_code(stack, user, app_client)
    first = (await exchange(client, stack, app_client, code=code))[1]
    assert await user_status(client, stack, first["access_token"]) == 200  # now cached
    status, second, _ = await exchange(
        client, stack, app_client, grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    assert status == 200, second
    assert_seed_answer(second)
    assert second["access_token"] != first["access_token"]
    assert second["refresh_token"] != first["refresh_token"]
    assert await user_status(client, stack, second["access_token"]) == 200
    assert await user_status(client, stack, first["access_token"]) == 401
    # A replayed refresh token means it leaked: refused, and its grant is revoked.
    status, replay, _ = await exchange(
        client, stack, app_client, grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    assert status == 400 and replay["error"] == "invalid_grant"
    assert await user_status(client, stack, second["access_token"]) == 401
    status, after, _ = await exchange(
        client, stack, app_client, grant_type="refresh_token", refresh_token=second["refresh_token"]
    )
    assert status == 400 and after["error"] == "invalid_grant"


async def test_a_refresh_token_only_works_for_its_own_client(
    stack, client, user, developer, app_client
):
    other = register(stack, developer)
    first = (
        await exchange(client, stack, app_client, code=await get_code(stack, user, app_client))
    )[1]
    status, answer, _ = await exchange(
        client, stack, other, grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    assert status == 400 and answer["error"] == "invalid_grant"
    status, _, _ = await exchange(
        client, stack, app_client, grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    assert status == 200


async def test_revocation_takes_effect_at_once(stack, client, user, developer, app_client):
    transport = httpx2.AsyncHTTPTransport(local_address=loopback())
    async with AsyncOAuth2Client(
        app_client["client_id"], app_client["client_secret"], transport=transport
    ) as oauth_client:
        first = (
            await exchange(client, stack, app_client, code=await get_code(stack, user, app_client))
        )[1]
        assert await user_status(client, stack, first["access_token"]) == 200  # cached
        response = await oauth_client.revoke_token(
            f"{stack.url}/oauth/revoke", token=first["access_token"], token_type_hint="access_token"
        )
        assert response.status_code == 200
        assert await user_status(client, stack, first["access_token"]) == 401
        status, _, _ = await exchange(
            client,
            stack,
            app_client,
            grant_type="refresh_token",
            refresh_token=first["refresh_token"],
        )
        assert status == 400  # the pair went together

        # Revoking the refresh token ends the access token of its grant too.
        second = (
            await exchange(client, stack, app_client, code=await get_code(stack, user, app_client))
        )[1]
        assert await user_status(client, stack, second["access_token"]) == 200
        response = await oauth_client.revoke_token(
            f"{stack.url}/oauth/revoke", token=second["refresh_token"]
        )
        assert response.status_code == 200
        assert await user_status(client, stack, second["access_token"]) == 401

        # Unknown and already-revoked tokens: still 200 (RFC 7009 §2.2).
        for token in ("nope", first["access_token"]):
            response = await oauth_client.revoke_token(f"{stack.url}/oauth/revoke", token=token)
            assert response.status_code == 200

    # Another client cannot revoke this client's token (and learns nothing from the answer).
    third = (
        await exchange(client, stack, app_client, code=await get_code(stack, user, app_client))
    )[1]
    other = register(stack, developer)
    async with client.post(
        f"{stack.url}/oauth/revoke", data={"token": third["access_token"]}, headers=basic(other)
    ) as r:
        assert r.status == 200
    assert await user_status(client, stack, third["access_token"]) == 200
    async with client.post(f"{stack.url}/oauth/revoke", data={}, headers=basic(app_client)) as r:
        assert r.status == 400 and (await r.json())["error"] == "invalid_request"
    async with client.post(
        f"{stack.url}/oauth/revoke",
        data={"token": third["access_token"]},
        headers=basic({**app_client, "client_secret": "wrong"}),
    ) as r:
        assert r.status == 401 and (await r.json())["error"] == "invalid_client"
    assert await user_status(client, stack, third["access_token"]) == 200


async def test_a_code_cannot_be_exchanged_by_another_client(
    stack, client, user, developer, app_client
):
    other = register(stack, developer)
    code = await get_code(stack, user, app_client)
    status, answer, _ = await exchange(client, stack, other, code=code)
    assert status == 400 and answer["error"] == "invalid_grant"
    status, answer, _ = await exchange(client, stack, app_client, code=code)
    assert status == 200, answer


async def test_access_tokens_expire(stack, client, user, app_client):
    answer = (
        await exchange(client, stack, app_client, code=await get_code(stack, user, app_client))
    )[1]
    await stack.apps["auth"][POOL].execute(
        "UPDATE oauth_tokens SET expires_at = now() - interval '1 second' WHERE access_hash = $1",
        hashlib.sha256(answer["access_token"].encode()).digest(),
    )
    async with client.get(f"{stack.url}/user", headers=bearer(answer["access_token"])) as r:
        assert r.status == 401 and (await r.json())["error"]["code"] == "bad_credentials"


async def test_oauth_tokens_cannot_manage_credentials(stack, client, user, app_client):
    answer = (
        await exchange(client, stack, app_client, code=await get_code(stack, user, app_client))
    )[1]
    headers = bearer(answer["access_token"])
    async with client.get(f"{stack.url}/api/keys", headers=headers) as r:
        assert r.status == 403
    async with client.post(f"{stack.url}/api/keys", json={"kind": "token"}, headers=headers) as r:
        assert r.status == 403
    async with client.post(
        f"{stack.url}/keys", data={"kind": "token"}, headers=headers, allow_redirects=False
    ) as r:
        assert r.status == 303 and r.headers["Location"].startswith("/signin")


async def test_the_cli_registers_a_working_client_and_refuses_bad_input(
    stack, client, user, developer
):
    registered = register(stack, developer, "http://127.0.0.1:9999/cb")
    assert re.fullmatch(r"[A-Za-z0-9]{64}", registered["client_secret"])
    query = {"client_id": registered["client_id"], "response_type": "code"}
    async with browser() as session:
        location = await consent(
            session, stack, user, f"{stack.url}/oauth/authorize?{urlencode(query)}"
        )
    assert location.startswith("http://127.0.0.1:9999/cb?code=")
    status, answer, _ = await exchange(client, stack, registered, code=query_of(location)["code"])
    assert status == 200 and await user_status(client, stack, answer["access_token"]) == 200
    stored = await stack.apps["auth"][POOL].fetchval(
        "SELECT secret_hash FROM oauth_clients WHERE client_id = $1", registered["client_id"]
    )
    assert stored == hashlib.sha256(registered["client_secret"].encode()).digest()
    for account_id, uri, message in (
        (str(uuid.uuid4()), REDIRECT, "no account"),
        ("not-a-uuid", REDIRECT, "UUID"),
        (developer["account_id"], "https://app.example/cb#frag", "fragment"),
        (developer["account_id"], "ftp://app.example/cb", "https"),
        (developer["account_id"], "http://app.example/cb", "https"),
        (developer["account_id"], "https://app.example;script-src/cb", "host name"),
    ):
        done = stack.cli(
            "oauth-client", "create", "--account", account_id, "--redirect-uri", uri, check=False
        )
        assert done.returncode == 1 and message in done.stderr, done.stderr
        assert done.stdout == ""


async def test_applications_page_registers_lists_and_deletes(stack, client, user, other_account):
    async with browser() as session:
        async with session.get(f"{stack.url}/applications", allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "/signin?next=/applications"
        assert await sign_in(session, stack, user, r.headers["Location"]) == "/applications"
        async with session.get(f"{stack.url}/applications") as r:
            assert r.status == 200
            form = Forms(await r.text()).form("/applications")
        csrf = form["fields"]["csrf"]
        fields = {"name": "Gallery Sync", "redirect_uri": REDIRECT}
        origin = {"Origin": stack.url}
        async with session.post(
            f"{stack.url}/applications", data={**fields, "csrf": "forged"}, headers=origin
        ) as r:
            assert r.status == 403
        async with session.post(
            f"{stack.url}/applications",
            data={**fields, "redirect_uri": "https://x.example/#f", "csrf": csrf},
            headers=origin,
        ) as r:
            assert r.status == 422 and "fragment" in await r.text()
        async with session.post(
            f"{stack.url}/applications", data={**fields, "csrf": csrf}, headers=origin
        ) as r:
            assert r.status == 201
            page = await r.text()
        client_id = re.search(r"Client ID: <code class=\"secret\">([A-Za-z0-9]+)</code>", page)[1]
        secret = re.search(r"Client secret: <code class=\"secret\">([A-Za-z0-9]{64})</code>", page)[
            1
        ]
        async with session.get(f"{stack.url}/applications") as r:
            listing = await r.text()
        assert client_id in listing and "Gallery Sync" in listing and secret not in listing
        delete_action = next(
            f["action"] for f in Forms(listing).forms if f["action"].endswith("/delete")
        )

        registered = {"client_id": client_id, "client_secret": secret}
        query = {"client_id": client_id, "response_type": "code", "state": "g"}
        location = await consent(
            session, stack, user, f"{stack.url}/oauth/authorize?{urlencode(query)}"
        )
        status, answer, _ = await exchange(
            client, stack, registered, code=query_of(location)["code"]
        )
        assert status == 200
        assert await user_status(client, stack, answer["access_token"]) == 200  # cached

        # Another tenant cannot delete it.
        async with browser() as stranger:
            await sign_in(stranger, stack, other_account, "/signin?next=/applications")
            async with stranger.get(f"{stack.url}/applications") as r:
                stranger_csrf = Forms(await r.text()).form("/applications")["fields"]["csrf"]
                assert client_id not in await r.text()
            async with stranger.post(
                stack.url + delete_action, data={"csrf": stranger_csrf}, headers=origin
            ) as r:
                assert r.status == 404
        assert await user_status(client, stack, answer["access_token"]) == 200

        async with session.post(
            stack.url + delete_action, data={"csrf": csrf}, headers=origin, allow_redirects=False
        ) as r:
            assert r.status == 303 and r.headers["Location"] == "/applications"
        assert await user_status(client, stack, answer["access_token"]) == 401
        async with session.get(f"{stack.url}/applications") as r:
            assert client_id not in await r.text()
    status, refused, _ = await exchange(
        client, stack, registered, grant_type="refresh_token", refresh_token=answer["refresh_token"]
    )
    assert status == 401 and refused["error"] == "invalid_client"


async def test_deleting_an_application_revokes_every_token_it_holds(stack, client, user, developer):
    registered = register(stack, developer)
    tokens = []
    for _ in range(2):
        code = await get_code(stack, user, registered)
        tokens.append((await exchange(client, stack, registered, code=code))[1]["access_token"])
    for token in tokens:
        assert await user_status(client, stack, token) == 200  # both cached by the gateway
    pool = stack.apps["auth"][POOL]
    client_pk = await pool.fetchval(
        "SELECT id FROM oauth_clients WHERE client_id = $1", registered["client_id"]
    )
    async with pool.acquire() as conn:
        revoked = await repo.delete_oauth_client(
            conn, uuid.UUID(developer["account_id"]), client_pk
        )
    assert len(revoked) == 2
    deadline = time.monotonic() + 2
    statuses = [200]
    while time.monotonic() < deadline and statuses != [401, 401]:
        statuses = [await user_status(client, stack, token) for token in tokens]
    assert statuses == [401, 401]  # credential.revoked evicted both from the gateway's cache


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


def test_bearer_values_are_told_apart():
    token = generate_token(64)
    assert isinstance(domain.parse_authorization(f"Bearer {token}"), domain.OAuthCredential)
    assert isinstance(domain.parse_authorization("Bearer drk_" + "a" * 43), domain.TokenCredential)
    jwt = domain.sign_jwt("ab" * 16, "cd" * 32)
    assert isinstance(domain.parse_authorization(f"Bearer {jwt}"), domain.JwtCredential)
    for value in (token[:-1], token + "a", token[:-1] + "-"):
        with pytest.raises(errors.BadCredentials):
            domain.parse_authorization(f"Bearer {value}")


async def test_progimage_rate_limit_is_20_requests_per_5_seconds_per_token(
    stack, client, app_client
):
    person = stack.create_account("Rate Limited Person")
    code = await get_code(stack, person, app_client)
    status, answer, _ = await exchange(client, stack, app_client, code=code)
    assert status == 200
    headers = bearer(answer["access_token"])
    statuses, refusal = [], None
    for _ in range(24):
        async with client.get(f"{stack.url}/user/images", headers=headers) as r:
            statuses.append(r.status)
            if r.status == 429 and refusal is None:
                refusal = (r.headers.get("Retry-After"), (await r.json())["error"]["code"])
    # The bucket refills at 4/s while the loop runs, so a few more than 20 may pass.
    assert 20 <= statuses.count(200) <= 23, statuses
    assert statuses[:20] == [200] * 20 and statuses[-1] == 429
    assert refusal is not None and int(refusal[0]) >= 1
    assert refusal[1] == "rate_limit_exceeded"


async def test_progimage_cors_works_from_any_origin(stack, client, user, app_client):
    origin = "https://photos.example.org"
    async with client.options(
        f"{stack.url}/user/images",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    ) as preflight:
        assert preflight.status in (200, 204)
        assert preflight.headers["Access-Control-Allow-Origin"] in ("*", origin)
        assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
        assert "authorization" in preflight.headers["Access-Control-Allow-Headers"].lower()
    code = await get_code(stack, user, app_client)
    _, answer, _ = await exchange(client, stack, app_client, code=code)
    async with client.get(
        f"{stack.url}/user/images",
        headers={**bearer(answer["access_token"]), "Origin": origin},
    ) as r:
        assert r.status == 200
        assert r.headers["Access-Control-Allow-Origin"] in ("*", origin)
