"""The web session under attack, through the gateway as a browser and a hostile site see it:
forged cross-site requests on every state-changing route a session may reach (generated from
the route table, so a new route cannot be forgotten), forms without their anti-forgery token,
login CSRF, session fixation on the sign-in form, and the cookie's flags with and without TLS.

Each test records its RESILIENCE.md row: how many forged requests were sent, how many got
through, and whether anything of the victim's changed.
"""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest

from tests.conftest import Stack, start_platform
from tests.images_support import random_png
from tests.oauth_support import Forms, register
from tests.reports_support import compare, screenshot, snap, upload
from tests.resilience import Ledger
from tests.tenancy_support import ROUTE_TABLE, Endpoint

PASSWORD = "hunter2hunter2"  # every account conftest makes has it
EVIL = "https://evil.example"
_TOKEN = re.compile(r'name="csrf" value="([0-9a-f]*)"')
_APPLICATION = re.compile(r'action="/applications/([0-9a-f-]{36})/delete"')
_FILE = re.compile(r"/f/([0-9a-f]{64})")
_PLACEHOLDER = re.compile(r"{([^}:/]+)(?::[^}]*)?}")

#: Every route a session cookie may change state on: the gateway holds each to our Origin.
SESSION_WRITES = [
    e
    for e in ROUTE_TABLE
    if e.method in {"POST", "PUT", "PATCH", "DELETE"} and "session" in e.security
]
#: The forms a signed-in page shows: each must also carry the page's anti-forgery token.
#: Sign-in and sign-up have no session to bind one to (login CSRF is the Origin rule's).
PAGE_FORMS = sorted(
    e.id for e in SESSION_WRITES if not e.path.startswith(("/api/", "/user", "/signin", "/signup"))
)


@dataclass
class Browser:
    """A victim's browser: a session cookie and the anti-forgery token of its pages."""

    account: dict
    cookie: str = ""
    token: str = ""

    def headers(self, origin: str | None, **extra: str) -> dict[str, str]:
        found = {"Cookie": f"darkroom_session={self.cookie}", **extra}
        if origin is not None:
            found["Origin"] = origin
        return found


@dataclass
class Tally:
    """Forged requests sent, and those that got through."""

    sent: int = 0
    through: list[str] = field(default_factory=list)
    errors_5xx: int = 0

    def saw(self, what: str, status: int, *, refused: bool) -> None:
        self.sent += 1
        self.errors_5xx += status >= 500
        if not refused:
            self.through.append(f"{what}: {status}")


async def sign_in(http: aiohttp.ClientSession, stack: Stack, account: dict) -> Browser:
    async with http.post(
        f"{stack.url}/signin",
        data={"email": account["email"], "password": PASSWORD, "next": "/keys"},
        headers={"Origin": stack.url},
        allow_redirects=False,
    ) as response:
        assert response.status == 303, await response.text()
        browser = Browser(account, response.cookies["darkroom_session"].value)
    async with http.get(f"{stack.url}/keys", headers=browser.headers(None)) as response:
        browser.token = _TOKEN.search(await response.text())[1]
    assert len(browser.token) == 64
    return browser


def bearer(account: dict) -> dict[str, str]:
    return {"Authorization": f"Bearer {account['token']}"}


def basic(account: dict) -> dict[str, str]:
    """The account's key pair: what the footprint is read with, as the forms only ever revoke
    the token (so a forged revoke shows as a change, not as a failed read)."""
    raw = base64.b64encode(f"{account['api_key']}:{account['api_secret']}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


async def footprint(http: aiohttp.ClientSession, stack: Stack, victim: Browser) -> dict[str, Any]:
    """What a forged request could have changed of the victim's, read with its key pair."""
    company = f"/api/v1/companies/{victim.account['account_id']}"
    found: dict[str, Any] = {}
    for name, path in (
        ("credentials", "/api/keys"),
        ("images", "/user/images?limit=100"),
        ("datasets", f"{company}/datasets/?page_size=100"),
    ):
        async with http.get(stack.url + path, headers=basic(victim.account)) as response:
            assert response.status == 200, (path, await response.text())
            found[name] = await response.json()
    async with http.get(f"{stack.url}/applications", headers=victim.headers(None)) as response:
        found["applications"] = sorted(_APPLICATION.findall(await response.text()))
    async with http.get(f"{stack.url}/files", headers=victim.headers(None)) as response:
        found["files"] = sorted(set(_FILE.findall(await response.text())))
    async with http.get(f"{stack.url}/user", headers=victim.headers(None)) as response:
        found["signed in"] = response.status
    return found


@pytest.fixture
async def browser_http() -> AsyncIterator[aiohttp.ClientSession]:
    """A cookie-less client on a loopback address of its own (fresh anonymous rate bucket)."""
    octets = (secrets.randbelow(250) + 1, secrets.randbelow(250) + 1, secrets.randbelow(248) + 2)
    address = "127.{}.{}.{}".format(*octets)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(local_addr=(address, 0)),
        cookie_jar=aiohttp.DummyCookieJar(),
    ) as session:
        yield session


def dummy_path(endpoint: Endpoint) -> str:
    """The route with a made-up value in each placeholder: the gateway refuses a cross-site
    request before anything looks the ids up."""
    return _PLACEHOLDER.sub(lambda m: "0123456789abcdef", endpoint.path)


async def test_cross_site_requests_with_a_session_are_refused_on_every_route(
    stack: Stack, browser_http: aiohttp.ClientSession, resilience: Ledger
) -> None:
    """Another site's page may make a signed-in browser post anything anywhere; the cookie
    rides along (SameSite=Lax still sends it on top-level POST navigations in old browsers and
    on same-site subdomains). Every state-changing route refuses it at the gateway."""
    victim = await sign_in(browser_http, stack, stack.create_account("Victim"))
    before = await footprint(browser_http, stack, victim)
    forgeries = {
        "Origin of another site": {"Origin": EVIL},
        "Origin null (a sandboxed frame)": {"Origin": "null"},
        "Referer of another site, no Origin": {"Referer": f"{EVIL}/page"},
        "our host as another site's subdomain": {"Origin": stack.url + ".evil.example"},
        "neither Origin nor Referer": {},
    }
    tally = Tally()
    for endpoint in SESSION_WRITES:
        for name, headers in forgeries.items():
            async with browser_http.request(
                endpoint.method,
                stack.url + dummy_path(endpoint),
                headers=victim.headers(None, **headers),
                data={"csrf": victim.token, "kind": "token", "name": "forged"},
                allow_redirects=False,
            ) as response:
                body = await response.read()
                refused = response.status == 403 and b'"forbidden"' in body
                tally.saw(f"{endpoint.id} with {name}", response.status, refused=refused)
    after = await footprint(browser_http, stack, victim)
    changed = sorted(k for k in before if before[k] != after[k])
    resilience.row(
        "auth",
        "cross-site requests with the session cookie, every state-changing route",
        injected=f"{len(SESSION_WRITES)} session routes (from the route table) x {len(forgeries)}"
        f" forgeries ({', '.join(forgeries)}), each with the victim's cookie and even its form"
        f" token: {tally.sent} requests",
        observed="403 forbidden from the gateway to every one; the victim's credentials, files,"
        " images, datasets, applications and session as they were"
        if not tally.through and not changed
        else f"through: {tally.through[:5]}; changed: {changed}",
        accepted=len(tally.through),
        effects=len(changed),
        errors_5xx=tally.errors_5xx,
    )
    assert len(SESSION_WRITES) > 40  # a table read wrongly must not pass for a covered one
    assert not tally.through, tally.through
    assert not changed, changed
    assert tally.errors_5xx == 0


# --- forms without their token --------------------------------------------------------------


@dataclass
class Form:
    """One signed-in page's form, ready to post: its path and fields (and a file)."""

    path: str
    fields: dict[str, str]
    file: bytes | None = None
    #: What the right token must get (the route works, so only the token refused the rest).
    ok: int = 303


async def page_forms(
    http: aiohttp.ClientSession, stack: Stack, victim: Browser, developer: dict
) -> dict[str, Form]:
    """The victim's real resources behind every page form, each made through the public API."""
    headers = bearer(victim.account)
    async with http.get(f"{stack.url}/api/keys", headers=headers) as response:
        token_id = (await response.json())["tokens"][0]["id"]
    data = random_png()
    form = aiohttp.FormData()
    form.add_field("file", data, filename="victim.png", content_type="image/png")
    async with http.post(f"{stack.url}/api/upload", data=form, headers=headers) as response:
        sha256 = (await response.json())["hash"]
    async with http.post(
        f"{stack.url}/applications",
        data={"csrf": victim.token, "name": "victim's", "redirect_uri": "https://v.example/cb"},
        headers=victim.headers(stack.url),
    ) as response:
        assert response.status == 201
        [client_pk] = _APPLICATION.findall(await response.text())
    colour = (secrets.randbelow(256), 40, 200)
    before = await upload(http, stack, victim.account, screenshot(colour=colour))
    after = await upload(http, stack, victim.account, screenshot(colour=colour, patch=(5, 5, 9, 9)))
    sha1, sha2 = secrets.token_hex(6), secrets.token_hex(6)
    for sha, image in ((sha1, before), (sha2, after)):
        async with http.post(
            f"{stack.url}/api/reports/{sha}",
            json={"snaps": [snap(image, "Victim")]},
            headers=headers,
        ) as response:
            assert response.status == 200, await response.text()
    comparison = (await compare(http, stack.url, headers, sha1, sha2))["id"]
    # Consent to another account's application, as its authorization request shows it.
    app = register(stack, developer)
    query = urlencode({"client_id": app["client_id"], "response_type": "code", "state": "v"})
    async with http.get(
        f"{stack.url}/oauth/authorize?{query}", headers=victim.headers(None)
    ) as response:
        consent = Forms(await response.text()).form("/oauth/authorize")["fields"]
    return {
        "POST /applications": Form(
            "/applications", {"name": "forged", "redirect_uri": "https://f.example/cb"}, ok=201
        ),
        "POST /applications/{client_pk}/delete": Form(f"/applications/{client_pk}/delete", {}),
        "POST /comparisons/{id}/changes/{position}": Form(
            f"/comparisons/{comparison}/changes/0", {"decision": "reject"}
        ),
        "POST /comparisons/{id}/review": Form(
            f"/comparisons/{comparison}/review", {"decision": "reject"}
        ),
        "POST /files/{hash}/delete": Form(f"/files/{sha256}/delete", {}),
        "POST /keys": Form("/keys", {"kind": "token"}, ok=201),
        "POST /keys/{credential_id}/revoke": Form(f"/keys/{token_id}/revoke", {}),
        "POST /oauth/authorize": Form(
            "/oauth/authorize", {**consent, "decision": "approve"}, ok=303
        ),
        "POST /upload": Form("/upload", {}, file=random_png(), ok=201),
        "POST /signout": Form("/signout", {}),
    }


async def post_form(
    http: aiohttp.ClientSession, stack: Stack, victim: Browser, form: Form, token: str | None
) -> tuple[int, str]:
    fields = dict(form.fields)
    fields.pop("csrf", None)
    if token is not None:
        fields["csrf"] = token
    if form.file is not None:
        body: Any = aiohttp.FormData()
        for name, value in fields.items():
            body.add_field(name, value)
        body.add_field("file", form.file, filename="forged.png", content_type="image/png")
    else:
        body = fields
    async with http.post(
        stack.url + form.path,
        data=body,
        headers=victim.headers(stack.url),
        allow_redirects=False,
    ) as response:
        return response.status, response.headers.get("Location", "")


async def reviewed(http: aiohttp.ClientSession, stack: Stack, victim: Browser, form: Form) -> bool:
    """Whether the comparison of the review form has been decided, as its status reads."""
    comparison = form.path.split("/")[2]
    async with http.get(
        f"{stack.url}/comparisons/{comparison}", headers=victim.headers(None)
    ) as response:
        page = await response.text()
    assert response.status == 200, page
    return 'class="status status-failure"' in page


async def test_every_signed_in_form_needs_its_token(
    stack: Stack,
    browser_http: aiohttp.ClientSession,
    other_account: dict,
    resilience: Ledger,
) -> None:
    """Same origin, the victim's own cookie: only the page's token makes a form count. A token
    of another session (the attacker's own, or the victim's previous one) is no token."""
    victim_account = stack.create_account("Form Victim")
    earlier = await sign_in(browser_http, stack, victim_account)
    victim = await sign_in(browser_http, stack, victim_account)
    attacker = await sign_in(browser_http, stack, other_account)
    assert len({earlier.token, victim.token, attacker.token}) == 3
    forms = await page_forms(browser_http, stack, victim, other_account)
    missing = sorted(set(PAGE_FORMS) - set(forms))
    assert not missing, f"page forms this test cannot post yet (add them to page_forms): {missing}"
    # Each service renders the layout's sign-out form, which auth checks: one token for all.
    for page in (
        "/keys",
        "/applications",
        "/files",
        "/upload",
        forms["POST /comparisons/{id}/review"].path.removesuffix("/review"),
    ):
        async with browser_http.get(stack.url + page, headers=victim.headers(None)) as response:
            assert set(_TOKEN.findall(await response.text())) == {victim.token}, page
    wrong = {
        "no token": None,
        "an empty token": "",
        "the attacker's own session's token": attacker.token,
        "the victim's earlier session's token": earlier.token,
        "a token of the right length": "0" * 64,
        "the token upper-cased": victim.token.upper(),
    }
    tally = Tally()
    before = await footprint(browser_http, stack, victim)
    review = forms["POST /comparisons/{id}/review"]
    reviewed_before = await reviewed(browser_http, stack, victim, review)
    for route in PAGE_FORMS:
        for name, token in wrong.items():
            status, location = await post_form(browser_http, stack, victim, forms[route], token)
            refused = status == 403 and "code=" not in location
            tally.saw(f"{route} with {name}", status, refused=refused)
    after = await footprint(browser_http, stack, victim)
    changed = sorted(k for k in before if before[k] != after[k])
    if await reviewed(browser_http, stack, victim, review):
        changed.append("review")
    # The right token, last (sign-out ends the session): each form works, so the token alone
    # stood between the forgeries and an effect.
    worked = {}
    for route in [r for r in PAGE_FORMS if r != "POST /signout"] + ["POST /signout"]:
        worked[route] = (await post_form(browser_http, stack, victim, forms[route], victim.token))[
            0
        ]
    async with browser_http.get(f"{stack.url}/user", headers=victim.headers(None)) as response:
        signed_out = response.status == 401
    resilience.row(
        "auth",
        "signed-in forms without their anti-forgery token",
        injected=f"{len(PAGE_FORMS)} page forms (from the route table: {', '.join(PAGE_FORMS)})"
        f" x {len(wrong)} ({', '.join(wrong)}), same Origin, the victim's cookie:"
        f" {tally.sent} requests",
        observed="403 to every one and nothing of the victim's changed; with the page's token"
        " each form works"
        if not tally.through and not changed
        else f"through: {tally.through[:5]}; changed: {changed}",
        accepted=len(tally.through),
        effects=len(changed),
        errors_5xx=tally.errors_5xx,
    )
    assert not reviewed_before
    assert not tally.through, tally.through
    assert not changed, changed
    assert tally.errors_5xx == 0
    assert all(worked[r] == forms[r].ok for r in worked), worked
    assert signed_out


# --- sign-in --------------------------------------------------------------------------------


async def test_sign_in_and_sign_up_refuse_another_sites_origin(
    stack: Stack, browser_http: aiohttp.ClientSession, resilience: Ledger
) -> None:
    """Login CSRF: a hostile page signs the visitor in to the attacker's account, so that what
    the visitor then uploads lands where the attacker reads it."""
    attacker = stack.create_account("Login CSRF")
    email = f"{secrets.token_hex(6)}@example.com"
    attempts = {
        "sign in to the attacker's account": (
            "/signin",
            {"email": attacker["email"], "password": PASSWORD, "next": "/upload"},
        ),
        "sign up an account the attacker chose": (
            "/signup",
            {"name": "Planted", "email": email, "password": "planted-password"},
        ),
    }
    tally = Tally()
    for name, (path, form) in attempts.items():
        for headers in ({"Origin": EVIL}, {"Referer": f"{EVIL}/x"}, {"Origin": "null"}):
            async with browser_http.post(
                stack.url + path, data=form, headers=headers, allow_redirects=False
            ) as response:
                opened = "darkroom_session" in response.cookies
                tally.saw(f"{name} with {headers}", response.status, refused=not opened)
    async with browser_http.post(
        f"{stack.url}/signin",
        data={"email": email, "password": "planted-password"},
        headers={"Origin": stack.url},
        allow_redirects=False,
    ) as response:
        planted_exists = response.status != 401
    resilience.row(
        "auth",
        "login CSRF on the sign-in and sign-up forms",
        injected=f"{tally.sent} cross-site posts (foreign Origin, foreign Referer, Origin null)"
        " that would sign the visitor in to the attacker's account or sign up one it chose",
        observed="403, no session cookie set, no account made"
        if not tally.through and not planted_exists
        else f"through: {tally.through}; account made: {planted_exists}",
        accepted=len(tally.through),
        effects=int(planted_exists),
        errors_5xx=tally.errors_5xx,
    )
    assert not tally.through and not planted_exists and tally.errors_5xx == 0


async def test_signing_in_never_keeps_the_session_the_browser_brought(
    stack: Stack, browser_http: aiohttp.ClientSession, resilience: Ledger
) -> None:
    """Session fixation: an attacker who sets the victim's session cookie (a made-up value, or
    a real session of the attacker's own) before the victim signs in must not end up holding
    the victim's session."""
    victim, attacker = stack.create_account("Fixated"), stack.create_account("Fixer")
    attackers_session = (await sign_in(browser_http, stack, attacker)).cookie
    planted = {
        "a made-up value": secrets.token_urlsafe(32),
        "the attacker's own live session": attackers_session,
    }
    tally = Tally()
    issued = set()
    for name, value in planted.items():
        async with browser_http.post(
            f"{stack.url}/signin",
            data={"email": victim["email"], "password": PASSWORD},
            headers={"Cookie": f"darkroom_session={value}", "Origin": stack.url},
            allow_redirects=False,
        ) as response:
            assert response.status == 303
            fresh = response.cookies["darkroom_session"].value
        issued.add(fresh)
        # Whoever holds the planted value now: it must not be the victim.
        async with browser_http.get(
            f"{stack.url}/user", headers={"Cookie": f"darkroom_session={value}"}
        ) as response:
            who = (await response.json()).get("email") if response.status == 200 else None
        tally.saw(name, response.status, refused=fresh != value and who != victim["email"])
        async with browser_http.get(
            f"{stack.url}/user", headers={"Cookie": f"darkroom_session={fresh}"}
        ) as response:
            assert response.status == 200 and (await response.json())["email"] == victim["email"]
    async with browser_http.get(
        f"{stack.url}/user", headers={"Cookie": f"darkroom_session={attackers_session}"}
    ) as response:
        attacker_kept = response.status
    resilience.row(
        "auth",
        "session fixation on the sign-in form",
        injected="the victim signs in carrying a session cookie the attacker planted:"
        f" {', '.join(planted)}",
        observed="a new session every time; the planted values never become the victim's, and"
        f" the attacker's planted live session is ended ({attacker_kept})",
        accepted=len(tally.through),
        errors_5xx=tally.errors_5xx,
    )
    assert not tally.through, tally.through
    assert len(issued) == len(planted)
    assert attacker_kept == 401


async def test_the_session_cookie_is_httponly_lax_and_secure_behind_tls(
    stack: Stack,
    browser_http: aiohttp.ClientSession,
    secrets_env: dict[str, str],
    tmp_path,
    inbox,
    run_id: str,
    resilience: Ledger,
) -> None:
    """``Secure`` follows the public URL: behind TLS (an https:// public URL) the cookie never
    travels in clear; on a plain-http local run it must still work."""
    flags = {}
    async with browser_http.post(
        f"{stack.url}/signin",
        data={"email": stack.create_account("Cookie")["email"], "password": PASSWORD},
        allow_redirects=False,
    ) as response:
        flags["http"] = response.cookies["darkroom_session"]
    async for tls in start_platform(
        f"darkroom_test_{run_id}_tls",
        secrets_env,
        tmp_path,
        inbox,
        DARKROOM_PUBLIC_URL="https://darkroom.test",
    ):
        address = f"http://127.0.0.1:{tls.env['DARKROOM_PORT']}"  # the TLS proxy's upstream
        account = tls.create_account("Behind TLS")
        async with browser_http.post(
            f"{address}/signin",
            data={"email": account["email"], "password": PASSWORD},
            headers={"Origin": "https://darkroom.test"},
            allow_redirects=False,
        ) as response:
            assert response.status == 303, await response.text()
            flags["https"] = response.cookies["darkroom_session"]
    shown = {
        scheme: {
            "HttpOnly": bool(m["httponly"]),
            "Secure": bool(m["secure"]),
            "SameSite": m["samesite"],
            "Path": m["path"],
        }
        for scheme, m in flags.items()
    }
    expected = {
        "http": {"HttpOnly": True, "Secure": False, "SameSite": "Lax", "Path": "/"},
        "https": {"HttpOnly": True, "Secure": True, "SameSite": "Lax", "Path": "/"},
    }
    resilience.row(
        "auth",
        "session cookie flags",
        injected="a sign-in on a plain-http public URL and on an https:// one (behind TLS)",
        observed=f"http: {shown['http']}; https: {shown['https']}",
        accepted=sum(shown[s] != expected[s] for s in expected),
    )
    assert shown == expected
