"""Derivatives as plain computation: original bytes in, encoded derivative bytes out (libvips).

Nothing here touches the database, the store or the network; :func:`derive` is CPU-bound and
runs in the service's worker threads (libvips releases the GIL).

The pipeline follows :class:`shared.derivatives.Transform`'s order — EXIF orientation,
``rotation``, ``filter``, fit in the box, round corners, encode — with one liberty that changes
nothing visible: when there is a box, the original is shrunk *while it is decoded*
(JPEG DCT scaling, ``thumbnail_source`` for WebP/PNG shrink-on-load) to the size the box will
allow after the rotation, and the rotation and filter then run on that small image. Scaling
commutes with rotation, and the filters are per-pixel colour maps plus vignettes defined in
coordinates relative to the image, so the result is what the literal order would give up to
resampling, at a fraction of the cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pyvips

from shared.derivatives import Transform
from shared.errors import InvalidRequest
from shared.imaging import (
    Header,
    TooManyPixels,
    UnreadableImage,
    check_pixels,
    read_header,
    refuse_untrusted_loaders,
)

refuse_untrusted_loaders()

#: Quality of lossy outputs when the transform names none (thumbor's own default is 80-85).
DEFAULT_QUALITY = 82
#: zlib level of PNG outputs: 6 is within a few percent of 9's size at a fraction of its time.
PNG_COMPRESSION = 6
#: Largest JPEG (in pixels) encoded compactly: optimised Huffman tables and progressive scans,
#: as thumbor encodes. Measured on a photo with our libvips (mozjpeg): at 300x225 q80 they cost
#: 0.9 ms for 7 % fewer bytes; on a large image they multiply the encode time (4000x3000 q90:
#: 67 ms baseline, 240 optimised, 430 progressive too, for 7-10 % of the bytes) and buffer every
#: DCT coefficient (652 MB at 100 MP against 109 MB without). Thumbnail-sized outputs get them;
#: larger ones are baseline with the standard tables, where the time is worth more.
COMPACT_JPEG_MAX_PIXELS = 250_000
#: libvips' largest coordinate: the "no limit" side of a box open on one side.
_OPEN_SIDE = 10_000_000
_WHITE = [255.0, 255.0, 255.0]
#: Rec. 601 luma weights: the "grey" a saturation change pivots on.
_LUMA = (0.299, 0.587, 0.114)


class UndecodableImage(InvalidRequest):
    """The original cannot become a derivative: not an image we decode, truncated or corrupt,
    or over the pixel limit. A fact about the input — retrying cannot help."""


@dataclass(frozen=True)
class Limits:
    """What an original may be to be processed: at most ``max_pixels`` (width x height x
    frames, :func:`shared.imaging.check_pixels`), checked from the header before any pixel is
    decoded; the image a turn makes of it is held to the same limit."""

    max_pixels: int


@dataclass(frozen=True)
class Derived:
    """An encoded derivative and what it is."""

    data: bytes
    width: int
    height: int
    media_type: str


def derive(data: bytes, transform: Transform, limits: Limits) -> Derived:
    """Put the original image ``data`` through ``transform`` and encode it, metadata stripped.

    Animated GIF/WebP originals give their first frame. Raises :class:`UndecodableImage` for
    anything libvips refuses (unknown format, truncated or corrupt data) and for originals, or
    the turned image they would become, over ``limits``.
    """
    header = _examine(data, limits)
    try:
        # The loader reads the caller's bytes in place: a buffer load copies them first (4 MB
        # for a 12 MP photo: ~1 ms of a 45 ms thumbnail). The images made from the source keep
        # it, and so the bytes, alive.
        image = _load(pyvips.Source.new_from_memory(data), transform, header)
        alpha_out = transform.format != "jpeg"
        if not alpha_out and image.hasalpha():
            image = image.flatten(background=_WHITE)
        image = _rotate(image, transform.rotation, keep_alpha=alpha_out)
        # A turn by other than a quarter enlarges the canvas (up to twice the pixels at 45°),
        # and every later step keeps or shrinks it: hold the result to the same limit as the
        # original while its size is known and no pixel has been computed yet.
        _check_result(image, limits)
        if transform.filter is not None:
            image = FILTERS[transform.filter](image)
        image = _fit(image, transform.thumb_w, transform.thumb_h)
        if transform.round_corners:
            image = _round_corners(image, transform.round_corners, transparent=alpha_out)
        encoded = _encode(image, transform)
    except pyvips.Error as exc:
        raise UndecodableImage(
            f"The {header.format_name} image is truncated or corrupt and cannot be processed;"
            " upload an intact copy"
        ) from exc
    return Derived(encoded, image.width, image.height, transform.media_type)


def _examine(data: bytes, limits: Limits) -> Header:
    """Read the header of ``data`` and hold it against ``limits``."""
    try:
        header = read_header(data)
        check_pixels(header, limits.max_pixels, verb="processed")
    except (UnreadableImage, TooManyPixels) as exc:
        raise UndecodableImage(exc.message) from exc
    return header


def _check_result(image: pyvips.Image, limits: Limits) -> None:
    """Refuse a pipeline whose image would be larger than ``limits`` allow an original."""
    if image.width * image.height > limits.max_pixels:
        raise UndecodableImage(
            f"The result would be {image.width}x{image.height} pixels; at most"
            f" {limits.max_pixels} pixels can be processed (ask for a box, thumb_w/thumb_h,"
            " or a quarter turn)"
        )


def _load(source: pyvips.Source, transform: Transform, header: Header) -> pyvips.Image:
    """The original upright (EXIF orientation applied), in 8-bit sRGB, already shrunk as far
    as the box will allow after the rotation."""
    box = _preshrink_box(transform, header.upright_width, header.upright_height)
    shrink = 1 if box is None else jpeg_shrink(header, box)
    if shrink > 1:
        # libvips' thumbnail keeps twice the box through its JPEG shrink-on-load; decoding at
        # the largest DCT scale that still covers the box (as Pillow's draft mode does for
        # thumbor) and resizing the rest with lanczos3 is ~20 % faster for a visually equal
        # result. The loader's fail_on catches a truncated file.
        turns = header.orientation not in (0, 1)
        image = pyvips.Image.jpegload_source(
            source,
            shrink=shrink,
            fail_on="error",
            access="random" if turns else "sequential",
        ).autorot()
        image = image.thumbnail_image(box[0], height=box[1], size="down")
    elif box is not None:
        # thumbnail_source's own fail_on does not reach the loader (libvips 8.18): a truncated
        # file would decode as grey. The loader's option string does.
        image = pyvips.Image.thumbnail_source(
            source, box[0], height=box[1], size="down", option_string="fail_on=error"
        )
    else:
        # Turning (for the EXIF orientation or the rotation) reads out of order, which a
        # sequential load refuses once the image is larger than its small line cache.
        turns = transform.rotation != 0 or header.orientation not in (0, 1)
        access = "random" if turns else "sequential"
        image = pyvips.Image.new_from_source(source, "", access=access, fail_on="error")
        image = image.autorot()
        return to_srgb(image)
    if transform.rotation != 0:
        # A shrunk image comes out of a sequential pipeline, and turning it reads out of
        # order: past libvips' small line cache that fails. It is at most the box, so hold it.
        image = image.copy_memory()
    return to_srgb(image)


def jpeg_shrink(header: Header, box: tuple[int, int]) -> int:
    """The JPEG DCT scale (1, 2, 4 or 8) to decode a JPEG original at so that its upright
    image is still at least as large as it will be once fitted in ``box``; 1 for any other
    format."""
    if header.format_name != "JPEG":
        return 1
    scale = min(box[0] / header.upright_width, box[1] / header.upright_height)
    # The loader floors each side: a sliver (5x3000) decoded at 1/8 would be 0 pixels wide.
    shortest = min(header.upright_width, header.upright_height)
    for shrink in (8, 4, 2):
        if shrink * scale <= 1.0 and shrink <= shortest:
            return shrink
    return 1


def _preshrink_box(transform: Transform, width: int, height: int) -> tuple[int, int] | None:
    """The box to shrink the upright original into at load time, or ``None`` to load it
    whole (also when the image already fits: a thumbnail pipeline is sequential, and a turn
    after it would read out of order). For quarter turns it is the transform's box turned
    too; for other angles, the size whose rotated bounding box fits the transform's box."""
    box_w, box_h = transform.thumb_w, transform.thumb_h
    if box_w is None and box_h is None:
        return None
    quarter, rest = divmod(transform.rotation, 90)
    if rest == 0:
        if quarter % 2:
            box_w, box_h = box_h, box_w
        box = box_w or _OPEN_SIDE, box_h or _OPEN_SIDE
        return None if min(box[0] / width, box[1] / height) >= 1.0 else box
    angle = math.radians(transform.rotation)
    cos, sin = abs(math.cos(angle)), abs(math.sin(angle))
    scale = min(
        box_w / (width * cos + height * sin) if box_w else 1.0,
        box_h / (width * sin + height * cos) if box_h else 1.0,
        1.0,
    )
    if scale >= 1.0:
        return None
    return max(1, math.floor(width * scale)), max(1, math.floor(height * scale))


def to_srgb(image: pyvips.Image) -> pyvips.Image:
    """``image`` in 8-bit sRGB (three bands, plus alpha when it has one); an embedded ICC
    profile is honoured, since the output carries none and will be read as sRGB."""
    if image.get_typeof("icc-profile-data"):
        try:
            image = image.icc_transform("srgb", embedded=True, intent="perceptual", depth=8)
        except pyvips.Error:
            # A broken profile is metadata damage, not a broken image: fall back to the
            # interpretation libvips gives the pixels.
            image = image.copy()
            image.remove("icc-profile-data")
    if image.interpretation != "srgb" or image.bands < 3:
        image = image.colourspace("srgb")
    if image.format != "uchar":
        image = image.cast("uchar")
    return image


def _rotate(image: pyvips.Image, degrees: float, *, keep_alpha: bool) -> pyvips.Image:
    """Turn ``image`` ``degrees`` clockwise. Quarter turns are lossless; other angles enlarge
    the canvas to hold the whole image and fill it transparent (``keep_alpha``) or white."""
    if degrees == 0:
        return image
    quarter, rest = divmod(degrees, 90)
    if rest == 0:
        return image.rot(f"d{int(quarter) * 90}")
    if not keep_alpha:
        return image.rotate(degrees, background=_WHITE)
    if not image.hasalpha():
        image = image.bandjoin(255)
    # Premultiplied, so that edge pixels blend with the transparent fill without a dark fringe.
    turned = image.premultiply().rotate(degrees, background=[0.0, 0.0, 0.0, 0.0])
    return turned.unpremultiply().cast("uchar")


def _fit(image: pyvips.Image, box_w: int | None, box_h: int | None) -> pyvips.Image:
    """``image`` shrunk to fit inside the box, aspect kept, never enlarged. Usually a no-op:
    the load shrank already, and only a rotated canvas rounded a pixel up is left to trim."""
    if (box_w is None or image.width <= box_w) and (box_h is None or image.height <= box_h):
        return image
    return image.thumbnail_image(box_w or _OPEN_SIDE, height=box_h or _OPEN_SIDE, size="down")


def _round_corners(image: pyvips.Image, radius: int, *, transparent: bool) -> pyvips.Image:
    """Cut the corners of ``image`` to quarter circles of ``radius`` (at most half the shorter
    side), antialiased; outside them, transparent or (``transparent`` false) white."""
    radius = min(radius, image.width // 2, image.height // 2)
    if radius < 1:
        return image
    mask = _corner_mask(image.width, image.height, radius)
    if transparent:
        if image.hasalpha():
            colour, alpha = image[0 : image.bands - 1], image[image.bands - 1]
            return colour.bandjoin((alpha * mask / 255).cast("uchar"))
        return image.bandjoin(mask)
    return image.bandjoin(mask).flatten(background=_WHITE).cast("uchar")


def _corner_mask(width: int, height: int, radius: int) -> pyvips.Image:
    """A one-band mask, 255 inside a rectangle with rounded corners, 0 outside, coverage
    between (so the edge of the curve is antialiased)."""
    # The top-left corner: how far each pixel centre lies inside the circle centred (r, r).
    xy = pyvips.Image.xyz(radius, radius)
    offset = (xy + 0.5 - radius) ** 2
    coverage = radius + 0.5 - (offset[0] + offset[1]) ** 0.5
    corner = (coverage.clamp(min=0, max=1) * 255).cast("uchar")
    mask = (pyvips.Image.black(width, height) + 255).cast("uchar")
    right, bottom = width - radius, height - radius
    mask = mask.insert(corner, 0, 0)
    mask = mask.insert(corner.flip("horizontal"), right, 0)
    mask = mask.insert(corner.flip("vertical"), 0, bottom)
    return mask.insert(corner.rot("d180"), right, bottom)


def _encode(image: pyvips.Image, transform: Transform) -> bytes:
    """Encode once, with every piece of metadata (EXIF, ICC, XMP) left out."""
    quality = transform.quality
    lossy_q = DEFAULT_QUALITY if quality is None else quality
    if transform.format == "jpeg":
        # subsample_mode stays "auto": 4:2:0 chroma below Q 90, full chroma from 90 (thumbor's
        # Pillow subsamples at every quality). Trellis quantisation stays off (libvips'
        # default): 6 % fewer bytes for 3x the encode of a thumbnail and 20x at 12 MP.
        compact = image.width * image.height <= COMPACT_JPEG_MAX_PIXELS
        return image.jpegsave_buffer(
            Q=max(1, lossy_q), optimize_coding=compact, interlace=compact, keep="none"
        )
    if transform.format == "webp":
        return image.webpsave_buffer(Q=lossy_q, keep="none")
    # PNG is lossless, so a quality only means something as a palette: below 100 the image
    # is quantised to at most 256 colours at that quality (libimagequant); 100 or none keeps
    # every colour.
    options: dict[str, object] = {}
    if quality is not None and quality < 100:
        options = {"palette": True, "Q": quality}
    return image.pngsave_buffer(compression=PNG_COMPRESSION, keep="none", **options)


# --- filters ------------------------------------------------------------------------------------
#
# Each filter is a fixed libvips recipe on the colour bands of an 8-bit sRGB image (alpha is
# carried through untouched), modelled on the well-known ImageMagick renditions of the
# Instagram filters of the same names. Linear steps are folded into one ``recomb`` matrix;
# values are clipped to 0..255 once, at the end. Same input, same bytes out.


def _split_alpha(image: pyvips.Image) -> tuple[pyvips.Image, pyvips.Image | None]:
    if image.hasalpha():
        return image[0 : image.bands - 1], image[image.bands - 1]
    return image, None


def _join_alpha(colour: pyvips.Image, alpha: pyvips.Image | None) -> pyvips.Image:
    colour = colour.cast("uchar")  # cast clips to 0..255
    return colour if alpha is None else colour.bandjoin(alpha)


def _saturation(amount: float) -> list[list[float]]:
    """The matrix that scales each pixel's distance from its own grey by ``amount``."""
    return [
        [
            (1 - amount) * weight + (amount if row == column else 0.0)
            for column, weight in enumerate(_LUMA)
        ]
        for row in range(3)
    ]


def _scaled(matrix: list[list[float]], gains: tuple[float, float, float]) -> list[list[float]]:
    """``matrix`` followed by a gain per output band."""
    return [[gain * value for value in row] for gain, row in zip(gains, matrix, strict=True)]


def _radius(width: int, height: int) -> pyvips.Image:
    """Per pixel, the distance from the centre on axes scaled to the image: 0 at the centre,
    1 at each corner (so vignettes keep their look at every size)."""
    xy = pyvips.Image.xyz(width, height)
    centred = xy.linear([2 / max(width - 1, 1), 2 / max(height - 1, 1)], [-1.0, -1.0])
    return (centred * centred).bandmean() ** 0.5


def _contrast(colour: pyvips.Image, amount: float) -> pyvips.Image:
    """Spread values away from mid-grey (128) by ``amount``."""
    return colour.linear(amount, 128 * (1 - amount))


def kelvin(image: pyvips.Image) -> pyvips.Image:
    """Kelvin: a strong warm, orange cast, as under low tungsten light.

    Brightness x1.15, saturation x0.65 (the cast then dominates), multiplied by an orange
    filter (R x1.0, G x0.85, B x0.6). On a photo: mean R up, mean B down, R/B ratio well up.
    """
    colour, alpha = _split_alpha(image)
    matrix = _scaled(_saturation(0.65), (1.15, 1.15 * 0.85, 1.15 * 0.6))
    return _join_alpha(colour.recomb(matrix), alpha)


def gotham(image: pyvips.Image) -> pyvips.Image:
    """Gotham: a cold, dark, almost monochrome look with hard contrast.

    Saturation x0.15 with brightness x1.2, 20% colourised toward indigo (#222b6d), a darkening
    gamma (x^1.4), then contrast x1.25 around mid-grey. On a photo: saturation down sharply,
    B/R ratio up (cooler), mean luminance down.
    """
    colour, alpha = _split_alpha(image)
    toned = colour.recomb(_scaled(_saturation(0.15), (1.2 * 0.8,) * 3))
    toned = toned.linear(1.0, [0.2 * 34, 0.2 * 43, 0.2 * 109])
    toned = (toned.clamp(min=0, max=255) / 255) ** 1.4 * 255
    return _join_alpha(_contrast(toned, 1.25), alpha)


def toaster(image: pyvips.Image) -> pyvips.Image:
    """Toaster: warm and slightly faded, glowing orange in the middle, burnt at the edges.

    Saturation x0.85 with warm gains (R x1.08, G x1.0, B x0.85) and shadows lifted toward red
    (+18 R, +4 G); a centre glow (orange #ff9966 screened in, 35% at the centre fading to
    none at r = 1); a vignette (x(1 - 0.45 r^2), corners at 55%). On a photo: R/B ratio up,
    the centre brighter, the corners darker.
    """
    colour, alpha = _split_alpha(image)
    radius = _radius(colour.width, colour.height)
    warm = colour.recomb(_scaled(_saturation(0.85), (1.08, 1.0, 0.85))).linear(1.0, [18, 4, 0])
    warm = warm.clamp(min=0, max=255)
    glow = (1 - radius).clamp(min=0, max=1) ** 2 * 0.35
    # Screen blend with colour c, weighted: a + w * c * (255 - a) / 255.
    glowing = warm + glow * (255 - warm) * [255 / 255, 153 / 255, 102 / 255]
    vignette = 1 - 0.45 * radius * radius
    return _join_alpha(glowing * vignette, alpha)


def lomo(image: pyvips.Image) -> pyvips.Image:
    """Lomo: the toy-camera cross-processed look — punchy colour, hard contrast, dark corners.

    Saturation x1.35, contrast x1.4 on red and green and x1.2 on blue (the cross-processing
    tilt), then a strong vignette (x(1 - 0.6 r^2), corners at 40%). On a photo: saturation up,
    luminance spread (standard deviation) up, corners darker relative to the centre.
    """
    colour, alpha = _split_alpha(image)
    gains = (1.4, 1.4, 1.2)
    punchy = colour.recomb(_scaled(_saturation(1.35), gains))
    punchy = punchy.linear(1.0, [128 * (1 - gain) for gain in gains])
    vignette = 1 - 0.6 * _radius(colour.width, colour.height) ** 2
    return _join_alpha(punchy.clamp(min=0, max=255) * vignette, alpha)


#: Duotone ends of :func:`colortone`: indigo shadows, cream highlights.
COLORTONE_SHADOW = (34.0, 43.0, 109.0)
COLORTONE_HIGHLIGHT = (247.0, 218.0, 174.0)
COLORTONE_AMOUNT = 0.55


def colortone(image: pyvips.Image) -> pyvips.Image:
    """Colortone: a duotone wash — shadows toned indigo (#222b6d), highlights cream (#f7daae).

    Each pixel's luma picks a colour on the line from the shadow to the highlight tone, and
    the result is 55% that colour, 45% the original. On a photo: dark areas move toward blue
    (B/R up), bright areas toward warm cream (R/B up), and neutral greys gain colour.
    """
    colour, alpha = _split_alpha(image)
    keep = 1 - COLORTONE_AMOUNT
    matrix = [
        [
            (keep if row == column else 0.0) + COLORTONE_AMOUNT * (high - low) / 255 * weight
            for column, weight in enumerate(_LUMA)
        ]
        for row, (low, high) in enumerate(zip(COLORTONE_SHADOW, COLORTONE_HIGHLIGHT, strict=True))
    ]
    toned = colour.recomb(matrix).linear(1.0, [COLORTONE_AMOUNT * low for low in COLORTONE_SHADOW])
    return _join_alpha(toned, alpha)


#: The filter recipes by the names :data:`shared.derivatives.FILTERS` lets clients use.
FILTERS = {
    "toaster": toaster,
    "lomo": lomo,
    "kelvin": kelvin,
    "colortone": colortone,
    "gotham": gotham,
}
