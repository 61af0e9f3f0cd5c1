"""Happo's Image API: signed uploads of screenshots and serving them by account + hash."""

from __future__ import annotations

from gateway.openapi.common import (
    ANONYMOUS,
    HAPPO,
    HAPPO_IMG,
    IMAGE,
    MULTIPART,
    NULLABLE_STR,
    OCTETS,
    OPTIONAL,
    Op,
    S,
    obj,
    t,
)

SCHEMAS: dict[str, dict] = {
    "UploadUrl": obj(("uploadUrl", "url"), uploadUrl=NULLABLE_STR, url=t(S)),
    "Url": obj(("url",), url=t(S)),
    # the file part of an upload form; the hash file host's uploads send it too
    "Multipart": obj(("file",), file=t(S, contentMediaType=OCTETS)),
}


OPERATIONS: list[Op] = [
    Op(
        "GET",
        "/api/images/{hash}/upload-url",
        HAPPO_IMG,
        "A signed upload URL for an image (uploadUrl null when the account has it)",
        HAPPO,
        content="UploadUrl",
    ),
    Op(
        "POST",
        "/api/images/upload/{token}",
        HAPPO_IMG,
        "Upload a PNG to a signed upload URL",
        [*HAPPO, ANONYMOUS],
        body="Multipart",
        body_type=MULTIPART,
        content="Url",
    ),
    Op("GET", "/img/{account_id}/{hash}", HAPPO_IMG, "An uploaded image", OPTIONAL, content=IMAGE),
]
