"""The one way a list endpoint reads its paging parameters from a query string.

Two dialects page differently: Progimage by ``offset``/``limit``, Haut.ai by
``page``/``page_size``. Both are read here, with the same refusals for bad values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from shared.errors import BadRequest, NotFound


@dataclass(frozen=True)
class Window:
    """Which rows of a list to answer: skip ``offset``, then at most ``limit``."""

    offset: int
    limit: int


def offset_window(query: Mapping[str, str], default_limit: int, max_limit: int) -> Window:
    """``offset`` (default 0) and ``limit`` (default ``default_limit``, capped at
    ``max_limit``); 400 ``bad_request`` for values that are not whole numbers in range."""
    offset = _whole(query, "offset", 0)
    limit = min(_whole(query, "limit", default_limit, minimum=1), max_limit)
    return Window(offset, limit)


def page_window(query: Mapping[str, str], default_size: int, max_size: int) -> Window:
    """``page`` (1-based, default 1) and ``page_size`` (default ``default_size``, capped at
    ``max_size``) as a window; 400 ``bad_request`` for values that are not whole numbers."""
    page = _whole(query, "page", 1, minimum=1)
    size = min(_whole(query, "page_size", default_size, minimum=1), max_size)
    return Window((page - 1) * size, size)


def page_answer(
    url: str, query: Mapping[str, str], window: Window, count: int, results: Sequence[Any]
) -> dict[str, Any]:
    """Django REST framework's page-number answer ``{count, next, previous, results}`` for the
    page ``window`` (from :func:`page_window`) of a list of ``count`` items.

    ``next`` and ``previous`` are ``url`` (absolute, without a query) with the request's other
    query parameters kept and ``page`` changed (dropped for page 1, as DRF does). A page past
    the last one answers 404 ``not_found`` ("Invalid page"), as DRF does; page 1 of an empty
    list is an empty page.
    """
    page = window.offset // window.limit + 1
    if page > 1 and window.offset >= count:
        raise NotFound(f"Invalid page: page {page} is past the last page")
    return {
        "count": count,
        "next": _page_url(url, query, page + 1) if window.offset + window.limit < count else None,
        "previous": _page_url(url, query, page - 1) if page > 1 else None,
        "results": list(results),
    }


def _page_url(url: str, query: Mapping[str, str], page: int) -> str:
    params = [(k, v) for k, v in query.items() if k != "page"]
    if page > 1:
        params.append(("page", str(page)))
    return f"{url}?{urlencode(params)}" if params else url


def _whole(query: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 9:
        raise BadRequest(f"{name} must be a whole number of at least {minimum}")
    value = int(raw)
    if value < minimum:
        raise BadRequest(f"{name} must be a whole number of at least {minimum}")
    return value
