"""Happo's snap requests (payloads rendered in Darkroom's Chromium) and the packages
they render."""

from __future__ import annotations

from gateway.openapi.common import HAPPO, HAPPO_REP, MULTIPART, NONE, OBJ, OCTETS, Op, S, obj, t

SCHEMAS: dict[str, dict] = {
    "RequestId": obj(("requestId",), requestId=t([S, "integer"])),
}


OPERATIONS: list[Op] = [
    Op(
        "POST",
        "/api/snap-requests/with-results",
        HAPPO_REP,
        "Snapshots taken by the client",
        HAPPO,
        body=OBJ,
        content="RequestId",
    ),
    Op(
        "POST",
        "/api/snap-requests/extends-report",
        HAPPO_REP,
        "Snapshots from an earlier report",
        HAPPO,
        body=OBJ,
        content="RequestId",
    ),
    Op("GET", "/api/snap-requests/{id}", HAPPO_REP, "A snap request's result", HAPPO, content=OBJ),
    Op(
        "POST",
        "/api/snap-requests",
        HAPPO_REP,
        "Render a payload in Darkroom's Chromium",
        HAPPO,
        body=OBJ,
        body_type=MULTIPART,
        content="RequestId",
        description="Multipart `type` (browser-<type> or extends-report), `targetName`,"
        " `payloadHash` and the payload JSON as the file `payload`. Poll"
        " `GET /api/snap-requests/{id}` or name the id in an async report.",
    ),
    Op(
        "POST",
        "/api/snap-requests/bulk",
        HAPPO_REP,
        "Render up to 50 payloads",
        HAPPO,
        body=OBJ,
        content=OBJ,
        description="`{items: [{type, targetName, payloadString, payloadHash, extendsSha?}]}`"
        " → `{results: [{requestId} | {error}]}` in the items' order.",
    ),
    Op(
        "GET",
        "/api/snap-requests/assets-data/{hash}",
        HAPPO_REP,
        "Whether a package is stored",
        HAPPO,
        content=OBJ,
    ),
    Op(
        "POST",
        "/api/snap-requests/assets/{hash}",
        HAPPO_REP,
        "Upload a package (zip or zstd tar)",
        HAPPO,
        body=OBJ,
        body_type=MULTIPART,
        content=OBJ,
    ),
    Op(
        "GET",
        "/api/snap-requests/assets/{hash}/signed-url",
        HAPPO_REP,
        "A signed URL to PUT a package to",
        HAPPO,
        query=("format",),
        content=OBJ,
    ),
    Op(
        "PUT",
        "/api/package-uploads/{token}",
        HAPPO_REP,
        "PUT a package to its signed URL",
        NONE,
        body={"type": "string"},
        body_type=OCTETS,
        content=OBJ,
    ),
    Op(
        "POST",
        "/api/snap-requests/assets/{hash}/signed-url/finalize",
        HAPPO_REP,
        "Finish a signed-URL package upload",
        HAPPO,
        content=OBJ,
    ),
]
