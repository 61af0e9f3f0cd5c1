"""Rendering a snap request: the use case behind ``render.requested``.

Ask reports for the request's payload, parse it with the shared contract, unpack its package,
render it in Chromium, store every screenshot through ingest as a Happo image of the account
and record ``render.completed`` — or ``render.failed`` with a reason the client is shown, for
anything about the request itself (a target type we have no engine for, a missing or hostile
package, a page over a limit). A browser that crashes is relaunched and the request tried
again; past :data:`BROWSER_ATTEMPTS` the request fails with that reason instead of waiting on a
queue forever. A process killed mid-render leaves its delivery unacknowledged, so another
worker renders it again: screenshots are content-addressed, and the outcome event commits with
the delivery's record, so the effect is once.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from services.rendering import archive, domain
from services.rendering.chromium import CHROMIUM_HELP, BrowserLost, ChromiumPool
from services.rendering.packages import Packages, UnpackedPackages
from services.rendering.render import (
    OutboundAnswer,
    OutboundRefused,
    RenderFailed,
    RenderLimits,
    Shot,
    render,
)
from shared import errors
from shared.events import Envelope, record_event
from shared.http import InternalClient, Principal
from shared.logging import get_logger
from shared.metrics import Metrics
from shared.remote import RemoteFetcher
from shared.rendering import (
    RENDER_COMPLETED,
    RENDER_FAILED,
    RenderJob,
    parse_payload,
    unrenderable,
)

log = get_logger("darkroom.rendering")

#: Renders of one request begun on a fresh browser before it fails as crashing the browser.
BROWSER_ATTEMPTS = 3
#: Screenshots stored through ingest at once for one request.
_STORE_CONCURRENCY = 4


@dataclass(frozen=True)
class Services:
    """Where the services rendering asks are, and the client that signs its calls."""

    internal: InternalClient
    reports_url: str
    ingest_url: str


class Renders:
    """Renders snap requests (the handler of ``render.requested``)."""

    def __init__(
        self,
        services: Services,
        packages: Packages,
        unpacked: UnpackedPackages,
        browsers: ChromiumPool | None,
        limits: RenderLimits,
        fetcher: RemoteFetcher | None,
        worker: str,
        metrics: Metrics | None = None,
    ) -> None:
        self.services = services
        self.packages = packages
        self.unpacked = unpacked
        self.browsers = browsers
        self.limits = limits
        self.fetcher = fetcher
        self.worker = worker
        self.metrics = metrics

    async def on_requested(self, conn: asyncpg.Connection, envelope: Envelope) -> None:
        """Render the request ``envelope`` names and record the outcome on ``conn``."""
        request_id = int(envelope.data["request_id"])
        account_id = str(uuid.UUID(str(envelope.data["account_id"])))
        principal = Principal(kind="service", account_id=account_id)
        facts = {"request_id": request_id, "account_id": account_id}
        spec = await self._spec(principal, request_id)
        if spec is None:
            log.info("render.not_pending", request_id=request_id)
            return
        started = time.monotonic()
        try:
            job = parse_payload(spec["payload"], spec["type"], spec["targetName"])
            shots = await self._render(account_id, job)
        except (RenderFailed, errors.DarkroomError, archive.ArchiveRefused) as exc:
            reason = getattr(exc, "reason", None) or getattr(exc, "message", None) or str(exc)
            log.info("render.failed", request_id=request_id, reason=reason)
            await record_event(conn, RENDER_FAILED, {**facts, "reason": reason})
            self._count("failed")
            return
        snaps = await self._store(principal, shots)
        seconds = time.monotonic() - started
        await record_event(
            conn,
            RENDER_COMPLETED,
            {**facts, "snaps": snaps, "worker": self.worker, "seconds": round(seconds, 3)},
        )
        self._count("completed", seconds, len(snaps))

    async def _spec(self, principal: Principal, request_id: int) -> dict[str, Any] | None:
        status, body = await self.services.internal.call(
            "GET", self.services.reports_url, f"/internal/snap-requests/{request_id}", principal
        )
        if status == 404:
            return None
        if status != 200 or not isinstance(body, dict):
            raise RuntimeError(f"reports answered {status} for snap request {request_id}")
        return body if body.get("state") == "pending" else None

    async def _render(self, account_id: str, job: RenderJob) -> list[Shot]:
        reason = unrenderable(job.options.browser)
        if reason is not None:
            raise RenderFailed(reason)
        if self.browsers is None:
            raise RenderFailed(f"This Darkroom has no Chromium to render with: {CHROMIUM_HELP}")
        if job.package is None:
            return await self._attempts(job, None)
        md5 = domain.md5_of_path(job.package)
        package = await self.packages.find(account_id, md5) if md5 else None
        if package is None:
            raise RenderFailed(
                f"No package {job.package!r} in this account: upload it through the assets"
                " endpoints first"
            )
        async with self.unpacked.open(package) as folder:
            return await self._attempts(job, folder)

    async def _attempts(self, job: RenderJob, folder: Any) -> list[Shot]:
        assert self.browsers is not None
        for attempt in range(1, BROWSER_ATTEMPTS + 1):
            try:
                return await render(self.browsers, job, folder, self.limits, self._outbound())
            except BrowserLost as exc:
                log.warning("render.browser_lost", attempt=attempt, error=str(exc))
                self._count("retried")
        raise RenderFailed(
            f"The browser crashed {BROWSER_ATTEMPTS} times rendering this request; it is not"
            " rendered"
        )

    def _outbound(self) -> Any:
        fetcher = self.fetcher
        if fetcher is None:
            return None

        async def outbound(method: str, url: str, _headers: dict[str, str]) -> OutboundAnswer:
            if method not in ("GET", "HEAD"):
                raise OutboundRefused(f"{method} {url}: only GET leaves a rendered page")
            try:
                remote = await fetcher.fetch(url)
            except errors.InvalidRequest as exc:
                raise OutboundRefused(exc.message.removeprefix("remote_file_url: ")) from None
            media_type = remote.media_type or "application/octet-stream"
            return OutboundAnswer(200, {"content-type": media_type}, remote.data)

        return outbound

    async def _store(self, principal: Principal, shots: list[Shot]) -> list[dict[str, Any]]:
        gate = asyncio.Semaphore(_STORE_CONCURRENCY)

        async def store(shot: Shot) -> dict[str, Any]:
            async with gate:
                status, body = await self.services.internal.call(
                    "POST",
                    self.services.ingest_url,
                    "/internal/happo-images/rendered",
                    principal,
                    data=shot.png,
                    headers={"Content-Type": "image/png"},
                    timeout=60,
                )
            if status != 200 or not isinstance(body, dict):
                raise RuntimeError(f"ingest answered {status} storing a screenshot: {body}")
            return {
                "component": shot.component,
                "variant": shot.variant,
                "image_hash": body["hash"],
                "sha256": body["sha256"],
                "key": body["key"],
                "width": body["width"],
                "height": body["height"],
            }

        return list(await asyncio.gather(*(store(shot) for shot in shots)))

    def _count(self, outcome: str, seconds: float = 0.0, examples: int = 0) -> None:
        if self.metrics is not None:
            self.metrics.rendered(outcome, seconds, examples)
