"""Snap requests to render: the clients' payloads checked against the render contract
(:mod:`shared.rendering`), stored, and handed to the renderers with ``render.requested`` in
the same transaction. Identical requests (type, target and payload) reuse the earlier one; a
target type no engine here renders is failed at once with a message naming it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import asyncpg

from services.reports import domain, repo
from services.reports.submissions import Submissions
from shared import errors
from shared.events import record_event
from shared.http import Principal
from shared.rendering import (
    EXTENDS_REPORT,
    PAGES,
    RENDER_REQUESTED,
    parse_payload,
    unrenderable,
)

#: Most items one ``POST /api/snap-requests/bulk`` may carry (what happo 6 sends at most).
MAX_BULK_ITEMS = 50


@dataclass(frozen=True)
class RenderItem:
    """One snap request as a client sends it (a multipart form, or an item of a bulk)."""

    request_type: str
    target_name: str
    payload: str
    extends_sha: str | None = None


class RenderRequests:
    """The use cases of snap requests to render."""

    def __init__(self, pool: asyncpg.Pool, submissions: Submissions) -> None:
        self.pool = pool
        self.submissions = submissions

    async def create(self, principal: Principal, item: RenderItem) -> int:
        """One snap request; its id (4xx when the item is malformed)."""
        if item.request_type == EXTENDS_REPORT:
            return await self._extends(principal, item)
        async with self.pool.acquire() as conn, conn.transaction():
            return await self._create(conn, principal, item)

    async def create_many(self, principal: Principal, items: list[Any]) -> list[dict[str, Any]]:
        """A bulk of snap requests: ``{requestId}`` or ``{error}`` per item, in their order."""
        if len(items) > MAX_BULK_ITEMS:
            raise errors.InvalidRequest(f"A bulk holds at most {MAX_BULK_ITEMS} snap requests")
        results: list[dict[str, Any]] = []
        for i, raw in enumerate(items):
            try:
                item = _bulk_item(raw, i)
                results.append({"requestId": await self.create(principal, item)})
            except errors.DarkroomError as exc:
                if exc.status >= 500:
                    raise
                results.append({"error": exc.message})
        return results

    async def spec(self, principal: Principal, request_id: int) -> dict[str, Any] | None:
        """What a renderer needs of a request of the caller's account, or None."""
        async with self.pool.acquire() as conn:
            row = await repo.snap_requests.render_request(
                conn, str(principal.account_id), request_id
            )
        if row is None:
            return None
        return {
            "id": request_id,
            "state": row["state"],
            "type": row["request_type"],
            "targetName": row["target_name"],
            "payload": row["payload"],
        }

    async def expire_stale(self, deadline_seconds: float) -> int:
        """Fail the requests no renderer finished within ``deadline_seconds`` (so no request,
        and no report waiting for it, stays pending forever); how many."""
        async with self.pool.acquire() as conn, conn.transaction():
            stale = await repo.snap_requests.stale_render_requests(conn, deadline_seconds)
            for row in stale:
                await self.submissions.rendered(
                    conn,
                    str(row["account_id"]),
                    row["id"],
                    None,
                    f"Not rendered within {deadline_seconds:g} s; the renderers may be down or"
                    " the request crashed them; send it again",
                )
        return len(stale)

    async def _create(
        self, conn: asyncpg.Connection, principal: Principal, item: RenderItem
    ) -> int:
        try:
            payload = json.loads(item.payload)
        except (ValueError, RecursionError):
            raise errors.InvalidRequest("The payload is not valid JSON") from None
        job = parse_payload(payload, item.request_type, item.target_name)
        reason = unrenderable(job.options.browser)
        account_id = str(principal.account_id)
        request_id, created = await repo.snap_requests.create_render_request(
            conn,
            account_id,
            item.request_type,
            job.target_name,
            hashlib.md5(item.payload.encode()).hexdigest(),  # noqa: S324 - a dedupe key
            payload,
            error=reason,
            # A page list is fetched live: the same list later may show other pages.
            reuse=job.kind != PAGES,
        )
        if created and reason is None:
            await record_event(
                conn, RENDER_REQUESTED, {"request_id": request_id, "account_id": account_id}
            )
        return request_id

    async def _extends(self, principal: Principal, item: RenderItem) -> int:
        """An ``extends-report`` item: the snapshots of an earlier report, for this target."""
        try:
            payload = json.loads(item.payload) if item.payload else {}
        except (ValueError, RecursionError):
            raise errors.InvalidRequest("The payload is not valid JSON") from None
        if not isinstance(payload, dict):
            raise errors.InvalidRequest("The payload must be a JSON object")
        sha = item.extends_sha or payload.get("extendsSha")
        if not isinstance(sha, str):
            raise errors.InvalidRequest("`extendsSha` is required for an extends-report request")
        wanted = (
            domain.parse_skipped(payload.get("extendedSnaps"))
            if payload.get("extendedSnaps") is not None
            else None
        )
        return await self.submissions.extends_request(
            principal,
            domain.parse_project(payload.get("project")),
            domain.parse_sha(sha, "extendsSha"),
            wanted,
            target=item.target_name,
        )


def _bulk_item(raw: Any, i: int) -> RenderItem:
    where = f"items[{i}]"
    if not isinstance(raw, dict):
        raise errors.InvalidRequest(f"{where} must be an object")
    payload = raw.get("payloadString")
    if not isinstance(payload, str):
        raise errors.InvalidRequest(f"{where}.payloadString must be a string")
    extends = raw.get("extendsSha")
    return RenderItem(
        request_type=_text(raw.get("type"), f"{where}.type"),
        target_name=_text(raw.get("targetName"), f"{where}.targetName"),
        payload=payload,
        extends_sha=extends if isinstance(extends, str) else None,
    )


def _text(raw: Any, name: str) -> str:
    if not isinstance(raw, str) or not raw:
        raise errors.InvalidRequest(f"`{name}` is required")
    return raw
