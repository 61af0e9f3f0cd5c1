"""Builders for rendering tests: static packages with a ``window.happo`` like the Happo
clients' custom integration, DOM snapshot jobs, images and a look at the rendered pixels."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyvips

from shared.rendering import RenderJob, parse_payload

#: A real font for web-font tests (fonts-dejavu-core).
DEJAVU_MONO = Path("/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf")

#: The examples' registry and ``window.happo``, as happo's custom integration has them:
#: ``init`` filters by target, chunk and only; ``nextExample`` renders one example (its
#: ``html`` into ``#root``, then its async ``script`` with ``root`` in scope) and resolves.
HAPPO_JS = """
let examples = [];
let index = 0;
window.happo = {
  init({targetName, chunk, only} = {}) {
    examples = window.__EXAMPLES__.filter(e => !e.targets || e.targets.includes(targetName));
    if (only) examples = examples.filter(e => e.component === only.component);
    if (chunk) {
      const size = Math.ceil(examples.length / chunk.total);
      examples = examples.slice(chunk.index * size, chunk.index * size + size);
    }
    index = 0;
  },
  async nextExample() {
    const example = examples[index++];
    if (!example) return undefined;
    const root = document.getElementById('root');
    root.innerHTML = example.html || '';
    if (example.script) {
      const run = new Function('root', 'return (async () => {' + example.script + '})()');
      await run(root);
    }
    return {component: example.component, variant: example.variant,
            waitForContent: example.waitForContent};
  },
};
"""


def example(
    component: str, variant: str, html: str = "", script: str = "", **extra: Any
) -> dict[str, Any]:
    """One example of a static package: ``html`` goes into ``#root``, then ``script`` runs
    (an async function body with ``root`` in scope)."""
    return {"component": component, "variant": variant, "html": html, "script": script, **extra}


def static_package(
    root: Path,
    examples: list[dict[str, Any]],
    *,
    css: str = "",
    head: str = "",
    files: dict[str, bytes] | None = None,
    happo_js: str = HAPPO_JS,
) -> Path:
    """Write a static package into ``root``: ``/iframe.html`` loading ``/styles.css`` and
    ``/bundle.js`` (the examples and ``window.happo``), plus ``files``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "iframe.html").write_text(
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<link rel='stylesheet' href='/styles.css'>{head}"
        "<script src='/bundle.js'></script></head>"
        "<body style='margin:0;background:#fff'>"
        "<div id='root' data-happo-ignore='true'></div></body></html>"
    )
    (root / "styles.css").write_text(css)
    (root / "bundle.js").write_text(f"window.__EXAMPLES__ = {json.dumps(examples)};\n{happo_js}")
    for name, data in (files or {}).items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def with_font(root: Path, name: str = "fonts/mono.ttf") -> str:
    """Copy DejaVu Sans Mono into the package; its URL path."""
    target = root / name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(DEJAVU_MONO, target)
    return "/" + name


def solid_png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A PNG of one colour."""
    image = pyvips.Image.black(width, height, bands=3).new_from_image(list(rgb))
    return image.cast("uchar").pngsave_buffer()


def static_job(viewport: str = "800x600", **payload: Any) -> RenderJob:
    """A static-package job as happo 6 sends it (last-frame, reduced motion, pointer events)."""
    raw = {
        "viewport": viewport,
        "staticPackage": "package.zip",
        "freezeAnimations": "last-frame",
        "prefersReducedMotion": True,
        "allowPointerEvents": True,
        "failOnWaitForTimeout": True,
        **payload,
    }
    return parse_payload(raw, "browser-chrome", "chrome")


def dom_job(
    snapshots: list[dict[str, Any]],
    global_css: list[dict[str, Any]],
    viewport: str = "800x600",
    **payload: Any,
) -> RenderJob:
    """A DOM-snapshot job as happo 6 e2e sends it."""
    raw = {
        "viewport": viewport,
        "assetsPackage": "assets.zip",
        "snapPayloads": snapshots,
        "globalCSS": global_css,
        "freezeAnimations": "last-frame",
        "failOnWaitForTimeout": True,
        **payload,
    }
    return parse_payload(raw, "browser-chrome", "chrome")


def pixels(png: bytes) -> np.ndarray:
    """The PNG's pixels as an ``height x width x 3`` array (alpha dropped)."""
    image = pyvips.Image.new_from_buffer(png, "")
    if image.bands == 4:
        image = image.extract_band(0, n=3)
    array = np.ndarray(
        buffer=image.write_to_memory(),
        dtype=np.uint8,
        shape=(image.height, image.width, image.bands),
    )
    return array[:, :, :3]


def colour_at(png: bytes, x: int, y: int) -> tuple[int, int, int]:
    """The RGB colour of one pixel."""
    r, g, b = pixels(png)[y, x]
    return int(r), int(g), int(b)


def close(colour: tuple[int, int, int], expected: tuple[int, int, int], slack: int = 3) -> bool:
    """Whether two colours are equal within ``slack`` per channel."""
    return all(abs(a - b) <= slack for a, b in zip(colour, expected, strict=True))
