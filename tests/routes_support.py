"""The gateway's public routes, as the OpenAPI and tenancy tests enumerate them."""

from __future__ import annotations

import re

from gateway.routes import ROUTES
from shared.config import SERVICES

#: Gateway routes that are not part of the API reference (see gateway/openapi/): the
#: catch-all proxy, Swagger UI's static files, and the Prometheus scrape target.
GATEWAY_UNDOCUMENTED = {"/{tail}", "/docs/static/{name}", "/metrics"}


_REGEX_PARAM = re.compile(r"{([^}:]+):[^}]+}")


def normalise(path: str) -> str:
    """``{id:[0-9]+}`` → ``{id}``."""
    return _REGEX_PARAM.sub(r"{\1}", path)


def registered(app) -> set[tuple[str, str]]:
    """(method, path) of every route on ``app``'s router, HEAD and ``*`` left out."""
    found = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if path is None or route.method in {"HEAD", "*"}:
            continue
        found.add((route.method, normalise(path)))
    return found


def fold_trailing_slash(routes: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """A route registered both with and without a trailing slash is documented once, with the
    slash (the Haut.ai clients' spelling): drop the slash-less alias."""
    return {
        (method, path)
        for method, path in routes
        if path.endswith("/") or (method, path + "/") not in routes
    }


def public_routes(stack) -> set[tuple[str, str]]:
    """Every method + path the gateway exposes: the services' routes its table sends to them
    (never ``/internal``), and its own routes."""
    public = set()
    for name in SERVICES:
        for method, path in registered(stack.apps[name]):
            route = ROUTES.match(path)
            if route is None or route.service != name or path.startswith("/internal"):
                continue
            public.add((method, path))
    for method, path in registered(stack.apps["gateway"]):
        if path not in GATEWAY_UNDOCUMENTED:
            public.add((method, path))
    return fold_trailing_slash(public)
