"""The hash file host: uploads by content, served by hash, and its pages."""

from __future__ import annotations

from gateway.openapi.common import (
    BYTES,
    HOST,
    HTML,
    INT,
    KEYS,
    MULTIPART,
    NONE,
    NULLABLE_STR,
    OBJ,
    OPTIONAL,
    PAGE,
    Op,
    S,
    array,
    obj,
    ref,
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
    "PomfFile": obj(
        ("hash", "name", "url", "size"),
        hash=t(S),
        name=t(S),
        url=t(S),
        size=INT,
        urls=OBJ,
        delete_token=t(S),
    ),
    "Deleted": obj(("hash", "deleted"), hash=t(S), deleted=t("boolean")),
    "FilePage": obj(
        ("count", "next", "previous", "results"),
        count=INT,
        next=NULLABLE_STR,
        previous=NULLABLE_STR,
        results=array(OBJ),
    ),
}
SCHEMAS["UploadAnswerOrPomf"] = {
    "oneOf": [
        ref("UploadAnswer"),
        obj(("success", "files"), success=t("boolean"), files=array(ref("PomfFile"))),
    ]
}


OPERATIONS: list[Op] = [
    Op(
        "POST",
        "/api/upload",
        HOST,
        "Upload a file, or several (pomf's `files[]`)",
        OPTIONAL,
        body="Multipart",
        body_type=MULTIPART,
        content="UploadAnswerOrPomf",
        description="One file in `file`: `{hash, status, urls}`. Pomf's `files[]`, or several "
        "files (at most 10, their bytes together within the upload limit): "
        "`{success, files: [{hash, name, url, size, urls}]}`; all are stored or none, a "
        "refusal being `{success: false, errorcode, description, error}`.",
    ),
    Op(
        "GET",
        "/api/files",
        HOST,
        "The caller's files, newest first, a page at a time",
        KEYS,
        content="FilePage",
        query=("page", "page_size"),
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
    Op(
        "GET",
        "/files",
        HOST,
        "The signed-in user's files, a page at a time",
        PAGE,
        content=HTML,
        query=("page",),
    ),
    Op(
        "GET",
        "/files/{hash}/delete",
        HOST,
        "Confirm deleting one of the user's files (page)",
        PAGE,
        content=HTML,
        query=("page",),
    ),
    Op("POST", "/files/{hash}/delete", HOST, "Delete one of the user's files (form)", PAGE, ok=303),
    Op(
        "GET",
        "/files/{hash}/thumbnail",
        HOST,
        "A small WebP of one of the caller's images (made once, then stored)",
        [*KEYS, *PAGE],
        content={"image/webp": {"schema": {"type": "string", "format": "binary"}}},
    ),
    Op(
        "GET",
        "/files/sharex.sxcu",
        HOST,
        "A ShareX custom uploader for this host (download)",
        PAGE,
        content={"application/json": {"schema": OBJ}},
    ),
    Op(
        "GET",
        "/files/assets/{name}",
        HOST,
        "The pages' scripts",
        PAGE,
        content={"application/javascript": {"schema": {"type": "string"}}},
    ),
]
