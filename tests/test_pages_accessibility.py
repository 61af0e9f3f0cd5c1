"""Every page in a real browser, in both colour schemes: axe-core (pinned in tests/axe, npm)
finds no violation of impact serious or critical (WCAG 2.2 AA contrast, names, labels …), and
no page scrolls sideways at a phone's 375 px or a laptop's 1280 px.

Debian's headless Chromium (Playwright), signed out and signed in through the real form;
screenshots of each page, scheme and width are saved in the test's tmp dir. A failing check of
a page another change owns is marked xfail by name in :data:`KNOWN` (non-strict), so the rest
still guard everything else.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import pytest

from tests.npm_support import npm_modules
from tests.oauth_support import register
from tests.rendering_support import CHROMIUM, CHROMIUM_ARGS
from tests.reports_support import call, jwt_auth, post_report, screenshot, sha, snap, upload

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)",
)

AXE = Path(__file__).resolve().parent / "axe"
SCHEMES = ("light", "dark")
WIDTHS = (375, 1280)
#: What fails the test: axe's two highest impacts.
BLOCKING = frozenset({"serious", "critical"})
#: (page, check) → why it is expected to fail for now, and whose it is to fix. Checks are
#: "axe:<rule id>" and "scroll-375" / "scroll-1280".
KNOWN: dict[tuple[str, str], str] = {}

#: Page name → (path or a key of the ``site`` fixture, signed in?). Consent needs a fresh
#: authorization request, made by the fixture.
PAGES = {
    "home-signed-out": ("/", False),
    "signin": ("/signin", False),
    "signup": ("/signup", False),
    "docs": ("/docs", False),
    "not-found": ("/nothing-here", False),
    "home": ("/", True),
    "keys": ("/keys", True),
    "applications": ("/applications", True),
    "consent": ("consent", True),
    "upload": ("/upload", True),
    "files": ("/files", True),
    "reports": ("/reports", True),
    "comparisons": ("/comparisons", True),
    "report": ("report", True),
    "comparison": ("comparison", True),
    "job": ("job", True),
    "integrations": ("/integrations", True),
}


@pytest.fixture(scope="module")
def axe_script() -> Path:
    return npm_modules(AXE, "axe") / "axe-core" / "axe.min.js"


@pytest.fixture(scope="module")
async def site(stack) -> dict:
    """An account with a report, a comparison with a change, a job and an OAuth application."""
    account = stack.create_account("Hedy Lamarr")
    async with aiohttp.ClientSession() as client:
        plain = await upload(client, stack, account, screenshot(120, 80))
        changed = await upload(client, stack, account, screenshot(120, 80, patch=(30, 20, 40, 30)))
        before, after = sha() + "0" * 28, sha() + "f" * 28  # as long as git's
        report = await post_report(client, stack, account, before, [snap(plain, "Banner")])
        await post_report(client, stack, account, after, [snap(changed, "Banner")])
        auth = jwt_auth(account)
        compared = await call(client, stack, "POST", f"/api/reports/{before}/compare/{after}", auth)
        job = await call(client, stack, "POST", f"/api/jobs/{before}/{after}", auth)
    application = register(stack, account, name="Photo Book")
    # something on the integrations page: a status integration and a webhook endpoint
    stack.cli(
        "integration", "create", "--account", account["account_id"], "--provider", "github",
        "--base-url", "https://github.example.com", "--token", "ghp-not-shown",
    )  # fmt: skip
    stack.cli(
        "webhook", "create", "--account", account["account_id"], "--url",
        "https://hooks.example.com/darkroom", "--events", "comparison.completed,job.cancelled",
    )  # fmt: skip
    consent = "/oauth/authorize?" + urlencode(
        {"client_id": application["client_id"], "response_type": "code", "state": "s"}
    )
    return {
        "account": account,
        "report": f"/reports/{report['id']}",
        "comparison": f"/comparisons/{compared['id']}",
        "job": f"/jobs/{job['id']}",
        "consent": consent,
    }


@pytest.fixture(scope="module")
async def browsers(stack, site) -> AsyncIterator[dict]:
    """Per colour scheme, a signed-out and a signed-in browser context."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            contexts = {}
            for scheme in SCHEMES:
                for signed in (False, True):
                    # axe is injected as a script: the pages' CSP allows only our own files
                    context = await browser.new_context(color_scheme=scheme, bypass_csp=True)
                    if signed:
                        await sign_in(context, stack.url, site["account"])
                    contexts[scheme, signed] = context
            yield contexts
        finally:
            await browser.close()


async def sign_in(context, url: str, account: dict) -> None:
    page = await context.new_page()
    await page.goto(f"{url}/signin")
    await page.fill("input[name=email]", account["email"])
    await page.fill("input[name=password]", "hunter2hunter2")
    async with page.expect_navigation():
        await page.click("form.stack button[type=submit]")
    assert "Sign out" in await page.inner_text("header")
    await page.close()


_RUN_AXE = """async () => {
    const result = await axe.run(document, {resultTypes: ['violations']});
    return result.violations.map(v => ({
        id: v.id, impact: v.impact, help: v.help,
        nodes: v.nodes.slice(0, 5).map(n => [n.target.join(' '), n.failureSummary]),
    }));
}"""
_SIDEWAYS = """() => {
    const root = document.documentElement;
    return root.scrollWidth > root.clientWidth ? root.scrollWidth : 0;
}"""


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("name", list(PAGES))
async def test_page_is_accessible_and_fits(
    stack, site, browsers, axe_script, tmp_path, name: str, scheme: str
) -> None:
    where, signed = PAGES[name]
    path = site[where] if not where.startswith("/") else where
    page = await browsers[scheme, signed].new_page()
    problems: dict[str, str] = {}
    try:
        for width in WIDTHS:
            await page.set_viewport_size({"width": width, "height": 900})
            response = await page.goto(stack.url + path)
            assert response is not None
            expected = 404 if name == "not-found" else 200
            assert response.status == expected, (name, response.status, page.url)
            assert page.url == stack.url + path, f"{name} went to {page.url}"
            if name == "docs":
                await page.wait_for_selector(".opblock-summary-path", timeout=20_000)
            await page.screenshot(
                path=str(tmp_path / f"{name}-{scheme}-{width}.png"), full_page=True
            )
            wide = await page.evaluate(_SIDEWAYS)
            if wide:
                problems[f"scroll-{width}"] = f"{wide} px wide in a {width} px window"
            await page.add_script_tag(path=str(axe_script))
            for violation in await page.evaluate(_RUN_AXE):
                if violation["impact"] in BLOCKING:
                    detail = f"at {width} px: " + json.dumps(violation, indent=1)[:3000]
                    problems.setdefault(f"axe:{violation['id']}", detail)
        # the skip link leads to the main landmark
        assert await page.get_attribute("a.skip", "href") == "#main"
        assert await page.locator("main#main").count() == 1
    finally:
        await page.close()
    print(f"screenshots: {tmp_path}")
    unexpected = {check: why for check, why in problems.items() if (name, check) not in KNOWN}
    assert not unexpected, f"{name} ({scheme}): {unexpected}"
    if problems:
        pytest.xfail("; ".join(KNOWN[name, check] for check in problems))
