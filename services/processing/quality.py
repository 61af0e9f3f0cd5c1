"""Image-quality analysis as plain computation: original bytes in, an :class:`Analysis` out.

Pure CPU with libvips — no network, no model, no database; :func:`analyse` runs in the
service's worker threads. The codes it reports and their meaning are the contract in
:mod:`shared.analysis`; the algorithm is :data:`shared.analysis.ALGORITHM`
(``darkroom-quality-v1``). Any change to a threshold or to the formula below changes what an
analysis says about the same bytes, so it is a new algorithm name, not an edit.

**What is read.** The header first (no pixel decoded): its format, its size once upright
(EXIF orientation), its pixels (width x height x frames) held against ``limits.max_pixels``
(:func:`shared.imaging.check_pixels`). Then the image is decoded *shrunk*
(``thumbnail_buffer``: JPEG DCT scaling, WebP shrink-on-load) so that its long side is at most
:data:`ANALYSIS_SIDE` (1024) pixels, turned upright, converted to 8-bit sRGB and flattened on
white. Every figure is measured on that *analysis image*, so a 4000x3000 photo costs about as
much as a 1024x768 one, and the figures describe the photo as seen at a fixed size rather than
its pixel count. Smaller images are measured as they are (never enlarged: upscaling would only
invent blur).

**Grey.** Rec. 601 luma of the sRGB values, ``0.299 R + 0.587 G + 0.114 B``, 0..255.

**Levels.** ``lo`` and ``hi`` are the 1st and 99th percentiles of the grey levels, and
``gain = min(255 / max(hi - lo, 1), MAX_GAIN)`` with :data:`MAX_GAIN` = 4: the stretch that
would make the image span the full range, limited so that a nearly flat image's noise is not
blown up into "detail". The sharpness figure and both aux images use it.

**Figures** (in ``quality_result``):

* ``sharpness`` — the variance of the Laplacian (3x3 kernel ``0 1 0 / 1 -4 1 / 0 1 0``, the
  one-pixel border left out) of ``gain x grey``. Levelling first makes it independent of
  exposure and contrast as far as the gain allows; measuring at the analysis size makes it
  independent of resolution. ``blurry`` below :data:`BLUR_THRESHOLD` = 100 (the figure commonly
  used with this measure; on natural images shrunk to 1024 px it flags a Gaussian blur of about
  1.5 px or more — a sharp photo measures in the thousands).
* ``brightness`` — mean grey. ``underexposed`` below :data:`UNDEREXPOSED_MEAN` = 60,
  ``overexposed`` above :data:`OVEREXPOSED_MEAN` = 200.
* ``clipped_shadows`` / ``clipped_highlights`` — fractions of pixels whose grey is at most
  :data:`SHADOW_LEVEL` = 8 / at least :data:`HIGHLIGHT_LEVEL` = 247. Also ``underexposed``
  above :data:`MAX_CLIPPED_SHADOWS` = 0.25, ``overexposed`` above
  :data:`MAX_CLIPPED_HIGHLIGHTS` = 0.15 (blown highlights lose detail sooner than shadows do).
* ``contrast`` — standard deviation of grey. ``low_contrast`` below :data:`LOW_CONTRAST` = 20,
  unless the image is under- or overexposed (then the exposure is what flattened it, and what
  to fix).

**Problems** (the image cannot be used): ``undecodable`` (not a readable image: nothing is
measured), ``unsupported_format`` (GIF is decoded and measured; TIFF, HEIF/AVIF, BMP, JPEG XL
and JPEG 2000 are only recognised by their signature), ``file_too_large`` (more than
:data:`shared.analysis.MAX_FILE_BYTES` bytes — still measured — or more pixels than
``limits.max_pixels``, which are never decoded), ``low_resolution`` (either side of the upright
image under :data:`shared.analysis.MIN_SIDE`).

**Score**, 0..100. Each figure becomes a part between 0 and 1 that is 0.5 exactly at its
issue threshold:

* sharpness ``S = clamp(0.5 + 0.5 log10(sharpness / 100))`` — 1 at 1000, 0 at 10;
* exposure ``E = min(B, C)`` where brightness ``B`` is 1 for a mean in 90..170 and falls by
  0.5 per 30 levels outside (0.5 at 60 and 200, 0 at 30 and 230), and clipping
  ``C = clamp(1 - 0.5 max(clipped_shadows / 0.25, clipped_highlights / 0.15))``;
* contrast ``K = clamp(0.5 + 0.5 (contrast - 20) / 20)`` — 1 from 40, 0.5 at 20, 0 when flat.

``score = round(100 (0.5 S + 0.3 E + 0.2 K))``, then capped: at :data:`ISSUE_CAP` = 50 when
there is any quality issue (an image without one has every part at least 0.5, so it scores at
least 50: *above 50 means no issue*), at :data:`PROBLEM_CAP` = 20 when there is any problem,
and 0 when nothing could be measured (undecodable, unsupported and undecoded, over the pixel
limit).

**Feedback** is one sentence for the most important finding, in this order: undecodable,
unsupported format, too large, low resolution, under-/overexposed, low contrast, blurry (flat
or badly exposed images measure as blurry too; fixing those first is what helps); "Good
photo." when there is nothing to say.

**Aux images** (PNG, no metadata, long side at most :data:`AUX_SIDE` = 512):
``normalized_preview`` — the analysis image upright in sRGB, auto-levelled (every band mapped
by ``(v - lo) x gain``, clipped to 0..255); ``sharpness_map`` — grey, the absolute Laplacian of
``gain x grey`` shrunk to the preview's size (each pixel averages the edge strength it covers)
and scaled so its 99th percentile is 255 (the strongest 1% clip): bright where the image has
sharp detail, black where it is flat or blurred.

The same bytes always give the same analysis (figures are rounded, so that libvips' threaded
sums cannot make them differ in the last bit).
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass, field
from typing import Any

import pyvips

from services.processing.transforms import Limits, to_srgb
from shared.analysis import AUX_MEDIA_TYPE, MAX_FILE_BYTES, MIN_SIDE
from shared.imaging import TooManyPixels, UnreadableImage, check_pixels, read_header

#: The long side, in pixels, of the image every figure is measured on (never enlarged).
ANALYSIS_SIDE = 1024
#: The long side of the aux images (never enlarged).
AUX_SIDE = 512
#: The largest levels stretch (see the module's docstring).
MAX_GAIN = 4.0
#: The fraction of the sharpness map at or below full white (the rest clips).
MAP_PERCENTILE = 0.99
#: Sharpness (levelled Laplacian variance) below which an image is ``blurry``.
BLUR_THRESHOLD = 100.0
#: Mean grey below which an image is ``underexposed`` / above which ``overexposed``.
UNDEREXPOSED_MEAN = 60.0
OVEREXPOSED_MEAN = 200.0
#: Grey at or below which a pixel counts as a clipped shadow / at or above as a highlight.
SHADOW_LEVEL = 8
HIGHLIGHT_LEVEL = 247
#: Fractions of clipped pixels above which an image is ``underexposed`` / ``overexposed``.
MAX_CLIPPED_SHADOWS = 0.25
MAX_CLIPPED_HIGHLIGHTS = 0.15
#: Grey standard deviation below which an image is ``low_contrast``.
LOW_CONTRAST = 20.0
#: Mean grey range whose brightness part is 1, and how many levels outside it halve the part.
IDEAL_BRIGHTNESS = (90.0, 170.0)
BRIGHTNESS_FALLOFF = 30.0
#: Contrast from which the contrast part is 1.
GOOD_CONTRAST = 40.0
#: Weights of the sharpness, exposure and contrast parts in the score.
WEIGHTS = (0.5, 0.3, 0.2)
#: Highest score with any quality issue / with any problem.
ISSUE_CAP = 50
PROBLEM_CAP = 20

_LUMA = [[0.299, 0.587, 0.114]]
_LAPLACIAN = pyvips.Image.new_from_array([[0, 1, 0], [1, -4, 1], [0, 1, 0]])
_WHITE = [255.0, 255.0, 255.0]
_FORMATS = {"JPEG": "jpeg", "PNG": "png", "WebP": "webp", "GIF": "gif"}
#: Image formats libvips is not allowed to decode here, by signature: (offset, bytes, name).
_SIGNATURES = (
    (0, b"II*\x00", "tiff"),
    (0, b"MM\x00*", "tiff"),
    (0, b"BM", "bmp"),
    (0, b"\xff\x0a", "jxl"),
    (0, b"\x00\x00\x00\x0cJXL \r\n\x87\n", "jxl"),
    (0, b"\x00\x00\x00\x0cjP  \r\n\x87\n", "jp2"),
    (4, b"ftypheic", "heif"),
    (4, b"ftypheix", "heif"),
    (4, b"ftyphevc", "heif"),
    (4, b"ftypmif1", "heif"),
    (4, b"ftypmsf1", "heif"),
    (4, b"ftypavif", "avif"),
    (4, b"ftypavis", "avif"),
)
#: The order findings are told in: the first one present gives the feedback.
_FEEDBACK_ORDER = (
    "undecodable",
    "unsupported_format",
    "file_too_large",
    "low_resolution",
    "underexposed",
    "overexposed",
    "low_contrast",
    "blurry",
)


@dataclass(frozen=True)
class AuxImage:
    """One encoded aux image and what it is."""

    aux_image_type: str
    data: bytes
    width: int
    height: int
    media_type: str = AUX_MEDIA_TYPE


@dataclass(frozen=True)
class Analysis:
    """What :func:`analyse` found: the fields of ``analysis.completed`` that describe the
    image, and the aux images still to be stored."""

    quality_score: int
    quality_feedback: str
    quality_issues: list[str]
    problems: list[str]
    quality_result: dict[str, Any]
    aux_images: list[AuxImage] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The JSON-ready findings, without the aux images."""
        return {
            "quality_score": self.quality_score,
            "quality_feedback": self.quality_feedback,
            "quality_issues": list(self.quality_issues),
            "problems": list(self.problems),
            "quality_result": dict(self.quality_result),
        }


@dataclass(frozen=True)
class Measures:
    """The figures an analysis measures (see the module's docstring)."""

    sharpness: float
    brightness: float
    contrast: float
    clipped_shadows: float
    clipped_highlights: float


def analyse(data: bytes, limits: Limits) -> Analysis:
    """Analyse the image ``data``: problems, quality issues, figures, score, feedback, aux
    images (see the module's docstring for every rule). Never raises for bad input: an
    unreadable image is an analysis with the ``undecodable`` problem."""
    result: dict[str, Any] = {
        "width": None,
        "height": None,
        "bytes": len(data),
        "format": None,
        "sharpness": None,
        "brightness": None,
        "contrast": None,
        "clipped_shadows": None,
        "clipped_highlights": None,
        "analysis_width": None,
        "analysis_height": None,
        "score_parts": None,
    }
    problems: set[str] = set()
    details: dict[str, str] = {}
    if len(data) > MAX_FILE_BYTES:
        problems.add("file_too_large")
        details["file_too_large"] = (
            "The file is larger than 30 MB: upload a smaller photo (a smartphone photo is"
            " usually 3-5 MB)."
        )
    try:
        header = read_header(data)
    except UnreadableImage:
        other = _other_format(data)
        result["format"] = other
        if other is None:
            problems.add("undecodable")
        else:
            problems.add("unsupported_format")
            details["unsupported_format"] = _unsupported(other)
        return _conclude(problems, set(), details, result, None)
    width, height = header.upright_width, header.upright_height
    result.update(format=_FORMATS[header.format_name], width=width, height=height)
    if result["format"] == "gif":
        problems.add("unsupported_format")
        details["unsupported_format"] = _unsupported("gif")
    if min(width, height) < MIN_SIDE:
        problems.add("low_resolution")
        details["low_resolution"] = (
            f"The photo is only {width}x{height} pixels: upload one at least {MIN_SIDE}x{MIN_SIDE}."
        )
    try:
        check_pixels(header, limits.max_pixels)
    except TooManyPixels:
        problems.add("file_too_large")
        details["file_too_large"] = (
            f"The image is {header.size_text()}, more than the"
            f" {limits.max_pixels / 1e6:g} megapixels that can be analysed: upload a smaller"
            " photo."
        )
        return _conclude(problems, set(), details, result, None)
    try:
        image = _load(data)
        grey = image.recomb(_LUMA)
        counts = _histogram(grey)
        levels = _levels(counts)
        edges, sharpness = _laplacian(grey, levels[1])
        measures = _measure(grey, counts, sharpness)
        aux = [_preview(image, levels), _sharpness_map(edges)]
    except pyvips.Error:
        problems.add("undecodable")  # a header we read over pixels we cannot: truncated, corrupt
        return _conclude(problems, set(), details, result, None)
    # Rounded before anything is decided on them, so that what is reported is what was judged.
    measures = Measures(
        sharpness=round(measures.sharpness, 1),
        brightness=round(measures.brightness, 2),
        contrast=round(measures.contrast, 2),
        clipped_shadows=round(measures.clipped_shadows, 4),
        clipped_highlights=round(measures.clipped_highlights, 4),
    )
    result.update(vars(measures), analysis_width=image.width, analysis_height=image.height)
    return _conclude(problems, _issues(measures), details, result, measures, aux)


def _load(data: bytes) -> pyvips.Image:
    """The analysis image: shrunk while decoded to a long side of at most ``ANALYSIS_SIDE``,
    upright, 8-bit sRGB, flattened on white, in memory (it is read several times)."""
    # thumbnail_buffer's own fail_on does not reach the loader (libvips 8.18): a truncated
    # file would decode as grey. The loader's option string does. thumbnail applies the EXIF
    # orientation itself.
    image = pyvips.Image.thumbnail_buffer(
        data, ANALYSIS_SIDE, height=ANALYSIS_SIDE, size="down", option_string="fail_on=error"
    )
    image = to_srgb(image)
    if image.hasalpha():
        image = image.flatten(background=_WHITE).cast("uchar")
    # Decoded once into memory: a sequential load cannot be read again from the top.
    return image.copy_memory()


def _histogram(grey: pyvips.Image) -> list[int]:
    """Pixel counts of each grey level 0..255 (rounded)."""
    levels = grey.rint().cast("uchar")
    counts = array("I")
    counts.frombytes(levels.hist_find().cast("uint").write_to_memory())
    return list(counts)


def _percentile(counts: list[int], fraction: float) -> int:
    """The lowest grey level at or below which at least ``fraction`` of the pixels lie."""
    wanted = fraction * sum(counts)
    seen = 0
    for level, count in enumerate(counts):
        seen += count
        if seen >= wanted and seen > 0:
            return level
    return 255


def _levels(counts: list[int]) -> tuple[int, float]:
    """``(lo, gain)`` of the levels stretch, from the grey histogram."""
    lo, hi = _percentile(counts, 0.01), _percentile(counts, 0.99)
    return lo, min(255.0 / max(hi - lo, 1), MAX_GAIN)


def _laplacian(grey: pyvips.Image, gain: float) -> tuple[pyvips.Image, float]:
    """The absolute Laplacian of ``gain x grey`` (its one-pixel border repeated from inside,
    same size as ``grey``) and the variance of the Laplacian inside that border."""
    width, height = grey.width, grey.height
    if min(width, height) < 3:  # no interior: nothing to measure
        return pyvips.Image.black(width, height), 0.0
    inside = (grey * gain).conv(_LAPLACIAN, precision="float").crop(1, 1, width - 2, height - 2)
    variance = inside.deviate() ** 2
    return inside.abs().embed(1, 1, width, height, extend="copy"), variance


def _measure(grey: pyvips.Image, counts: list[int], sharpness: float) -> Measures:
    total = sum(counts)
    return Measures(
        sharpness=sharpness,
        brightness=grey.avg(),
        # The standard deviation of one pixel is undefined (libvips divides by n - 1).
        contrast=grey.deviate() if total > 1 else 0.0,
        clipped_shadows=sum(counts[: SHADOW_LEVEL + 1]) / total,
        clipped_highlights=sum(counts[HIGHLIGHT_LEVEL:]) / total,
    )


def _issues(m: Measures) -> set[str]:
    issues = set()
    if m.brightness < UNDEREXPOSED_MEAN or m.clipped_shadows > MAX_CLIPPED_SHADOWS:
        issues.add("underexposed")
    if m.brightness > OVEREXPOSED_MEAN or m.clipped_highlights > MAX_CLIPPED_HIGHLIGHTS:
        issues.add("overexposed")
    if m.contrast < LOW_CONTRAST and not issues:
        issues.add("low_contrast")
    if m.sharpness < BLUR_THRESHOLD:
        issues.add("blurry")
    return issues


def _clamp(value: float) -> float:
    return min(1.0, max(0.0, value))


def score_parts(m: Measures) -> dict[str, float]:
    """The sharpness, exposure and contrast parts of the score, each 0..1 and 0.5 at its
    issue threshold."""
    sharpness = _clamp(0.5 + 0.5 * math.log10(max(m.sharpness, 1e-9) / BLUR_THRESHOLD))
    low, high = IDEAL_BRIGHTNESS
    outside = max(low - m.brightness, m.brightness - high, 0.0)
    brightness = _clamp(1 - 0.5 * outside / BRIGHTNESS_FALLOFF)
    clipped = max(
        m.clipped_shadows / MAX_CLIPPED_SHADOWS, m.clipped_highlights / MAX_CLIPPED_HIGHLIGHTS
    )
    exposure = min(brightness, _clamp(1 - 0.5 * clipped))
    contrast = _clamp(0.5 + 0.5 * (m.contrast - LOW_CONTRAST) / (GOOD_CONTRAST - LOW_CONTRAST))
    return {
        "sharpness": round(sharpness, 4),
        "exposure": round(exposure, 4),
        "contrast": round(contrast, 4),
    }


def _conclude(
    problems: set[str],
    issues: set[str],
    details: dict[str, str],
    result: dict[str, Any],
    measures: Measures | None,
    aux: list[AuxImage] | None = None,
) -> Analysis:
    if measures is None:
        score = 0
    else:
        parts = score_parts(measures)
        result["score_parts"] = parts
        weighted = sum(w * p for w, p in zip(WEIGHTS, parts.values(), strict=True))
        score = round(100 * weighted)
        if issues:
            score = min(score, ISSUE_CAP)
        if problems:
            score = min(score, PROBLEM_CAP)
    findings = problems | issues
    first = next((code for code in _FEEDBACK_ORDER if code in findings), None)
    feedback = "Good photo." if first is None else details.get(first) or _FEEDBACK[first]
    return Analysis(
        quality_score=score,
        quality_feedback=feedback,
        quality_issues=[code for code in _FEEDBACK_ORDER if code in issues],
        problems=[code for code in _FEEDBACK_ORDER if code in problems],
        quality_result=result,
        aux_images=aux or [],
    )


#: One sentence per finding a person can act on (a few are made more precise in place).
_FEEDBACK = {
    "undecodable": "The file is not a readable image: upload an intact JPEG, PNG or WebP photo.",
    "underexposed": "The photo is too dark: move to a brighter place or face the light.",
    "overexposed": "The photo is too bright: avoid direct sunlight or flash on the face.",
    "low_contrast": (
        "The photo looks flat and hazy: wipe the lens and use even light in front of you."
    ),
    "blurry": "The photo is blurry: hold the camera still and tap to focus on the face.",
}


def _unsupported(name: str) -> str:
    return f"{name.upper()} images are not supported: upload the photo as JPEG, PNG or WebP."


def _other_format(data: bytes) -> str | None:
    """The name of an image format we recognise but do not decode, from its signature."""
    for offset, signature, name in _SIGNATURES:
        if data[offset : offset + len(signature)] == signature:
            return name
    return None


def _fit(image: pyvips.Image) -> pyvips.Image:
    """``image`` shrunk so its long side is at most ``AUX_SIDE`` (never enlarged)."""
    scale = AUX_SIDE / max(image.width, image.height)
    if scale >= 1:
        return image
    return image.resize(scale)


def _png(image: pyvips.Image, aux_image_type: str) -> AuxImage:
    data = image.pngsave_buffer(compression=6, keep="none")
    return AuxImage(aux_image_type, data, image.width, image.height)


def _preview(image: pyvips.Image, levels: tuple[int, float]) -> AuxImage:
    """``normalized_preview``: the analysis image auto-levelled, fit in ``AUX_SIDE``."""
    lo, gain = levels
    levelled = image.linear(gain, -lo * gain).cast("uchar")  # cast clips to 0..255
    return _png(_fit(levelled).cast("uchar"), "normalized_preview")


def _sharpness_map(edges: pyvips.Image) -> AuxImage:
    """``sharpness_map``: the absolute levelled Laplacian, fit in ``AUX_SIDE``, scaled so that
    its 99th percentile is 255 (the strongest 1% clip), grey."""
    edges = _fit(edges).clamp(min=0.0, max=1e9)  # resampling may undershoot a hair below 0
    peak = edges.max()
    if peak <= 0:
        return _png((edges * 0.0).cast("uchar").copy(interpretation="b-w"), "sharpness_map")
    # The percentile, to 1/255 of the peak, from the histogram of the map scaled to the peak.
    level = _percentile(_histogram(edges * (255.0 / peak)), MAP_PERCENTILE)
    top = peak * max(level, 1) / 255.0
    scaled = (edges * (255.0 / top)).cast("uchar")  # cast clips to 0..255
    return _png(scaled.copy(interpretation="b-w"), "sharpness_map")
