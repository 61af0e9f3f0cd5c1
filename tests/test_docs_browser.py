"""``GET /docs`` in a real browser: Debian's headless Chromium (Playwright) renders the OpenAPI
document with Swagger UI from the gateway's own files, under its Content-Security-Policy, and
shows the operations of every dialect; a screenshot is saved in the test's tmp dir."""

from __future__ import annotations

import aiohttp
import pytest

from tests.rendering_support import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)",
)


async def test_docs_assets_come_from_the_gateway(stack):
    async with aiohttp.ClientSession() as client:
        async with client.get(stack.url + "/docs") as response:
            assert response.status == 200
            html = await response.text()
            csp = response.headers["Content-Security-Policy"]
        assert "script-src 'self';" in csp and "'unsafe-eval'" not in csp
        assert "http" not in html.replace('lang="en"', "")  # no CDN, no absolute URL
        async with client.get(stack.url + "/docs/static/swagger-ui-bundle.js") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("application/javascript")
            assert (await response.content.read(80)).startswith(b"/*! For license")
        async with client.get(stack.url + "/docs/static/..%2Fdocs.html") as response:
            assert response.status == 404


async def test_docs_render_the_operations_in_chromium(stack, tmp_path):
    from playwright.async_api import async_playwright

    shot = tmp_path / "docs.png"
    requested: list[str] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 1600})
            console: list[str] = []
            page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
            page.on("request", lambda r: requested.append(r.url))
            await page.goto(stack.url + "/docs")
            await page.wait_for_selector(".opblock-summary-path", timeout=20_000)
            paths = await page.eval_on_selector_all(
                ".opblock-summary-path", "els => els.map(e => e.getAttribute('data-path'))"
            )
            title = await page.text_content(".info .title")
            tags = await page.eval_on_selector_all(
                ".opblock-tag", "els => els.map(e => e.getAttribute('data-tag'))"
            )
            summaries = await page.eval_on_selector_all(
                ".opblock-summary-description", "els => els.map(e => e.textContent)"
            )
            await page.screenshot(path=str(shot), full_page=False)
        finally:
            await browser.close()
    print(f"screenshot: {shot}")
    assert "Darkroom" in (title or "")
    assert {"Happo reports API", "Progimage", "Haut.ai-style", "Hash file host"} <= set(tags)
    for path in ("/api/reports/{sha}", "/user/images", "/api/v1/login/", "/f/{tail}"):
        assert path in paths, paths
    assert "A report's snapshots" in summaries
    assert not [m for m in console if "Content Security Policy" in m], console
    assert all(url.startswith(stack.url) for url in requested), requested
    assert shot.stat().st_size > 10_000
