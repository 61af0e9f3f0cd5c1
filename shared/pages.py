"""Server-rendered pages: Jinja2 with autoescaping, a shared base layout, no external assets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

_SHARED_TEMPLATES = Path(__file__).with_name("templates")


class Pages:
    """Renders a service's templates (its ``templates/`` folder, then the shared layout)."""

    def __init__(self, service_templates: Path) -> None:
        self.env = jinja2.Environment(
            loader=jinja2.ChoiceLoader(
                [
                    jinja2.FileSystemLoader(service_templates),
                    jinja2.FileSystemLoader(_SHARED_TEMPLATES),
                ]
            ),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )

    def render(self, template: str, *, status: int = 200, **context: Any) -> web.Response:
        """An HTML response of ``template`` with ``context``."""
        html = self.env.get_template(template).render(**context)
        return web.Response(
            text=html,
            status=status,
            content_type="text/html",
            headers={
                "Content-Security-Policy": "default-src 'self'; style-src 'unsafe-inline';"
                " frame-ancestors 'none'; form-action 'self'",
                "X-Frame-Options": "DENY",
                "Cache-Control": "no-store",
            },
        )


def redirect(location: str) -> web.Response:
    """A 303 See Other to ``location`` (cookies may still be set on it)."""
    return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})


def safe_next(value: str | None, default: str = "/") -> str:
    """``value`` when it is a path on this site, else ``default`` (no open redirects)."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return default
