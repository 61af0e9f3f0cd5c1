"""What every page shares beyond its own template: the Jinja environment on the shared layout,
the headers a page is sent with, the site navigation, and the error page a browser gets where a
program gets the JSON error shape.

Kept apart from :mod:`shared.pages` because :mod:`shared.http` answers errors with it, and
:mod:`shared.pages` itself builds on :mod:`shared.http`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import jinja2
from aiohttp import web

from shared import errors
from shared.logging import request_id_var

SHARED_TEMPLATES = Path(__file__).with_name("templates")

#: Sent with every page: no script but our own files, no framing, never cached (pages show
#: what one person may see).
PAGE_HEADERS: Mapping[str, str] = MappingProxyType(
    {
        "Content-Security-Policy": "default-src 'self'; style-src 'unsafe-inline';"
        " frame-ancestors 'none'; form-action 'self'",
        "X-Frame-Options": "DENY",
        "Cache-Control": "no-store",
    }
)


@dataclass(frozen=True)
class NavItem:
    """One link of the site header; ``current`` marks the section the page belongs to."""

    label: str
    href: str
    current: bool = False


#: The header's links in order, each with the templates of the pages under it (a template's
#: name is all a page's renderer knows of it, so the mark is decided here once, not per handler).
NAVIGATION: tuple[tuple[str, str, frozenset[str]], ...] = (
    ("Reports", "/reports", frozenset({"reports.html", "report.html"})),
    ("Comparisons", "/comparisons", frozenset({"comparisons.html", "comparison.html"})),
    ("Upload", "/upload", frozenset({"upload.html"})),
    ("Files", "/files", frozenset({"files.html"})),
    ("Integrations", "/integrations", frozenset({"integrations.html"})),
    ("Applications", "/applications", frozenset({"applications.html"})),
    ("Keys", "/keys", frozenset({"keys.html"})),
    ("Docs", "/docs", frozenset({"docs.html"})),
)


def navigation(template: str | None) -> list[NavItem]:
    """The header's links, the one ``template`` belongs under marked current."""
    return [NavItem(label, href, template in pages) for label, href, pages in NAVIGATION]


def environment(*folders: Path) -> jinja2.Environment:
    """A Jinja environment over ``folders`` (first match wins), then the shared templates:
    autoescaped, and strict, so a name a template forgot to be given is an error, not blank."""
    return jinja2.Environment(
        loader=jinja2.ChoiceLoader(
            [jinja2.FileSystemLoader(folder) for folder in (*folders, SHARED_TEMPLATES)]
        ),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )


# --- error pages ------------------------------------------------------------------------------

#: Paths only programs call: their errors stay JSON whatever the Accept header says, so a
#: developer who opens one in a browser sees what the client sees.
API_PREFIXES = ("/api/", "/internal/", "/user/", "/oauth/token", "/oauth/revoke", "/uploads/")
API_PATHS = frozenset({"/user", "/openapi.json", "/healthz", "/readyz", "/metrics"})
_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_TITLES = {
    404: "Page not found",
    405: "Not something this page does",
    429: "Too many requests",
    503: "Temporarily unavailable",
}


def is_api_path(path: str) -> bool:
    """True for a path of the platform's APIs (see :data:`API_PREFIXES`)."""
    return path in API_PATHS or path.startswith(API_PREFIXES)


def prefers_html(accept: str) -> bool:
    """True when an ``Accept`` header ranks HTML first: a browser navigating, not a program
    (curl and the HTTP libraries send ``*/*``, the clients ``application/json``)."""
    html = other = 0.0
    for item in accept.split(","):
        media, *params = (part.strip() for part in item.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        media = media.lower()
        if media in _HTML_TYPES:
            html = max(html, quality)
        elif media and not media.endswith("/*"):
            other = max(other, quality)
    return html > 0 and html >= other


def wants_page(request: web.Request) -> bool:
    """True when an error to ``request`` should be a page: a browser (by its ``Accept``) asking
    for something other than an API path."""
    return prefers_html(request.headers.get("Accept", "")) and not is_api_path(request.path)


@functools.cache
def _errors_environment() -> jinja2.Environment:
    return environment()


def error_page(error: errors.DarkroomError) -> web.Response:
    """The HTML page of ``error`` in the shared layout, with the status the JSON answer would
    have had (:func:`shared.http.error_response` adds the headers both share)."""
    status = error.status
    title = _TITLES.get(status) or ("Something went wrong" if status >= 500 else "Cannot do that")
    html = (
        _errors_environment()
        .get_template("error.html")
        .render(
            title=title,
            status_code=status,
            message=error.message,
            request_id=request_id_var.get() or "",
            user=None,
            account=False,
            csrf="",
            nav=navigation(None),
        )
    )
    return web.Response(
        text=html, status=status, content_type="text/html", headers=dict(PAGE_HEADERS)
    )
