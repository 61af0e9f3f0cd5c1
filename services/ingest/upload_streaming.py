"""Reading upload bodies while they stream in, never buffering past the limit.

Multipart uploads carry the file in the ``file`` field. Errors of the upload's shape, the same
on every upload path: no body, no ``file`` field, a file in another field or an empty file →
400 ``bad_request``; a body that is not multipart → 415 ``unsupported_media_type``; too big →
413 ``payload_too_large``. Raw bodies (a signed ``PUT``, an internal PNG) are counted the same
way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from shared import errors

#: Bytes read from the network at a time.
CHUNK = 64 * 1024
#: Room for the multipart framing and small fields around the file: a body longer than the
#: file limit plus this is refused from its Content-Length, before reading anything.
FORM_OVERHEAD = 64 * 1024
#: The longest small text field sent beside the file.
FIELD_LIMIT = 1024


@dataclass
class Upload:
    """The file of a multipart upload and the small text fields sent with it."""

    data: bytes = b""
    filename: str | None = None
    fields: dict[str, str] = field(default_factory=dict)


async def read_upload(request: web.Request, limit: int, upload: Upload) -> Upload:
    """Fill ``upload`` from the multipart body (fields read before an error stay in it)."""
    if not request.body_exists or request.content_length == 0:
        raise errors.BadRequest("No file: send multipart/form-data with the file in `file`")
    if request.content_type != "multipart/form-data":
        raise errors.UnsupportedMediaType("Send multipart/form-data with the file in `file`")
    if request.content_length is not None and request.content_length > limit + FORM_OVERHEAD:
        raise errors.PayloadTooLarge(f"The file exceeds {limit} bytes")
    found = False
    try:
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, aiohttp.BodyPartReader):
                raise errors.BadRequest("Nested multipart bodies are not accepted")
            if part.name == "file" and not found:
                found = True
                upload.filename = part.filename
                upload.data = await _read_part(part, limit)
            elif part.filename is not None:
                raise errors.BadRequest(
                    f"The file must be sent in the `file` field, not `{part.name}`"
                )
            elif part.name and part.name not in upload.fields:
                raw = await _read_part(part, FIELD_LIMIT, field_name=part.name)
                upload.fields[part.name] = raw.decode("utf-8", "replace")
    except (ValueError, HttpProcessingError, aiohttp.ClientPayloadError) as exc:
        raise errors.BadRequest(f"Malformed multipart body: {exc}") from exc
    if not found:
        raise errors.BadRequest("No `file` field in the multipart body")
    if not upload.data:
        raise errors.BadRequest("The file is empty")
    return upload


async def _read_part(part: aiohttp.BodyPartReader, limit: int, field_name: str = "") -> bytes:
    # Counted while streaming: a body part is never buffered past the limit.
    buffer = bytearray()
    while chunk := await part.read_chunk(CHUNK):
        buffer += chunk
        if len(buffer) > limit:
            if field_name:
                raise errors.BadRequest(f"The field `{field_name}` is too long")
            raise errors.PayloadTooLarge(f"The file exceeds {limit} bytes")
    return bytes(buffer)


async def read_body(request: web.Request, limit: int) -> bytes:
    """The raw body (an image's bytes); 413 past ``limit`` (counted while streaming: never
    buffered past it), 400 when empty or malformed."""
    buffer = bytearray()
    try:
        async for chunk in request.content.iter_chunked(CHUNK):
            buffer += chunk
            if len(buffer) > limit:
                raise errors.PayloadTooLarge(f"The image exceeds {limit} bytes")
    except (HttpProcessingError, aiohttp.ClientPayloadError) as exc:
        raise errors.BadRequest(f"Malformed body: {exc}") from exc
    if not buffer:
        raise errors.BadRequest("The body is empty: send the image's bytes")
    return bytes(buffer)
