"""The hash file host: uploads by content, served by hash, and its pages."""

from __future__ import annotations

from gateway.openapi.common import (
    BYTES,
    HOST,
    HTML,
    MULTIPART,
    NONE,
    OBJ,
    OPTIONAL,
    PAGE,
    Op,
    S,
    obj,
    t,
)

SCHEMAS: dict[str, dict] = {
    "UploadAnswer": obj(
        ("hash", "status", "urls"),
        hash=t(S),
        status=t(["boolean", S]),
        urls=OBJ,
        delete_token=t(S),
    ),
    "Deleted": obj(("hash", "deleted"), hash=t(S), deleted=t("boolean")),
}


OPERATIONS: list[Op] = [
    Op(
        "POST",
        "/api/upload",
        HOST,
        "Upload a file",
        OPTIONAL,
        body="Multipart",
        body_type=MULTIPART,
        content="UploadAnswer",
    ),
    Op(
        "DELETE",
        "/api/files/{hash}",
        HOST,
        "Delete a file (owner or delete token)",
        OPTIONAL,
        content="Deleted",
        query=("delete_token",),
    ),
    Op(
        "GET",
        "/f/{tail}",
        HOST,
        "A file by hash (`<hash>`, `<hash>.<ext>`, `<hash>/<name>`)",
        NONE,
        content=BYTES,
    ),
    Op("GET", "/upload", HOST, "Upload page", PAGE, content=HTML),
    Op(
        "POST",
        "/upload",
        HOST,
        "Upload (form; `?api=1` answers `OK <hash>` as text)",
        PAGE,
        body="Multipart",
        body_type=MULTIPART,
        content=HTML,
        query=("api",),
    ),
    Op("GET", "/files", HOST, "The signed-in user's files", PAGE, content=HTML),
    Op("POST", "/files/{hash}/delete", HOST, "Delete one of the user's files (form)", PAGE, ok=303),
]
