"""What the OAuth tests share (tests/test_oauth.py, tests/test_oauth_tokens.py,
tests/test_oauth_applications.py, and the session attacks): a browser of its own on a fresh
loopback address, a page's forms, registering an application with the operator CLI, signing in
and consenting like a person, and exchanging a code for the Progimage seed's token answer."""

from __future__ import annotations

import base64
import json
import random
import re
import time
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import pytest

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


# Module-scoped fixtures the OAuth test modules take up by assignment (each module gets its own
# accounts and client, as module scope means).
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
    """An application the developer registered."""
    return register(stack, developer, name="Photo Printer")
