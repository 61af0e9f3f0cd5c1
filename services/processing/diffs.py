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
    and drawn yellow. The colour distance is worked out by libvips over the whole canvas (single
    precision); the anti-aliasing test, a neighbourhood gather, only on the pixels over the
    threshold (numpy, double precision, as pixelmatch), so its cost follows the size of the
    change, not of the image.

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
import threading
from dataclasses import dataclass

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
#: zlib level of the diff image: on a 1280x2000 screenshot, 6 writes 40 % of level 1's bytes
#: for ~3 ms more.
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
    are none. ``diff_png`` is a PNG of the canvas with no metadata: ``before`` as a faded grey,
    changed pixels red, pixels forgiven as anti-aliasing yellow; empty (``b""``) only when the
    two inputs were the same bytes. ``size_mismatch`` says the two images differ in size.
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
    image_before, image_after = _decode_both(head_before, head_after)
    size_mismatch = (image_before.width, image_before.height) != (
        image_after.width,
        image_after.height,
    )
    overlap_w = min(image_before.width, image_after.width)
    overlap_h = min(image_before.height, image_after.height)
    a = image_before.crop(0, 0, overlap_w, overlap_h) if size_mismatch else image_before
    b = image_after.crop(0, 0, overlap_w, overlap_h) if size_mismatch else image_after

    if options.threshold == 0:
        candidates = (a != b).bandor()
    else:
        # The colour distance is only worked out where some value changed at all.
        candidates = (a != b).bandor().ifthenelse(_over_threshold(a, b, options.threshold), 0)
    candidates = candidates.copy_memory()
    forgive = options.threshold > 0 and not options.include_anti_aliasing
    tally, anti_aliased = _classify(a, b, candidates, forgive)
    changed = candidates if anti_aliased is None else candidates ^ anti_aliased
    if size_mismatch:
        changed = changed.embed(0, 0, width, height, extend="background", background=[255])
        if anti_aliased is not None:
            anti_aliased = anti_aliased.embed(0, 0, width, height, extend="background")
        tally.add_outside(overlap_w, overlap_h, width, height)
    return PixelDiff(
        changed_pixels=tally.count,
        total_pixels=width * height,
        width=width,
        height=height,
        bbox=tally.bbox(),
        diff_png=_diff_image(image_before, changed, anti_aliased, width, height),
        size_mismatch=size_mismatch,
        anti_aliased_pixels=tally.anti_aliased,
    )


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


def _decode_both(first: _Input, second: _Input) -> tuple[pyvips.Image, pyvips.Image]:
    """Decode both images into memory at once (a PNG decodes on one core; there are two)."""
    outcome: list[pyvips.Image | Exception] = []

    def work() -> None:
        try:
            outcome.append(_decode(second))
        except Exception as exc:  # handed to the caller's thread below
            outcome.append(exc)

    helper = threading.Thread(target=work, name="diff-decode", daemon=True)
    helper.start()
    try:
        decoded_first = _decode(first)
    finally:
        helper.join()
    if isinstance(outcome[0], Exception):
        raise outcome[0]
    return decoded_first, outcome[0]


def _decode(source: _Input) -> pyvips.Image:
    """The image decoded into memory, 8-bit sRGB, three bands, alpha flattened on white."""
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
        return image.copy_memory()
    except pyvips.Error as exc:
        raise UndiffableImage(
            f"The {source.side} {source.header.format_name} image is truncated or corrupt",
            side=source.side,
        ) from exc


# --- comparing ----------------------------------------------------------------------------------


def _over_threshold(a: pyvips.Image, b: pyvips.Image, threshold: float) -> pyvips.Image:
    """255 where the YIQ distance of ``a`` and ``b`` exceeds ``35215 · threshold²``."""
    yiq = (a - b).recomb(_YIQ)  # the transform is linear: the difference of the YIQs
    delta = (yiq * yiq).recomb(_YIQ_WEIGHTS)
    return delta > MAX_YIQ_DELTA * threshold * threshold


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


#: Candidates are read and tested a tile of about this many pixels at a time, which bounds
#: the memory the test's arrays take whatever the image.
_TILE_PIXELS = 1 << 18


def _classify(
    a: pyvips.Image, b: pyvips.Image, candidates: pyvips.Image, forgive: bool
) -> tuple[_Tally, pyvips.Image | None]:
    """Tally the ``candidates`` (a 0/255 mask over ``a`` and ``b``), less those that look like
    anti-aliasing when ``forgive``; and a 0/255 mask of those, ``None`` when there are none.

    libvips finds the candidates over the whole canvas; the anti-aliasing test needs every
    candidate's neighbourhood, which is a gather, not a stream: numpy does it on the
    candidates alone (with a margin of two pixels), tile by tile."""
    width, height = candidates.width, candidates.height
    mask = np.frombuffer(candidates.write_to_memory(), dtype=np.uint8).reshape(height, width)
    tally = _Tally()
    forgiven: np.ndarray | None = None
    tile_w = min(width, _TILE_PIXELS)
    tile_h = max(1, _TILE_PIXELS // tile_w)
    for top in range(0, height, tile_h):
        for left in range(0, width, tile_w):
            tile = mask[top : top + tile_h, left : left + tile_w]
            found = np.flatnonzero(tile)
            if not found.size:
                continue
            ys, xs = np.divmod(found, tile.shape[1])
            ys += top
            xs += left
            if forgive:
                aa = _anti_aliased_at(a, b, ys, xs)
                if aa.any():
                    if forgiven is None:
                        forgiven = np.zeros((height, width), dtype=np.uint8)
                    forgiven[ys[aa], xs[aa]] = 255
                    tally.anti_aliased += int(aa.sum())
                    ys, xs = ys[~aa], xs[~aa]
            tally.add(ys, xs)
    if forgiven is None:
        return tally, None
    return tally, pyvips.Image.new_from_memory(forgiven, width, height, 1, "uchar")


def _anti_aliased_at(
    a: pyvips.Image, b: pyvips.Image, ys: np.ndarray, xs: np.ndarray
) -> np.ndarray:
    """Whether each pixel (``ys``, ``xs``) looks like anti-aliasing in ``a`` or in ``b``:
    pixelmatch's test (see the module's documentation), in double precision as pixelmatch.

    Works on the two images' rectangle holding the pixels plus two pixels either side (a
    pixel's neighbours, and theirs), padded by one pixel of values no real pixel has (packed
    colour -1, brightness NaN) to stand for "outside the image"."""
    width, height = a.width, a.height
    left, top = max(int(xs.min()) - 2, 0), max(int(ys.min()) - 2, 0)
    right, bottom = min(int(xs.max()) + 3, width), min(int(ys.max()) + 3, height)
    stride = right - left + 2
    offsets = np.array([dy * stride + dx for dx, dy in _NEIGHBOURS])
    packed, luma = [], []
    for image in (a, b):
        region = image.crop(left, top, right - left, bottom - top).write_to_memory()
        rgb = np.frombuffer(region, dtype=np.uint8).reshape(bottom - top, right - left, 3)
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


def _diff_image(
    before: pyvips.Image,
    changed: pyvips.Image,
    anti_aliased: pyvips.Image | None,
    width: int,
    height: int,
) -> bytes:
    """``before`` as a faded grey on the canvas (white where it has no pixels), changed pixels
    red, anti-aliasing yellow: PNG, no metadata. The colours are set with bitwise operations
    on the 0/255 masks (a grey OR 255 is 255, AND 0 is 0), far cheaper than choosing pixels."""
    weights = [[DIFF_FADE * weight for weight in _YIQ[0]]]
    grey = (before.recomb(weights) + 255 * (1 - DIFF_FADE)).cast("uchar")
    if (before.width, before.height) != (width, height):
        grey = grey.embed(0, 0, width, height, extend="background", background=[255])
    keep = changed ^ 255
    if anti_aliased is None:
        red, green, blue = grey | changed, grey & keep, grey & keep
    else:
        marked = changed | anti_aliased
        red, green, blue = grey | marked, (grey | anti_aliased) & keep, grey & (marked ^ 255)
    canvas = red.bandjoin([green, blue]).copy(interpretation="srgb")
    return canvas.pngsave_buffer(compression=DIFF_PNG_COMPRESSION, keep="none")
