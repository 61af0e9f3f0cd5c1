"""The signed-in home page's summary of the account's work (projects, recent reports,
comparisons awaiting review, recent jobs): reports owns that data, so auth, which serves ``/``,
asks reports's ``/internal/summary`` for it as the viewer.

The failure rule is :func:`shared.pages.page_user`'s: the page is still shown when reports
cannot answer (down, slow, failing), with a notice in place of the summary, and a warning is
logged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp

from shared.http import InternalClient, Principal
from shared.logging import get_logger
from shared.pages import PAGE_USER_TIMEOUT

log = get_logger("darkroom.auth.home")


@dataclass(frozen=True)
class Summary:
    """What the home page shows of the account's work: ``work`` as reports gave it (None when
    there is nothing to show), ``unavailable`` when reports could not be asked."""

    work: dict[str, Any] | None = None
    unavailable: bool = False


async def account_work(internal: InternalClient, reports_url: str, principal: Principal) -> Summary:
    """The viewer's account's work as reports summarises it (see the module's failure rule)."""
    if not principal.authenticated:
        return Summary()
    try:
        status, body = await internal.call(
            "GET", reports_url, "/internal/summary", principal, timeout=PAGE_USER_TIMEOUT
        )
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        status, body = 0, repr(exc)
    if status == 200 and isinstance(body, dict):
        return Summary(work=body)
    log.warning("home.summary_unavailable", status=status)
    return Summary(unavailable=True)
