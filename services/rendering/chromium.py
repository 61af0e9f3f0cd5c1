"""Finding and running Chromium: one browser process (driven by playwright) that hands out
fresh, isolated browser contexts and is relaunched when it dies or hangs.

Only a Chromium already on the machine is used (Debian's ``/usr/bin/chromium``, a configured
path, or one ``playwright install chromium`` fetched earlier); nothing is downloaded here. The
browser starts with flags that keep renders stable and keep it off the network: every request a
page makes is answered by the renderer's own request interception, and anything that escapes it
meets a proxy that refuses (``127.0.0.1:9``, loopback included) and a resolver that resolves
nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, BrowserContext, Playwright, async_playwright
from playwright.async_api import Error as PlaywrightError

from shared.logging import get_logger

log = get_logger("darkroom.rendering")

CHROMIUM_HELP = (
    "install one with `apt-get install chromium`, or set DARKROOM_CHROMIUM to a Chromium"
    " executable, or run `playwright install chromium`"
)

#: Where a distribution's Chromium lives, in the order they are tried.
SYSTEM_CHROMIUMS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")

#: Flags for stable raster and a browser that never reaches the network by itself.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--disable-domain-reliability",
    "--disable-breakpad",
    "--no-pings",
    "--force-color-profile=srgb",
    "--font-render-hinting=none",
    "--disable-lcd-text",
    "--disable-font-subpixel-positioning",
    "--hide-scrollbars",
    "--mute-audio",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
    "--webrtc-ip-handling-policy=disable_non_proxied_udp",
    "--js-flags=--max-old-space-size=1024",
    "--disable-frame-rate-limit",
    "--disable-gpu-vsync",
)
#: A proxy that refuses every connection: what escapes request interception goes nowhere
#: (playwright adds ``<-loopback>`` so loopback goes through it too).
REFUSING_PROXY = "http://127.0.0.1:9"
#: Seconds to wait for a browser to launch, and for a context to close before the browser is
#: killed instead.
LAUNCH_SECONDS = 30.0
CLOSE_SECONDS = 5.0
#: Seconds a liveness probe of the browser may take before it counts as hung.
PROBE_SECONDS = 10.0


def find_chromium(configured: str | None) -> str | None:
    """The Chromium to render with: ``configured`` if it is an executable file; else
    Debian's ``/usr/bin/chromium`` (or ``chromium-browser``); else the browser
    ``playwright install chromium`` put in playwright's cache. None when there is none."""
    if configured and _executable(configured):
        return configured
    if configured:
        log.warning("rendering.chromium_not_executable", path=configured)
    for candidate in SYSTEM_CHROMIUMS:
        if _executable(candidate):
            return candidate
    return playwright_chromium()


def playwright_chromium() -> str | None:
    """The Chromium playwright's own registry names, if that file exists (asked from a thread
    of its own, so this works inside a running event loop too)."""
    found: list[str | None] = [None]

    def ask() -> None:
        from playwright.sync_api import sync_playwright

        try:
            with sync_playwright() as playwright:
                found[0] = playwright.chromium.executable_path
        except Exception as exc:  # a broken driver is "no browser", not a crash
            log.info("rendering.playwright_registry_failed", error=str(exc))

    thread = threading.Thread(target=ask, name="find-chromium", daemon=True)
    thread.start()
    thread.join(timeout=60)
    path = found[0]
    return path if path and _executable(path) else None


def _executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


class BrowserLost(Exception):
    """The browser crashed, hung or was killed while rendering: a transient failure; the
    caller retries the request."""


class _Launch:
    """One launched browser process and what is known about it."""

    def __init__(self, browser: Browser, marker: str) -> None:
        self.browser = browser
        self.marker = marker
        self.pid: int | None = None
        self.lost = asyncio.Event()
        self.killed = False
        browser.on("disconnected", lambda _browser: self.lost.set())

    @property
    def alive(self) -> bool:
        return not (self.killed or self.lost.is_set()) and self.browser.is_connected()


class ChromiumPool:
    """A running Chromium (one process via playwright, relaunched when it dies or hangs) that
    hands out fresh, isolated browser contexts, at most ``concurrency`` at once."""

    def __init__(
        self,
        executable: str,
        *,
        concurrency: int = 2,
        on_restart: Callable[[], None] | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.executable = executable
        self.concurrency = concurrency
        self.on_restart = on_restart
        #: Relaunches after the browser died, hung or was killed (the first launch is not one).
        self.restarts = 0
        self._slots = asyncio.Semaphore(concurrency)
        self._lock = asyncio.Lock()
        self._playwright: Playwright | None = None
        self._current: _Launch | None = None
        self._closed = False

    async def start(self) -> None:
        """Launch the browser (``context()`` also launches on first use)."""
        self._closed = False
        await self._ensure()

    async def close(self) -> None:
        """Close the browser and playwright's driver."""
        self._closed = True
        async with self._lock:
            current, self._current = self._current, None
            if current is not None:
                await self._dispose(current)
            if self._playwright is not None:
                with contextlib.suppress(Exception):
                    await self._playwright.stop()
                self._playwright = None

    @contextlib.asynccontextmanager
    async def context(self, **options: Any) -> AsyncIterator[BrowserContext]:
        """A fresh browser context (``options`` as playwright's ``new_context``), closed
        afterwards. If the browser dies while it is in use, the error the caller sees is
        :class:`BrowserLost` and the next call relaunches the browser."""
        async with self._slots:
            launch = await self._ensure()
            try:
                context = await launch.browser.new_context(**options)
            except PlaywrightError:
                if not await self._is_lost(launch):
                    raise
                launch = await self._ensure()  # died between the check and the use
                try:
                    context = await launch.browser.new_context(**options)
                except PlaywrightError as exc:
                    raise BrowserLost(f"A fresh browser refused a context: {exc}") from exc
            context.set_default_timeout(LAUNCH_SECONDS * 1000)
            try:
                yield context
            except PlaywrightError as exc:
                if await self._is_lost(launch):
                    raise BrowserLost(f"The browser was lost while rendering: {exc}") from exc
                raise
            finally:
                await self._close_context(launch, context)

    async def lost(self, context: BrowserContext) -> bool:
        """Whether the browser that ``context`` belongs to has died or hung (probes it)."""
        current = self._current
        if current is None or context.browser is not current.browser:
            return True
        return await self._is_lost(current)

    async def kill(self) -> None:
        """Kill the browser process hard (a page that hangs past its deadline, tests); the
        next ``context()`` relaunches it."""
        current = self._current
        if current is None:
            return
        current.killed = True
        pid = _kill_browser(current)
        if pid is None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(current.browser.close(), CLOSE_SECONDS)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(current.lost.wait(), LAUNCH_SECONDS)
        log.warning("rendering.browser_killed", pid=pid)

    # --- inside ---------------------------------------------------------------------------

    async def _ensure(self) -> _Launch:
        if self._closed:
            raise RuntimeError("the Chromium pool is closed")
        async with self._lock:
            current = self._current
            if current is not None and current.alive:
                return current
            if current is not None:
                self.restarts += 1
                log.warning("rendering.browser_relaunch", restarts=self.restarts)
                if self.on_restart is not None:
                    self.on_restart()
                await self._dispose(current)
            self._current = await self._launch()
            return self._current

    async def _launch(self) -> _Launch:
        for attempt in (1, 2):
            if self._playwright is None:
                self._playwright = await async_playwright().start()
            marker = secrets.token_hex(8)
            try:
                browser = await self._playwright.chromium.launch(
                    executable_path=self.executable,
                    args=[*CHROMIUM_ARGS, f"--darkroom-browser={marker}"],
                    headless=True,
                    chromium_sandbox=False,
                    proxy={"server": REFUSING_PROXY},
                    handle_sigint=False,
                    handle_sigterm=False,
                    handle_sighup=False,
                    timeout=LAUNCH_SECONDS * 1000,
                )
            except PlaywrightError:
                if attempt == 2:
                    raise
                # The driver itself may be gone: start a new one and try once more.
                with contextlib.suppress(Exception):
                    await self._playwright.stop()
                self._playwright = None
                continue
            launch = _Launch(browser, marker)
            launch.pid = _browser_pid(marker)
            log.info("rendering.browser_launched", pid=launch.pid, version=browser.version)
            return launch
        raise AssertionError("unreachable")

    async def _dispose(self, launch: _Launch) -> None:
        if launch.browser.is_connected():
            try:
                await asyncio.wait_for(launch.browser.close(), CLOSE_SECONDS)
            except (TimeoutError, PlaywrightError):
                _kill_browser(launch)

    async def _close_context(self, launch: _Launch, context: BrowserContext) -> None:
        """Close a context; one that will not close (a page hung in a loop keeps its renderer
        busy) takes the browser down with it."""
        if not launch.alive:
            return
        try:
            await asyncio.wait_for(context.close(), CLOSE_SECONDS)
        except TimeoutError:
            log.warning("rendering.context_close_hung")
            if self._current is launch:
                await self.kill()
        except PlaywrightError:
            pass

    async def _is_lost(self, launch: _Launch) -> bool:
        if not launch.alive:
            return True
        try:
            session = await asyncio.wait_for(
                launch.browser.new_browser_cdp_session(), PROBE_SECONDS
            )
            await asyncio.wait_for(session.detach(), PROBE_SECONDS)
        except (TimeoutError, PlaywrightError):
            # Dead, or hung: either way this browser is done.
            if launch.alive and self._current is launch:
                await self.kill()
            return True
        return not launch.alive


def _kill_browser(launch: _Launch) -> int | None:
    """SIGKILL the browser process of ``launch`` (its helpers die with it); its pid, or None
    when it is not running (a pid is checked to still be that browser before the signal)."""
    needle = f"--darkroom-browser={launch.marker}".encode()
    pid = launch.pid
    if pid is not None:
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            args = []
        if needle not in args:
            pid = _browser_pid(launch.marker)
    else:
        pid = _browser_pid(launch.marker)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return pid


def _browser_pid(marker: str) -> int | None:
    """The pid of the browser process launched with ``--darkroom-browser=<marker>`` (its
    helper processes do not carry the flag, and have ``--type=``)."""
    needle = f"--darkroom-browser={marker}".encode()
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if needle in args and not any(arg.startswith(b"--type=") for arg in args):
            return int(entry.name)
    return None
