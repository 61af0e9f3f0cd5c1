"""Processing's transforms on real libvips: every option is checked on the output's pixels
(geometry, where a known pixel went, alpha, colour statistics), not only on success. Inputs are
generated with pyvips here."""

from __future__ import annotations

import pytest
import pyvips

from bench.stats import luma as luma_array
from bench.stats import ssim
from services.processing.transforms import (
    COLORTONE_HIGHLIGHT,
    COLORTONE_SHADOW,
    COMPACT_JPEG_MAX_PIXELS,
    Derived,
    Header,
    Limits,
    UndecodableImage,
    derive,
    jpeg_shrink,
)
from shared.derivatives import FILTERS, Transform
from tests.images_support import png_header_bomb

LIMITS = Limits(max_pixels=100_000_000)
RED = [255, 0, 0]
METADATA = ("exif", "icc", "xmp", "iptc", "orientation")


def solid(width: int, height: int, colour: list[int]) -> pyvips.Image:
    """An 8-bit sRGB image of one colour."""
    image = pyvips.Image.black(width, height, bands=3) + colour
    return image.cast("uchar").copy(interpretation="srgb")


def marked(width: int, height: int) -> pyvips.Image:
    """A dark grey image with a red 8x8 square at its top-left corner."""
    return solid(width, height, [40, 40, 40]).draw_rect(RED, 0, 0, 8, 8, fill=True)


def natural(width: int = 320, height: int = 240) -> pyvips.Image:
    """Something photo-like and reproducible: a diagonal light gradient with colour drifting
    across it and fixed-seed noise; moderate saturation, mid-tones, no flat areas."""
    xy = pyvips.Image.xyz(width, height)
    u, v = xy[0] / width, xy[1] / height
    luma = (u * 0.6 + v * 0.4) * 190 + 30
    red = luma + (u - 0.5) * 60
    green = luma + 8
    blue = luma + (v - 0.5) * 60 - 8
    noise = pyvips.Image.gaussnoise(width, height, sigma=10, mean=0, seed=7)
    return (red.bandjoin([green, blue]) + noise).cast("uchar").copy(interpretation="srgb")


def png(image: pyvips.Image) -> bytes:
    return image.pngsave_buffer()


def jpeg(image: pyvips.Image, **options: object) -> bytes:
    return image.jpegsave_buffer(Q=95, **options)


def decode(derived: Derived) -> pyvips.Image:
    """The derivative decoded (random access, so pixels can be read in any order)."""
    image = pyvips.Image.new_from_buffer(derived.data, "")
    assert (image.width, image.height) == (derived.width, derived.height)
    return image


def near(pixel: list[float], expected: list[int], tolerance: float = 12) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, expected, strict=False))


def metadata_of(image: pyvips.Image) -> list[str]:
    return [f for f in image.get_fields() if any(word in f for word in METADATA)]


# --- geometry -----------------------------------------------------------------------------------


def test_rotation_90_swaps_the_sides_and_moves_the_top_left_to_the_top_right() -> None:
    derived = derive(png(marked(40, 20)), Transform(format="png", rotation=90), LIMITS)
    image = decode(derived)
    assert (image.width, image.height) == (20, 40)
    assert near(image(image.width - 1, 0), RED, 0)
    assert near(image(0, 0), [40, 40, 40], 0)


@pytest.mark.parametrize(("degrees", "corner"), [(180, "bottom-right"), (270, "bottom-left")])
def test_other_quarter_turns_are_clockwise(degrees: float, corner: str) -> None:
    image = decode(derive(png(marked(40, 20)), Transform(format="png", rotation=degrees), LIMITS))
    x, y = {"bottom-right": (image.width - 1, image.height - 1), "bottom-left": (0, 39)}[corner]
    assert near(image(x, y), RED, 0)


def test_rotation_45_enlarges_the_canvas_with_transparent_corners_in_png() -> None:
    derived = derive(
        png(solid(100, 60, [200, 30, 30])), Transform(format="png", rotation=45), LIMITS
    )
    image = decode(derived)
    # The bounding box of a 100x60 rectangle turned 45 degrees is (100 + 60) / sqrt 2 a side.
    assert abs(image.width - 113) <= 1 and abs(image.height - 113) <= 1
    assert image.bands == 4
    for x, y in ((0, 0), (image.width - 1, 0), (0, image.height - 1)):
        assert image(x, y)[3] == 0
    centre = image(image.width // 2, image.height // 2)
    assert centre[3] == 255 and near(centre, [200, 30, 30], 2)


def test_rotation_45_fills_a_jpeg_with_white() -> None:
    image = decode(derive(jpeg(solid(100, 60, [20, 20, 120])), Transform(rotation=45), LIMITS))
    assert image.bands == 3
    assert near(image(0, 0), [255, 255, 255], 3)
    assert near(image(image.width // 2, image.height // 2), [20, 20, 120], 12)


def test_exif_orientation_is_applied_before_rotation_and_no_metadata_remains() -> None:
    sideways = marked(40, 20).copy()
    sideways.set_type(pyvips.GValue.gint_type, "orientation", 6)
    data = jpeg(sideways)
    assert pyvips.Image.new_from_buffer(data, "").get("orientation") == 6
    upright = decode(derive(data, Transform(), LIMITS))
    # Orientation 6: the stored image is shown turned a quarter clockwise.
    assert (upright.width, upright.height) == (20, 40)
    assert near(upright(upright.width - 1, 0), RED, 30)
    turned = decode(derive(data, Transform(rotation=90), LIMITS))
    assert (turned.width, turned.height) == (40, 20)
    assert near(turned(turned.width - 1, turned.height - 1), RED, 30)
    assert metadata_of(upright) == [] and metadata_of(turned) == []


@pytest.mark.parametrize(
    "transform",
    [Transform(), Transform(filter="toaster"), Transform(round_corners=9), Transform(rotation=180)],
)
def test_a_large_sideways_photo_is_turned_upright_at_full_size(transform: Transform) -> None:
    """Turning reads pixels out of order: past libvips' small sequential line cache, the load
    must allow it (a photo straight off a phone, no box)."""
    sideways = marked(1600, 1200).copy()
    sideways.set_type(pyvips.GValue.gint_type, "orientation", 6)
    image = decode(derive(jpeg(sideways), transform, LIMITS))
    assert (image.width, image.height) == (1200, 1600)


@pytest.mark.parametrize("output", ["jpeg", "png", "webp"])
def test_outputs_carry_no_metadata_and_an_icc_profile_is_converted_to_srgb(output: str) -> None:
    colour = solid(64, 48, [200, 40, 40])
    wide = colour.icc_transform("p3", input_profile="srgb")  # other numbers, same colour
    assert not near(wide(5, 5), [200, 40, 40], 8)
    tagged = wide.copy()
    tagged.set_type(pyvips.GValue.gint_type, "orientation", 1)
    data = tagged.jpegsave_buffer(Q=98, keep="all")
    assert metadata_of(pyvips.Image.new_from_buffer(data, ""))  # the input has some
    for transform in (Transform(format=output), Transform(format=output, thumb_w=32)):
        image = decode(derive(data, transform, LIMITS))
        assert metadata_of(image) == []
        assert near(image(5, 5), [200, 40, 40], 8)


def test_thumbnail_fits_the_box_keeping_the_aspect() -> None:
    data = png(natural(400, 200))
    image = decode(derive(data, Transform(format="png", thumb_w=100, thumb_h=300), LIMITS))
    assert (image.width, image.height) == (100, 50)
    only_height = decode(derive(data, Transform(format="png", thumb_h=50), LIMITS))
    assert (only_height.width, only_height.height) == (100, 50)


@pytest.mark.parametrize(
    ("size", "box", "shrink"),
    [
        ((4000, 3000), (300, 10_000_000), 8),  # 500 px wide decoded, resized to 300
        ((4000, 3000), (600, 600), 4),  # 8 would decode 500 px, below the 600 wanted
        ((640, 480), (300, 300), 2),
        ((400, 300), (300, 300), 1),
        ((4000, 500), (300, 300), 8),  # a panorama is bound by its width only
        ((5, 3000), (300, 100), 4),  # a sliver: 8 would decode it 0 px wide
        ((3, 3000), (300, 100), 2),
        ((3000, 1), (100, 300), 1),
    ],
)
def test_a_jpeg_decodes_at_the_largest_dct_scale_that_covers_the_box(size, box, shrink) -> None:
    assert jpeg_shrink(Header(*size, 1, "JPEG"), box) == shrink
    assert jpeg_shrink(Header(*size, 1, "PNG"), box) == 1


def test_a_sliver_of_a_jpeg_is_thumbnailed_not_refused_as_corrupt() -> None:
    image = decode(derive(jpeg(natural(5, 3000)), Transform(thumb_w=300, thumb_h=100), LIMITS))
    assert (image.width, image.height) == (1, 100)


def test_a_jpeg_thumbnail_shrunk_on_load_is_upright_and_exactly_sized() -> None:
    sideways = marked(1600, 1200).copy()
    sideways.set_type(pyvips.GValue.gint_type, "orientation", 6)
    image = decode(derive(jpeg(sideways), Transform(thumb_w=150), LIMITS))
    # Upright it is 1200x1600; decoded at 1/8 (150x200) and fitted 150 wide.
    assert (image.width, image.height) == (150, 200)
    assert image(image.width - 1, 0)[0] > 100 > image(0, image.height - 1)[0]
    plain = decode(derive(jpeg(natural(640, 480)), Transform(thumb_w=300), LIMITS))
    assert (plain.width, plain.height) == (300, 225)


@pytest.mark.parametrize(
    ("transform", "size"),
    [
        (Transform(rotation=90, thumb_w=1200), (1200, 1600)),  # shrunk a little, then turned
        (Transform(rotation=90, thumb_w=5000), (1500, 2000)),  # a box it already fits
        (Transform(rotation=45, thumb_w=1800), (1798, 1798)),  # the turned canvas, floored
        (Transform(rotation=270, thumb_h=300), (225, 300)),  # shrunk on load, then turned
    ],
)
def test_a_large_photo_turned_and_boxed_is_not_mistaken_for_a_corrupt_one(
    transform: Transform, size: tuple[int, int]
) -> None:
    """A box that shrinks a large image by less than 2x (or not at all) goes through a
    sequential pipeline; turning it afterwards reads out of order. Refused as "truncated or
    corrupt" until the shrunk image was held in memory first."""
    image = decode(derive(jpeg(natural(2000, 1500)), transform, LIMITS))
    assert (image.width, image.height) == size


def test_thumbnail_never_enlarges() -> None:
    image = decode(derive(png(natural(400, 200)), Transform(thumb_w=1000, thumb_h=1000), LIMITS))
    assert (image.width, image.height) == (400, 200)


def test_thumbnail_box_applies_after_a_quarter_turn() -> None:
    transform = Transform(format="png", thumb_w=100, thumb_h=300, rotation=90)
    image = decode(derive(png(marked(400, 200)), transform, LIMITS))
    assert (image.width, image.height) == (100, 200)
    assert near(image(image.width - 1, 0), RED, 40)


def test_thumbnail_box_holds_the_whole_turned_canvas() -> None:
    transform = Transform(format="png", thumb_w=150, thumb_h=150, rotation=30)
    image = decode(derive(png(natural(400, 200)), transform, LIMITS))
    assert image.width <= 150 and image.height <= 150
    assert max(image.width, image.height) >= 148  # as large as the box allows
    assert image(0, 0)[3] == 0 and image(image.width // 2, image.height // 2)[3] == 255


# --- round corners ------------------------------------------------------------------------------


def test_round_corners_are_transparent_in_png() -> None:
    transform = Transform(format="png", round_corners=20)
    image = decode(derive(png(solid(120, 80, [20, 90, 160])), transform, LIMITS))
    assert image.bands == 4
    for x, y in ((0, 0), (119, 0), (0, 79), (119, 79), (2, 2)):
        assert image(x, y)[3] == 0
    assert image(60, 40) == [20, 90, 160, 255]
    assert image(60, 0)[3] == 255 and image(0, 40)[3] == 255  # straight edges untouched


def test_round_corners_keep_existing_transparency() -> None:
    half = solid(120, 80, [20, 90, 160]).bandjoin(128).copy(interpretation="srgb")
    image = decode(derive(png(half), Transform(format="webp", round_corners=20), LIMITS))
    assert image(0, 0)[3] == 0
    assert abs(image(60, 40)[3] - 128) <= 2


def test_round_corners_are_white_in_jpeg() -> None:
    transform = Transform(format="jpeg", round_corners=20, quality=95)
    image = decode(derive(jpeg(solid(120, 80, [20, 20, 20])), transform, LIMITS))
    assert image.bands == 3
    for x, y in ((0, 0), (119, 0), (0, 79), (119, 79)):
        assert near(image(x, y), [255, 255, 255], 6)
    assert near(image(60, 40), [20, 20, 20], 6)


# --- quality --------------------------------------------------------------------------------------


@pytest.mark.parametrize("output", ["jpeg", "webp", "png"])
def test_lower_quality_gives_fewer_bytes(output: str) -> None:
    data = png(natural(320, 240))
    low = derive(data, Transform(format=output, quality=30), LIMITS)
    high = derive(data, Transform(format=output, quality=100), LIMITS)
    assert len(low.data) < len(high.data)
    assert decode(low).width == 320


def interlaced(image: pyvips.Image) -> bool:
    """True for a progressive JPEG."""
    return bool(image.get_typeof("interlaced") and image.get("interlaced"))


def test_thumbnail_sized_jpegs_are_progressive_and_larger_ones_baseline() -> None:
    """Progressive scans with optimised Huffman tables win 5-10 % of the bytes for a fraction
    of a millisecond on a thumbnail, but cost several times the whole encode on a full-size
    photo: only outputs up to COMPACT_JPEG_MAX_PIXELS get them."""
    data = jpeg(natural(800, 600))
    assert 800 * 600 > COMPACT_JPEG_MAX_PIXELS >= 300 * 225
    thumbnail = decode(derive(data, Transform(thumb_w=300, quality=80), LIMITS))
    assert (thumbnail.width, thumbnail.height) == (300, 225) and interlaced(thumbnail)
    for transform in (Transform(quality=80), Transform(rotation=90, quality=90)):
        assert not interlaced(decode(derive(data, transform, LIMITS)))


def photo(width: int, height: int) -> pyvips.Image:
    """Detail at every scale a thumbnail keeps: Perlin noise in each band plus grain."""
    bands = [
        pyvips.Image.perlin(width, height, cell_size=cell, seed=seed) * 200 + 128
        for seed, cell in ((1, 64), (2, 24), (3, 40))
    ]
    grain = pyvips.Image.gaussnoise(width, height, sigma=6, seed=4)
    image = bands[0].bandjoin(bands[1:]) + grain
    return image.cast("uchar").copy(interpretation="srgb")


@pytest.mark.parametrize("size", [(1600, 1200), (2400, 1800)])
def test_a_thumbnail_decoded_at_a_dct_scale_is_as_good_as_a_full_decode(size) -> None:
    """Shrinking while decoding (1/4 then lanczos3; 1/8 exactly) loses nothing a viewer could
    see against decoding every pixel and resizing with lanczos3, encoded alike; a shortcut such
    as a nearest-neighbour shrink scores far lower."""
    data = jpeg(photo(*size))
    original = pyvips.Image.new_from_buffer(data, "")
    image = decode(derive(data, Transform(thumb_w=300, quality=95), LIMITS))
    ideal = original.resize(300 / original.width, kernel="lanczos3")
    encoded_ideal = pyvips.Image.new_from_buffer(ideal.jpegsave_buffer(Q=95), "")
    nearest = original.resize(300 / original.width, kernel="nearest")
    assert (image.width, image.height) == (ideal.width, ideal.height) == (300, 225)
    score = ssim(luma_array(ideal), luma_array(image))
    assert score >= ssim(luma_array(ideal), luma_array(encoded_ideal)) - 0.005
    assert score > ssim(luma_array(ideal), luma_array(nearest)) + 0.02


def test_jpeg_chroma_is_subsampled_below_quality_90_only() -> None:
    data = png(natural(64, 64))
    low = decode(derive(data, Transform(quality=80), LIMITS))
    high = decode(derive(data, Transform(quality=90), LIMITS))
    assert low.get("jpeg-chroma-subsample") == "4:2:0"
    assert high.get("jpeg-chroma-subsample") == "4:4:4"


# --- filters --------------------------------------------------------------------------------------


def band_means(image: pyvips.Image) -> list[float]:
    stats = image.stats()
    return [stats(4, band + 1)[0] for band in range(3)]


def chroma(image: pyvips.Image) -> float:
    """Mean colourfulness: LCh chroma, which (unlike HSV saturation) dark pixels cannot inflate."""
    return image.colourspace("lch")[1].avg()


def luma(image: pyvips.Image) -> pyvips.Image:
    return image.colourspace("b-w")[0]


def area(image: pyvips.Image, where: str) -> pyvips.Image:
    """A fifth of each side: at a corner (``tl``, ``tr``, ``bl``, ``br``) or the centre."""
    w, h = image.width // 5, image.height // 5
    x = {"l": 0, "r": image.width - w, "c": (image.width - w) // 2}
    y = {"t": 0, "b": image.height - h, "c": (image.height - h) // 2}
    return image.crop(x[where[1]], y[where[0]], w, h)


def corners_mean(image: pyvips.Image) -> float:
    return sum(area(image, where).avg() for where in ("tl", "tr", "bl", "br")) / 4


def blue_over_red(image: pyvips.Image) -> float:
    red, _green, blue = band_means(image)
    return blue / red


def filtered(name: str, image: pyvips.Image | None = None) -> pyvips.Image:
    source = natural() if image is None else image
    return decode(derive(png(source), Transform(format="png", filter=name), LIMITS))


def test_kelvin_warms() -> None:
    before, after = natural(), filtered("kelvin")
    assert band_means(after)[0] > band_means(before)[0] + 10  # more red
    assert band_means(after)[2] < band_means(before)[2] - 15  # less blue


def test_gotham_desaturates_cools_and_darkens() -> None:
    before, after = natural(), filtered("gotham")
    assert chroma(after) < chroma(before) * 0.8
    assert blue_over_red(after) > blue_over_red(before) * 1.15
    assert luma(after).avg() < luma(before).avg() - 15


def test_toaster_warms_brightens_the_centre_and_burns_the_corners() -> None:
    before, after = natural(), filtered("toaster")
    assert blue_over_red(after) < blue_over_red(before) * 0.85
    assert area(luma(after), "cc").avg() > area(luma(before), "cc").avg() + 15
    assert corners_mean(luma(after)) < corners_mean(luma(before)) - 15


def test_lomo_saturates_adds_contrast_and_darkens_the_corners() -> None:
    before, after = natural(), filtered("lomo")
    assert chroma(after) > chroma(before) * 1.1
    # Contrast where the vignette does not reach: the centre's spread of light.
    assert area(luma(after), "cc").deviate() > area(luma(before), "cc").deviate() * 1.2
    ratio_before = corners_mean(luma(before)) / area(luma(before), "cc").avg()
    ratio_after = corners_mean(luma(after)) / area(luma(after), "cc").avg()
    assert ratio_after < ratio_before * 0.8


def test_colortone_tones_shadows_indigo_and_highlights_cream() -> None:
    ramp = pyvips.Image.xyz(256, 16)[0].cast("uchar")
    grey = ramp.bandjoin([ramp, ramp]).copy(interpretation="srgb")
    toned = filtered("colortone", grey)
    dark, light = toned(8, 8), toned(247, 8)
    assert dark[2] > dark[0] + 15  # shadows: blue over red, like the shadow tone
    assert light[0] > light[2] + 15  # highlights: red over blue, like the highlight tone
    assert COLORTONE_SHADOW[2] > COLORTONE_SHADOW[0]
    assert COLORTONE_HIGHLIGHT[0] > COLORTONE_HIGHLIGHT[2]
    assert chroma(toned) > chroma(grey) + 5  # greys gain colour
    before, after = natural(), filtered("colortone")
    assert blue_over_red(area(after, "tl")) > blue_over_red(area(before, "tl")) * 1.3
    assert blue_over_red(area(after, "br")) < blue_over_red(area(before, "br")) * 0.95


@pytest.mark.parametrize("name", FILTERS)
def test_each_filter_is_deterministic_and_keeps_the_geometry(name: str) -> None:
    data = jpeg(natural())
    first = derive(data, Transform(filter=name, thumb_w=200), LIMITS)
    second = derive(data, Transform(filter=name, thumb_w=200), LIMITS)
    assert first.data == second.data
    assert (first.width, first.height) == (200, 150)


@pytest.mark.parametrize("name", FILTERS)
def test_each_filter_carries_transparency_through(name: str) -> None:
    half = natural().bandjoin(100).copy(interpretation="srgb")
    image = decode(derive(png(half), Transform(format="png", filter=name), LIMITS))
    assert image.bands == 4 and image.max() > 0
    assert image[3].min() == 100 and image[3].max() == 100


# --- inputs -----------------------------------------------------------------------------------


@pytest.mark.parametrize("saver", ["gifsave_buffer", "webpsave_buffer", "jpegsave_buffer"])
def test_every_accepted_input_format_decodes(saver: str) -> None:
    data = getattr(marked(40, 20), saver)()
    image = decode(derive(data, Transform(format="png", rotation=90), LIMITS))
    assert (image.width, image.height) == (20, 40)


@pytest.mark.parametrize("transform", [Transform(), Transform(thumb_w=300, thumb_h=300)])
def test_refused_inputs(transform: Transform) -> None:
    whole = jpeg(natural(640, 480))
    bomb = png_header_bomb(20_000, 20_000)
    assert len(bomb) < 2_000
    cases = {
        "truncated jpeg": (whole[: len(whole) // 2], "truncated"),
        "truncated png": (png(natural())[:3000], "truncated"),
        "header bomb": (bomb, "20000x20000"),
        "not an image": (b"%PDF-1.7\n" + b"x" * 500, "not a JPEG, PNG, WebP or GIF"),
        "tiff": (natural().tiffsave_buffer(), "not a JPEG, PNG, WebP or GIF"),
        "empty": (b"", "not a JPEG, PNG, WebP or GIF"),
    }
    for label, (data, message) in cases.items():
        with pytest.raises(UndecodableImage) as refused:
            derive(data, transform, LIMITS)
        assert message in refused.value.message, label
        assert refused.value.code == "invalid_request"


def test_the_pixel_limit_is_configuration() -> None:
    data = png(natural(100, 100))
    assert derive(data, Transform(), Limits(max_pixels=10_000)).width == 100
    with pytest.raises(UndecodableImage, match="100x100"):
        derive(data, Transform(), Limits(max_pixels=9_999))
