"""Settings of the rendering service."""

from __future__ import annotations

import os
from dataclasses import dataclass

from shared.config import RemoteFetchConfig, SigningConfig, setting


@dataclass(frozen=True)
class RenderingConfig(RemoteFetchConfig, SigningConfig):
    """Rendering's settings: storage (packages), remote fetches (pages, allowed external
    requests), the browser, the limits on packages and on renders."""

    chromium: str | None = setting(
        "DARKROOM_CHROMIUM",
        None,
        "Path of the Chromium to render with; unset: Debian's /usr/bin/chromium, else the one"
        " `playwright install chromium` fetched.",
    )
    render_concurrency: int = setting(
        "DARKROOM_RENDER_CONCURRENCY",
        min(os.cpu_count() or 1, 4),
        "Snap requests one renderer process renders at once (browser contexts, and deliveries it"
        " takes from the render queue); default the CPU count, at most 4.",
    )
    max_package_bytes: int = setting(
        "DARKROOM_MAX_PACKAGE_BYTES",
        60 * 1024 * 1024,
        "Largest package archive a client may upload (the Happo clients refuse over 60 MB).",
    )
    max_package_unpacked_bytes: int = setting(
        "DARKROOM_MAX_PACKAGE_UNPACKED_BYTES",
        1024 * 1024 * 1024,
        "Most bytes a package may unpack to (zip-bomb guard), counted while decompressing.",
    )
    max_package_entries: int = setting(
        "DARKROOM_MAX_PACKAGE_ENTRIES", 50_000, "Most files one package may hold."
    )
    max_package_depth: int = setting(
        "DARKROOM_MAX_PACKAGE_DEPTH", 64, "Most path components of one file in a package."
    )
    render_example_seconds: float = setting(
        "DARKROOM_RENDER_EXAMPLE_SECONDS",
        30.0,
        "Longest one example may take to render, settle and be shot; past it the browser is"
        " killed and the request fails naming the example.",
    )
    render_request_seconds: float = setting(
        "DARKROOM_RENDER_REQUEST_SECONDS", 900.0, "Longest one snap request may take in all."
    )
    max_render_examples: int = setting(
        "DARKROOM_MAX_RENDER_EXAMPLES", 5000, "Most examples one snap request may render."
    )
    max_screenshot_pixels: int = setting(
        "DARKROOM_MAX_SCREENSHOT_PIXELS",
        40_000_000,
        "Largest width x height (device pixels) of one screenshot.",
    )
    max_dom_nodes: int = setting(
        "DARKROOM_MAX_DOM_NODES", 200_000, "Most elements one example's document may hold."
    )
    render_external_fetches: bool = setting(
        "DARKROOM_RENDER_EXTERNAL_FETCHES",
        False,
        "Let rendered pages fetch URLs outside their own package (and render `pages` payloads),"
        " through the same SSRF guard as remote_file_url; off: every such request is refused.",
    )
    package_cache_entries: int = setting(
        "DARKROOM_PACKAGE_CACHE_ENTRIES",
        8,
        "Unpacked packages kept on local disk between requests (several targets and chunks"
        " render the same package).",
    )

    def __post_init__(self) -> None:
        for name in ("render_concurrency", "max_render_examples", "package_cache_entries"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
