"""The review workspace in a real browser: Debian's headless Chromium driven by Playwright signs
in through the real form, sees a diff side by side, as an overlay (fade, flicker, the opacity
slider), as a swipe and as the diff image (every image decoded, no Content-Security-Policy
violation), accepts it without a reload, and the API then reports the comparison a success. A
40-diff comparison is reviewed start to finish with the keyboard alone; a 39-pixel change on a
1280x1400 page is outlined and brought to full size in one key press; nothing scrolls sideways
at 375 or 1280 px. The screenshots are kept in the test's folder."""

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

            diff = "article.kind-diff"
            # side by side, shown first
            assert await page.is_visible(f"{diff} .pane-sbs")
            assert await natural_width(page, f"{diff} .pane-sbs img.before") == 120
            assert await natural_width(page, f"{diff} .pane-sbs img.after") == 120
            # the overlay: after over before, faded to half; "Before" hides the top one
            await page.click(f"{diff} label:has-text('Overlay')")
            assert await page.is_visible(f"{diff} .pane-overlay")
            assert not await page.is_visible(f"{diff} .pane-sbs")
            stage = f"{diff} .pane-overlay .stage"
            assert await natural_width(page, f"{stage} img.before") == 120
            assert await natural_width(page, f"{stage} img.after") == 120
            assert await opacity(page, f"{stage} img.after") == "0.5"
            await page.click(f"{diff} .pane-overlay label:has-text('Before')")
            assert await opacity(page, f"{stage} img.after") == "0"
            await page.click(f"{diff} .pane-overlay label:has-text('After')")
            assert await opacity(page, f"{stage} img.after") == "1"
            # the script's opacity slider
            await page.fill(f"{diff} input.opacity", "20")
            assert await opacity(page, f"{stage} img.after") == "0.2"
            # both layers drawn in the same place at the same size
            boxes = [
                await page.locator(f"{stage} img.{layer}").bounding_box()
                for layer in ("before", "after")
            ]
            assert boxes[0] == boxes[1]
            # the swipe: after shows right of the line only
            await page.click(f"{diff} label:has-text('Swipe')")
            await page.fill(f"{diff} input.swipe", "30")
            clip = await page.eval_on_selector(
                f"{diff} .pane-swipe .stage > .frame:last-child",
                "el => getComputedStyle(el).clipPath",
            )
            assert clip == "inset(0px 0px 0px 30%)"
            # the diff image
            await page.click(f"{diff} label:has-text('Diff image')")
            assert await page.is_visible(f"{diff} .pane-diff")
            assert await natural_width(page, f"{diff} img.diffimg") == 120
            await page.click(f"{diff} label:has-text('Overlay')")
            await page.click(f"{diff} label:has-text('Both (50%)')")
            await page.screenshot(path=str(shot), full_page=True)

            # accepted on its own, without a reload: the page updates in place
            await page.click(f"{diff} button.accept")
            await page.wait_for_function(
                "() => document.querySelector('.outcome .status').textContent === 'success'"
            )
            assert page.url.startswith(f"{stack.url}{path}")
            assert "Accepted" in await page.inner_text(f"{diff} .decided")
            await page.reload()
            assert "Accepted; the last decision by you" in await page.inner_text(".outcome")
            # one script, the workspace's own file, and no rule of the policy broken
            assert not [m for m in console if "Content Security Policy" in m], console
            assert await page.evaluate("document.scripts.length") == 1
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


async def signed_in_page(playwright, stack, account, width: int, height: int = 900):
    """A browser page signed in through the real form, and its browser."""
    browser = await playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
    )
    context = await browser.new_context(viewport={"width": width, "height": height})
    page = await context.new_page()
    await page.goto(f"{stack.url}/signin")
    await page.fill("input[name=email]", account["email"])
    await page.fill("input[name=password]", "hunter2hunter2")
    async with page.expect_navigation():
        await page.click("form.stack button[type=submit]")
    return browser, page


async def scrolls_sideways(page) -> bool:
    return await page.evaluate(
        "document.documentElement.scrollWidth > document.documentElement.clientWidth"
    )


async def test_keyboard_review_of_forty_diffs(stack, tmp_path):
    from playwright.async_api import async_playwright

    account = stack.create_account("Grace Hopper")
    async with aiohttp.ClientSession() as client:
        befores, afters = [], []
        for i in range(40):
            colour = (30 + i * 5, 120, 200 - i * 3)
            plain = await upload(client, stack, account, screenshot(40, 30, colour=colour))
            changed = await upload(
                client,
                stack,
                account,
                screenshot(
                    40, 30, colour=colour, patch=(i % 30, 5, 6, 4), patch_colour=(255, 255, 0)
                ),
            )
            target = "firefox" if i % 2 else "chrome"
            befores.append(snap(plain, f"Card{i // 2:02}", target=target))
            afters.append(snap(changed, f"Card{i // 2:02}", target=target))
        before, after = sha(), sha()
        await post_report(client, stack, account, before, befores)
        await post_report(client, stack, account, after, afters)
        result = await call(
            client, stack, "POST", f"/api/reports/{before}/compare/{after}", jwt_auth(account), {}
        )
    assert result["summary"] == "40 diffs, 0 added, 0 deleted, 0 unchanged"
    path = f"/comparisons/{result['id']}"

    async with async_playwright() as playwright:
        browser, page = await signed_in_page(playwright, stack, account, 1280)
        try:
            # one change accepted on page 2, by its own button: page 1 stays undecided
            await page.goto(f"{stack.url}{path}?page=2")
            await page.click("#entry-25 button.accept")
            await page.wait_for_selector("#entry-25.decision-accepted")
            assert await page.inner_text(".outcome .status") == "awaiting review"
            await page.goto(f"{stack.url}{path}")
            assert await page.locator("article.change.decision-undecided").count() == 20
            assert await page.inner_text(".change-list .item[data-position='25'] .mark") == "✓"
            assert "39 of 40 changes wait" in await page.inner_text(".outcome")
            # one line per component and variant, its two targets under it
            assert await page.locator(".change-list .group").count() == 20
            assert await page.locator(".change-list .item").count() == 40
            # the first change not reviewed is current; v cycles its views
            assert await page.get_attribute("article.current", "data-position") == "0"
            await page.keyboard.press("v")
            assert await page.is_visible("article.current .pane-overlay")
            # a accepts the current change and moves to the next, across the page boundary
            for position in range(40):
                await page.keyboard.press("a")
                if position == 19:
                    await page.wait_for_url(f"{stack.url}{path}?page=2")
                    await page.wait_for_selector("article.current")
                elif position < 39:
                    await page.wait_for_function(
                        """p => document.querySelector(`#entry-${p}.decision-accepted`)
                            && document.querySelector("article.current").dataset.position != p""",
                        arg=str(position),
                    )
            await page.wait_for_function(
                "() => document.querySelector('.outcome .status').textContent === 'success'"
            )
            assert "success" in await page.inner_text(".outcome")
            # k goes back, across the boundary too; r rejects that one and the build fails
            for _ in range(20):
                await page.keyboard.press("k")
            await page.wait_for_url(f"{stack.url}{path}#last")
            await page.wait_for_selector("article.current")
            assert await page.get_attribute("article.current", "data-position") == "19"
            await page.keyboard.press("r")
            # decided, it moves on: past page 1's last change, to page 2, drawn by the server
            await page.wait_for_url(f"{stack.url}{path}?page=2")
            await page.wait_for_load_state()
            assert await page.inner_text(".outcome .status") == "failure"
            await page.screenshot(path=str(tmp_path / "keyboard.png"))
        finally:
            await browser.close()
    async with aiohttp.ClientSession() as client:
        status = await call(
            client, stack, "GET", f"/api/reports/{before}/compare/{after}/status", jwt_auth(account)
        )
    assert status["status"] == "failure"


async def test_a_small_change_is_outlined_and_one_key_away(stack, tmp_path):
    from playwright.async_api import async_playwright

    account = stack.create_account("Katherine Johnson")
    patch = (700, 900, 13, 3)  # 39 pixels, 900 px down a 1280x1400 page
    async with aiohttp.ClientSession() as client:
        plain = await upload(client, stack, account, screenshot(1280, 1400))
        changed = await upload(client, stack, account, screenshot(1280, 1400, patch=patch))
        before, after = sha(), sha()
        await post_report(client, stack, account, before, [snap(plain, "Invoice")])
        await post_report(client, stack, account, after, [snap(changed, "Invoice")])
        result = await call(
            client, stack, "POST", f"/api/reports/{before}/compare/{after}", jwt_auth(account), {}
        )
    path = f"/comparisons/{result['id']}"
    async with async_playwright() as playwright:
        for width in (1280, 375):
            browser, page = await signed_in_page(playwright, stack, account, width)
            try:
                await page.goto(f"{stack.url}{path}")
                await natural_width(page, "article.current .pane-sbs img.after")
                assert not await scrolls_sideways(page), width
                region = "article.current .pane-sbs figure:last-child .region"
                fitted = await page.locator(region).bounding_box()
                drawn = await page.eval_on_selector(
                    "article.current .pane-sbs img.after", "img => img.clientWidth"
                )
                assert drawn < 1280 / 2  # drawn small: the change alone would be a speck
                # the outline stands off the region, so it is seen even at this scale
                assert fitted is not None and fitted["width"] < 13
                await page.screenshot(path=str(tmp_path / f"fit-{width}.png"))

                await page.keyboard.press("z")  # one key: the change at full size, centred
                img = "article.current .pane-sbs img.after"
                assert await page.eval_on_selector(img, "img => img.clientWidth") == 1280
                box = await page.locator(region).bounding_box()
                view = await page.evaluate("({w: innerWidth, h: innerHeight})")
                # drawn 1:1 (within the rounding of its place in percent)
                assert abs(box["width"] - 13) < 0.5 and abs(box["height"] - 3) < 0.5, box
                assert 0 <= box["x"] and box["x"] + box["width"] <= view["w"], (box, view)
                assert 0 <= box["y"] and box["y"] + box["height"] <= view["h"], (box, view)
                assert not await scrolls_sideways(page), width
                await page.screenshot(path=str(tmp_path / f"zoomed-{width}.png"))
            finally:
                await browser.close()
    print(f"screenshots: {tmp_path}")
