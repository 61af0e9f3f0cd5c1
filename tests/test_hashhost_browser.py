"""The hash host's pages in a real browser: Debian's headless Chromium driven by Playwright signs
in, uploads two files through the page's file input and one by drag and drop, copies a URL with
a copy button, sees its files with thumbnails and human sizes, deletes one through the
confirmation page; the plain form works with JavaScript off; no page scrolls sideways at 375 or
1280 px and none breaks the Content-Security-Policy."""

from __future__ import annotations

import hashlib

import aiohttp
import pytest

from tests.images_support import random_png
from tests.rendering_support import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)",
)

PHONE, DESKTOP = {"width": 375, "height": 800}, {"width": 1280, "height": 900}
#: Drops a text file on the upload form's drop zone, as a file dragged from the desktop would.
_DROP = """() => {
    const transfer = new DataTransfer();
    transfer.items.add(new File(["dropped words\\n"], "dropped.txt", {type: "text/plain"}));
    const zone = document.querySelector(".dropzone");
    for (const type of ["dragenter", "dragover", "drop"]) {
        zone.dispatchEvent(new DragEvent(type, {dataTransfer: transfer, bubbles: true,
                                                cancelable: true}));
    }
}"""


async def no_sideways_scroll(page, where: str) -> None:
    """The page is no wider than the window (its examples wrap or scroll in their own box)."""
    widths = await page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"{where}: {widths[0]} px wide in a {widths[1]} px window"


async def both_widths(page, where: str, shots, name: str) -> None:
    """No sideways scroll at 1280 and at 375 px; a full-page screenshot at each."""
    for size in (DESKTOP, PHONE):
        await page.set_viewport_size(size)
        await no_sideways_scroll(page, f"{where} at {size['width']} px")
        await page.screenshot(path=str(shots / f"{name}-{size['width']}.png"), full_page=True)
    await page.set_viewport_size(DESKTOP)


async def test_upload_copy_list_and_delete_in_chromium(stack, tmp_path):
    from playwright.async_api import async_playwright

    account = stack.create_account("Hedy Lamarr")
    first, second = random_png(120, 90), random_png(40, 300)
    hashes = [hashlib.sha256(data).hexdigest() for data in (first, second)]

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            context = await browser.new_context(viewport=DESKTOP)
            await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=stack.url)
            page = await context.new_page()
            console: list[str] = []
            page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
            failed: list[str] = []
            page.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)

            # Signed out, the upload page already fits both widths.
            await page.goto(f"{stack.url}/upload")
            await both_widths(page, "/upload signed out", tmp_path, "upload-anonymous")

            await page.goto(f"{stack.url}/signin?next=/upload")
            await page.fill("input[name=email]", account["email"])
            await page.fill("input[name=password]", "hunter2hunter2")
            async with page.expect_navigation():
                await page.click("form.stack button[type=submit]")
            assert page.url == f"{stack.url}/upload"

            # Two files through the page's own file input (it takes several).
            await page.set_input_files(
                "form[data-dropzone] input[type=file]",
                [
                    {"name": "wide photo.png", "mimeType": "image/png", "buffer": first},
                    {"name": "tall.png", "mimeType": "image/png", "buffer": second},
                ],
            )
            assert await page.locator(".chosen li").count() == 2  # listed before sending
            async with page.expect_navigation():
                await page.click("form[data-dropzone] button[type=submit]")
            results = page.locator("ul.results > li")
            assert await results.count() == 2
            text = await page.inner_text("ul.results")
            assert hashes[0] in text and hashes[1] in text and "wide photo.png" in text
            copies = page.locator("ul.results button.copy")
            assert await copies.count() == 6  # three URLs per file, each with a copy button
            assert await copies.first.is_visible()
            url = await copies.first.get_attribute("data-copy")
            assert url == f"{stack.url}/f/{hashes[0]}.png"
            await copies.first.click()
            assert await page.evaluate("navigator.clipboard.readText()") == url
            assert await copies.first.inner_text() == "Copied"
            await both_widths(page, "/upload with results", tmp_path, "upload-results")

            # One file dropped on the form: it is sent at once.
            async with page.expect_navigation():
                await page.evaluate(_DROP)
            assert "dropped.txt" in await page.inner_text("ul.results")

            # My files: thumbnails of the images, human sizes, copy buttons.
            await page.goto(f"{stack.url}/files")
            rows = page.locator("ul.files > li")
            assert await rows.count() == 3
            thumbs = page.locator("ul.files img")
            assert await thumbs.count() == 2  # the text file has no picture
            for index in range(2):
                thumb = thumbs.nth(index)
                await thumb.scroll_into_view_if_needed()
                await page.wait_for_function(
                    "img => img.complete && img.naturalWidth > 0",
                    arg=await thumb.element_handle(),
                    timeout=15_000,
                )
                box = await thumb.bounding_box()
                assert (round(box["width"]), round(box["height"])) == (64, 64)
            listing = await page.inner_text("ul.files")
            assert " kB" in listing or " bytes" in listing
            assert str(len(first)) not in listing.split()  # sizes are not raw byte counts
            assert await page.locator("ul.files button.copy").count() == 3
            assert await page.locator("ul.files button.copy").first.is_visible()
            await both_widths(page, "/files", tmp_path, "files")

            # Delete asks first; only the confirmation's button deletes.
            await page.set_viewport_size(PHONE)
            async with page.expect_navigation():
                await page.click(f"a.delete[href^='/files/{hashes[1]}/delete']")
            assert "Delete this file?" in await page.inner_text("main")
            await no_sideways_scroll(page, "delete confirmation at 375 px")
            await page.screenshot(path=str(tmp_path / "delete-375.png"), full_page=True)
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{stack.url}/f/{hashes[1]}") as response:
                    assert response.status == 200  # asking changed nothing
                async with page.expect_navigation():
                    await page.click("button.confirm-delete")
                assert page.url == f"{stack.url}/files"
                assert await page.locator("ul.files > li").count() == 2
                assert hashes[1] not in await page.inner_text("ul.files")
                async with http.get(f"{stack.url}/f/{hashes[1]}") as response:
                    assert response.status == 404

            assert not [m for m in console if "Content Security Policy" in m], console
            # Every script, image and page answered (the browser's own favicon guess aside).
            assert [u for u in failed if not u.endswith("/favicon.ico")] == [], failed
        finally:
            await browser.close()
    print(f"screenshots: {tmp_path}")


async def test_the_plain_form_uploads_several_files_without_javascript(stack, tmp_path):
    from playwright.async_api import async_playwright

    datas = [random_png(), b"some text\n"]
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            context = await browser.new_context(viewport=PHONE, java_script_enabled=False)
            page = await context.new_page()
            await page.goto(f"{stack.url}/upload")
            await page.set_input_files(
                "input[type=file]",
                [
                    {"name": "a.png", "mimeType": "image/png", "buffer": datas[0]},
                    {"name": "b.txt", "mimeType": "text/plain", "buffer": datas[1]},
                ],
            )
            async with page.expect_navigation():
                await page.click("form[data-dropzone] button[type=submit]")
            text = await page.inner_text("ul.results")
            for data in datas:
                assert hashlib.sha256(data).hexdigest() in text
            assert "Delete token" in text  # signed out: each file gets its own
            # Copy buttons need JavaScript: without it they are not offered.
            assert not await page.locator("ul.results button.copy").first.is_visible()
            await no_sideways_scroll(page, "/upload results without JavaScript at 375 px")
            await page.screenshot(path=str(tmp_path / "upload-nojs-375.png"), full_page=True)
        finally:
            await browser.close()
    print(f"screenshots: {tmp_path}")
