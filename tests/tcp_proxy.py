"""A loopback TCP proxy the tests control, to cut a server connection on demand.

Clients connect to the proxy instead of the server; :meth:`TcpProxy.cut` then aborts every live
connection in both directions and refuses new ones until :meth:`TcpProxy.restore`, as a
network outage would, without touching the server the machine shares with others.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

_CHUNK = 64 * 1024


class TcpProxy:
    """Forwards connections from a free loopback port to ``target_host:target_port``."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        #: How many connections were accepted and forwarded in total (reconnects count).
        self.connections = 0
        self._cut = False
        #: Cleared by :meth:`stall`: bytes wait in the proxy, as in a network that drops them.
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.BaseTransport] = set()
        self._tasks: set[asyncio.Task] = set()

    @property
    def port(self) -> int:
        """The loopback port the proxy listens on (after :meth:`start`)."""
        if self._server is None:
            raise RuntimeError("the proxy is not started")
        return self._server.sockets[0].getsockname()[1]

    @property
    def is_cut(self) -> bool:
        """True between :meth:`cut` and :meth:`restore`."""
        return self._cut

    def url_for(self, url: str, **query: str) -> str:
        """``url`` (e.g. ``amqp://user:pass@host:port/vhost``) pointed at the proxy instead,
        keeping credentials, path and query, with ``query`` parameters added or replaced."""
        parts = urlsplit(url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@" if userinfo else ""
        netloc += f"127.0.0.1:{self.port}"
        params = dict(parse_qsl(parts.query))
        params.update(query)
        return urlunsplit((parts.scheme, netloc, parts.path, urlencode(params), parts.fragment))

    async def start(self) -> None:
        """Listen on 127.0.0.1 on a free port."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    def cut(self) -> None:
        """Abort every live connection (both directions) and refuse new ones until
        :meth:`restore` (they are accepted, then closed at once)."""
        self._cut = True
        for transport in list(self._transports):
            transport.abort()
        self._transports.clear()

    def stall(self) -> None:
        """Forward nothing more, in either direction, on live or new connections, without
        closing any (a partition that drops packets: peers only notice by timing out)."""
        self._flowing.clear()

    def restore(self) -> None:
        """Accept and forward new connections again (and what a stall held back)."""
        self._cut = False
        self._flowing.set()

    async def stop(self) -> None:
        """Stop listening and abort every connection."""
        self.cut()
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _accept(self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter):
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await self._forward(client_reader, client)
        finally:
            if task is not None:
                self._tasks.discard(task)

    async def _forward(self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter):
        if self._cut:
            client.transport.abort()
            return
        await self._flowing.wait()
        try:
            upstream_reader, upstream = await asyncio.open_connection(
                self.target_host, self.target_port
            )
        except OSError:
            client.transport.abort()
            return
        if self._cut:  # cut while connecting
            client.transport.abort()
            upstream.transport.abort()
            return
        self.connections += 1
        pair = (client.transport, upstream.transport)
        self._transports.update(pair)
        try:
            await asyncio.gather(
                _pump(client_reader, upstream, self._flowing),
                _pump(upstream_reader, client, self._flowing),
            )
        finally:
            for transport in pair:
                self._transports.discard(transport)
                transport.abort()


async def _pump(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, flowing: asyncio.Event
) -> None:
    """Copy ``reader`` to ``writer`` (holding bytes while ``flowing`` is clear) until EOF or an
    error, then half-close ``writer``."""
    try:
        while data := await reader.read(_CHUNK):
            await flowing.wait()
            writer.write(data)
            await writer.drain()
    except (OSError, asyncio.IncompleteReadError):
        writer.transport.abort()
        return
    with contextlib.suppress(OSError):
        if writer.can_write_eof():
            writer.write_eof()
