"""Rendering one snap request (a parsed :class:`~shared.rendering.RenderJob`) into screenshots.

The three payload kinds of ``happo-rendering.md``: a static package (``/iframe.html`` and its
``window.happo``), DOM snapshots (one document per snapshot, built beside the assets package)
and pages (navigated through the outbound guard). Everything runs in one fresh browser context
and one page per request.

The page is boxed (house rule 9; its network is :mod:`services.rendering.sandbox`): the
package is served at the root of an origin of its own (:data:`PACKAGE_ORIGIN`, a secure
context) from the unpacked directory and nothing outside it; every other request goes to
``outbound`` (the SSRF-guarded fetcher) or, without one, is refused; popups close at once,
dialogs are dismissed, downloads and service workers are off, ``file:`` is never served. Time,
size and count limits (:class:`RenderLimits`) bound each example and the whole request: a page
that never answers has its renderer closed (the browser killed if it will not close) and fails
the request naming the example.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from playwright.async_api import (
    BrowserContext,
    CDPSession,
    Dialog,
    Page,
)
from playwright.async_api import Error as PlaywrightError

from services.rendering import page_scripts as js
from services.rendering.chromium import BrowserLost, ChromiumPool
from services.rendering.sandbox import (
    PACKAGE_ORIGIN,
    Outbound,
    OutboundAnswer,
    OutboundRefused,
    PageNetwork,
    close_web_socket,
)
from shared.logging import get_logger
from shared.rendering import DOM, PAGES, STATIC, RenderJob, TargetOptions, unrenderable

log = get_logger("darkroom.rendering")

__all__ = [
    "PACKAGE_ORIGIN",
    "Outbound",
    "OutboundAnswer",
    "OutboundRefused",
    "RenderFailed",
    "RenderLimits",
    "Shot",
    "render",
]

#: Where a DOM snapshot's document is served: at the root, so the package's relative URLs
#: resolve as they did in the client's browser.
SNAPSHOT_PATH = "/__darkroom-snapshot.html"
#: ``waitForContent`` is polled this long (happo-rendering.md).
WAIT_FOR_CONTENT_SECONDS = 10.0
#: Longest in-page wait for images, fonts and video seeks of one example, in ms.
IN_PAGE_WAIT_MS = 10_000
#: Elements whose CSS backgrounds are looked for (beyond: the network-quiet wait covers them).
BACKGROUND_SCAN = 20_000
#: Longest wait for the network to go quiet, as a multiple of ``network_quiet_ms``.
QUIET_CAP_FACTOR = 10


@dataclass(frozen=True)
class RenderLimits:
    """Bounds on one request's render."""

    #: One example: render, waits and screenshot.
    example_seconds: float = 30.0
    #: The whole request.
    request_seconds: float = 600.0
    #: ``window.happo`` to appear in a static package (and its ``init`` to finish).
    wait_for_happo_seconds: float = 60.0
    #: Examples per request.
    max_examples: int = 2000
    #: Width x height of one screenshot, in device pixels.
    max_screenshot_pixels: int = 40_000_000
    #: Elements of one example's document.
    max_dom_nodes: int = 200_000
    #: The network counts as quiet after this long without a request.
    network_quiet_ms: int = 200


@dataclass(frozen=True)
class Shot:
    """One rendered example: the PNG and its pixel size."""

    component: str
    variant: str
    png: bytes
    width: int
    height: int


class RenderFailed(Exception):
    """The request cannot be rendered; ``reason`` is shown to the client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def render(
    pool: ChromiumPool,
    job: RenderJob,
    package_dir: Path | None,
    limits: RenderLimits,
    outbound: Outbound | None = None,
) -> list[Shot]:
    """Render ``job`` in a fresh context of ``pool``: one :class:`Shot` per example, in order.
    :class:`RenderFailed` when the request cannot be rendered (its reason is for the client),
    :class:`~services.rendering.chromium.BrowserLost` when the browser died under it."""
    reason = unrenderable(job.options.browser)
    if reason is not None:
        raise RenderFailed(reason)
    if job.kind == STATIC and package_dir is None:
        raise RenderFailed("The static package of this request is missing")
    root = _resolved(package_dir)
    deadline = asyncio.timeout(limits.request_seconds)
    try:
        async with deadline:
            async with pool.context(**_context_options(job.options)) as context:
                session = _Session(pool, context, job, root, limits, outbound)
                return await session.run()
    except TimeoutError:
        if not deadline.expired():
            raise
        raise RenderFailed(
            f"Rendering took longer than the limit of {limits.request_seconds:g} s per request"
        ) from None


def _resolved(package_dir: Path | None) -> Path | None:
    return Path(package_dir).resolve() if package_dir is not None else None


def _context_options(options: TargetOptions) -> dict[str, Any]:
    width, height = options.viewport
    return {
        "viewport": {"width": width, "height": height},
        "screen": {"width": width, "height": height},
        "device_scale_factor": options.device_scale_factor,
        "reduced_motion": "reduce" if options.prefers_reduced_motion else "no-preference",
        "color_scheme": options.prefers_color_scheme or "light",
        "locale": "en-US",
        "timezone_id": "UTC",
        "java_script_enabled": True,
        "accept_downloads": False,
        "service_workers": "block",
        "bypass_csp": False,
        "ignore_https_errors": False,
    }


class _Session:
    """One request's render: the context's routing, its one page, the examples."""

    def __init__(
        self,
        pool: ChromiumPool,
        context: BrowserContext,
        job: RenderJob,
        root: Path | None,
        limits: RenderLimits,
        outbound: Outbound | None,
    ) -> None:
        self.pool = pool
        self.context = context
        self.job = job
        self.options = job.options
        self.limits = limits
        self.net = PageNetwork(
            root,
            outbound,
            extra_headers=dict(job.options.outgoing_request_headers),
            outbound_seconds=limits.example_seconds,
            quiet_ms=limits.network_quiet_ms,
        )
        self.page: Page | None = None
        self.shots: list[Shot] = []
        self.tasks: set[asyncio.Task[Any]] = set()
        self.cdp: CDPSession | None = None
        self.forced = False

    async def run(self) -> list[Shot]:
        await self.context.route("**/*", self.net.handle)
        await self.context.route_web_socket("**/*", close_web_socket)
        await self.context.add_init_script(js.LOCKDOWN)
        self.context.on("page", self._on_page)
        self.page = await self.context.new_page()
        self.page.on("dialog", self._on_dialog)
        # Screenshots go straight through the DevTools protocol (one call, not playwright's
        # five). A clipped capture restores *this* session's device metrics afterwards, so the
        # session carries the same ones as the context's, or it would undo them.
        self.cdp = await self.context.new_cdp_session(self.page)
        width, height = self.options.viewport
        await self.cdp.send(
            "Emulation.setDeviceMetricsOverride",
            {
                "width": width,
                "height": height,
                "deviceScaleFactor": self.options.device_scale_factor,
                "mobile": False,
                "screenWidth": width,
                "screenHeight": height,
            },
        )
        try:
            if self.job.kind == STATIC:
                await self._static()
            elif self.job.kind == DOM:
                await self._dom()
            elif self.job.kind == PAGES:
                await self._pages()
            else:
                raise RenderFailed(f"Unknown payload kind {self.job.kind!r}")
        finally:
            for task in self.tasks:
                task.cancel()
        return self.shots

    # --- the three kinds ----------------------------------------------------------------------

    async def _static(self) -> None:
        page = self._page()
        await self._open(PACKAGE_ORIGIN + "/iframe.html", "the package's /iframe.html")
        waited = self.limits.wait_for_happo_seconds
        try:
            await page.wait_for_function(js.HAPPO_READY, timeout=waited * 1000, polling=50)
        except PlaywrightError as exc:
            await self._raise_if_lost(exc)
            reason = self.net.with_refusal("Timed out while waiting for window.happo")
            raise RenderFailed(reason) from None
        css = self._global_css()
        await self._call(page.evaluate(js.ENSURE_STYLE, css), waited, "adding the global CSS")
        chunk = self.job.chunk
        init = {
            "targetName": self.job.target_name,
            "chunk": {"index": chunk[0], "total": chunk[1]} if chunk else None,
            "only": self.job.only,
        }
        await self._call(page.evaluate(js.HAPPO_INIT, init), waited, "window.happo.init")
        seen: set[tuple[str, str]] = set()
        previous: str | None = None
        settle = self._settle_options(css)
        while True:
            what = f"the example after {previous}" if previous else "the first example"
            try:
                async with asyncio.timeout(self.limits.example_seconds):
                    before = self.net.requests
                    found = await self._call(
                        page.evaluate(js.NEXT_AND_STABILISE, settle), None, what
                    )
                    item = found["item"]
                    if item is None:
                        return
                    component, variant = item["component"], item["variant"]
                    if not component or not variant:
                        raise RenderFailed(
                            f"{what[0].upper()}{what[1:]} has no component or variant"
                        )
                    if (component, variant) in seen:
                        raise RenderFailed("Stuck in loop processing examples")
                    seen.add((component, variant))
                    if len(seen) > self.limits.max_examples:
                        raise RenderFailed(
                            f"The package has more than {self.limits.max_examples} examples,"
                            " the limit per request"
                        )
                    what = f"{component} / {variant}"
                    if not item["skipped"]:
                        settled = found.get("settled") if self.net.requests == before else None
                        await self._shoot(
                            component,
                            variant,
                            settle,
                            settled,
                            wait_for=item["waitForContent"],
                            pseudo=item["pseudo"],
                        )
                    previous = what
            except TimeoutError:
                raise self._too_slow(what) from None

    async def _dom(self) -> None:
        page = self._page()
        snapshots = [s for s in self.job.snapshots if self.job.applies(s)]
        if len(snapshots) > self.limits.max_examples:
            raise RenderFailed(
                f"The request has {len(snapshots)} snapshots, more than the limit of"
                f" {self.limits.max_examples} per request"
            )
        settle = self._settle_options(None)
        for index, snapshot in enumerate(snapshots):
            what = f"{snapshot.component} / {snapshot.variant}"
            path = f"{SNAPSHOT_PATH}?n={index}"
            self.net.documents = {
                path: js.snapshot_document(snapshot, self.job.global_css, self.options)
            }
            try:
                async with asyncio.timeout(self.limits.example_seconds):
                    await self._open(PACKAGE_ORIGIN + path, what)
                    before = self.net.requests
                    found = await self._call(
                        page.evaluate(js.PREPARE_AND_STABILISE, settle), None, what
                    )
                    settled = found.get("settled") if self.net.requests == before else None
                    await self._shoot(
                        snapshot.component,
                        snapshot.variant,
                        settle,
                        settled,
                        pseudo=found["pseudo"],
                    )
            except TimeoutError:
                raise self._too_slow(what) from None

    async def _pages(self) -> None:
        page = self._page()
        if len(self.job.pages) > self.limits.max_examples:
            raise RenderFailed(
                f"The request has {len(self.job.pages)} pages, more than the limit of"
                f" {self.limits.max_examples} per request"
            )
        settle = {**self._settle_options(self._global_css()), "fullPage": True}
        for target in self.job.pages:
            what = f"page {target.url}"
            try:
                async with asyncio.timeout(self.limits.example_seconds):
                    await self._open(target.url, what)
                    if target.wait_for_selector:
                        try:
                            await page.wait_for_selector(
                                target.wait_for_selector,
                                state="attached",
                                timeout=WAIT_FOR_CONTENT_SECONDS * 1000,
                            )
                        except PlaywrightError as exc:
                            await self._raise_if_lost(exc)
                            if self.options.fail_on_wait_for_timeout:
                                raise RenderFailed(
                                    f"Timed out waiting for {target.wait_for_selector!r} in {what}"
                                ) from None
                    await self._shoot(
                        target.title, "default", settle, None, wait_for=target.wait_for_content
                    )
            except TimeoutError:
                raise self._too_slow(what) from None

    # --- one example --------------------------------------------------------------------------

    def _settle_options(self, css: str | None) -> dict[str, Any]:
        return {
            "maxNodes": self.limits.max_dom_nodes,
            "maxWidth": self.options.max_width,
            "maxHeight": self.options.max_height,
            "freeze": "last" if self.options.freeze_animations == "last-frame" else "first",
            "fullPage": False,
            "css": css,
            "waitMs": IN_PAGE_WAIT_MS,
            "maxBackgroundScan": BACKGROUND_SCAN,
        }

    async def _shoot(
        self,
        component: str,
        variant: str,
        settle: dict[str, Any],
        settled: dict[str, Any] | None,
        *,
        wait_for: str | None = None,
        pseudo: bool = False,
    ) -> None:
        """Screenshot the example on the page. ``settled`` is what ``STABILISE`` measured in
        the call that rendered the example; it stands if no request started since and the
        network has been quiet long enough, else the page settles (again) first."""
        what = f"{component} / {variant}"
        if wait_for:
            await self._wait_for_content(wait_for, what)
            settled = None
        if pseudo and self.options.apply_pseudo_classes:
            await self._force_pseudo_states(what)
            settled = None
        elif self.forced:
            await self._call(self._cdp().send("CSS.disable"), None, what)
            self.forced = False
        if settled is None or not self.net.quiet():
            await self.net.wait_quiet(self.limits.network_quiet_ms / 1000 * QUIET_CAP_FACTOR)
            settled = await self._call(self._page().evaluate(js.STABILISE, settle), None, what)
        if "clip" not in settled:
            raise RenderFailed(
                f"{what} has {settled['nodes']} elements, more than the limit of"
                f" {self.limits.max_dom_nodes} per example"
            )
        clip = settled["clip"]
        scale = self.options.device_scale_factor
        pixels = round(clip["width"] * scale) * round(clip["height"] * scale)
        if pixels > self.limits.max_screenshot_pixels:
            raise RenderFailed(
                f"{what} is {clip['width']}x{clip['height']} px, more than the limit of"
                f" {self.limits.max_screenshot_pixels} pixels per screenshot"
            )
        # Within the visible viewport, capture as is; else capture beyond it.
        left, top = settled["sx"], settled["sy"]
        width, height = self.options.viewport
        inside = (
            left <= clip["x"]
            and top <= clip["y"]
            and clip["x"] + clip["width"] <= left + width
            and clip["y"] + clip["height"] <= top + height
        )
        shot = await self._call(
            self._cdp().send(
                "Page.captureScreenshot",
                {
                    "format": "png",
                    "clip": {**clip, "scale": 1},
                    "captureBeyondViewport": not inside,
                },
            ),
            None,
            what,
        )
        png = base64.b64decode(shot["data"])
        width, height = png_size(png)
        self.shots.append(Shot(component, variant, png, width, height))

    async def _wait_for_content(self, text: str, what: str) -> None:
        try:
            await self._page().wait_for_function(
                js.HAS_TEXT, arg=text, timeout=WAIT_FOR_CONTENT_SECONDS * 1000, polling=50
            )
        except PlaywrightError as exc:
            await self._raise_if_lost(exc)
            if self.options.fail_on_wait_for_timeout:
                raise RenderFailed(
                    f"Timed out waiting for content {text!r} in {what}"
                    f" ({WAIT_FOR_CONTENT_SECONDS:g} s)"
                ) from None

    async def _force_pseudo_states(self, what: str) -> None:
        """``data-happo-hover`` / ``-focus`` / ``-active`` / ``-focus-visible``: the element
        shows that state, forced through the DevTools protocol (``CSS.disable`` drops the
        states an earlier example forced)."""
        cdp = self._cdp()
        if self.forced:
            await self._call(cdp.send("CSS.disable"), None, what)
        await self._call(cdp.send("DOM.enable"), None, what)
        await self._call(cdp.send("CSS.enable"), None, what)
        self.forced = True
        document = await self._call(cdp.send("DOM.getDocument", {"depth": 0}), None, what)
        root = document["root"]["nodeId"]
        states: dict[int, list[str]] = {}
        for attribute, state in js.PSEUDO_STATES:
            found = await self._call(
                cdp.send("DOM.querySelectorAll", {"nodeId": root, "selector": f"[{attribute}]"}),
                None,
                what,
            )
            for node in found["nodeIds"]:
                states.setdefault(node, []).append(state)
        for node, forced in states.items():
            await self._call(
                cdp.send("CSS.forcePseudoState", {"nodeId": node, "forcedPseudoClasses": forced}),
                None,
                what,
            )

    # --- plumbing -----------------------------------------------------------------------------

    def _page(self) -> Page:
        assert self.page is not None
        return self.page

    def _cdp(self) -> CDPSession:
        assert self.cdp is not None
        return self.cdp

    def _global_css(self) -> str:
        blocks = "\n".join(block.css for block in self.job.global_css if block.css)
        return js.steadying_css(self.options) + "\n" + blocks

    async def _open(self, url: str, what: str) -> None:
        """Navigate the page to ``url`` and wait for ``load``."""
        try:
            response = await self._page().goto(
                url, wait_until="load", timeout=self.limits.example_seconds * 1000
            )
        except PlaywrightError as exc:
            await self._raise_if_lost(exc)
            reason = self.net.with_refusal(f"Could not open {what}: {_first_line(exc)}")
            raise RenderFailed(reason) from None
        if response is not None and response.status >= 400:
            raise RenderFailed(f"Could not open {what}: it answered {response.status}")
        self.net.loaded()

    async def _call(self, awaitable: Awaitable[Any], seconds: float | None, what: str) -> Any:
        """Await a call into the page (within ``seconds`` if given); a page error or that
        timeout fails the request naming ``what``, a lost browser is :class:`BrowserLost`."""
        deadline = asyncio.timeout(seconds)
        try:
            async with deadline:
                return await awaitable
        except PlaywrightError as exc:
            await self._raise_if_lost(exc)
            reason = self.net.with_refusal(f"{what} failed: {_first_line(exc)}")
            raise RenderFailed(reason) from None
        except TimeoutError:
            if seconds is None or not deadline.expired():
                raise
            raise RenderFailed(f"{what} took longer than {seconds:g} s") from None

    async def _raise_if_lost(self, exc: Exception) -> None:
        if await self.pool.lost(self.context):
            raise BrowserLost(f"The browser was lost while rendering: {_first_line(exc)}") from exc

    def _too_slow(self, what: str) -> RenderFailed:
        # Closing the context (the pool does, on the way out) ends the renderer of a page
        # stuck in a loop; the pool kills the whole browser if it will not close.
        log.warning("render.example_timeout", example=what)
        return RenderFailed(
            f"{what[0].upper()}{what[1:]} took longer than the limit of"
            f" {self.limits.example_seconds:g} s per example"
        )

    def _spawn(self, awaitable: Awaitable[Any]) -> None:
        async def quietly() -> None:
            try:
                await awaitable
            except PlaywrightError:
                pass

        task = asyncio.ensure_future(quietly())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _on_page(self, page: Page) -> None:
        if self.page is not None and page is not self.page:
            self._spawn(page.close())  # a popup: never rendered, never left open

    def _on_dialog(self, dialog: Dialog) -> None:
        # beforeunload must let the next snapshot's navigation go; the rest are dismissed.
        self._spawn(dialog.accept() if dialog.type == "beforeunload" else dialog.dismiss())


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    if len(png) < 24 or png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        raise RenderFailed("The browser produced no PNG")
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
