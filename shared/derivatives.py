"""The derivative contract between the services that ask for images and processing.

A *derivative* is an original image (named by the SHA-256 of its bytes) put through a
:class:`Transform`. It is stored once under :func:`derivative_key`, which depends only on the
original's hash and the transform's canonical form, so the same request is never computed
twice, whichever process asks and whichever worker computes it.

The conversation (rule 2 of the design: a question someone waits on is answered directly):

* ``POST`` :data:`DERIVATIVES_PATH` on processing (a signed internal call) with
  ``{key, original: {sha256, key, media_type}, transform}`` — ``transform`` is
  :meth:`Transform.as_dict`, ``original.key`` must be the original's content key. The answer is
  the derivative's bytes (200, with its type and size in headers), 422 ``invalid_request`` when
  the original cannot become it (undecodable, over a limit, no longer stored) or 503 when that
  replica is full. A caller that hangs up withdraws its question.
* ``derivative.stored`` ``{key, original_sha256, media_type, bytes, width, height, worker}`` —
  the fact that follows, in processing's outbox, once per key: ``key`` is in the blob store
  and recorded.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from shared import store_keys
from shared.errors import InvalidRequest

DERIVATIVE_STORED = "derivative.stored"

#: Processing's internal route that makes a derivative while its caller waits.
DERIVATIVES_PATH = "/internal/derivatives"

#: The filters a transform may name; each is a fixed libvips recipe in processing.
FILTERS = ("toaster", "lomo", "kelvin", "colortone", "gotham")

#: Output formats and their media types and file extensions.
FORMATS = {
    "jpeg": ("image/jpeg", "jpg"),
    "png": ("image/png", "png"),
    "webp": ("image/webp", "webp"),
}

#: The option names a client may send, beside the image's source.
OPTION_NAMES = frozenset({"quality", "thumb_w", "thumb_h", "rotation", "filter", "round_corners"})

#: Largest thumbnail side and corner radius a client may ask for, in pixels.
MAX_SIDE = 10_000

_NUMBER = re.compile(r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)\s*$")


@dataclass(frozen=True)
class Transform:
    """What to do to an original, in this order: apply its EXIF orientation, ``rotation``
    (degrees clockwise; multiples of 90 are lossless), ``filter``, fit inside
    ``thumb_w`` x ``thumb_h`` (aspect kept, never enlarged; either side may be open), round the
    corners by ``round_corners`` pixels, then encode as ``format`` at ``quality`` with all
    metadata stripped."""

    format: str = "jpeg"
    quality: int | None = None
    thumb_w: int | None = None
    thumb_h: int | None = None
    rotation: float = 0.0
    filter: str | None = None
    round_corners: int | None = None

    def canonical(self) -> str:
        """One spelling per distinct transform (what the derivative key is made of)."""
        rotation = f"{self.rotation:g}"
        return (
            f"v1;fmt={self.format};q={self.quality};w={self.thumb_w};h={self.thumb_h}"
            f";rot={rotation};filter={self.filter};rc={self.round_corners}"
        )

    def as_dict(self) -> dict[str, object]:
        """The transform as an event payload."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Transform:
        """Read :meth:`as_dict`'s output back (from an event), validating it again."""
        options = {k: v for k, v in data.items() if k in OPTION_NAMES and v is not None}
        base = parse_options(options)
        return base.with_format(str(data.get("format", "jpeg")))

    def with_format(self, output: str) -> Transform:
        """The same transform encoding to ``output`` (a key of :data:`FORMATS`)."""
        if output not in FORMATS:
            raise InvalidRequest(f"format: one of {', '.join(FORMATS)}")
        return Transform(**{**asdict(self), "format": output})

    def boxed(self, width: int | None, height: int | None) -> Transform:
        """The same transform fitting inside ``width`` x ``height`` instead."""
        return Transform(**{**asdict(self), "thumb_w": width, "thumb_h": height})

    @property
    def media_type(self) -> str:
        """The media type of the encoded output."""
        return FORMATS[self.format][0]

    @property
    def extension(self) -> str:
        """The file extension of the encoded output."""
        return FORMATS[self.format][1]


def parse_options(item: Mapping[str, object]) -> Transform:
    """Read a client's options (numbers or numeric strings, as the Progimage seed sends them)
    into a :class:`Transform` with the default format; names not in :data:`OPTION_NAMES` are
    ignored here (the caller decides whether they are allowed).

    Raises :class:`InvalidRequest` naming the first bad option.
    """
    quality = _integer(item, "quality", 0, 100)
    thumb_w = _integer(item, "thumb_w", 1, MAX_SIDE)
    thumb_h = _integer(item, "thumb_h", 1, MAX_SIDE)
    round_corners = _integer(item, "round_corners", 1, MAX_SIDE)
    rotation = _number(item, "rotation")
    rotation = 0.0 if rotation is None else round(rotation % 360.0, 3) % 360.0
    name = item.get("filter")
    if name is not None and name != "":
        if not isinstance(name, str) or name.strip().lower() not in FILTERS:
            raise InvalidRequest(f"filter: one of {', '.join(FILTERS)}")
        name = name.strip().lower()
    else:
        name = None
    return Transform(
        quality=quality,
        thumb_w=thumb_w,
        thumb_h=thumb_h,
        rotation=rotation + 0.0,
        filter=name,
        round_corners=round_corners,
    )


def output_format(media_type: str) -> str:
    """The format a transform of an original of ``media_type`` encodes to by default: the
    original's own, except GIF, which becomes PNG (one frame, lossless)."""
    return {"image/jpeg": "jpeg", "image/webp": "webp"}.get(media_type, "png")


def derivative_key(original_sha256: str, transform: Transform) -> str:
    """Where the derivative of ``original_sha256`` through ``transform`` is stored (the format
    is :func:`shared.store_keys.derivative_key`'s)."""
    digest = hashlib.sha256(transform.canonical().encode()).hexdigest()[:32]
    return store_keys.derivative_key(original_sha256, digest, transform.extension)


def _number(item: Mapping[str, object], name: str) -> float | None:
    value = item.get(name)
    if value is None or value == "":
        return None
    # bool is an int in Python; true is not a number to a JSON client.
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidRequest(f"{name}: must be a number")
    if isinstance(value, str):
        if not _NUMBER.match(value):
            raise InvalidRequest(f"{name}: must be a number")
        value = float(value)
    number = float(value)
    if not math.isfinite(number):
        raise InvalidRequest(f"{name}: must be a finite number")
    return number


def _integer(item: Mapping[str, object], name: str, low: int, high: int) -> int | None:
    number = _number(item, name)
    if number is None:
        return None
    if number != int(number):
        raise InvalidRequest(f"{name}: must be a whole number")
    if not low <= number <= high:
        raise InvalidRequest(f"{name}: must be between {low} and {high}")
    return int(number)
