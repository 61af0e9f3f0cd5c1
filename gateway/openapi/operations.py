"""The gateway's own paths (tag *Operations*): health, readiness and this reference."""

from __future__ import annotations

from gateway.openapi.common import HTML, NONE, OBJ, OPS, Op

OPERATIONS: list[Op] = [
    Op("GET", "/healthz", OPS, "The gateway process answers", NONE, content=OBJ),
    Op("GET", "/readyz", OPS, "Every service is ready (503 when one is not)", NONE, content=OBJ),
    Op("GET", "/openapi.json", OPS, "This document", NONE, content=OBJ),
    Op("GET", "/docs", OPS, "This document rendered with Swagger UI", NONE, content=HTML),
]
