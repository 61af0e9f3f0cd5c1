"""Reading upload bodies while they stream in, never buffering past the limit.

Multipart uploads carry the file in the ``file`` field (the hash host's may carry several, in
``file`` or ``files[]``: :func:`read_uploads`). Errors of the upload's shape, the same
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


@dataclass
class Uploads:
    """The files of a multipart upload that may carry several (in the order sent), the field
    names they came in, and the small text fields sent with them."""

    files: list[Upload] = field(default_factory=list)
    #: The file fields used and how many file parts were sent (counted before each is read, so
    #: an error part-way still tells how the client shaped its request).
    file_fields: set[str] = field(default_factory=set)
    sent: int = 0
    fields: dict[str, str] = field(default_factory=dict)


async def read_uploads(
    request: web.Request, limit: int, max_files: int, names: tuple[str, ...], uploads: Uploads
) -> Uploads:
    """Fill ``uploads`` with every file of the multipart body sent in one of the fields
    ``names`` (several per field allowed), fields read before an error staying in it.

    ``limit`` bounds the files' bytes together, so a request never holds more in memory than a
    single upload may; more than ``max_files`` files is a 400 ``bad_request``, as is a file in
    another field or an empty file. Other errors as :func:`read_upload`.
    """
    wanted = " or ".join(f"`{name}`" for name in names)
    if not request.body_exists or request.content_length == 0:
        raise errors.BadRequest(f"No file: send multipart/form-data with the files in {wanted}")
    if request.content_type != "multipart/form-data":
        raise errors.UnsupportedMediaType(f"Send multipart/form-data with the files in {wanted}")
    too_big = f"The files exceed {limit} bytes together"
    if request.content_length is not None and request.content_length > limit + FORM_OVERHEAD:
        raise errors.PayloadTooLarge(too_big)
    total = 0
    try:
        reader = await request.multipart()
        async for part in reader:
            if not isinstance(part, aiohttp.BodyPartReader):
                raise errors.BadRequest("Nested multipart bodies are not accepted")
            if part.name in names:
                uploads.file_fields.add(part.name)
                uploads.sent += 1
                if uploads.sent > max_files:
                    raise errors.BadRequest(f"Too many files: at most {max_files} per request")
                try:
                    data = await _read_part(part, limit - total)
                except errors.PayloadTooLarge:
                    raise errors.PayloadTooLarge(too_big) from None
                total += len(data)
                uploads.files.append(Upload(data=data, filename=part.filename))
            elif part.filename is not None:
                raise errors.BadRequest(f"Files must be sent in {wanted}, not `{part.name}`")
            elif part.name and part.name not in uploads.fields:
                raw = await _read_part(part, FIELD_LIMIT, field_name=part.name)
                uploads.fields[part.name] = raw.decode("utf-8", "replace")
    except (ValueError, HttpProcessingError, aiohttp.ClientPayloadError) as exc:
        raise errors.BadRequest(f"Malformed multipart body: {exc}") from exc
    if not uploads.files:
        raise errors.BadRequest(f"No {wanted} field in the multipart body")
    for number, upload in enumerate(uploads.files, 1):
        if not upload.data:
            which = f" (file {number} of {len(uploads.files)})" if len(uploads.files) > 1 else ""
            raise errors.BadRequest(f"The file is empty{which}")
    return uploads


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
