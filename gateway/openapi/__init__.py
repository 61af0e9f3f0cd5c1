"""The public API's OpenAPI 3.1 document, served at ``GET /openapi.json``.

Every operation is one compact declaration (:class:`~gateway.openapi.common.Op`) in the module
of its tag or dialect; :data:`OPERATIONS` gathers them and :func:`build` expands them into the
document. ``tests/test_openapi.py`` compares these operations with the routes the services and
the gateway really register (both ways), so a route added without a line here, or a line left
for a route removed, fails the suite.

Conventions:

* Paths are written as the dialect's clients spell them. The Haut.ai-style paths end with
  ``/`` (its clients send it); each is also accepted without the trailing slash, which the
  document does not repeat (it says so in the operation's description).
* ``HEAD`` is accepted wherever ``GET`` is and is not listed separately.
* Operational paths: the gateway's own ``/healthz``, ``/readyz``, ``/openapi.json`` and
  ``/docs`` are included (tag *Operations*); ``/docs/static/…`` (the Swagger UI assets),
  ``/metrics`` (a Prometheus scrape target, not an API) and every ``/internal/…`` path (never
  forwarded) are not.
"""

from __future__ import annotations

import re

from gateway.openapi import (
    accounts,
    common,
    happo_images,
    happo_pages,
    happo_rendering,
    happo_reports,
    hash_host,
    hautai,
    operations,
    progimage,
)
from gateway.openapi.common import (
    ERROR_RESPONSE,
    ERROR_STATUSES,
    JSON,
    RESPONSES,
    SECURITY_SCHEMES,
    TAGS,
    Op,
    ref,
)

__all__ = ["OPERATIONS", "build", "routes"]

# The document lists paths and schemas in this order (grouped by the service that serves them:
# the gateway, auth, ingest, reports and rendering), so Swagger UI shows them in it too.
OPERATIONS: list[Op] = [
    *operations.OPERATIONS,
    *accounts.OPERATIONS,
    *progimage.AUTH_OPERATIONS,
    *hautai.AUTH_OPERATIONS,
    *happo_images.OPERATIONS,
    *progimage.OPERATIONS,
    *hash_host.OPERATIONS,
    *hautai.OPERATIONS,
    *happo_reports.OPERATIONS,
    *happo_rendering.OPERATIONS,
    *happo_pages.OPERATIONS,
]
_SCHEMAS: dict[str, dict] = {
    **common.SCHEMAS,
    **accounts.SCHEMAS,
    **progimage.AUTH_SCHEMAS,
    **hautai.AUTH_SCHEMAS,
    **happo_images.SCHEMAS,
    **hash_host.SCHEMAS,
    **progimage.SCHEMAS,
    **hautai.SCHEMAS,
    **happo_reports.SCHEMAS,
    **happo_rendering.SCHEMAS,
}

#: The OAuth 2.0 endpoints answer errors in RFC 6749's shape, not the platform's.
_OAUTH_ERROR_PATHS = ("/oauth/token", "/oauth/revoke")
_PARAM = re.compile(r"{([^}/]+)}")


def _content(value: str | dict | None, media: str = JSON) -> dict | None:
    if value is None:
        return None
    if isinstance(value, str):
        return {media: {"schema": ref(value)}}
    if all("/" in key for key in value) and value:
        return value
    return {media: {"schema": value}}


def _operation_id(op: Op) -> str:
    words = re.sub(r"[^A-Za-z0-9]+", "_", op.path).strip("_") or "root"
    return f"{op.method.lower()}_{words}"


def _operation(op: Op) -> dict:
    ok: dict = {"description": op.summary}
    content = _content(op.content)
    if content:
        ok["content"] = content
    responses: dict = {str(op.ok): ok}
    error = dict(ERROR_RESPONSE)
    for status in ERROR_STATUSES:
        responses.setdefault(status, error)
    if op.path in _OAUTH_ERROR_PATHS:
        oauth_error = {"description": "RFC 6749 error", "content": _content("OAuthError")}
        responses["400"] = responses["401"] = oauth_error
    if op.ok in (301, 302, 303):
        responses[str(op.ok)]["headers"] = {"Location": {"schema": {"type": "string"}}}
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PARAM.findall(op.path)
    ]
    params += [
        {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
        for name in op.query
    ]
    out: dict = {
        "tags": [op.tag],
        "summary": op.summary,
        "operationId": _operation_id(op),
        "responses": responses,
        "security": op.security,
    }
    if op.description:
        out["description"] = op.description
    if params:
        out["parameters"] = params
    if op.body is not None:
        out["requestBody"] = {"required": True, "content": _content(op.body, op.body_type)}
    return out


def build(public_url: str) -> dict:
    """The whole document, with ``servers`` naming ``public_url``."""
    paths: dict[str, dict] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Darkroom",
            "version": "1",
            "description": "One gateway, four dialects: the Happo Image and reports APIs, "
            "Progimage (OAuth 2.0), a Haut.ai-style subjects API and a hash file host. "
            'Errors: `{"error": {"code", "message"}}` (OAuth token errors: RFC 6749). '
            "`HEAD` is accepted wherever `GET` is.",
        },
        "servers": [{"url": public_url.rstrip("/")}],
        "tags": TAGS,
        "paths": paths,
        "components": {
            "schemas": _SCHEMAS,
            "responses": RESPONSES,
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


def routes() -> set[tuple[str, str]]:
    """(method, path) of every documented operation."""
    return {(op.method, op.path) for op in OPERATIONS}
