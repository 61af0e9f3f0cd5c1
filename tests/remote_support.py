"""A loopback HTTP server that records what the remote-URL fetcher asks of it, with routes that
redirect, drip, never end or lie about their length."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field

from aiohttp import web

PNG = b"\x89PNG\r\n\x1a\n" + b"pretend-pixels" * 10


@dataclass
class Server:
    """An aiohttp server on one loopback address that records every request it receives."""

    host: str
    port: int
    hits: list[str] = field(default_factory=list)
    user_agents: list[str] = field(default_factory=list)
    leaked_headers: list[str] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{path}"


def make_app(server: Server) -> web.Application:
    @web.middleware
    async def record(request: web.Request, handler):
        server.hits.append(request.path_qs)
        server.user_agents.append(request.headers.get("User-Agent", ""))
        server.leaked_headers += [h for h in ("Cookie", "Authorization") if h in request.headers]
        return await handler(request)

    async def image(request: web.Request) -> web.Response:
        return web.Response(
            body=PNG, content_type="image/png", headers={"Set-Cookie": "session=secret; Path=/"}
        )

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["to"])

    async def chain(request: web.Request) -> web.Response:
        step = int(request.match_info["step"])
        raise web.HTTPFound(f"/chain/{step + 1}" if step < 10 else "/x.png")

    async def drip(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        await response.prepare(request)
        for _ in range(60):
            await response.write(b"x")
            if await stopped(server, 1.0):
                break
        return response

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        await response.prepare(request)
        chunk = b"\0" * 16384
        while not server.stop.is_set():
            await response.write(chunk)  # raises once the client hangs up
        return response

    async def huge_length(request: web.Request) -> web.StreamResponse:
        # Announces a gigabyte, sends a few bytes, then stalls: only a refusal made from the
        # header alone ends this fetch before its timeout.
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        response.content_length = 10**9
        await response.prepare(request)
        await response.write(PNG)
        await stopped(server, 30.0)
        return response

    async def missing(request: web.Request) -> web.Response:
        raise web.HTTPNotFound()

    app = web.Application(middlewares=[record])
    app.router.add_get("/x.png", image)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/chain/{step}", chain)
    app.router.add_get("/drip", drip)
    app.router.add_get("/endless", endless)
    app.router.add_get("/huge-length", huge_length)
    app.router.add_get("/missing", missing)
    return app


async def stopped(server: Server, seconds: float) -> bool:
    try:
        await asyncio.wait_for(server.stop.wait(), seconds)
    except TimeoutError:
        return False
    return True


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True
