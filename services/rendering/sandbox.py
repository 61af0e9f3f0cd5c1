"""The network of a rendered page (house rule 9): its package served at the root of an origin
of its own, every other request handed to the outbound guard or refused, and a count of what
is in flight so a render can wait for the network to go quiet.

Every request of every page and frame of a render's browser context comes here (playwright's
request interception, ``context.route("**/*")``): nothing a page asks for reaches the network
by itself. The package origin (:data:`PACKAGE_ORIGIN`) never resolves and is a secure context;
files are served from the unpacked package directory and nothing outside it (paths are
resolved, symlinks included, and checked); ``file:``, ``data:`` fetches aside, any other
scheme is refused.
"""

from __future__ import annotations

import asyncio
import mimetypes
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Route, WebSocketRoute

from shared.logging import get_logger

log = get_logger("darkroom.rendering")

#: The origin a package is served at (``.invalid`` never resolves; https is a secure context).
PACKAGE_ORIGIN = "https://package.darkroom.invalid"
#: Files at least this big are read off the event loop.
_THREAD_READ_BYTES = 1 << 20

#: Web types ``mimetypes`` does not know everywhere (or names differently).
WEB_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".htm": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".cjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".wasm": "application/wasm",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".avif": "image/avif",
    ".ico": "image/x-icon",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".ttf": "font/ttf",
    ".otf": "font/otf",
    ".eot": "application/vnd.ms-fontobject",
    ".txt": "text/plain; charset=utf-8",
    ".xml": "application/xml",
    ".mp4": "video/mp4",
    ".webm": "video/webm",
}


class OutboundRefused(Exception):
    """The outbound guard refuses a request a page made; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class OutboundAnswer:
    """The answer to a page's request outside its package."""

    status: int
    headers: dict[str, str]
    body: bytes


#: ``(method, url, headers) -> answer``; raises :class:`OutboundRefused` when the guard refuses.
Outbound = Callable[[str, str, dict[str, str]], Awaitable[OutboundAnswer]]


class PageNetwork:
    """Answers every request of one render's pages (the context's route handler)."""

    def __init__(
        self,
        root: Path | None,
        outbound: Outbound | None,
        *,
        extra_headers: dict[str, str],
        outbound_seconds: float,
        quiet_ms: int,
    ) -> None:
        self.root = root
        self.outbound = outbound
        self.extra_headers = {name.lower(): value for name, value in extra_headers.items()}
        self.outbound_seconds = outbound_seconds
        self.quiet_seconds = quiet_ms / 1000
        #: Documents served at a path (with its query) of the package origin, over any file.
        self.documents: dict[str, str] = {}
        #: The first request refused (shown when the render then fails).
        self.refused: str | None = None
        #: Requests begun, requests in flight, when the last one that counts for quiet ended
        #: (those begun before the document's ``load`` do not: ``load`` waited for them).
        self.requests = 0
        self.inflight = 0
        self.last_request = 0.0
        self.loaded_at = 0.0

    def loaded(self) -> None:
        """The page's document has fired ``load``."""
        self.loaded_at = time.monotonic()

    def quiet(self) -> bool:
        """No request in flight, and none ended in the last ``quiet_ms``."""
        idle = time.monotonic() - self.last_request
        return self.inflight == 0 and idle >= self.quiet_seconds

    async def wait_quiet(self, cap_seconds: float) -> None:
        """Until :meth:`quiet`, or ``cap_seconds`` have passed."""
        give_up = time.monotonic() + cap_seconds
        while not self.quiet():
            now = time.monotonic()
            if now >= give_up:
                return
            idle = now - self.last_request
            await asyncio.sleep(max(0.01, min(self.quiet_seconds - idle, give_up - now)))

    def with_refusal(self, reason: str) -> str:
        """``reason``, naming the first refused request if there was one."""
        if self.refused is None:
            return reason
        return f"{reason} (a request outside the package was refused: {self.refused})"

    async def handle(self, route: Route) -> None:
        """Answer one request: from the package, through ``outbound``, or refused."""
        self.requests += 1
        self.inflight += 1
        started = time.monotonic()
        try:
            url = route.request.url
            if url.startswith(PACKAGE_ORIGIN + "/"):
                await self._serve_package(route, url)
            elif self.outbound is not None and url.startswith(("http://", "https://")):
                await self._go_outbound(route, url)
            else:
                self._refuse(url)
                await route.abort("blockedbyclient")
        except PlaywrightError:
            pass  # the page went away meanwhile
        except Exception as exc:  # an unanswered request would hang the page: refuse it
            log.warning("render.route_failed", error=repr(exc))
            try:
                await route.abort("failed")
            except PlaywrightError:
                pass
        finally:
            self.inflight -= 1
            if started >= self.loaded_at:
                self.last_request = time.monotonic()

    async def _serve_package(self, route: Route, url: str) -> None:
        parts = urlsplit(url)
        key = parts.path + (f"?{parts.query}" if parts.query else "")
        document = self.documents.get(key)
        if document is not None:
            await route.fulfill(
                status=200, body=document.encode(), headers={"content-type": WEB_TYPES[".html"]}
            )
            return
        file = package_file(self.root, unquote(parts.path))
        data = None
        if file is not None:
            try:
                if file.stat().st_size < _THREAD_READ_BYTES:
                    data = file.read_bytes()
                else:
                    data = await asyncio.to_thread(file.read_bytes)
            except OSError:
                data = None
        if file is None or data is None:
            await route.fulfill(
                status=404, body=b"Not found", headers={"content-type": WEB_TYPES[".txt"]}
            )
            return
        await route.fulfill(
            status=200,
            body=data,
            headers={"content-type": media_type(file.name), "access-control-allow-origin": "*"},
        )

    async def _go_outbound(self, route: Route, url: str) -> None:
        assert self.outbound is not None
        request = route.request
        headers = {**request.headers, **self.extra_headers}
        try:
            async with asyncio.timeout(self.outbound_seconds):
                answer = await self.outbound(request.method, url, headers)
        except OutboundRefused as exc:
            self._refuse(url, exc.reason)
            await route.abort("blockedbyclient")
            return
        except Exception as exc:
            self._refuse(url, str(exc) or type(exc).__name__)
            await route.abort("failed")
            return
        await route.fulfill(status=answer.status, headers=answer.headers, body=answer.body)

    def _refuse(self, url: str, why: str | None = None) -> None:
        if self.refused is None:
            shown = url if len(url) <= 200 else url[:200] + "…"
            self.refused = f"{shown} ({why})" if why else shown
        log.info("render.request_refused", url=url[:500], reason=why)


async def close_web_socket(socket: WebSocketRoute) -> None:
    """A page's WebSocket: closed, never connected to any server."""
    await socket.close()


def package_file(root: Path | None, path: str) -> Path | None:
    """The file of the package at ``root`` that URL path ``path`` names (``index.html`` for a
    directory); None when it is absent or lies outside the package."""
    if root is None or "\x00" in path:
        return None
    relative = path.lstrip("/")
    if relative == "" or relative.endswith("/"):
        relative += "index.html"
    try:
        file = _inside(root, root / relative)
        if file is not None and file.is_dir():
            file = _inside(root, file / "index.html")
        return file if file is not None and file.is_file() else None
    except (OSError, RuntimeError, ValueError):
        return None


def _inside(root: Path, path: Path) -> Path | None:
    resolved = path.resolve()  # symlinks followed: where it really is
    return resolved if resolved == root or resolved.is_relative_to(root) else None


def media_type(name: str) -> str:
    """The Content-Type a package file is served with."""
    suffix = os.path.splitext(name)[1].lower()
    if suffix in WEB_TYPES:
        return WEB_TYPES[suffix]
    guessed, _encoding = mimetypes.guess_type(name, strict=False)
    return guessed or "application/octet-stream"
