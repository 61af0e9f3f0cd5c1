"""A real Happo static package, as Storybook or happo's custom integration builds one: an
``iframe.html`` whose script defines ``window.happo.init`` / ``nextExample`` and renders one
example at a time into the page. The API and client tests render it and check what they got.

Each example is chosen to prove one rule of the renderer (``../shared/happo-rendering.md``):
the clip, a block spanning the viewport, ``data-happo-hide``, an animation at its last frame, an
image asset and a web font loaded from the package, and an asynchronous ``render()``.
"""

from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path

import pyvips

#: The font the package carries (copied from Debian's fonts-dejavu-core).
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")

#: ``(component, variant)`` → what its screenshot must be: ``size`` (w, h) in pixels, or
#: ``width`` only; ``colour`` at the centre (RGB); ``absent`` a colour no pixel may have.
EXPECTED: dict[tuple[str, str], dict] = {
    ("Button", "red"): {"size": (200, 100), "colour": (255, 0, 0)},
    ("Banner", "block"): {"width": "viewport", "height": 40, "colour": (0, 0, 255)},
    ("Secret", "hidden"): {"size": (120, 80), "colour": (0, 128, 0), "absent": (255, 0, 255)},
    ("Fade", "last-frame"): {"size": (90, 90), "colour": (0, 128, 0)},
    ("Logo", "image"): {"size": (64, 32), "colour": (255, 255, 0)},
    ("Late", "async"): {"size": (50, 60), "colour": (0, 255, 255)},
    ("Text", "web-font"): {"colour": None},
}

_PAGE = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<style>
  @font-face { font-family: "Packaged"; src: url("/fonts/packaged.ttf") format("truetype"); }
  html, body { margin: 0; padding: 0; background: #fff; }
  @keyframes fade { from { background: rgb(255, 0, 0); } to { background: rgb(0, 128, 0); } }
</style>
</head>
<body>
<script src="/bundle.js"></script>
</body>
</html>
"""

_BUNDLE = """
(function () {
  var examples = [
    { component: 'Button', variant: 'red', render: function (root) {
        root.innerHTML = '<div style="display:inline-block;width:200px;height:100px;'
          + 'background:rgb(255,0,0)"></div>';
    } },
    { component: 'Banner', variant: 'block', render: function (root) {
        root.innerHTML = '<div style="height:40px;background:rgb(0,0,255)"></div>';
    } },
    { component: 'Secret', variant: 'hidden', render: function (root) {
        root.innerHTML = '<div style="display:inline-block;width:120px;height:80px;'
          + 'background:rgb(0,128,0);position:relative">'
          + '<div data-happo-hide style="position:absolute;left:40px;top:20px;width:40px;'
          + 'height:40px;background:rgb(255,0,255)"></div></div>';
    } },
    { component: 'Fade', variant: 'last-frame', render: function (root) {
        root.innerHTML = '<div style="display:inline-block;width:90px;height:90px;'
          + 'animation:fade 5s linear forwards"></div>';
    } },
    { component: 'Logo', variant: 'image', render: function (root) {
        root.innerHTML = '<img src="/assets/logo.png"'
          + ' style="display:block;width:64px;height:32px">';
    } },
    { component: 'Late', variant: 'async', render: function (root) {
        return new Promise(function (resolve) {
          setTimeout(function () {
            root.innerHTML = '<div style="display:inline-block;width:50px;height:60px;'
              + 'background:rgb(0,255,255)"></div>';
            resolve();
          }, 30);
        });
    } },
    { component: 'Text', variant: 'web-font', render: function (root) {
        root.innerHTML = '<p style="display:inline-block;margin:0;font:24px Packaged">'
          + 'Darkroom renders</p>';
    } },
  ];
  var queue = [];
  window.happo = {
    init: function (options) {
      queue = examples.slice();
      var chunk = options && options.chunk;
      if (chunk && chunk.total > 1) {
        var per = Math.ceil(queue.length / chunk.total);
        queue = queue.slice(chunk.index * per, chunk.index * per + per);
      }
    },
    nextExample: async function () {
      var example = queue.shift();
      if (!example) { return undefined; }
      // Each example renders straight into <body> (a block wrapper would span the viewport,
      // and the clip with it); the previous example's nodes go, the scripts stay.
      Array.from(document.body.children).forEach(function (node) {
        if (node.tagName !== 'SCRIPT') { node.remove(); }
      });
      var root = document.createElement('div');
      root.style.display = 'contents';
      document.body.appendChild(root);
      await example.render(root);
      return { component: example.component, variant: example.variant };
    },
  };
})();
"""


def write_static_package(folder: Path) -> Path:
    """Write the package's files into ``folder`` (created); returns it."""
    (folder / "assets").mkdir(parents=True, exist_ok=True)
    (folder / "fonts").mkdir(exist_ok=True)
    (folder / "iframe.html").write_text(_PAGE)
    (folder / "bundle.js").write_text(_BUNDLE)
    yellow = pyvips.Image.black(64, 32, bands=3).new_from_image([255, 255, 0]).cast("uchar")
    yellow.pngsave(str(folder / "assets" / "logo.png"))
    shutil.copy(FONT, folder / "fonts" / "packaged.ttf")
    return folder


def zip_folder(folder: Path) -> bytes:
    """The folder as a zip archive (sorted entries, fixed times, so the same bytes each time)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(str(path.relative_to(folder)), date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    return buffer.getvalue()


def pixel(png: bytes, x: int, y: int) -> tuple[int, ...]:
    """The RGB of one pixel of a PNG."""
    image = pyvips.Image.new_from_buffer(png, "")
    return tuple(int(v) for v in image(x, y)[:3])


def colours(png: bytes) -> set[tuple[int, int, int]]:
    """Every RGB colour a PNG holds."""
    image = pyvips.Image.new_from_buffer(png, "").extract_band(0, n=3)
    data = image.write_to_memory()
    return {tuple(data[i : i + 3]) for i in range(0, len(data), 3)}  # type: ignore[misc]
