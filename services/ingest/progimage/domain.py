"""Progimage's rules: the ``POST /user/images`` request (one image or a bulk), base64 images,
the three variants each image gets, the ``derived`` query, and its limits.

Nothing here touches the database or the network. The ``/uploads/image/file/`` paths are
:mod:`shared.image_urls`'; the transforms are :mod:`shared.derivatives`'.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from shared import errors
from shared.derivatives import OPTION_NAMES, Transform, output_format, parse_options

#: ``GET /user/images``: ``limit`` defaults to this and is capped at ``MAX_LIST_LIMIT``.
LIST_LIMIT, MAX_LIST_LIMIT = 10, 100
#: The ``source`` of Progimage images in ``image.stored``.
SOURCE = "progimage"
#: Caching of a ``derived`` image: its URL names one immutable image, but only for this
#: caller's credentials.
DERIVED_CACHE_CONTROL = "private, max-age=31536000, immutable"

#: How many (user, image) → original answers one process remembers for ``derived``: an image's
#: owner and original never change, and images are never deleted, so no entry goes stale.
ORIGINALS_CACHED = 100_000

#: Sources an item of ``process`` may name; exactly one per item.
ITEM_SOURCES = ("file", "remote_file_url", "image_id")
#: The box of the ``thumb`` variant when the client gives neither ``thumb_w`` nor ``thumb_h``.
DEFAULT_THUMB_BOX = 300
#: The box of the ``mini`` variant (always square; the seed's single answer lists it).
MINI_BOX = 64
_DATA_URI = re.compile(r"^data:[\w.+-]+/[\w.+-]+;base64,", re.IGNORECASE)


@dataclass(frozen=True)
class ProcessItem:
    """One item of a ``process`` request: where its image comes from and what to do to it."""

    index: int
    source: str
    value: str
    transform: Transform


@dataclass(frozen=True)
class ProcessRequest:
    """A whole ``POST /user/images``: its items and whether the client sent an array."""

    items: tuple[ProcessItem, ...]
    bulk: bool


class ItemRefused(errors.InvalidRequest):
    """One item of a ``process`` request is wrong; the message names it (422)."""


def item_label(index: int, bulk: bool) -> str:
    """How an error names an item: ``process[3]`` in a bulk request, ``process`` otherwise."""
    return f"process[{index}]" if bulk else "process"


def parse_process_request(body: dict, max_items: int) -> ProcessRequest:
    """Validate the JSON body of ``POST /user/images`` (numbers may come as strings, as in the
    seed's examples); unknown fields are refused so that a typo is not silently ignored."""
    unknown = set(body) - {"process"}
    if unknown:
        raise errors.InvalidRequest(f"Unknown field: {sorted(unknown)[0]}")
    process = body.get("process")
    if isinstance(process, dict):
        raw_items, bulk = [process], False
    elif isinstance(process, list):
        raw_items, bulk = process, True
    else:
        raise errors.InvalidRequest("process: an image hash or an array of image hashes")
    if not raw_items:
        raise errors.InvalidRequest("process: at least one image")
    if len(raw_items) > max_items:
        raise errors.InvalidRequest(f"process: at most {max_items} images per request")
    items = []
    for index, raw in enumerate(raw_items):
        label = item_label(index, bulk)
        if not isinstance(raw, dict):
            raise ItemRefused(f"{label}: must be an object")
        items.append(_parse_item(index, label, raw))
    return ProcessRequest(tuple(items), bulk)


def _parse_item(index: int, label: str, raw: dict) -> ProcessItem:
    unknown = set(raw) - set(ITEM_SOURCES) - OPTION_NAMES
    if unknown:
        raise ItemRefused(f"{label}: unknown field {sorted(unknown)[0]}")
    sources = [name for name in ITEM_SOURCES if raw.get(name) not in (None, "")]
    if len(sources) != 1:
        raise ItemRefused(
            f"{label}: exactly one of remote_file_url, file or image_id is required"
            + (f" (got {', '.join(sources)})" if sources else "")
        )
    source = sources[0]
    value = raw[source]
    if not isinstance(value, str):
        raise ItemRefused(f"{label}.{source}: must be a string")
    try:
        transform = parse_options(raw)
    except errors.InvalidRequest as exc:
        raise ItemRefused(f"{label}.{exc.message}") from None
    if source == "image_id":
        try:
            value = str(uuid.UUID(value))
        except ValueError:
            raise ItemRefused(f"{label}.image_id: no such image") from None
    return ProcessItem(index, source, value, transform)


def decode_base64_image(text: str, max_bytes: int) -> bytes:
    """The bytes of a ``file`` value: base64 (standard or URL-safe alphabet, padding optional,
    an optional ``data:`` URI prefix); :class:`errors.InvalidRequest` when it is not."""
    text = _DATA_URI.sub("", text.strip(), count=1)
    text = "".join(text.split())
    if len(text) > (max_bytes + 2) // 3 * 4 + 4:
        raise errors.InvalidRequest(f"file: larger than {max_bytes} bytes")
    text = text.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise errors.InvalidRequest("file: not valid base64") from None
    if not data:
        raise errors.InvalidRequest("file: empty")
    return data


@dataclass(frozen=True)
class Variants:
    """The three derivatives of a Progimage image: the processed file, its thumb and mini."""

    file: Transform
    thumb: Transform
    mini: Transform

    def items(self) -> tuple[tuple[str, Transform], ...]:
        """``(name, transform)`` pairs, file first."""
        return (("file", self.file), ("thumb", self.thumb), ("mini", self.mini))


def variants_of(transform: Transform, media_type: str) -> Variants:
    """What an item produces: the transform at full size, fitted in the thumb box, and mini.

    The client's ``thumb_w``/``thumb_h`` size the thumbnail only; the file keeps its size.
    """
    whole = transform.boxed(None, None).with_format(output_format(media_type))
    if transform.thumb_w is None and transform.thumb_h is None:
        thumb = whole.boxed(DEFAULT_THUMB_BOX, DEFAULT_THUMB_BOX)
    else:
        thumb = whole.boxed(transform.thumb_w, transform.thumb_h)
    return Variants(whole, thumb, whole.boxed(MINI_BOX, MINI_BOX))


#: The query parameters of ``GET /user/images/{id}/derived``: the process options, and the
#: output format.
DERIVED_QUERY = OPTION_NAMES | {"format"}


def parse_derived_query(pairs: Iterable[tuple[str, str]], media_type: str) -> Transform:
    """The transform a ``GET /user/images/{id}/derived`` query (its ``(name, value)`` pairs)
    names, for an original of ``media_type``: the process options as ``POST /user/images``
    takes them, the box sizing the output, and ``format`` (``jpeg``, ``png``, ``webp``; by
    default the original's own, GIF becoming PNG). Unknown or repeated parameters are
    refused, so that a typo is not silently another image."""
    query: dict[str, str] = {}
    for name, value in pairs:
        if name not in DERIVED_QUERY:
            raise errors.InvalidRequest(f"Unknown parameter: {name}")
        if name in query:
            raise errors.InvalidRequest(f"{name}: given more than once")
        query[name] = value
    transform = parse_options(query)
    output = query.get("format") or output_format(media_type)
    return transform.with_format(output.strip().lower())
