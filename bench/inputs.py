# ruff: noqa: RUF002, RUF003  (a bench runs its own tools; figures use ×)
"""The bench's inputs, generated once into ``var/bench/inputs/``: a 4000×3000 photo-like JPEG
at q90 and a 1280×2000 PNG screenshot pair differing in a small region of anti-aliased text."""

from __future__ import annotations

from pathlib import Path

import pyvips

ROOT = Path(__file__).resolve().parent.parent
INPUTS = ROOT / "var" / "bench" / "inputs"
PHOTO = INPUTS / "photo-4000x3000-q90.jpg"
BEFORE = INPUTS / "screen-1280x2000-before.png"
AFTER = INPUTS / "screen-1280x2000-after.png"

_LOREM = (
    "Darkroom stores every image once by content and processes it with libvips; "
    "reports compare screenshots pixel by pixel. "
)


def photo() -> pyvips.Image:
    """Smooth colour fields (Perlin noise at several scales) with fine grain, like a photo."""
    width, height = 4000, 3000
    bands = []
    for band, seed in enumerate((11, 23, 37)):
        coarse = pyvips.Image.perlin(width, height, cell_size=512, seed=seed)
        fine = pyvips.Image.perlin(width, height, cell_size=48, seed=seed + 100)
        bands.append((coarse * 300 + fine * 60 + 128 + band * 10).cast("float"))
    image = bands[0].bandjoin(bands[1:])
    grain = pyvips.Image.gaussnoise(width, height, sigma=6, mean=0)
    image = (image + grain).cast("uchar")
    return image.copy(interpretation="srgb")


def screenshot(changed: bool) -> pyvips.Image:
    """A white page with a header bar, coloured blocks and lines of anti-aliased text; the
    ``changed`` one has different words in one paragraph (a small region)."""
    width, height = 1280, 2000
    page = (pyvips.Image.black(width, height, bands=3) + 255).cast("uchar")
    page = page.draw_rect([32, 64, 160], 0, 0, width, 72, fill=True)
    title = pyvips.Image.text("<b>Darkroom — visual report</b>", dpi=96, font="sans 20")
    page = _ink(page, title, 40, 20, [255, 255, 255])
    y = 110
    for paragraph in range(14):
        page = page.draw_rect([230, 236, 245], 40, y, width - 80, 4, fill=True)
        y += 16
        for line in range(6):
            words = f"{paragraph}.{line} " + _LOREM
            if changed and paragraph == 7 and line in (2, 3):
                words = f"{paragraph}.{line} Changed: the build on this branch moved a button."
            text = pyvips.Image.text(words, dpi=96, font="sans 13", width=width - 120)
            page = _ink(page, text, 48, y, [40, 40, 48])
            y += 20
        y += 12
        if y > height - 160:
            break
    page = page.draw_rect([200, 60, 60], 48, height - 120, 180, 48, fill=True)
    label = pyvips.Image.text("Approve", dpi=96, font="sans bold 14")
    page = _ink(page, label, 90, height - 108, [255, 255, 255])
    return page.copy(interpretation="srgb")


def _ink(page: pyvips.Image, mask: pyvips.Image, left: int, top: int, colour) -> pyvips.Image:
    """Blend ``colour`` through the anti-aliased text ``mask`` onto ``page`` at (left, top)."""
    area = page.crop(left, top, mask.width, mask.height)
    alpha = mask.cast("float") / 255
    blended = (area * (1 - alpha) + alpha * colour).cast("uchar")
    return page.insert(blended, left, top)


def ensure() -> dict[str, Path]:
    """Generate the inputs that are missing; return their paths."""
    INPUTS.mkdir(parents=True, exist_ok=True)
    if not PHOTO.exists():
        photo().jpegsave(str(PHOTO), Q=90, strip=True)
    if not BEFORE.exists() or not AFTER.exists():
        screenshot(False).pngsave(str(BEFORE), strip=True)
        screenshot(True).pngsave(str(AFTER), strip=True)
    return {"photo": PHOTO, "before": BEFORE, "after": AFTER}


def unique_jpeg(data: bytes, index: int) -> bytes:
    """``data`` (a JPEG) with a comment segment naming ``index`` right after SOI: the same
    pixels, different bytes, so its content hash (and every cache keyed on it) is new."""
    assert data[:2] == b"\xff\xd8"
    comment = f"darkroom-bench {index}".encode()
    segment = b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment
    return data[:2] + segment + data[2:]
