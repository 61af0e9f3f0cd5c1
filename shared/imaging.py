"""Images as every decoding process sees them: the libvips loaders Darkroom lets run, what an
image's header says, and the pixel limit a header is held to before any pixel is decoded.

A process calls :func:`refuse_untrusted_loaders` once at import, then for each image
:func:`read_header` and :func:`check_pixels` before it decodes anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

import pyvips

from shared.errors import InvalidRequest

#: The libvips loaders Darkroom accepts, each with the name a person knows its format by: the
#: four web image formats. Keys are libvips loader classes; allowing one allows its buffer,
#: file and source variants alike.
ALLOWED_LOADERS = MappingProxyType(
    {
        "VipsForeignLoadJpeg": "JPEG",
        "VipsForeignLoadPng": "PNG",
        "VipsForeignLoadWebp": "WebP",
        "VipsForeignLoadNsgif": "GIF",
    }
)
#: "JPEG, PNG, WebP or GIF": the formats of :data:`ALLOWED_LOADERS`, as a sentence says them.
ALLOWED_FORMATS_TEXT = " or ".join(", ".join(ALLOWED_LOADERS.values()).rsplit(", ", 1))


def refuse_untrusted_loaders() -> None:
    """Block libvips' operations flagged untrusted (ImageMagick, matio, …) and every loader
    but :data:`ALLOWED_LOADERS`, for the whole process: every image is hostile input, even one
    validated at upload, since libvips picks its loader from the bytes."""
    pyvips.block_untrusted_set(True)
    pyvips.operation_block_set("VipsForeignLoad", True)
    for loader in ALLOWED_LOADERS:
        pyvips.operation_block_set(loader, False)


class UnreadableImage(InvalidRequest):
    """The bytes are not an image libvips opens with one of :data:`ALLOWED_LOADERS`."""


class TooManyPixels(InvalidRequest):
    """An image's header declares more pixels than the limit; it is never decoded."""


@dataclass(frozen=True)
class Header:
    """What an image's header says, read before any pixel is decoded.

    ``width`` x ``height`` is one frame as stored; ``orientation`` the EXIF orientation (1-8,
    1 when there is none); ``format_name`` the name a person knows the format by (a value of
    :data:`ALLOWED_LOADERS`); ``frames`` the frames (pages) of an animated GIF or WebP, 1 for
    a still image.
    """

    width: int
    height: int
    orientation: int
    format_name: str
    frames: int = 1

    @property
    def turned(self) -> bool:
        """True when the EXIF orientation (5-8) turns the image a quarter."""
        return self.orientation >= 5

    @property
    def upright_width(self) -> int:
        """Width of a frame once the EXIF orientation is applied."""
        return self.height if self.turned else self.width

    @property
    def upright_height(self) -> int:
        """Height of a frame once the EXIF orientation is applied."""
        return self.width if self.turned else self.height

    @property
    def pixels(self) -> int:
        """Width x height x frames: the pixels decoding every frame would produce, which is
        what :func:`check_pixels` holds against the limit."""
        return self.width * self.height * self.frames

    def size_text(self) -> str:
        """The upright size for a message: ``"640x480 pixels"``, and ``" x 12 frames"`` after
        it for an animation."""
        size = f"{self.upright_width}x{self.upright_height} pixels"
        return size if self.frames == 1 else f"{size} x {self.frames} frames"


def read_header(data: bytes, *, subject: str = "The file") -> Header:
    """Read the header of the image ``data`` with libvips; no pixel is decoded.

    Raises :class:`UnreadableImage` ("``subject`` is not a JPEG, PNG, WebP or GIF image") when
    libvips cannot open it or opens it with a loader outside :data:`ALLOWED_LOADERS`.
    """
    refusal = f"{subject} is not a {ALLOWED_FORMATS_TEXT} image"
    try:
        # Opening reads the header only: no pixel is decoded yet.
        image = pyvips.Image.new_from_buffer(data, "", access="sequential", fail_on="error")
    except pyvips.Error as exc:
        raise UnreadableImage(refusal) from exc
    format_name = _format_name(image.get("vips-loader"))
    if format_name is None:
        raise UnreadableImage(refusal)
    orientation = image.get("orientation") if image.get_typeof("orientation") else 1
    # Opened with its default of one page, the image is one frame high; n-pages counts them.
    frames = image.get("n-pages") if image.get_typeof("n-pages") else 1
    return Header(image.width, image.height, orientation, format_name, frames)


def check_pixels(
    header: Header, max_pixels: int, *, subject: str = "The image", verb: str = "decoded"
) -> None:
    """Hold ``header`` to ``max_pixels`` (width x height x frames, see :attr:`Header.pixels`).

    Raises :class:`TooManyPixels` ("``subject`` is WxH pixels; at most N pixels can be
    ``verb``") when the image has more.
    """
    if header.pixels > max_pixels:
        raise TooManyPixels(
            f"{subject} is {header.size_text()}; at most {max_pixels} pixels can be {verb}"
        )


def _format_name(loader: str) -> str | None:
    """The format name of the image a loader (libvips' nickname, as the ``vips-loader`` field
    records it) decodes, or ``None`` when that loader is not allowed."""
    for loader_class, format_name in ALLOWED_LOADERS.items():
        # type_find looks for the nickname among the loader class's descendants.
        if loader and pyvips.type_find(loader_class, loader):
            return format_name
    return None
