"""Builders for rendering tests: static packages with a ``window.happo`` like the Happo
clients' custom integration (and a showcase package with one example per thing a render must
get right), DOM snapshot jobs, images, a look at the rendered pixels, and a loopback listener
that counts the connections a page manages to make."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pyvips

from services.rendering.chromium import find_chromium
from shared.rendering import RenderJob, parse_payload

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 128, 0), (0, 0, 255), (255, 255, 255)

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


KEYFRAMES = """
@font-face { font-family: PackageMono; src: url(/fonts/mono.ttf); }
@font-face { font-family: MissingFont; src: url(/fonts/missing.ttf); }
@keyframes fade { from { background: rgb(255, 0, 0); } to { background: rgb(0, 0, 255); } }
.fade-once { width: 50px; height: 50px; animation: fade 5s linear forwards; }
.fade-forever { width: 50px; height: 50px; animation: fade 1s linear infinite; }
.tile { width: 30px; height: 20px; background-image: url(/assets/blue.png); }
"""


def showcase(root: Path) -> Path:
    """A static package with one example per thing a render must get right."""
    examples = [
        example("Box", "red", "<div style='width:200px;height:100px;background:red'></div>"),
        example("Block", "no width", "<div style='height:30px;background:rgb(0,128,0)'></div>"),
        example(
            "Hide",
            "half hidden",
            "<div style='display:inline-flex'>"
            "<div style='width:40px;height:40px;background:rgb(0,128,0)'></div>"
            "<div data-happo-hide style='width:40px;height:40px;background:red'></div></div>",
        ),
        example("Animation", "finite", "<div class='fade-once'></div>"),
        example("Animation", "infinite", "<div class='fade-forever'></div>"),
        example("Image", "img", "<img src='/assets/green.png' style='display:block'>"),
        example("Image", "css background", "<div class='tile'></div>"),
        example(
            "Font",
            "web font",
            "<span style='font:40px PackageMono;line-height:1'>iiii</span>",
        ),
        example(
            "Font",
            "fallback",
            "<span style='font:40px MissingFont;line-height:1'>iiii</span>",
        ),
        example(
            "Async",
            "render",
            script="await new Promise(r => setTimeout(r, 30));"
            " root.innerHTML = \"<div style='width:120px;height:60px;background:purple'></div>\";",
        ),
        example(
            "Async",
            "wait for content",
            script="setTimeout(() => { root.innerHTML = \"<div style='width:70px;height:20px;"
            "background:black;color:black'>ready</div>\"; }, 150);",
            waitForContent="ready",
        ),
    ]
    static_package(
        root,
        examples,
        css=KEYFRAMES,
        files={
            "assets/green.png": solid_png(40, 30, GREEN),
            "assets/blue.png": solid_png(10, 10, BLUE),
        },
    )
    with_font(root)
    return root


#: ``nextExample`` that, for the "Pointer" example, reports the button's pointer-events as the
#: height of a probe element (1: none, 2: auto) once the renderer's CSS is in.
HAPPO_JS_WITH_POINTER_PROBE = HAPPO_JS.replace(
    "if (example.script) {",
    "if (example.component === 'Pointer') { await new Promise(r => setTimeout(r, 0));"
    " const none = getComputedStyle(root.firstChild).pointerEvents === 'none';"
    " root.innerHTML = `<i style='display:block;width:5px;height:${none ? 1 : 2}px'></i>`; }"
    " if (example.script) {",
)


class Listener:
    """A loopback TCP server that counts the connections it is offered."""

    def __init__(self) -> None:
        self.accepted = 0
        self.server: asyncio.base_events.Server | None = None

    async def __aenter__(self) -> Listener:
        async def on_connect(reader, writer):
            self.accepted += 1
            writer.close()

        self.server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        return self

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.sockets[0].getsockname()[1]

    async def __aexit__(self, *exc) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


CHROMIUM = Path("/usr/bin/chromium")
#: Debian's Chromium as installed; nothing is downloaded, nothing phones home.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


needs_chromium = pytest.mark.skipif(
    find_chromium(None) is None, reason="no Chromium on this machine (apt-get install chromium)"
)
