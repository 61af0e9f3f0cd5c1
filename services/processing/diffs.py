"""Pixel diffs of two images as plain computation: two encoded images in, a count of changed
pixels, their bounding box and a diff image out (libvips). No database, store or network here;
:func:`diff_images` is CPU-bound and runs in the service's worker threads (libvips releases the
GIL).

What is compared
    Both images are decoded (first frame of an animation) and normalised to 8-bit sRGB: 16-bit
    values are scaled down, grey is widened to three equal channels, CMYK is converted. Alpha is
    flattened against white, so a pixel is compared as it looks on a white page: two fully
    transparent pixels are equal (both white) whatever colour they carry, and a transparent
    pixel equals an opaque white one. Embedded ICC profiles and EXIF orientation are not applied
    (the stored pixel grids are compared, as pixelmatch and odiff do): a diff tool must not see a
    change where the pixels did not change.

Threshold (:attr:`DiffOptions.threshold`, 0..1; pixelmatch's semantics and default)
    ``0`` is exact: a pixel is changed when any of its three channel values differs at all
    (compared as integers, after the normalisation above), and anti-aliasing detection is off,
    whatever :attr:`DiffOptions.include_anti_aliasing` says — exact means every changed value
    counts. Above 0, the two colours' squared distance in the YIQ space of Kotsarenko & Ramos
    (``0.5053 dY² + 0.299 dI² + 0.1957 dQ²``, the metric pixelmatch uses) must exceed
    ``35215 · threshold²``; 35215 is that metric between black and white, so the threshold is a
    fraction of the largest possible perceived difference (``1`` never reports a change; the
    default ``0.1`` ignores changes below about a tenth of black-to-white, such as a one-unit
    change in one channel).

Anti-aliasing (:attr:`DiffOptions.include_anti_aliasing`, default false)
    When the threshold is above 0 and anti-aliasing is not included, a pixel over the threshold
    is *not* counted when it looks like anti-aliasing in either image, by pixelmatch's test
    (after V. Vyšniauskas, "Anti-aliased pixel and intensity slope detector", 2009): among its
    eight neighbours (a pixel on the canvas edge has fewer and counts the edge as one "equal"
    neighbour) at most two have its brightness (pixelmatch's Y), at least one is brighter and
    one darker, and the brightest or the darkest of them (the first in column-major order on a
    tie) has at least three neighbours of exactly its own colour (the edge again counting as
    one) in *both* images — that is, it lies inside a flat area on both sides, so the pixel
    between is a blended edge. Those pixels are reported in :attr:`PixelDiff.anti_aliased_pixels`
    and drawn yellow.

How it is worked out
    A byte comparison finds the rows, then the pixels, whose values differ at all; only those
    are looked at further, so the cost past decoding follows the size of the change, not of the
    image. Their colour distance is libvips's arithmetic (single precision; numpy repeats it bit
    for bit for a few pixels, where libvips's fixed cost would dominate), the anti-aliasing test
    a neighbourhood gather on the pixels over the threshold (numpy, double precision, as
    pixelmatch).

The diff image
    ``before`` as pixelmatch's faded grey (its brightness blended with white, single
    precision), changed pixels red, anti-aliasing yellow, every canvas pixel outside the overlap
    red. That is at most 29 colours, so it is an indexed PNG (one byte a pixel: a quarter of the
    bytes of RGB, half the compression time) with no metadata; decoders give RGB.

Different sizes
    The images are compared on the union canvas (the wider width by the taller height), both
    anchored at the top-left; every canvas pixel that is not inside both images counts as
    changed, and :attr:`PixelDiff.size_mismatch` is set. Anti-aliasing detection sees the
    overlap's edge as the canvas edge.

Identical bytes
    Are answered from the headers alone (checked like any input, never decoded): 0 changed and
    no diff image (``diff_png == b""``). Different bytes with equal pixels do get a diff image.

Hostile input
    Only the loaders :func:`shared.imaging.refuse_untrusted_loaders` leaves open (PNG, JPEG,
    GIF, WebP) run; each header is held against :attr:`Limits.max_pixels` (width x height x
    frames, :func:`shared.imaging.check_pixels`) before any pixel is decoded (and the union
    canvas, one frame, is too); truncated or corrupt data fails the decode
    (``fail_on=error``). All of it raises :class:`UndiffableImage`, which names the side.
"""

from __future__ import annotations

import math
import struct
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import pyvips

from services.processing.transforms import Limits, UndecodableImage
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

__all__ = ["DiffOptions", "Limits", "PixelDiff", "UndiffableImage", "diff_images"]

#: The largest value of the YIQ metric (black against white): the threshold scales it.
MAX_YIQ_DELTA = 35215.0
#: zlib level of the diff image (an indexed PNG, one byte a pixel): on the bench's 1280x2000
#: screenshot, 6 writes 67 kB in ~12 ms, level 1 151 kB in ~6 ms (RGB at 6 was 273 kB, 26 ms).
DIFF_PNG_COMPRESSION = 6
#: How much of ``before`` shows through the white in the diff image (pixelmatch's ``alpha``).
DIFF_FADE = 0.1

_WHITE = [255.0, 255.0, 255.0]
#: RGB to YIQ (NTSC), pixelmatch's coefficients; rows Y, I, Q.
_YIQ = [
    [0.29889531, 0.58662247, 0.11448223],
    [0.59597799, -0.27417610, -0.32180189],
    [0.21147017, -0.52261711, 0.31114694],
]
_YIQ_WEIGHTS = [[0.5053, 0.299, 0.1957]]
_YIQ_ARRAY, _YIQ_WEIGHTS_ARRAY = np.array(_YIQ), np.array(_YIQ_WEIGHTS[0])
#: The eight neighbours (dx, dy) in pixelmatch's visiting order (x outer, y inner): the order
#: decides which of two equally bright neighbours is "the brightest".
_NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


class UndiffableImage(UndecodableImage):
    """One of the two images cannot be compared: not an image we decode, truncated or corrupt,
    or over the pixel limit. ``details["side"]`` is ``"before"`` or ``"after"`` (or ``"both"``
    when only their union canvas is too large). A fact about the input — retrying cannot help."""


@dataclass(frozen=True)
class DiffOptions:
    """How picky a diff is; see the module's documentation for the exact semantics.

    ``threshold`` in 0..1: 0 counts every changed channel value (exact, no anti-aliasing
    forgiveness); above 0, the YIQ colour distance must exceed ``threshold`` times the largest
    possible (squared: ``35215 · threshold²``), as in pixelmatch. ``include_anti_aliasing``:
    count the pixels that look like anti-aliasing too (pixelmatch's ``includeAA``)."""

    threshold: float = 0.1
    include_anti_aliasing: bool = False

    def __post_init__(self) -> None:
        threshold = self.threshold
        if (
            isinstance(threshold, bool)
            or not isinstance(threshold, int | float)
            or not math.isfinite(threshold)
            or not 0 <= threshold <= 1
        ):
            raise InvalidRequest("The diff threshold must be a number from 0 to 1")
        if not isinstance(self.include_anti_aliasing, bool):
            raise InvalidRequest("include_anti_aliasing must be true or false")


@dataclass(frozen=True)
class PixelDiff:
    """What a diff found.

    ``width`` x ``height`` is the canvas compared (the union of both sizes) and
    ``total_pixels`` its area; ``changed_pixels`` the pixels counted as changed, and ``bbox``
    the smallest rectangle holding them as ``(left, top, width, height)``, ``None`` when there
    are none. ``diff_png`` is an (indexed) PNG of the canvas with no metadata: ``before`` as a
    faded grey, changed pixels red, pixels forgiven as anti-aliasing yellow; empty (``b""``)
    only when the two inputs were the same bytes. ``size_mismatch`` says the two images differ
    in size.
    ``anti_aliased_pixels`` counts the pixels over the threshold forgiven as anti-aliasing
    (never part of ``changed_pixels``)."""

    changed_pixels: int
    total_pixels: int
    width: int
    height: int
    bbox: tuple[int, int, int, int] | None
    diff_png: bytes
    size_mismatch: bool
    anti_aliased_pixels: int = 0


def diff_images(before: bytes, after: bytes, options: DiffOptions, limits: Limits) -> PixelDiff:
    """Compare the images ``before`` and ``after`` pixel by pixel (see the module's
    documentation for every rule). Raises :class:`UndiffableImage` for an input that is not a
    PNG, JPEG, GIF or WebP image, is truncated or corrupt, or is over ``limits``."""
    head_before = _examine(before, "before", limits)
    if before == after:
        width, height = head_before.width, head_before.height
        return PixelDiff(0, width * height, width, height, None, b"", False)
    head_after = _examine(after, "after", limits)
    width = max(head_before.width, head_after.width)
    height = max(head_before.height, head_after.height)
    if width * height > limits.max_pixels:
        raise UndiffableImage(
            f"The images are {head_before.width}x{head_before.height} and"
            f" {head_after.width}x{head_after.height} pixels; the {width}x{height} canvas that"
            f" holds both is over the limit of {limits.max_pixels} pixels",
            side="both",
        )
    pixels_before, pixels_after = _both(lambda: _decode(head_before), lambda: _decode(head_after))
    size_mismatch = pixels_before.shape != pixels_after.shape
    overlap_h = min(pixels_before.shape[0], pixels_after.shape[0])
    overlap_w = min(pixels_before.shape[1], pixels_after.shape[1])
    a = pixels_before[:overlap_h, :overlap_w]
    b = pixels_after[:overlap_h, :overlap_w]

    forgive = options.threshold > 0 and not options.include_anti_aliasing
    # The diff image's grey needs ``before`` alone: libvips works it out on the other core
    # while numpy compares.
    (tally, marks), grey = _both(
        lambda: _classify(a, b, options.threshold, forgive),
        lambda: _faded_grey(pixels_before, overlap_w, overlap_h),
    )
    if size_mismatch:
        tally.add_outside(overlap_w, overlap_h, width, height)
    return PixelDiff(
        changed_pixels=tally.count,
        total_pixels=width * height,
        width=width,
        height=height,
        bbox=tally.bbox(),
        diff_png=_diff_png(grey, marks, width, height),
        size_mismatch=size_mismatch,
        anti_aliased_pixels=tally.anti_aliased,
    )


_First = TypeVar("_First")
_Second = TypeVar("_Second")


def _both(first: Callable[[], _First], second: Callable[[], _Second]) -> tuple[_First, _Second]:
    """``first()`` here and ``second()`` on a helper thread at once (libvips and numpy's big
    loops release the GIL; there are two cores): both results, or the first's exception."""
    outcome: list[_Second | Exception] = []

    def work() -> None:
        try:
            outcome.append(second())
        except Exception as exc:  # handed to the caller's thread below
            outcome.append(exc)

    helper = threading.Thread(target=work, name="diff-helper", daemon=True)
    helper.start()
    try:
        result = first()
    finally:
        helper.join()
    if isinstance(outcome[0], Exception):
        raise outcome[0]
    return result, outcome[0]


# --- decoding -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Input:
    """One side of a diff: its bytes and what its header says (nothing decoded yet)."""

    side: str
    data: bytes
    header: Header

    @property
    def width(self) -> int:
        return self.header.width

    @property
    def height(self) -> int:
        return self.header.height


def _examine(data: bytes, side: str, limits: Limits) -> _Input:
    """Read the header of ``data`` and hold it against ``limits``."""
    try:
        header = read_header(data, subject=f"The {side} file")
        check_pixels(header, limits.max_pixels, subject=f"The {side} image", verb="compared")
    except (UnreadableImage, TooManyPixels) as exc:
        raise UndiffableImage(exc.message, side=side) from exc
    return _Input(side, data, header)


def _decode(source: _Input) -> np.ndarray:
    """The image's pixels, height x width x 3: 8-bit sRGB, alpha flattened on white."""
    try:
        image = pyvips.Image.new_from_buffer(source.data, "", access="sequential", fail_on="error")
        if image.interpretation != "srgb" or image.bands < 3 or image.format != "uchar":
            image = image.colourspace("srgb")
        if image.format != "uchar":
            image = image.cast("uchar")
        if image.hasalpha():
            image = image.flatten(background=_WHITE)
        if image.bands != 3:
            image = image[0:3]
        if image.format != "uchar":
            image = image.cast("uchar")
        # Decoded straight into the array's buffer: one copy of the pixels, shared with the
        # diff image's libvips pipeline later.
        data = image.write_to_memory()
    except pyvips.Error as exc:
        raise UndiffableImage(
            f"The {source.side} {source.header.format_name} image is truncated or corrupt",
            side=source.side,
        ) from exc
    return np.frombuffer(data, dtype=np.uint8).reshape(image.height, image.width, 3)


# --- comparing ----------------------------------------------------------------------------------


#: From this many pixels on, libvips works out the colour distance (on both cores, faster
#: than numpy's dozen passes); below it, numpy does (libvips's fixed cost per call dominates).
_VIPS_DISTANCE_FROM = 1 << 15
#: The width of the image the pixels are laid out in for libvips: rows it shares out.
_VIPS_DISTANCE_WIDTH = 1024


def _over_threshold(first: np.ndarray, second: np.ndarray, threshold: float) -> np.ndarray:
    """Whether the YIQ distance of each pair of pixels (``n`` x 3 arrays) exceeds
    ``35215 · threshold²``: libvips's ``(a - b).recomb(YIQ)``, squared, ``.recomb(weights)``
    over the limit, for many pixels; numpy's rendering of the same operations, bit for bit,
    for few (the tests hold the two together): each recomb sums in double, left to right, and
    rounds to single precision; the square is single; the comparison is in double."""
    limit = MAX_YIQ_DELTA * threshold * threshold
    count = len(first)
    if count >= _VIPS_DISTANCE_FROM:
        width = _VIPS_DISTANCE_WIDTH
        height = -(-count // width)
        a, b = (_vips_rows(side, width, height) for side in (first, second))
        yiq = (a - b).recomb(_YIQ)  # the transform is linear: the difference of the YIQs
        over = (yiq * yiq).recomb(_YIQ_WEIGHTS) > limit
        return np.frombuffer(over.write_to_memory(), dtype=np.uint8)[:count] != 0
    diff = first.astype(np.float64) - second
    red, green, blue = _YIQ_ARRAY.T  # each channel's coefficients for Y, I and Q
    yiq = (diff[:, :1] * red + diff[:, 1:2] * green + diff[:, 2:] * blue).astype(np.float32)
    squared = (yiq * yiq).astype(np.float64)
    weights = _YIQ_WEIGHTS_ARRAY
    delta = squared[:, 0] * weights[0] + squared[:, 1] * weights[1] + squared[:, 2] * weights[2]
    return delta.astype(np.float32).astype(np.float64) > limit


def _vips_rows(pixels: np.ndarray, width: int, height: int) -> pyvips.Image:
    """``pixels`` (``n`` x 3) as a ``width`` x ``height`` image, the end padded with black."""
    padded = np.zeros((height * width, 3), dtype=np.uint8)
    padded[: len(pixels)] = pixels
    return pyvips.Image.new_from_memory(padded, width, height, 3, "uchar")


class _Tally:
    """The changed pixels found so far: how many, and the rectangle that holds them."""

    def __init__(self) -> None:
        self.count = 0
        self.anti_aliased = 0
        self.left = self.top = math.inf
        self.right = self.bottom = -math.inf  # inclusive

    def add(self, ys: np.ndarray, xs: np.ndarray) -> None:
        if len(ys):
            self.count += len(ys)
            self._cover(int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))

    def add_outside(self, inner_w: int, inner_h: int, width: int, height: int) -> None:
        """Count the canvas outside the top-left ``inner_w`` x ``inner_h`` overlap as changed."""
        self.count += width * height - inner_w * inner_h
        if inner_w < width:  # a strip down the right side, full height
            self._cover(inner_w, 0, width - 1, height - 1)
        if inner_h < height:  # a strip along the bottom, full width
            self._cover(0, inner_h, width - 1, height - 1)

    def _cover(self, left: int, top: int, right: int, bottom: int) -> None:
        self.left, self.top = min(self.left, left), min(self.top, top)
        self.right, self.bottom = max(self.right, right), max(self.bottom, bottom)

    def bbox(self) -> tuple[int, int, int, int] | None:
        if not self.count:
            return None
        left, top = int(self.left), int(self.top)
        return left, top, int(self.right) - left + 1, int(self.bottom) - top + 1


#: The overlap is compared a tile of about this many pixels at a time, which bounds the
#: memory the comparison's arrays take whatever the image.
_TILE_PIXELS = 1 << 18


def _classify(
    a: np.ndarray, b: np.ndarray, threshold: float, forgive: bool
) -> tuple[_Tally, np.ndarray]:
    """Tally the pixels where ``a`` and ``b`` (height x width x 3) differ (over ``threshold``
    when it is above 0), less those that look like anti-aliasing when ``forgive``; and the
    marks: :data:`_CHANGED` or :data:`_ANTI_ALIASED` per pixel, else 0.

    Only the pixels whose values differ at all are looked at further: first the rows of a
    tile that differ (a byte comparison), then the pixels in them; the colour distance and
    the anti-aliasing test (a neighbourhood gather) run on those pixels alone, so their cost
    follows the size of the change, not of the image."""
    height, width = a.shape[:2]
    marks = np.zeros((height, width), dtype=np.uint8)
    tally = _Tally()
    tile_w = min(width, _TILE_PIXELS)
    tile_h = max(1, _TILE_PIXELS // tile_w)
    for top in range(0, height, tile_h):
        for left in range(0, width, tile_w):
            tile = np.s_[top : top + tile_h, left : left + tile_w]
            # XOR and max: numpy's fastest "does any byte differ" (several times any()'s speed).
            differs = np.bitwise_xor(a[tile], b[tile])
            rows = np.flatnonzero(differs.reshape(len(differs), -1).max(axis=1))
            if not rows.size:
                continue
            # From here on, the rows that differ: their pixels, flat, and the ones to count
            # (flat indexes: several times faster than numpy's 2-D and boolean indexing).
            changed = differs[rows]
            found = np.flatnonzero(changed[..., 0] | changed[..., 1] | changed[..., 2])
            if threshold > 0:
                first, second = (side[tile][rows].reshape(-1, 3) for side in (a, b))
                over = _over_threshold(
                    first.take(found, axis=0), second.take(found, axis=0), threshold
                )
                found = found[over]
                if not found.size:
                    continue
            band = np.zeros(len(rows) * differs.shape[1], dtype=np.uint8)
            band[found] = _CHANGED
            marks[tile][rows] = band.reshape(len(rows), -1)
            at_row, xs = np.divmod(found, differs.shape[1])
            ys = rows[at_row] + top
            xs += left
            if forgive:
                aa = _anti_aliased_at(a, b, ys, xs)
                if aa.any():
                    marks[ys[aa], xs[aa]] = _ANTI_ALIASED
                    tally.anti_aliased += int(aa.sum())
                    ys, xs = ys[~aa], xs[~aa]
            tally.add(ys, xs)
    return tally, marks


def _anti_aliased_at(a: np.ndarray, b: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Whether each pixel (``ys``, ``xs``) looks like anti-aliasing in ``a`` or in ``b``:
    pixelmatch's test (see the module's documentation), in double precision as pixelmatch.

    Works on the two images' rectangle holding the pixels plus two pixels either side (a
    pixel's neighbours, and theirs), padded by one pixel of values no real pixel has (packed
    colour -1, brightness NaN) to stand for "outside the image"."""
    height, width = a.shape[:2]
    left, top = max(int(xs.min()) - 2, 0), max(int(ys.min()) - 2, 0)
    right, bottom = min(int(xs.max()) + 3, width), min(int(ys.max()) + 3, height)
    stride = right - left + 2
    offsets = np.array([dy * stride + dx for dx, dy in _NEIGHBOURS])
    packed, luma = [], []
    for image in (a, b):
        rgb = image[top:bottom, left:right]
        red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
        colour = (red.astype(np.int32) << 16) | (green.astype(np.int32) << 8) | blue
        packed.append(np.pad(colour, 1, constant_values=-1).ravel())
        brightness = red * _YIQ[0][0] + green * _YIQ[0][1] + blue * _YIQ[0][2]
        luma.append(np.pad(brightness, 1, constant_values=np.nan).ravel())

    def on_edge(at: np.ndarray) -> np.ndarray:
        row, column = np.divmod(at, stride)
        y, x = row - 1 + top, column - 1 + left
        return (x == 0) | (y == 0) | (x == width - 1) | (y == height - 1)

    def flat_in_both(at: np.ndarray) -> np.ndarray:
        """Whether each pixel has 3+ neighbours of its exact colour (the canvas edge counts
        as one) in ``a`` and in ``b``."""
        around = at[None, :] + offsets[:, None]
        edge = on_edge(at)
        flat = None
        for colours in packed:
            many = ((colours[around] == colours[at]).sum(axis=0) + edge) > 2
            flat = many if flat is None else flat & many
        return flat

    centres = (ys - top + 1) * stride + (xs - left + 1)
    result = np.zeros(len(centres), dtype=bool)
    for brightness in luma:
        todo = np.flatnonzero(~result)
        at = centres[todo]
        delta = brightness[at][None, :] - brightness[at[None, :] + offsets[:, None]]
        equal = (delta == 0).sum(axis=0) + on_edge(at)  # NaN (outside) is never equal
        delta = np.nan_to_num(delta, nan=0.0)  # ... nor brighter, nor darker
        brightest, darkest = delta.argmin(axis=0), delta.argmax(axis=0)  # first on a tie
        columns = np.arange(len(at))
        slope = (equal <= 2) & (delta[brightest, columns] < 0) & (delta[darkest, columns] > 0)
        pick = np.flatnonzero(slope)
        if not pick.size:
            continue
        from_brightest = flat_in_both(at[pick] + offsets[brightest[pick]])
        from_darkest = flat_in_both(at[pick] + offsets[darkest[pick]])
        result[todo[pick[from_brightest | from_darkest]]] = True
    return result


# --- the diff image -----------------------------------------------------------------------------

#: The diff image is indexed: it holds at most the faded greys (every value from that of black,
#: _GREY_FLOOR, to 255), red and yellow. Its palette lists them in that order, so a grey's
#: index is ``grey - _GREY_FLOOR`` and the marks' indexes come after every grey's.
_GREY_FLOOR = math.floor(255 * (1 - DIFF_FADE))
_CHANGED = 256 - _GREY_FLOOR
_ANTI_ALIASED = _CHANGED + 1
_PALETTE = bytes(v for grey in range(_GREY_FLOOR, 256) for v in (grey, grey, grey)) + bytes(
    (255, 0, 0, 255, 255, 0)
)


def _faded_grey(before: np.ndarray, width: int, height: int) -> np.ndarray:
    """The top-left ``width`` x ``height`` of ``before`` as pixelmatch's faded grey (its
    brightness blended with white), ``height`` x ``width``, each value _GREY_FLOOR..255."""
    image = pyvips.Image.new_from_memory(before, before.shape[1], before.shape[0], 3, "uchar")
    if (image.width, image.height) != (width, height):
        image = image.crop(0, 0, width, height)
    weights = [[DIFF_FADE * weight for weight in _YIQ[0]]]
    grey = (image.recomb(weights) + 255 * (1 - DIFF_FADE)).cast("uchar")
    return np.frombuffer(grey.write_to_memory(), dtype=np.uint8).reshape(height, width)


def _diff_png(grey: np.ndarray, marks: np.ndarray, width: int, height: int) -> bytes:
    """The ``width`` x ``height`` canvas as a PNG, no metadata: the overlap (the size of
    ``grey`` and ``marks``) its faded ``grey`` with the ``marks`` over it, every pixel outside
    the overlap changed (red)."""
    rows = np.empty((height, width + 1), dtype=np.uint8)
    rows[:, 0] = 0  # each scanline's filter: none (the recommended one for indexed colour)
    if marks.shape != (height, width):
        rows[:, 1:] = _CHANGED
    overlap = rows[: marks.shape[0], 1 : marks.shape[1] + 1]
    np.subtract(grey, _GREY_FLOOR, out=overlap)
    np.maximum(overlap, marks, out=overlap)  # a mark's index is above every grey's
    header = struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0)  # 8-bit indexed
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            _png_chunk(b"IHDR", header),
            _png_chunk(b"PLTE", _PALETTE),
            _png_chunk(b"IDAT", _deflate(memoryview(rows.reshape(-1)))),
            _png_chunk(b"IEND", b""),
        )
    )


#: From this many bytes on, the diff image is compressed in two halves at once (below, a
#: thread's start costs about what it saves).
_SPLIT_DEFLATE_FROM = 1 << 19
#: How far back deflate may refer: the second half's dictionary.
_DEFLATE_WINDOW = 1 << 15


def _deflate(data: memoryview) -> bytes:
    """``data`` as a zlib stream at :data:`DIFF_PNG_COMPRESSION`, compressed in two halves at
    once (one a core) and joined as pigz joins them: the first half's raw deflate ends on a
    byte boundary (a sync flush, not final), the second's starts with the first's last 32 kB
    as its dictionary, so it compresses as well as one stream would."""
    if len(data) < _SPLIT_DEFLATE_FROM:
        return zlib.compress(data, DIFF_PNG_COMPRESSION)
    half = len(data) // 2

    def first() -> bytes:
        compressor = zlib.compressobj(DIFF_PNG_COMPRESSION, zlib.DEFLATED, -15)
        return compressor.compress(data[:half]) + compressor.flush(zlib.Z_SYNC_FLUSH)

    def second() -> bytes:
        window = data[half - _DEFLATE_WINDOW : half]
        compressor = zlib.compressobj(DIFF_PNG_COMPRESSION, zlib.DEFLATED, -15, zdict=window)
        return compressor.compress(data[half:]) + compressor.flush()

    head, tail = _both(first, second)
    # zlib's header (deflate, 32 kB window, default level) and the checksum of all the data.
    return b"\x78\x9c" + head + tail + struct.pack(">I", zlib.adler32(data))


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(body, zlib.crc32(kind))
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)
