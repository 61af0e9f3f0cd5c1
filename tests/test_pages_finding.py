"""Finding things, through the gateway in a browser's shoes: one site navigation on every page
(skip link, the current section marked), the account's reports and comparisons as lists
(newest first, paged, the "awaiting review" filter), the signed-in home with the account's
work (and without it, with a notice, while reports is down), and errors as HTML pages for
browsers but today's exact JSON for programs."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from html.parser import HTMLParser

import aiohttp
import pytest

from services.reports.listings import LINES_PER_PAGE
from shared.layout import NAVIGATION, is_api_path, prefers_html
from tests.conftest import start_platform
from tests.reports_support import call, jwt_auth, post_report, screenshot, sha, snap, upload

#: What Chromium sends when it navigates.
BROWSER_ACCEPT = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
)


class Page(HTMLParser):
    """What these tests look at: the site header's links, the current one, the skip link, the
    main landmark, every link, the rows of a list table, and the visible text."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.nav: list[str] = []
        self.current: list[str] = []
        self.links: list[str] = []
        self.skip: str | None = None
        self.main_id: str | None = None
        self.rows: list[str] = []
        self._in_nav = self._hidden = 0
        self._in_header = False
        self._row: list[str] | None = None
        self._text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag in ("style", "script"):
            self._hidden += 1
        elif tag == "header" and "site" in a.get("class", "").split():
            self._in_header = True
        elif tag == "nav" and self._in_header:
            self._in_nav += 1
        elif tag == "main":
            self.main_id = a.get("id")
        elif tag == "tr" and self.main_id is not None:
            self._row = []
        elif tag == "a" and "href" in a:
            self.links.append(a["href"])
            if "skip" in a.get("class", "").split():
                self.skip = a["href"]
            if self._in_nav:
                self.nav.append(a["href"])
                if a.get("aria-current") == "page":
                    self.current.append(a["href"])

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script"):
            self._hidden -= 1
        elif tag == "header":
            self._in_header = False
        elif tag == "nav" and self._in_nav:
            self._in_nav -= 1
        elif tag == "tr" and self._row is not None:
            self.rows.append(" ".join(" ".join(self._row).split()))
            self._row = None

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self._text.append(data)
            if self._row is not None:
                self._row.append(data)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self._text).split())


NAV_HREFS = [href for _, href, _ in NAVIGATION]


def loopback_connector() -> aiohttp.TCPConnector:
    # Each browser its own loopback address, so the anonymous rate bucket is fresh.
    address = f"127.{random.randint(1, 250)}.{random.randint(1, 250)}.{random.randint(2, 250)}"
    return aiohttp.TCPConnector(local_addr=(address, 0))


async def signed_in(url: str, account: dict) -> aiohttp.ClientSession:
    """A cookie-keeping client signed in through the real sign-in form, asking as a browser."""
    session = aiohttp.ClientSession(
        connector=loopback_connector(),
        cookie_jar=aiohttp.CookieJar(unsafe=True),
        headers={"Accept": BROWSER_ACCEPT},
    )
    form = {"email": account["email"], "password": "hunter2hunter2", "next": "/"}
    async with session.post(f"{url}/signin", data=form, allow_redirects=False) as r:
        assert r.status == 303, await r.text()
    return session


async def get_page(session, url: str, status: int = 200) -> Page:
    async with session.get(url, allow_redirects=False) as r:
        body = await r.text()
        assert r.status == status, (url, r.status, body[:400])
        assert r.content_type == "text/html", (url, r.content_type)
        return Page(body)


@pytest.fixture(scope="module")
def person_account(stack) -> dict:
    return stack.create_account("Katherine Johnson")


@pytest.fixture(scope="module")
async def person(stack, person_account) -> AsyncIterator[aiohttp.ClientSession]:
    session = await signed_in(stack.url, person_account)
    yield session
    await session.close()


@pytest.fixture(scope="module")
async def work(stack, person_account) -> dict:
    """The person's account's work: a report per project, an equal comparison, one with a
    change (awaiting review) and a job."""
    account = person_account
    async with aiohttp.ClientSession() as client:
        plain = await upload(client, stack, account, screenshot(40, 30))
        changed = await upload(client, stack, account, screenshot(40, 30, patch=(5, 5, 8, 8)))
        shas = [sha() for _ in range(4)]
        await post_report(client, stack, account, shas[0], [snap(plain, "Card")])
        await post_report(client, stack, account, shas[1], [snap(plain, "Card")])
        await post_report(client, stack, account, shas[2], [snap(changed, "Card")])
        await post_report(client, stack, account, shas[3], [snap(plain, "Nav")], project="mobile")
        auth = jwt_auth(account)
        equal = await call(client, stack, "POST", f"/api/reports/{shas[0]}/compare/{shas[1]}", auth)
        differs = await call(
            client, stack, "POST", f"/api/reports/{shas[1]}/compare/{shas[2]}", auth
        )
        job = await call(client, stack, "POST", f"/api/jobs/{shas[1]}/{shas[2]}", auth)
        report = await call(client, stack, "GET", f"/api/reports/{shas[2]}/status", auth)
    assert equal["equal"] is True and differs["equal"] is False
    return {"shas": shas, "equal": equal, "differs": differs, "job": job, "report": report}


# --- one navigation ---------------------------------------------------------------------------


async def test_every_page_has_the_one_navigation_with_its_section_marked(stack, person, work):
    for path, current in [
        ("/", []),
        ("/reports", ["/reports"]),
        (f"/reports/{work['report']['id']}", ["/reports"]),
        ("/comparisons", ["/comparisons"]),
        (f"/comparisons/{work['differs']['id']}", ["/comparisons"]),
        ("/upload", ["/upload"]),
        ("/files", ["/files"]),
        ("/applications", ["/applications"]),
        ("/keys", ["/keys"]),
        ("/docs", ["/docs"]),
        ("/nothing-here", []),
    ]:
        page = await get_page(person, stack.url + path, 404 if path == "/nothing-here" else 200)
        assert page.nav == NAV_HREFS, (path, page.nav)
        assert page.current == current, (path, page.current)
        assert page.skip == "#main" and page.main_id == "main", path
    # signed out, the header offers to sign in; the same links are there
    async with aiohttp.ClientSession(connector=loopback_connector()) as anonymous:
        page = await get_page(anonymous, stack.url + "/signin")
        assert page.nav == NAV_HREFS and "/signup" in page.links


# --- the lists --------------------------------------------------------------------------------


async def test_reports_list_is_the_accounts_newest_first_and_paged(stack, http):
    account = stack.create_account("Dorothy Vaughan")
    stranger = stack.create_account("Mary Jackson")
    shas = [sha() for _ in range(LINES_PER_PAGE + 2)]
    image = await upload(http, stack, account, screenshot(20, 20))
    for i, report_sha in enumerate(shas):
        snaps = [snap(image, f"C{n}") for n in range(1 + i % 3)]
        await post_report(http, stack, account, report_sha, snaps, project="web" if i else "")
    session = await signed_in(stack.url, account)
    try:
        first = await get_page(session, f"{stack.url}/reports")
        assert len(first.rows) == 1 + LINES_PER_PAGE  # the header row and a page
        newest = shas[::-1]
        assert newest[0] in first.rows[1] and "web" in first.rows[1]
        assert [row.split()[0] for row in first.rows[1:]] == newest[:LINES_PER_PAGE]
        # the snapshot count of the newest: len(shas) - 1 = 26, 26 % 3 = 2 → 3 snapshots
        assert first.rows[1].split()[2] == str(1 + (len(shas) - 1) % 3)
        assert f"{len(shas)} in all" in first.text
        assert "/reports?page=2" in first.links
        second = await get_page(session, f"{stack.url}/reports?page=2")
        assert [row.split()[0] for row in second.rows[1:]] == newest[LINES_PER_PAGE:]
        assert "default project" in second.rows[-1]
        await get_page(session, f"{stack.url}/reports?page=3", 404)
        await get_page(session, f"{stack.url}/reports?page=x", 400)
    finally:
        await session.close()
    other = await signed_in(stack.url, stranger)
    try:
        page = await get_page(other, f"{stack.url}/reports")
        assert len(page.rows) == 0 and "No reports yet" in page.text
    finally:
        await other.close()
    # signed out: off to sign in, then back
    async with aiohttp.ClientSession(connector=loopback_connector()) as anonymous:
        async with anonymous.get(f"{stack.url}/reports", allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "/signin?next=/reports"


async def test_comparisons_list_with_its_awaiting_review_filter(stack, person, work):
    every = await get_page(person, f"{stack.url}/comparisons")
    rows = every.rows[1:]
    assert len(rows) == 2
    # newest first: the one with a change, awaiting review; then the equal one
    assert "awaiting review" in rows[0] and "1 changed, 0 added, 0 deleted" in rows[0]
    assert "success" in rows[1] and "0 changed" in rows[1] and "1 unchanged" in rows[1]
    assert f"/comparisons/{work['differs']['id']}" in every.links
    awaiting = await get_page(person, f"{stack.url}/comparisons?status=awaiting-review")
    assert len(awaiting.rows) == 2 and "awaiting review" in awaiting.rows[1]
    assert f"/comparisons/{work['equal']['id']}" not in awaiting.links
    async with person.get(f"{stack.url}/comparisons?status=mine") as r:
        assert r.status == 400 and "awaiting-review" in await r.text()


# --- the signed-in home -----------------------------------------------------------------------


async def test_home_shows_the_accounts_work(stack, person, work):
    home = await get_page(person, f"{stack.url}/")
    text = home.text
    assert "Awaiting review (1)" in text and "Katherine Johnson" in text
    assert f"/comparisons/{work['differs']['id']}" in home.links
    assert "/comparisons?status=awaiting-review" in home.links
    assert f"/jobs/{work['job']['id']}" in home.links
    for report_sha in work["shas"]:  # four reports: all among the recent five
        assert report_sha in text
    assert "mobile · 1 report" in text and "default project · 3 reports" in text
    # signed out, the landing page: no work, no notice
    async with aiohttp.ClientSession(connector=loopback_connector()) as anonymous:
        page = await get_page(anonymous, f"{stack.url}/")
        assert "Awaiting review" not in page.text and "/signup" in page.links


async def test_home_and_errors_while_reports_is_down(secrets_env, tmp_path, inbox, run_id):
    """A platform without its reports service: the home page still shows (with a notice), and
    a browser asking for a reports page gets the gateway's 503 as a page, a program JSON."""
    async for platform in start_platform(
        f"darkroom_test_{run_id}_noreports", secrets_env, tmp_path, inbox, without=("reports",)
    ):
        account = platform.create_account("Annie Easley")
        session = await signed_in(platform.url, account)
        try:
            home = await get_page(session, f"{platform.url}/")
            assert "reports service did not answer" in home.text
            assert "Annie Easley" in home.text and home.nav == NAV_HREFS
            async with session.get(f"{platform.url}/reports") as r:
                assert r.status == 503 and r.content_type == "text/html"
                assert r.headers["Retry-After"] == "2"
                assert "Temporarily unavailable" in Page(await r.text()).text
        finally:
            await session.close()
        async with aiohttp.ClientSession() as program:
            async with program.get(
                f"{platform.url}/api/reports/abc", headers=jwt_auth(account)
            ) as r:
                assert r.status == 503 and r.headers["Retry-After"] == "2"
                assert (await r.json())["error"]["code"] == "unavailable"


# --- error pages ------------------------------------------------------------------------------


async def test_errors_are_pages_for_browsers_and_json_for_programs(stack, person, http):
    page = await get_page(person, f"{stack.url}/nothing-here", 404)
    assert "Page not found" in page.text and "No route for /nothing-here" in page.text
    assert page.nav == NAV_HREFS
    # programs: today's exact JSON, whatever they accept that is not HTML first
    for accept in (None, "*/*", "application/json", "application/json, text/html;q=0.5"):
        headers = {"Accept": accept} if accept else {}
        async with http.get(f"{stack.url}/nothing-here", headers=headers) as r:
            assert r.status == 404 and r.content_type == "application/json"
            assert await r.json() == {
                "error": {"code": "not_found", "message": "No route for /nothing-here"}
            }
    # API paths stay JSON even for a browser
    for path in ("/api/reports/nope/nope/nope", "/user/images/nope/nope", "/oauth/token"):
        async with person.request("GET", f"{stack.url}{path}") as r:
            assert r.content_type == "application/json", (path, r.status)
            assert "error" in await r.json()
    # a service's own 404 and 405 (answered by reports, through the gateway)
    page = await get_page(person, f"{stack.url}/reports/1/nothing", 404)
    assert page.nav == NAV_HREFS
    async with person.delete(f"{stack.url}/reports", headers={"Origin": stack.url}) as r:
        assert r.status == 405 and r.content_type == "text/html"
        assert "GET" in r.headers["Allow"]
    async with http.delete(f"{stack.url}/reports", headers={"Accept": "application/json"}) as r:
        assert r.status == 405 and (await r.json())["error"]["code"] == "method_not_allowed"
    # the internal summary is not reachable from outside
    async with person.get(f"{stack.url}/internal/summary") as r:
        assert r.status == 404


def test_what_counts_as_a_browser_asking_for_a_page() -> None:
    assert prefers_html(BROWSER_ACCEPT)
    assert prefers_html("text/html")
    assert not prefers_html("")
    assert not prefers_html("*/*")
    assert not prefers_html("application/json")
    assert not prefers_html("application/json;q=1, text/html;q=0.9")
    assert not prefers_html("text/html;q=0")
    assert not prefers_html("image/avif,image/webp,*/*;q=0.8")  # an <img> fetching
    assert not prefers_html("text/html;q=abc")
    for path in ("/api/x", "/user", "/user/images", "/oauth/token", "/internal/x", "/metrics"):
        assert is_api_path(path), path
    for path in ("/", "/reports", "/users", "/oauth/authorize", "/nothing", "/f/abc.png"):
        assert not is_api_path(path), path
