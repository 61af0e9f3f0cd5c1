"""Processing's pixel diffs on real libvips: what is counted, where, and what the diff image
shows, checked on the decoded diff image's pixels. Inputs are generated with pyvips here; a
straight port of pixelmatch's per-pixel loop is the reference for the threshold and the
anti-aliasing test."""

from __future__ import annotations

import math
import struct
import zlib

import numpy as np
import pytest
import pyvips

from services.processing.diffs import DiffOptions, Limits, PixelDiff, UndiffableImage, diff_images
from shared.errors import InvalidRequest
from tests.images_support import heading, ink, png, solid

LIMITS = Limits(max_pixels=100_000_000)
EXACT = DiffOptions(threshold=0)
RED, YELLOW = (255, 0, 0), (255, 255, 0)
#: Where the screenshots differ: a 10x10 badge in an empty part of a card.
BADGE = (700, 905, 10, 10)


# --- inputs -------------------------------------------------------------------------------------


def screenshot(badge: bool = False) -> pyvips.Image:
    """A 1280x2000 page: a header bar, twelve cards with an icon, a bordered frame and a line
    of anti-aliased text each; with ``badge``, a 10x10 magenta badge at :data:`BADGE`."""
    page = solid(1280, 2000, [250, 250, 252]).draw_rect([40, 60, 120], 0, 0, 1280, 64, fill=True)
    title = pyvips.Image.text("Darkroom", font="sans bold 20", dpi=96)
    page = ink(page, title, 24, 20, [255, 255, 255])
    for i in range(12):
        top = 100 + i * 150
        page = page.draw_rect([255, 255, 255], 40, top, 1200, 130, fill=True)
        page = page.draw_rect([210, 214, 220], 40, top, 1200, 130, fill=False)
        page = page.draw_rect([70 + i * 10, 130, 200], 60, top + 20, 90, 90, fill=True)
        line = f"Card {i}: the quick brown fox jumps over the lazy dog, {i * 37} times"
        page = ink(page, pyvips.Image.text(line, font="sans 18", dpi=96), 170, top + 30, [20] * 3)
    if badge:
        x, y, width, height = BADGE
        page = page.draw_rect([230, 0, 140], x, y, width, height, fill=True)
    return page


def pixels(data: bytes) -> np.ndarray:
    """A PNG's pixels, height x width x bands."""
    image = pyvips.Image.new_from_buffer(data, "")
    array = np.frombuffer(image.write_to_memory(), dtype=np.uint8)
    return array.reshape(image.height, image.width, image.bands)


def painted(diff: PixelDiff, colour: tuple[int, int, int]) -> set[tuple[int, int]]:
    """The (x, y) of the diff image's pixels of exactly ``colour``."""
    rgb = pixels(diff.diff_png)
    assert rgb.shape == (diff.height, diff.width, 3)
    ys, xs = np.nonzero((rgb == colour).all(axis=2))
    return set(zip(xs.tolist(), ys.tolist(), strict=True))


def rectangle(x: int, y: int, width: int, height: int) -> set[tuple[int, int]]:
    return {(x + i, y + j) for i in range(width) for j in range(height)}


def changed_bytes(before: bytes, after: bytes) -> int:
    """How many pixels differ in any channel value, counted independently of the module."""
    return int((pixels(before) != pixels(after)).any(axis=2).sum())


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` and whose pixel data is empty."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def screenshots() -> tuple[bytes, bytes]:
    return png(screenshot()), png(screenshot(badge=True))


# --- what is found ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options", [DiffOptions(), EXACT, DiffOptions(include_anti_aliasing=True)], ids=str
)
def test_screenshots_differing_in_a_10x10_region_give_exactly_that_region(
    screenshots: tuple[bytes, bytes], options: DiffOptions
) -> None:
    before, after = screenshots
    diff = diff_images(before, after, options, LIMITS)
    assert diff.changed_pixels == 100
    assert diff.anti_aliased_pixels == 0
    assert diff.bbox == BADGE
    assert (diff.width, diff.height, diff.total_pixels) == (1280, 2000, 1280 * 2000)
    assert not diff.size_mismatch
    assert painted(diff, RED) == rectangle(*BADGE)
    assert painted(diff, YELLOW) == set()


def test_the_diff_image_is_before_faded_to_grey_with_no_metadata(
    screenshots: tuple[bytes, bytes],
) -> None:
    before, after = screenshots
    diff = diff_images(before, after, DiffOptions(), LIMITS)
    # A strict decoder takes it whole (chunk CRCs, the zlib stream and its checksum).
    image = pyvips.Image.new_from_buffer(diff.diff_png, "", fail_on="warning")
    assert len(image.write_to_memory()) == 1280 * 2000 * 3
    assert image.get("vips-loader") == "pngload_buffer"
    assert (image.width, image.height, image.bands) == (1280, 2000, 3)
    assert not [f for f in image.get_fields() if f in ("exif-data", "xmp-data", "icc-profile-data")]
    rgb = pixels(diff.diff_png).astype(int)
    outside = np.ones((2000, 1280), dtype=bool)
    x, y, width, height = BADGE
    outside[y : y + height, x : x + width] = False
    grey = rgb[outside]
    assert (grey[:, 0] == grey[:, 1]).all() and (grey[:, 1] == grey[:, 2]).all()
    assert grey.min() >= 229  # 10 % of the original over white
    # The dark header bar and the text still show, faintly.
    assert rgb[30, 600, 0] < 240 < rgb[80, 600, 0]


def test_anti_aliased_text_jitter_is_not_a_diff_unless_asked_for() -> None:
    before, after = heading(0), heading(1)  # the same heading, a quarter pixel apart
    jitter = changed_bytes(before, after)
    assert jitter > 300

    forgiving = diff_images(before, after, DiffOptions(), LIMITS)
    assert forgiving.changed_pixels == 0
    assert forgiving.bbox is None
    assert forgiving.anti_aliased_pixels > 300
    assert painted(forgiving, RED) == set()
    assert len(painted(forgiving, YELLOW)) == forgiving.anti_aliased_pixels

    strict = diff_images(before, after, DiffOptions(include_anti_aliasing=True), LIMITS)
    assert strict.changed_pixels == forgiving.anti_aliased_pixels
    assert strict.anti_aliased_pixels == 0
    assert painted(strict, RED) == painted(forgiving, YELLOW)

    # Threshold 0 is exact: every pixel with any changed value, anti-aliasing or not.
    exact = diff_images(before, after, EXACT, LIMITS)
    assert exact.changed_pixels == jitter > strict.changed_pixels
    assert exact.anti_aliased_pixels == 0


def test_a_one_unit_change_in_one_channel_is_found_only_by_an_exact_diff() -> None:
    image = solid(64, 48, [120, 130, 140]).draw_rect([10, 20, 30], 8, 8, 20, 10, fill=True)
    before = png(image)
    after = png(image.draw_rect([120, 130, 141], 40, 30, 1, 1, fill=True))
    exact = diff_images(before, after, EXACT, LIMITS)
    assert (exact.changed_pixels, exact.bbox) == (1, (40, 30, 1, 1))
    assert painted(exact, RED) == {(40, 30)}
    default = diff_images(before, after, DiffOptions(), LIMITS)
    assert (default.changed_pixels, default.bbox) == (0, None)
    assert painted(default, RED) == set()
    # A small threshold still forgives one unit; a large step in the same pixel is found.
    assert diff_images(before, after, DiffOptions(threshold=0.01), LIMITS).changed_pixels == 0
    bold = png(image.draw_rect([120, 130, 240], 40, 30, 1, 1, fill=True))
    assert diff_images(before, bold, DiffOptions(), LIMITS).changed_pixels == 1


def test_identical_bytes_are_answered_without_decoding(screenshots: tuple[bytes, bytes]) -> None:
    before, _ = screenshots
    diff = diff_images(before, before, DiffOptions(), LIMITS)
    assert diff == PixelDiff(0, 1280 * 2000, 1280, 2000, None, b"", False)
    # A truncated file decodes to an error, so this only passes if nothing was decoded.
    truncated = before[: len(before) // 2]
    assert diff_images(truncated, truncated, EXACT, LIMITS).changed_pixels == 0


def test_equal_pixels_in_different_bytes_are_no_diff_and_still_get_an_image() -> None:
    image = screenshot().crop(0, 0, 400, 300)
    before, after = png(image, compression=1), png(image, compression=9, interlace=True)
    assert before != after
    diff = diff_images(before, after, EXACT, LIMITS)
    assert (diff.changed_pixels, diff.bbox, diff.size_mismatch) == (0, None, False)
    assert painted(diff, RED) == set()
    assert pixels(diff.diff_png).shape == (300, 400, 3)


def test_a_wider_image_counts_the_extra_columns_as_changed() -> None:
    before = png(solid(100, 80, [200, 210, 220]))
    after = png(solid(120, 80, [200, 210, 220]))
    diff = diff_images(before, after, DiffOptions(), LIMITS)
    assert diff.size_mismatch
    assert (diff.width, diff.height, diff.total_pixels) == (120, 80, 9600)
    assert (diff.changed_pixels, diff.bbox) == (20 * 80, (100, 0, 20, 80))
    assert painted(diff, RED) == rectangle(100, 0, 20, 80)
    # The other way round, the same canvas and the same count.
    reverse = diff_images(after, before, DiffOptions(), LIMITS)
    assert (reverse.width, reverse.changed_pixels, reverse.bbox) == (120, 1600, (100, 0, 20, 80))


def test_sizes_differing_both_ways_compare_on_the_union_canvas() -> None:
    image = screenshot().crop(0, 0, 300, 260)
    before = png(image.crop(0, 0, 300, 200))
    after = png(image.crop(0, 0, 260, 260).draw_rect([255, 0, 255], 10, 100, 5, 5, fill=True))
    diff = diff_images(before, after, DiffOptions(), LIMITS)
    outside = 300 * 260 - 260 * 200
    assert diff.size_mismatch
    assert (diff.width, diff.height) == (300, 260)
    assert diff.changed_pixels == outside + 25
    assert diff.bbox == (0, 0, 300, 260)
    expected = rectangle(10, 100, 5, 5) | rectangle(260, 0, 40, 260) | rectangle(0, 200, 300, 60)
    assert painted(diff, RED) == expected


# --- the same answers as pixelmatch -------------------------------------------------------------


def _luma(c: tuple[int, ...]) -> float:
    return c[0] * 0.29889531 + c[1] * 0.58662247 + c[2] * 0.11448223


def _yiq_delta(c1: tuple[int, ...], c2: tuple[int, ...]) -> float:
    if c1 == c2:
        return 0.0
    i1 = c1[0] * 0.59597799 - c1[1] * 0.27417610 - c1[2] * 0.32180189
    i2 = c2[0] * 0.59597799 - c2[1] * 0.27417610 - c2[2] * 0.32180189
    q1 = c1[0] * 0.21147017 - c1[1] * 0.52261711 + c1[2] * 0.31114694
    q2 = c2[0] * 0.21147017 - c2[1] * 0.52261711 + c2[2] * 0.31114694
    y = _luma(c1) - _luma(c2)
    return 0.5053 * y * y + 0.299 * (i1 - i2) ** 2 + 0.1957 * (q1 - q2) ** 2


def _around(x: int, y: int, width: int, height: int) -> tuple[list[tuple[int, int]], int]:
    """Pixelmatch's neighbours of (x, y), x outer and y inner, and its edge count."""
    x0, y0, x2, y2 = max(x - 1, 0), max(y - 1, 0), min(x + 1, width - 1), min(y + 1, height - 1)
    edge = 1 if x in (x0, x2) or y in (y0, y2) else 0
    cells = [(i, j) for i in range(x0, x2 + 1) for j in range(y0, y2 + 1) if (i, j) != (x, y)]
    return cells, edge


def _many_siblings(img: np.ndarray, x: int, y: int) -> bool:
    height, width = img.shape[:2]
    cells, zeroes = _around(x, y, width, height)
    return zeroes + sum(tuple(img[j, i]) == tuple(img[y, x]) for i, j in cells) > 2


def _antialiased(img: np.ndarray, x: int, y: int, other: np.ndarray) -> bool:
    height, width = img.shape[:2]
    cells, zeroes = _around(x, y, width, height)
    low = high = 0.0
    low_at = high_at = (0, 0)
    centre = tuple(int(v) for v in img[y, x])
    for i, j in cells:
        neighbour = tuple(int(v) for v in img[j, i])
        delta = 0.0 if centre == neighbour else _luma(centre) - _luma(neighbour)
        if delta == 0:
            zeroes += 1
            if zeroes > 2:
                return False
        elif delta < low:
            low, low_at = delta, (i, j)
        elif delta > high:
            high, high_at = delta, (i, j)
    if low == 0 or high == 0:
        return False
    return any(_many_siblings(img, *at) and _many_siblings(other, *at) for at in (low_at, high_at))


def pixelmatch(before: bytes, after: bytes, threshold: float) -> tuple[set, set]:
    """pixelmatch's loop (opaque RGB): the (x, y) it counts and those it calls anti-aliased."""
    a, b = pixels(before).astype(int), pixels(after).astype(int)
    limit = 35215 * threshold * threshold
    counted, forgiven = set(), set()
    ys, xs = np.nonzero((a != b).any(axis=2))
    for x, y in zip(xs.tolist(), ys.tolist(), strict=True):
        if _yiq_delta(tuple(a[y, x]), tuple(b[y, x])) <= limit:
            continue
        if _antialiased(a, x, y, b) or _antialiased(b, x, y, a):
            forgiven.add((x, y))
        else:
            counted.add((x, y))
    return counted, forgiven


def diffed_as_pixelmatch(before: bytes, after: bytes, threshold: float) -> tuple[PixelDiff, set]:
    """The diff of the pair, checked pixel by pixel against the pixelmatch reference: the same
    pixels counted (red) and forgiven as anti-aliasing (yellow). Returns the diff and the
    pixels pixelmatch counted."""
    counted, forgiven = pixelmatch(before, after, threshold)
    assert counted and forgiven
    diff = diff_images(before, after, DiffOptions(threshold=threshold), LIMITS)
    assert painted(diff, RED) == counted
    assert painted(diff, YELLOW) == forgiven
    assert (diff.changed_pixels, diff.anti_aliased_pixels) == (len(counted), len(forgiven))
    return diff, counted


@pytest.mark.parametrize(
    ("text", "font", "quarters", "crop"),
    [
        ("Sign in to continue", "sans 16", 1, False),
        ("Visual review", "serif 20", 2, False),
        ("HELLO world", "sans bold 14", 2, True),  # glyphs cut by the canvas edges
    ],
)
@pytest.mark.parametrize("threshold", [0.05, 0.1])
def test_counted_and_forgiven_pixels_are_pixelmatchs(
    text: str, font: str, quarters: int, crop: bool, threshold: float
) -> None:
    before, after = heading(0, text, font), heading(quarters, text, font)
    if crop:
        before, after = (
            png(pyvips.Image.new_from_buffer(d, "").crop(22, 22, 90, 12)) for d in (before, after)
        )
    diffed_as_pixelmatch(before, after, threshold)


def from_array(rgb: np.ndarray) -> pyvips.Image:
    height, width = rgb.shape[:2]
    image = pyvips.Image.new_from_memory(np.ascontiguousarray(rgb), width, height, 3, "uchar")
    return image.copy(interpretation="srgb")


def blocky(seed: int, width: int = 48, height: int = 36) -> tuple[bytes, bytes]:
    """A picture of flat blocks in a few colours with blended (anti-aliased) edges, and the
    same with some blocks recoloured, some rows shifted by a pixel and some pixels nudged."""
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, (4, 3))
    blocks = palette[rng.integers(0, 4, (height // 4 + 1, width // 4 + 1))]
    sharp = np.repeat(np.repeat(blocks, 4, axis=0), 4, axis=1)[:height, :width]
    soft = sharp.copy()
    soft[1:-1, 1:-1] = (sharp[:-2, 1:-1] + sharp[2:, 1:-1] + 2 * sharp[1:-1, 1:-1]) // 4
    changed = soft.copy()
    for _ in range(3):
        y, x = rng.integers(0, height - 4), rng.integers(0, width - 4)
        changed[y : y + 4, x : x + 4] = palette[rng.integers(0, 4)]
    rows = rng.integers(0, height, 4)
    changed[rows] = np.roll(changed[rows], 1, axis=1)
    changed = np.clip(
        changed
        + rng.integers(-3, 4, changed.shape) * (rng.random(changed.shape[:2]) < 0.05)[..., None],
        0,
        255,
    )
    return png(from_array(soft.astype(np.uint8))), png(from_array(changed.astype(np.uint8)))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("threshold", [0.05, 0.1, 0.3])
def test_random_blocky_pictures_are_counted_and_forgiven_as_pixelmatch(
    seed: int, threshold: float
) -> None:
    before, after = blocky(seed)
    diff, counted = diffed_as_pixelmatch(before, after, threshold)
    if counted:
        xs, ys = zip(*counted, strict=True)
        box = (min(xs), min(ys), max(xs) - min(xs) + 1, max(ys) - min(ys) + 1)
        assert diff.bbox == box


@pytest.mark.parametrize("side", [40, 300], ids=["few-changed", "many-changed"])
def test_the_colour_distance_is_libvips_single_precision_arithmetic_to_the_bit(side: int) -> None:
    """Random colour pairs (every kind of channel difference) at thresholds on the very edge of
    some pairs' distances: exactly the pixels libvips's arithmetic puts over the limit are
    counted (worked out here over the whole image), whether the diff works few changed pixels
    out with numpy or many with libvips."""
    rng = np.random.default_rng(side)
    first = from_array(rng.integers(0, 256, (side, side, 3), dtype=np.uint8))
    second = from_array(rng.integers(0, 256, (side, side, 3), dtype=np.uint8))
    yiq = (first - second).recomb(
        [
            [0.29889531, 0.58662247, 0.11448223],
            [0.59597799, -0.27417610, -0.32180189],
            [0.21147017, -0.52261711, 0.31114694],
        ]
    )
    delta = (yiq * yiq).recomb([[0.5053, 0.299, 0.1957]])
    values = np.frombuffer(delta.write_to_memory(), dtype=np.float32)
    for value in rng.choice(values, 10):
        threshold = math.sqrt(float(value) / 35215)  # the limit lands on or next to ``value``
        over = delta > 35215 * threshold * threshold
        expected = np.frombuffer(over.write_to_memory(), dtype=np.uint8).reshape(side, side)
        options = DiffOptions(threshold=threshold, include_anti_aliasing=True)
        diff = diff_images(png(first), png(second), options, LIMITS)
        ys, xs = np.nonzero(expected)
        assert diff.changed_pixels == len(ys)
        assert painted(diff, RED) == set(zip(xs.tolist(), ys.tolist(), strict=True))


def test_unchanged_pixels_are_drawn_in_pixelmatchs_faded_grey_in_single_precision() -> None:
    rgb = np.random.default_rng(5).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    # Colours on the edge between two greys, where double precision gives one less.
    rgb[0, :4] = [(0, 30, 152), (27, 80, 0), (102, 9, 168), (237, 114, 151)]
    changed = rgb.copy()
    changed[10, 20] = 255 - changed[10, 20]
    diff = diff_images(png(from_array(rgb)), png(from_array(changed)), EXACT, LIMITS)
    assert diff.changed_pixels == 1
    # 255 + (Y - 255) * 0.1, as libvips works it: the weighted sum in double, rounded to
    # single, plus 229.5 in single, truncated.
    weights = [0.1 * w for w in (0.29889531, 0.58662247, 0.11448223)]
    red, green, blue = (rgb[..., band].astype(np.float64) for band in range(3))
    brightness = (red * weights[0] + green * weights[1] + blue * weights[2]).astype(np.float32)
    grey = (brightness + np.float32(229.5)).astype(np.uint8)
    drawn = pixels(diff.diff_png)
    assert (drawn[10, 20] == RED).all()
    drawn[10, 20] = grey[10, 20]
    assert np.array_equal(drawn, np.repeat(grey[..., None], 3, axis=2))


# --- normalisation ------------------------------------------------------------------------------


def gradient(width: int = 64, height: int = 48) -> pyvips.Image:
    xy = pyvips.Image.xyz(width, height)
    red, green = (xy[0] * 4).cast("uchar"), (xy[1] * 5).cast("uchar")
    return red.bandjoin([green, (red ^ 255)]).copy(interpretation="srgb")


def test_16_bit_and_grey_images_compare_as_their_8_bit_srgb_values() -> None:
    image = gradient()
    wide = (image.cast("ushort") * 257).cast("ushort").copy(interpretation="rgb16")
    assert diff_images(png(image), png(wide), EXACT, LIMITS).changed_pixels == 0
    grey = image[1].copy(interpretation="b-w")
    as_rgb = grey.bandjoin([grey, grey]).copy(interpretation="srgb")
    assert diff_images(png(grey), png(as_rgb), EXACT, LIMITS).changed_pixels == 0
    grey16 = (grey.cast("ushort") * 257).cast("ushort").copy(interpretation="grey16")
    assert diff_images(png(grey16), png(as_rgb), EXACT, LIMITS).changed_pixels == 0


def test_alpha_is_flattened_against_white() -> None:
    image = gradient()
    white = solid(64, 48, [255, 255, 255])
    transparent = image.bandjoin(0).copy(interpretation="srgb")
    assert diff_images(png(transparent), png(white), EXACT, LIMITS).changed_pixels == 0
    # Half covered: the colour blended half way to white, to the unit.
    half = (
        image.bandjoin(255)
        .copy(interpretation="srgb")
        .draw_rect([0, 0, 0, 128], 0, 0, 8, 8, fill=True)
    )
    blended = image.draw_rect([127, 127, 127], 0, 0, 8, 8, fill=True)
    assert diff_images(png(half), png(blended), EXACT, LIMITS).changed_pixels == 0
    assert (
        diff_images(
            png(image.bandjoin(255).copy(interpretation="srgb")), png(image), EXACT, LIMITS
        ).changed_pixels
        == 0
    )


def test_a_cmyk_jpeg_is_compared_in_srgb() -> None:
    cmyk = gradient().colourspace("cmyk").jpegsave_buffer(Q=95)
    decoded = pyvips.Image.new_from_buffer(cmyk, "").colourspace("srgb")
    assert diff_images(cmyk, png(decoded), EXACT, LIMITS).changed_pixels == 0


# --- bad input ----------------------------------------------------------------------------------


def test_a_truncated_png_is_refused_and_names_its_side(screenshots: tuple[bytes, bytes]) -> None:
    before, after = screenshots
    with pytest.raises(UndiffableImage) as caught:
        diff_images(before, after[: len(after) // 2], DiffOptions(), LIMITS)
    assert isinstance(caught.value, InvalidRequest)
    assert caught.value.details == {"side": "after"}


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"this is not an image",
        b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
        b"P6\n4 4\n255\n" + bytes(48),  # a PPM: libvips reads it, but not for us
    ],
    ids=["empty", "text", "svg", "ppm"],
)
def test_what_is_not_a_web_image_is_refused(data: bytes) -> None:
    with pytest.raises(UndiffableImage) as caught:
        diff_images(data, png(gradient()), DiffOptions(), LIMITS)
    assert caught.value.details == {"side": "before"}
    assert caught.value.status == 422


def test_a_header_over_the_pixel_limit_is_refused_before_decoding() -> None:
    huge = png_header_only(20_000, 20_000)
    with pytest.raises(UndiffableImage, match="20000x20000") as caught:
        diff_images(png(gradient()), huge, DiffOptions(), LIMITS)
    assert caught.value.details == {"side": "after"}


def test_a_union_canvas_over_the_pixel_limit_is_refused() -> None:
    wide, tall = png(solid(100, 10, [0, 0, 0])), png(solid(10, 100, [0, 0, 0]))
    with pytest.raises(UndiffableImage) as caught:
        diff_images(wide, tall, DiffOptions(), Limits(max_pixels=1000))
    assert caught.value.details == {"side": "both"}


@pytest.mark.parametrize("threshold", [-0.1, 1.5, float("nan"), "0.1", True])
def test_a_threshold_outside_0_to_1_is_invalid(threshold: object) -> None:
    with pytest.raises(InvalidRequest):
        DiffOptions(threshold=threshold)  # type: ignore[arg-type]
