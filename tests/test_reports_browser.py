"""The comparison page in a real browser: Debian's headless Chromium driven by Playwright signs in
through the real form, sees a diff side by side, as an overlay and as the diff image (every image
decoded, the CSS-only controls working, no Content-Security-Policy violation), accepts it, and
the API then reports the comparison a success."""

from __future__ import annotations

import aiohttp
import pytest

from tests.rendering_support import CHROMIUM, CHROMIUM_ARGS
from tests.reports_support import call, jwt_auth, post_report, screenshot, sha, snap, upload

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)",
)

#: True once ``selector`` names a decoded image.
_LOADED = """selector => {
    const img = document.querySelector(selector);
    return img !== null && img.complete && img.naturalWidth > 0;
}"""


async def natural_width(page, selector: str) -> int:
    """Wait until the image at ``selector`` is decoded; its natural width."""
    await page.wait_for_function(_LOADED, arg=selector, timeout=15_000)
    return await page.eval_on_selector(selector, "img => img.naturalWidth")


async def opacity(page, selector: str) -> str:
    return await page.eval_on_selector(selector, "el => getComputedStyle(el).opacity")


async def test_review_a_diff_in_chromium(stack, tmp_path):
    from playwright.async_api import async_playwright

    account = stack.create_account("Margaret Hamilton")
    async with aiohttp.ClientSession() as client:
        plain = await upload(client, stack, account, screenshot(120, 80))
        changed = await upload(client, stack, account, screenshot(120, 80, patch=(30, 20, 40, 30)))
        before, after = sha(), sha()
        await post_report(client, stack, account, before, [snap(plain, "Banner")])
        await post_report(client, stack, account, after, [snap(changed, "Banner")])
        result = await call(
            client, stack, "POST", f"/api/reports/{before}/compare/{after}", jwt_auth(account), {}
        )
    assert result["equal"] is False
    path = f"/comparisons/{result['id']}"
    shot = tmp_path / "comparison.png"

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            context = await browser.new_context(viewport={"width": 1280, "height": 1000})
            page = await context.new_page()
            console: list[str] = []
            page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)

            # Signed out, the comparison sends the browser to sign in, then back.
            await page.goto(f"{stack.url}{path}")
            assert page.url == f"{stack.url}/signin?next={path}"
            await page.fill("input[name=email]", account["email"])
            await page.fill("input[name=password]", "hunter2hunter2")
            async with page.expect_navigation():
                await page.click("form.stack button[type=submit]")
            assert page.url == f"{stack.url}{path}"
            assert "awaiting review" in await page.inner_text(".outcome")

            diff = "article.diff"
            # side by side, shown first
            assert await page.is_visible(f"{diff} .pane-sbs")
            assert await natural_width(page, f"{diff} .pane-sbs img.before") == 120
            assert await natural_width(page, f"{diff} .pane-sbs img.after") == 120
            # the overlay: after over before, faded to half; "Before" hides the top one
            await page.click(f"{diff} label:has-text('Overlay')")
            assert await page.is_visible(f"{diff} .pane-overlay")
            assert not await page.is_visible(f"{diff} .pane-sbs")
            assert await natural_width(page, f"{diff} .stage img.before") == 120
            assert await natural_width(page, f"{diff} .stage img.after") == 120
            assert await opacity(page, f"{diff} .stage img.after") == "0.5"
            await page.click(f"{diff} label:has-text('Before')")
            assert await opacity(page, f"{diff} .stage img.after") == "0"
            await page.click(f"{diff} label:has-text('After')")
            assert await opacity(page, f"{diff} .stage img.after") == "1"
            # both layers drawn in the same place at the same size
            boxes = [
                await page.locator(f"{diff} .stage img.{layer}").bounding_box()
                for layer in ("before", "after")
            ]
            assert boxes[0] == boxes[1]
            # the diff image
            await page.click(f"{diff} label:has-text('Diff image')")
            assert await page.is_visible(f"{diff} .pane-diff")
            assert await natural_width(page, f"{diff} img.diffimg") == 120
            await page.click(f"{diff} label:has-text('Overlay')")
            await page.click(f"{diff} label:has-text('Both (50%)')")
            await page.screenshot(path=str(shot), full_page=True)

            async with page.expect_navigation():
                await page.click("button.accept")
            assert page.url == f"{stack.url}{path}"
            assert "Accepted by you" in await page.inner_text(".outcome")
            # the pages need no script and break no rule of the Content-Security-Policy
            assert not [m for m in console if "Content Security Policy" in m], console
            assert await page.evaluate("document.scripts.length") == 0
        finally:
            await browser.close()

    print(f"screenshot: {shot}")
    assert shot.stat().st_size > 10_000
    async with aiohttp.ClientSession() as client:
        status = await call(
            client,
            stack,
            "GET",
            f"/api/reports/{before}/compare/{after}/status",
            jwt_auth(account),
        )
    assert status["status"] == "success"
