"""The quality analysis on real libvips: photo-like images the suite generates
(tests/images_support.py: gradients, a natural-looking multi-scale texture, hard-edged
shapes), then blurred, darkened, washed out, flattened, shrunk, re-encoded or broken, and every
finding checked against what was done."""

from __future__ import annotations

import pytest
import pyvips

from services.processing import quality
from services.processing.quality import Analysis, analyse
from services.processing.transforms import Limits
from shared.analysis import AUX_IMAGE_TYPES, MAX_FILE_BYTES, PROBLEM_CODES, QUALITY_ISSUE_CODES
from tests.images_support import jpeg, png_header_bomb, scene

LIMITS = Limits(max_pixels=100_000_000)
METADATA = ("exif", "icc", "xmp", "iptc", "orientation")


def flat(width: int, height: int, level: int) -> pyvips.Image:
    return (
        (pyvips.Image.black(width, height, bands=3) + level)
        .cast("uchar")
        .copy(interpretation="srgb")
    )


def decoded(analysis: Analysis) -> dict[str, pyvips.Image]:
    """The aux images decoded (random access), checked against what the analysis says."""
    images = {}
    for aux in analysis.aux_images:
        image = pyvips.Image.new_from_buffer(aux.data, "")
        assert image.get("vips-loader") == "pngload_buffer"
        assert aux.media_type == "image/png"
        assert (image.width, image.height) == (aux.width, aux.height)
        assert max(image.width, image.height) <= 512
        assert [f for f in image.get_fields() if any(w in f for w in METADATA)] == []
        images[aux.aux_image_type] = image
    return images


def codes_are_known(analysis: Analysis) -> None:
    assert set(analysis.problems) <= set(PROBLEM_CODES)
    assert set(analysis.quality_issues) <= set(QUALITY_ISSUE_CODES)


@pytest.fixture(scope="module")
def sharp() -> Analysis:
    return analyse(jpeg(scene()), LIMITS)


def test_a_detailed_well_exposed_photo_is_good(sharp: Analysis) -> None:
    assert sharp.problems == [] and sharp.quality_issues == []
    assert sharp.quality_score >= 80
    assert sharp.quality_feedback == "Good photo."
    result = sharp.quality_result
    assert (result["width"], result["height"], result["format"]) == (800, 600, "jpeg")
    assert (result["analysis_width"], result["analysis_height"]) == (800, 600)
    assert result["sharpness"] > 10 * quality.BLUR_THRESHOLD
    assert 90 < result["brightness"] < 170 and result["contrast"] > 30
    assert result["clipped_shadows"] < 0.01 and result["clipped_highlights"] < 0.01
    assert result["bytes"] == len(jpeg(scene()))
    assert [aux.aux_image_type for aux in sharp.aux_images] == list(AUX_IMAGE_TYPES)
    images = decoded(sharp)
    assert (images["normalized_preview"].width, images["normalized_preview"].height) == (512, 384)
    assert images["normalized_preview"].bands == 3
    assert images["sharpness_map"].bands == 1
    assert images["sharpness_map"].interpretation == "b-w"


@pytest.mark.parametrize("encode", ["png", "webp"])
def test_png_and_webp_are_analysed_alike(sharp: Analysis, encode: str) -> None:
    data = scene().pngsave_buffer() if encode == "png" else scene().webpsave_buffer(Q=90)
    analysis = analyse(data, LIMITS)
    assert analysis.problems == [] and analysis.quality_issues == []
    assert analysis.quality_result["format"] == encode
    assert abs(analysis.quality_score - sharp.quality_score) <= 5


def test_a_blurred_photo_is_blurry_and_scores_lower(sharp: Analysis) -> None:
    blurred = analyse(jpeg(scene().gaussblur(4)), LIMITS)
    assert "blurry" in blurred.quality_issues and blurred.problems == []
    assert blurred.quality_score < sharp.quality_score
    assert blurred.quality_score <= quality.ISSUE_CAP
    assert blurred.quality_result["sharpness"] < quality.BLUR_THRESHOLD
    assert blurred.quality_feedback.startswith("The photo is blurry")
    # The blur changes neither exposure nor, much, contrast.
    assert blurred.quality_issues == ["blurry"]


def test_sharpness_does_not_depend_on_resolution() -> None:
    """The same scene at 4000x3000 and 2000x1500 is measured at 1024 px: the figures agree,
    and a large photo's blur is judged as seen at that size."""
    large = analyse(jpeg(scene(4000, 3000, seed=5)), LIMITS)
    half = analyse(jpeg(scene(4000, 3000, seed=5).resize(0.5)), LIMITS)
    assert (large.quality_result["analysis_width"], large.quality_result["analysis_height"]) == (
        1024,
        768,
    )
    assert large.quality_result["width"] == 4000
    assert half.quality_result["analysis_width"] == 1024
    ratio = large.quality_result["sharpness"] / half.quality_result["sharpness"]
    assert 0.7 < ratio < 1.4, ratio
    assert large.quality_issues == [] and half.quality_issues == []


def test_an_image_under_256_pixels_has_low_resolution() -> None:
    analysis = analyse(jpeg(scene(200, 200)), LIMITS)
    assert analysis.problems == ["low_resolution"]
    assert analysis.quality_score <= 20
    assert analysis.quality_feedback == (
        "The photo is only 200x200 pixels: upload one at least 256x256."
    )
    assert analyse(jpeg(scene(1000, 255)), LIMITS).problems == ["low_resolution"]
    assert analyse(jpeg(scene(256, 256)), LIMITS).problems == []


def test_a_dark_photo_is_underexposed() -> None:
    analysis = analyse(jpeg((scene() * 0.15).cast("uchar")), LIMITS)
    assert "underexposed" in analysis.quality_issues
    assert "low_contrast" not in analysis.quality_issues  # the exposure explains it
    assert analysis.quality_feedback.startswith("The photo is too dark")
    assert analysis.quality_result["brightness"] < quality.UNDEREXPOSED_MEAN
    assert analysis.quality_score <= quality.ISSUE_CAP


def test_a_bright_washed_out_photo_is_overexposed() -> None:
    analysis = analyse(jpeg((scene() * 0.5 + 150).cast("uchar")), LIMITS)
    assert "overexposed" in analysis.quality_issues
    assert analysis.quality_feedback.startswith("The photo is too bright")
    assert analysis.quality_result["brightness"] > quality.OVEREXPOSED_MEAN


def test_blown_highlights_are_overexposed_even_at_a_moderate_mean() -> None:
    """A fifth of the picture pure white: the mean stays moderate, the clipping tells."""
    image = scene().draw_rect([255, 255, 255], 0, 0, 800, 120, fill=True)
    analysis = analyse(jpeg(image), LIMITS)
    assert analysis.quality_result["brightness"] < quality.OVEREXPOSED_MEAN
    assert analysis.quality_result["clipped_highlights"] > quality.MAX_CLIPPED_HIGHLIGHTS
    assert "overexposed" in analysis.quality_issues


def test_a_flat_grey_image_has_low_contrast() -> None:
    analysis = analyse(jpeg(flat(640, 480, 128)), LIMITS)
    assert "low_contrast" in analysis.quality_issues
    assert analysis.quality_result["contrast"] < quality.LOW_CONTRAST
    assert analysis.quality_feedback.startswith("The photo looks flat")
    assert analysis.quality_score <= quality.ISSUE_CAP


def test_a_hazy_photo_has_low_contrast() -> None:
    analysis = analyse(jpeg((scene() * 0.3 + 95).cast("uchar")), LIMITS)
    assert "low_contrast" in analysis.quality_issues
    assert "underexposed" not in analysis.quality_issues
    assert "overexposed" not in analysis.quality_issues


def test_a_gif_is_measured_but_unsupported() -> None:
    analysis = analyse(scene().gifsave_buffer(), LIMITS)
    assert analysis.problems == ["unsupported_format"]
    assert analysis.quality_score <= 20
    assert analysis.quality_result["format"] == "gif"
    assert analysis.quality_result["sharpness"] is not None
    assert analysis.quality_feedback.startswith("GIF images are not supported")
    assert len(decoded(analysis)) == 2


def test_a_tiff_is_recognised_as_unsupported_not_undecodable() -> None:
    analysis = analyse(scene(300, 300).tiffsave_buffer(), LIMITS)
    assert analysis.problems == ["unsupported_format"]
    assert analysis.quality_score == 0 and analysis.aux_images == []
    assert analysis.quality_result["format"] == "tiff"
    assert analysis.quality_feedback.startswith("TIFF images are not supported")


@pytest.mark.parametrize(
    ("data", "format_name"),
    [
        (b"\xff\xd8\xff not really a JPEG " * 50, None),
        (b"", None),
        (b"%PDF-1.7\n" + b"x" * 500, None),
        (jpeg(scene(400, 300))[:5000], "jpeg"),
        (scene(400, 300).pngsave_buffer()[:3000], "png"),
    ],
    ids=["garbage", "empty", "pdf", "truncated jpeg", "truncated png"],
)
def test_unreadable_bytes_are_undecodable(data: bytes, format_name: str | None) -> None:
    analysis = analyse(data, LIMITS)
    assert analysis.problems == ["undecodable"]
    assert analysis.quality_issues == []
    assert analysis.quality_score == 0
    assert analysis.aux_images == []
    assert analysis.quality_feedback.startswith("The file is not a readable image")
    assert analysis.quality_result["format"] == format_name
    assert analysis.quality_result["bytes"] == len(data)
    assert analysis.quality_result["sharpness"] is None
    codes_are_known(analysis)


def test_a_file_over_30_mb_is_too_large_but_still_measured() -> None:
    data = jpeg(scene(400, 300)) + b"\0" * MAX_FILE_BYTES  # trailing bytes after the image
    analysis = analyse(data, LIMITS)
    assert analysis.problems == ["file_too_large"]
    assert analysis.quality_score <= 20
    assert analysis.quality_result["sharpness"] is not None
    assert analysis.quality_feedback.startswith("The file is larger than 30 MB")


def test_an_image_over_the_pixel_limit_is_never_decoded() -> None:
    bomb = png_header_bomb(20_000, 20_000)
    analysis = analyse(bomb, LIMITS)
    assert analysis.problems == ["file_too_large"]
    assert analysis.quality_score == 0 and analysis.aux_images == []
    assert (analysis.quality_result["width"], analysis.quality_result["height"]) == (20000, 20000)
    assert "20000x20000" in analysis.quality_feedback


def test_exif_orientation_is_applied() -> None:
    """Stored 800x600 with orientation 6 (shown turned a quarter clockwise) and a red mark at
    its stored top-left: the analysis sees it 600x800, the mark top-right."""
    stored = scene().draw_rect([255, 0, 0], 0, 0, 60, 60, fill=True).copy()
    stored.set_type(pyvips.GValue.gint_type, "orientation", 6)
    analysis = analyse(jpeg(stored), LIMITS)
    assert (analysis.quality_result["width"], analysis.quality_result["height"]) == (600, 800)
    preview = decoded(analysis)["normalized_preview"]
    assert (preview.width, preview.height) == (384, 512)
    red, green, blue = preview(preview.width - 5, 5)
    assert red > 200 and green < 60 and blue < 60
    assert analysis.quality_issues == []


def test_the_preview_is_auto_levelled() -> None:
    """A photo squeezed into a third of the grey levels comes out of the preview spanning
    nearly the full range (its 1st..99th percentiles stretched to 0..255)."""
    squeezed = (scene() * 0.4 + 80).cast("uchar")
    preview = decoded(analyse(jpeg(squeezed), LIMITS))["normalized_preview"]
    luma = preview.recomb([[0.299, 0.587, 0.114]]).cast("uchar")
    assert luma.percent(1) < 10 and luma.percent(99) > 245
    assert luma.percent(50) - luma.percent(1) > 60


def test_the_sharpness_map_is_bright_on_edges_and_dark_on_flat_areas() -> None:
    """Two flat halves meeting at a hard vertical edge in the middle."""
    image = flat(800, 600, 60).draw_rect([200, 200, 200], 400, 0, 400, 600, fill=True)
    sharpness_map = decoded(analyse(image.pngsave_buffer(), LIMITS))["sharpness_map"]
    assert (sharpness_map.width, sharpness_map.height) == (512, 384)
    edge = sharpness_map.crop(254, 100, 4, 184).max()
    assert edge > 200
    assert sharpness_map.crop(40, 100, 150, 184).max() < 10
    assert sharpness_map.crop(330, 100, 150, 184).max() < 10


def test_the_same_bytes_give_the_same_analysis(sharp: Analysis) -> None:
    again = analyse(jpeg(scene()), LIMITS)
    assert again == sharp
    assert [a.data for a in again.aux_images] == [a.data for a in sharp.aux_images]


def test_transparent_pixels_are_seen_on_white() -> None:
    """An RGBA PNG whose pixels are all transparent is a white image: overexposed, flat."""
    image = flat(400, 400, 20).bandjoin(0).copy(interpretation="srgb")
    analysis = analyse(image.pngsave_buffer(), LIMITS)
    assert analysis.quality_result["brightness"] == 255
    assert "overexposed" in analysis.quality_issues


def test_the_score_parts_are_one_half_at_each_threshold() -> None:
    """The documented formula: each part is 0.5 exactly where its issue begins."""
    at_thresholds = quality.Measures(
        sharpness=quality.BLUR_THRESHOLD,
        brightness=quality.UNDEREXPOSED_MEAN,
        contrast=quality.LOW_CONTRAST,
        clipped_shadows=0.0,
        clipped_highlights=0.0,
    )
    assert quality.score_parts(at_thresholds) == {
        "sharpness": 0.5,
        "exposure": 0.5,
        "contrast": 0.5,
    }
    best = quality.Measures(2000.0, 128.0, 60.0, 0.0, 0.0)
    assert quality.score_parts(best) == {"sharpness": 1.0, "exposure": 1.0, "contrast": 1.0}
    clipped = quality.Measures(2000.0, 128.0, 60.0, quality.MAX_CLIPPED_SHADOWS, 0.0)
    assert quality.score_parts(clipped)["exposure"] == 0.5
    bright = quality.Measures(2000.0, quality.OVEREXPOSED_MEAN, 60.0, 0.0, 0.0)
    assert quality.score_parts(bright)["exposure"] == 0.5


def test_every_code_reported_is_in_the_contract(sharp: Analysis) -> None:
    for data in (jpeg(scene(200, 200)), b"junk", scene().gifsave_buffer()):
        codes_are_known(analyse(data, LIMITS))
    codes_are_known(sharp)
