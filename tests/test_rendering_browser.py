"""The rendering core in Debian's headless Chromium: static packages, DOM snapshots and pages
rendered into PNGs whose sizes and pixels are checked; the same package rendered again gives
the same pixels; hostile packages reach no network, hang nothing and break only their own
request; a killed browser is a retryable loss and the pool relaunches it."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import numpy as np
import pytest

from services.rendering import chromium
from services.rendering import render as render_module
from services.rendering.chromium import BrowserLost, ChromiumPool, find_chromium
from services.rendering.render import (
    OutboundAnswer,
    OutboundRefused,
    RenderFailed,
    RenderLimits,
    render,
)
from shared.rendering import parse_payload
from tests.rendering_support import (
    BLUE,
    GREEN,
    HAPPO_JS_WITH_POINTER_PROBE,
    KEYFRAMES,
    RED,
    WHITE,
    Listener,
    close,
    colour_at,
    dom_job,
    example,
    pixels,
    showcase,
    solid_png,
    static_job,
    static_package,
)

CHROMIUM = find_chromium(None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason=f"No Chromium on this machine: {chromium.CHROMIUM_HELP}"
)

LIMITS = RenderLimits(example_seconds=20, wait_for_happo_seconds=10)


@pytest.fixture(scope="module")
async def pool():
    restarts: list[int] = []
    browsers = ChromiumPool(CHROMIUM, concurrency=2, on_restart=lambda: restarts.append(1))
    browsers.restarted = restarts  # type: ignore[attr-defined]
    await browsers.start()
    yield browsers
    await browsers.close()


def by_name(shots):
    return {(shot.component, shot.variant): shot for shot in shots}


# --- a static package -----------------------------------------------------------------------


async def test_static_package_renders_every_example_as_it_should(pool, tmp_path):
    shots = await render(pool, static_job(), showcase(tmp_path / "pkg"), LIMITS)
    assert len(shots) == 11
    named = by_name(shots)

    box = named["Box", "red"]
    assert (box.width, box.height) == (200, 100)  # the clip is the element, exactly
    assert colour_at(box.png, 100, 50) == RED
    assert pixels(box.png).shape == (100, 200, 3)

    block = named["Block", "no width"]
    assert (block.width, block.height) == (800, 30)  # a block spans the viewport
    assert close(colour_at(block.png, 400, 15), GREEN)

    hidden = named["Hide", "half hidden"]
    assert (hidden.width, hidden.height) == (80, 40)  # the hidden box still takes its place
    assert close(colour_at(hidden.png, 20, 20), GREEN)
    assert colour_at(hidden.png, 60, 20) == WHITE  # ...but shows the background

    assert colour_at(named["Animation", "finite"].png, 25, 25) == BLUE  # the end keyframe
    assert close(colour_at(named["Animation", "infinite"].png, 25, 25), BLUE)

    img = named["Image", "img"]
    assert (img.width, img.height) == (40, 30)
    assert close(colour_at(img.png, 20, 15), GREEN)
    tile = named["Image", "css background"]
    assert (tile.width, tile.height) == (30, 20)
    assert np.all(pixels(tile.png) == np.array(BLUE, dtype=np.uint8))

    # DejaVu Sans Mono from the package: four "i" are 4 x 0.602 em wide; the fallback's "i" is
    # far narrower.
    mono, fallback = named["Font", "web font"], named["Font", "fallback"]
    assert mono.width == pytest.approx(4 * 0.602 * 40, abs=2)
    assert fallback.width < mono.width * 0.8

    rendered_later = named["Async", "render"]
    assert (rendered_later.width, rendered_later.height) == (120, 60)
    assert colour_at(rendered_later.png, 60, 30) == (128, 0, 128)
    waited = named["Async", "wait for content"]
    assert (waited.width, waited.height) == (70, 20)


async def test_device_scale_factor_and_tall_examples(pool, tmp_path):
    package = static_package(
        tmp_path / "pkg",
        [
            example("Tall", "3000", "<div style='width:50px;height:3000px;background:red'></div>"),
            example("Small", "dpr", "<div style='width:30px;height:10px;background:blue'></div>"),
        ],
    )
    tall, small = await render(pool, static_job("400x300", maxHeight=2000), package, LIMITS)
    assert (tall.width, tall.height) == (50, 2000)  # beyond the viewport, capped at maxHeight
    assert colour_at(tall.png, 25, 1990) == RED
    job = static_job("400x300", deviceScaleFactor=2)
    _tall, small = await render(pool, job, package, LIMITS)
    assert (small.width, small.height) == (60, 20)  # device pixels


async def test_the_clip_leaves_out_overflow_an_ancestor_hides(pool, tmp_path):
    scrolled = (
        "<div style='width:120px;height:40px;overflow:auto;background:blue'>"
        "<div style='height:300px;background:red'></div></div>"
    )
    hidden_x = (
        "<div style='width:60px;overflow-x:hidden;background:blue'>"
        "<div style='width:500px;height:20px;background:red'></div></div>"
    )
    package = static_package(
        tmp_path / "pkg",
        [example("List", "scrolled", scrolled), example("Row", "hidden-x", hidden_x)],
    )
    scrolled_shot, hidden_shot = await render(pool, static_job("400x300"), package, LIMITS)
    assert (scrolled_shot.width, scrolled_shot.height) == (120, 40)  # not the 300 px inside
    assert (hidden_shot.width, hidden_shot.height) == (60, 20)  # not the 500 px inside


async def test_the_same_package_renders_the_same_pixels(pool, tmp_path):
    package = showcase(tmp_path / "pkg")
    runs = await asyncio.gather(*(render(pool, static_job(), package, LIMITS) for _ in range(5)))
    first = runs[0]
    for other in runs[1:]:
        assert [(s.component, s.variant) for s in other] == [
            (s.component, s.variant) for s in first
        ]
        for a, b in zip(first, other, strict=True):
            assert (a.width, a.height) == (b.width, b.height), a.component
            assert np.array_equal(pixels(a.png), pixels(b.png)), (a.component, a.variant)


async def test_first_frame_pointer_events_and_hide_behavior(pool, tmp_path):
    package = static_package(
        tmp_path / "pkg",
        [
            example("Animation", "finite", "<div class='fade-once'></div>"),
            example(
                "Hidden",
                "box",
                "<div data-happo-hide style='width:20px;height:20px;background:red'></div>",
            ),
            example("Pointer", "events", "<button style='width:20px;height:10px'></button>"),
        ],
        css=KEYFRAMES,
        happo_js=HAPPO_JS_WITH_POINTER_PROBE,
    )
    older = static_job(freezeAnimations="first-frame", allowPointerEvents=False)
    animation, hidden, pointer = await render(pool, older, package, LIMITS)
    assert colour_at(animation.png, 25, 25) == RED  # paused at the first keyframe
    assert colour_at(hidden.png, 10, 10) == WHITE
    assert pointer.height == 1  # the probe saw pointer-events: none
    ignore = static_job(hideBehavior="ignore")
    _animation, hidden, pointer = await render(pool, ignore, package, LIMITS)
    assert colour_at(hidden.png, 10, 10) == RED  # hideBehavior "ignore" keeps it visible
    assert pointer.height == 2  # pointer events allowed


async def test_init_gets_target_chunk_and_only(pool, tmp_path):
    examples = [
        example("C", f"v{i}", f"<div style='width:{10 + i}px;height:5px'></div>") for i in range(6)
    ]
    examples.append(example("OnlyFirefox", "x", "<div>x</div>", targets=["firefox"]))
    package = static_package(tmp_path / "pkg", examples)
    shots = await render(pool, static_job(chunk={"index": 1, "total": 2}), package, LIMITS)
    assert [s.variant for s in shots] == ["v3", "v4", "v5"]
    everything = await render(pool, static_job(), package, LIMITS)
    assert [s.variant for s in everything] == [f"v{i}" for i in range(6)]  # target filtered


# --- DOM snapshots ----------------------------------------------------------------------------


async def test_dom_snapshots_with_an_assets_package(pool, tmp_path):
    assets = tmp_path / "assets"
    assets.mkdir()
    (assets / "_external").mkdir()
    (assets / "_external" / "5d41402abc4b2a76b9719d911017c592.png").write_bytes(
        solid_png(20, 10, GREEN)
    )
    (assets / "img").mkdir()
    (assets / "img" / "blue.png").write_bytes(solid_png(20, 10, BLUE))
    global_css = [
        {
            "id": "a",
            "conditional": True,
            "css": ".box { width: 100px; height: 40px; background: blue; }",
        },
        {
            "id": "b",
            "conditional": True,
            "css": ".box { width: 300px !important; background: red !important; }",
        },
        {
            "id": "themed",
            "conditional": True,
            "css": "html.dark body[data-theme=x] .t"
            " { width: 60px; height: 30px; background: rgb(0,128,0); }",
        },
        {
            "id": "hosts",
            "conditional": True,
            "css": "outer-host, inner-host { display: block; width: max-content; }",
        },
    ]
    shadow = (
        "<outer-host><happo-shadow-content style='display:none'>"
        "<style>.o { width: 80px; height: 20px; background: rgb(255,0,255); }</style>"
        "<div class='o'></div>"
        "<inner-host><happo-shadow-content style='display:none'>"
        "<style>.i { width: 40px; height: 10px; background: rgb(0,255,255); }</style>"
        "<div class='i'></div></happo-shadow-content></inner-host>"
        "</happo-shadow-content></outer-host>"
    )
    snapshots = [
        {
            "component": "Css",
            "variant": "a only",
            "html": "<div class='box'></div>",
            "stylesheets": ["a"],
        },
        {
            "component": "Css",
            "variant": "a and b",
            "html": "<div class='box'></div>",
            "stylesheets": ["a", "b"],
        },
        {
            "component": "Attrs",
            "variant": "html and body",
            "html": "<div class='t'></div>",
            "stylesheets": ["themed"],
            "htmlElementAttrs": {"class": "dark", "lang": "en"},
            "bodyElementAttrs": {"data-theme": "x", "style": "margin: 0"},
        },
        {
            "component": "Assets",
            "variant": "images",
            "html": "<img src='/_external/5d41402abc4b2a76b9719d911017c592.png'"
            " style='display:block'><img src='img/blue.png' style='display:block'>",
            "stylesheets": [],
        },
        {"component": "Shadow", "variant": "nested", "html": shadow, "stylesheets": ["hosts"]},
        {
            "component": "Dialog",
            "variant": "modal",
            "html": "<dialog data-happo-modal open style='width:60px;height:30px;padding:0;"
            "border:0;background:rgb(0,255,0)'></dialog>",
        },
        {"component": "Firefox", "variant": "only", "html": "<p>x</p>", "targets": ["firefox"]},
    ]
    shots = await render(pool, dom_job(snapshots, global_css), assets, LIMITS)
    named = by_name(shots)
    assert ("Firefox", "only") not in named and len(shots) == 6

    only_a = named["Css", "a only"]
    assert (only_a.width, only_a.height) == (100, 40)  # block b not listed: not applied
    assert colour_at(only_a.png, 50, 20) == BLUE
    both = named["Css", "a and b"]
    assert (both.width, both.height) == (300, 40)
    assert colour_at(both.png, 150, 20) == RED

    themed = named["Attrs", "html and body"]
    assert (themed.width, themed.height) == (60, 30)  # html class and body attribute matched
    assert close(colour_at(themed.png, 30, 15), GREEN)

    images = named["Assets", "images"]
    assert (images.width, images.height) == (20, 20)
    assert close(colour_at(images.png, 10, 5), GREEN)  # /_external/… from the package root
    assert colour_at(images.png, 10, 15) == BLUE  # a relative URL resolves at the root

    nested = named["Shadow", "nested"]
    assert (nested.width, nested.height) == (80, 30)
    assert colour_at(nested.png, 40, 10) == (255, 0, 255)  # the outer shadow root
    assert colour_at(nested.png, 20, 25) == (0, 255, 255)  # the inner one survived the move

    modal = named["Dialog", "modal"]
    assert (modal.width, modal.height) == (60, 30)
    assert colour_at(modal.png, 30, 15) == (0, 255, 0)


async def test_pseudo_states_are_forced_only_when_asked(pool, tmp_path):
    css = [
        {
            "id": "b",
            "conditional": True,
            "css": ".b { display: block; width: 40px; height: 20px; border: 0;"
            " background: red; } .b:hover { background: rgb(0, 255, 0); }"
            " .f:focus { background: rgb(0, 0, 255); }",
        }
    ]
    snapshots = [
        {
            "component": "Button",
            "variant": "hover",
            "html": "<button class='b' data-happo-hover></button>",
            "stylesheets": ["b"],
        },
        {
            "component": "Button",
            "variant": "focus",
            "html": "<button class='b f' data-happo-focus></button>",
            "stylesheets": ["b"],
        },
        {
            "component": "Button",
            "variant": "plain",
            "html": "<button class='b'></button>",
            "stylesheets": ["b"],
        },
    ]
    hover, focus, plain = await render(
        pool, dom_job(snapshots, css, applyPseudoClasses=True), tmp_path, LIMITS
    )
    assert colour_at(hover.png, 20, 10) == (0, 255, 0)
    assert colour_at(focus.png, 20, 10) == BLUE
    assert colour_at(plain.png, 20, 10) == RED  # an earlier example's forced state is gone
    hover, _focus, _plain = await render(pool, dom_job(snapshots, css), tmp_path, LIMITS)
    assert colour_at(hover.png, 20, 10) == RED  # not asked: no pseudo-state


# --- pages and the outbound guard -----------------------------------------------------------


def pages_job(*pages):
    raw = {"viewport": "500x300", "pages": list(pages), "maxHeight": 1000}
    return parse_payload(raw, "browser-chrome", "chrome")


async def test_pages_go_through_outbound_and_fail_clearly_without_it(pool):
    page = (
        "<!DOCTYPE html><html><body style='margin:0'>"
        "<div style='height:1500px;background:rgb(0,0,255)'></div>"
        "<img src='https://cdn.example/green.png'></body></html>"
    )
    asked: list[tuple[str, str, str | None]] = []

    async def outbound(method: str, url: str, headers: dict[str, str]) -> OutboundAnswer:
        asked.append((method, url, headers.get("x-team")))
        if url == "https://site.example/":
            return OutboundAnswer(200, {"content-type": "text/html"}, page.encode())
        if url == "https://cdn.example/green.png":
            return OutboundAnswer(200, {"content-type": "image/png"}, solid_png(5, 5, GREEN))
        raise OutboundRefused("not on the list")

    raw = {
        "viewport": "500x300",
        "maxHeight": 1000,
        "outgoingRequestHeaders": {"X-Team": "darkroom"},
        "pages": [{"url": "https://site.example/", "title": "Home"}],
    }
    job = parse_payload(raw, "browser-chrome", "chrome")
    (shot,) = await render(pool, job, None, LIMITS, outbound)
    assert (shot.component, shot.variant) == ("Home", "default")
    assert (shot.width, shot.height) == (500, 1000)  # full page, capped at maxHeight
    assert colour_at(shot.png, 250, 900) == BLUE
    assert ("GET", "https://site.example/", "darkroom") in asked
    assert ("GET", "https://cdn.example/green.png", "darkroom") in asked

    with pytest.raises(RenderFailed) as failed:
        await render(
            pool, pages_job({"url": "https://site.example/", "title": "Home"}), None, LIMITS
        )
    assert "https://site.example/" in failed.value.reason


# --- hostile packages -----------------------------------------------------------------------


async def test_a_page_reaches_no_network(pool, tmp_path, monkeypatch):
    popups: list[str] = []
    on_page = render_module._Session._on_page

    def spy(self, page):
        if self.page is not None and page is not self.page:
            popups.append(page.url)
        on_page(self, page)

    monkeypatch.setattr(render_module._Session, "_on_page", spy)
    async with Listener() as listener:
        local = f"http://127.0.0.1:{listener.port}"
        script = f"""
            const urls = ['{local}/', 'http://169.254.169.254/latest/meta-data/',
                          'http://10.0.0.1/', 'file:///etc/passwd', 'https://example.com/'];
            const results = [];
            for (const url of urls) {{
                try {{ await fetch(url); results.push('ok'); }} catch (e) {{ results.push('x'); }}
            }}
            try {{
                const ws = new WebSocket('ws://127.0.0.1:{listener.port}/');
                await new Promise(r => {{ ws.onclose = r; ws.onerror = r; setTimeout(r, 500); }});
            }} catch (e) {{}}
            navigator.sendBeacon('{local}/beacon', 'x');
            try {{ new RTCPeerConnection(); }} catch (e) {{}}
            const link = document.createElement('link');
            link.rel = 'preconnect'; link.href = '{local}/'; document.head.appendChild(link);
            const w = results.every(r => r === 'x') ? 50 : 150;
            root.innerHTML = `<img src='{local}/x.png'>`
                + `<div style='width:${{w}}px;height:10px;background:red'></div>`;
        """
        package = static_package(
            tmp_path / "pkg",
            [
                example("Network", "refused", script=script),
                example(
                    "Popup",
                    "and alert",
                    script=f"window.open('{local}/popup'); window.open('/iframe.html');"
                    " alert('hi'); confirm('sure?'); prompt('name?');"
                    " root.innerHTML = \"<div style='width:33px;height:11px'></div>\";",
                ),
                example(
                    "Traversal",
                    "404",
                    script="const r = await fetch('/%2e%2e/%2e%2e/%2e%2e/etc/passwd');"
                    " const s = await fetch('/link-out');"
                    " const w = (r.status === 404 && s.status === 404) ? 44 : 88;"
                    " root.innerHTML = `<div style='width:${w}px;height:10px'></div>`;",
                ),
            ],
        )
        (package / "link-out").symlink_to("/etc/passwd")
        started = time.monotonic()
        shots = await render(pool, static_job(), package, LIMITS)
        await asyncio.sleep(0.5)
        assert listener.accepted == 0
    named = by_name(shots)
    assert named["Network", "refused"].width == 50  # every fetch failed
    assert (named["Popup", "and alert"].width, named["Popup", "and alert"].height) == (33, 11)
    assert named["Traversal", "404"].width == 44  # nothing outside the package is served
    assert len(popups) == 2  # both window.open calls made a page, closed at once
    assert time.monotonic() - started < 15


async def test_an_endless_loop_fails_the_request_and_the_pool_carries_on(pool, tmp_path):
    looping = static_package(
        tmp_path / "loop",
        [
            example("Fine", "first", "<div style='width:10px;height:10px'></div>"),
            example("Loop", "forever", script="while (true) {}"),
        ],
    )
    limits = RenderLimits(example_seconds=2, wait_for_happo_seconds=10)
    started = time.monotonic()
    with pytest.raises(RenderFailed) as failed:
        await render(pool, static_job(), looping, limits)
    assert time.monotonic() - started < 12
    assert "Fine / first" in failed.value.reason and "2 s per example" in failed.value.reason
    good = static_package(tmp_path / "good", [example("A", "b", "<b>ok</b>")])
    (shot,) = await render(pool, static_job(), good, LIMITS)
    assert shot.component == "A"


async def test_limits_name_themselves(pool, tmp_path):
    many = static_package(
        tmp_path / "many",
        [example("Many", f"v{i}") for i in range(10_000)],
    )
    with pytest.raises(RenderFailed) as failed:
        await render(pool, static_job(), many, RenderLimits(max_examples=5))
    assert "more than 5 examples" in failed.value.reason

    huge = static_package(
        tmp_path / "huge",
        [example("Huge", "dom", script="root.innerHTML = '<i></i>'.repeat(30000);")],
    )
    with pytest.raises(RenderFailed) as failed:
        await render(pool, static_job(), huge, RenderLimits(max_dom_nodes=10_000))
    assert "Huge / dom" in failed.value.reason and "limit of 10000" in failed.value.reason

    big = static_package(
        tmp_path / "big",
        [example("Big", "shot", "<div style='width:1500px;height:1500px'></div>")],
    )
    with pytest.raises(RenderFailed) as failed:
        await render(pool, static_job(), big, RenderLimits(max_screenshot_pixels=1_000_000))
    assert "1500x1500" in failed.value.reason and "1000000 pixels" in failed.value.reason

    no_happo = static_package(tmp_path / "none", [], happo_js="/* no window.happo */")
    with pytest.raises(RenderFailed) as failed:
        await render(pool, static_job(), no_happo, RenderLimits(wait_for_happo_seconds=0.5))
    assert failed.value.reason == "Timed out while waiting for window.happo"

    looping = static_package(
        tmp_path / "stuck",
        [example("Same", "one"), example("Same", "one")],
    )
    with pytest.raises(RenderFailed) as failed:
        await render(pool, static_job(), looping, LIMITS)
    assert failed.value.reason == "Stuck in loop processing examples"

    firefox = parse_payload(
        {"viewport": "400x300", "staticPackage": "p.zip"}, "browser-firefox", "firefox"
    )
    with pytest.raises(RenderFailed) as failed:
        await render(pool, firefox, many, LIMITS)
    assert "'firefox'" in failed.value.reason


async def test_a_killed_browser_is_lost_and_relaunched(pool, tmp_path):
    slow = static_package(
        tmp_path / "slow",
        [
            example("Quick", "one", "<div style='width:10px;height:10px'></div>"),
            example("Slow", "two", script="await new Promise(r => setTimeout(r, 8000));"),
        ],
    )
    restarts = pool.restarts

    async def kill_soon() -> None:
        await asyncio.sleep(1.5)
        await pool.kill()

    killer = asyncio.create_task(kill_soon())
    with pytest.raises(BrowserLost):
        await render(pool, static_job(), slow, LIMITS)
    await killer
    good = static_package(tmp_path / "good", [example("After", "kill", "<b>ok</b>")])
    (shot,) = await render(pool, static_job(), good, LIMITS)
    assert shot.component == "After"
    assert pool.restarts == restarts + 1
    assert len(pool.restarted) == pool.restarts


async def test_two_requests_render_at_once(pool, tmp_path):
    package = static_package(
        tmp_path / "pkg",
        [
            example("C", f"v{i}", f"<div style='width:{20 + i}px;height:8px'></div>")
            for i in range(20)
        ],
    )
    a, b = await asyncio.gather(
        render(pool, static_job(), package, LIMITS), render(pool, static_job(), package, LIMITS)
    )
    assert [s.width for s in a] == [s.width for s in b] == [20 + i for i in range(20)]


# --- finding Chromium -------------------------------------------------------------------------


def test_find_chromium_falls_back_and_can_find_none(monkeypatch, tmp_path):
    assert find_chromium("/nonexistent/chromium") == CHROMIUM
    not_executable = tmp_path / "chromium"
    not_executable.write_text("#!/bin/sh\n")
    assert find_chromium(str(not_executable)) == CHROMIUM
    not_executable.chmod(0o755)
    assert find_chromium(str(not_executable)) == str(not_executable)

    monkeypatch.setattr(chromium, "SYSTEM_CHROMIUMS", (str(tmp_path / "nothing"),))
    monkeypatch.setattr(chromium, "playwright_chromium", lambda: None)
    assert find_chromium("/nonexistent/chromium") is None
    assert find_chromium(None) is None


def test_playwright_registry_names_only_files_that_exist():
    found = chromium.playwright_chromium()
    assert found is None or Path(found).is_file()
    assert json.dumps(chromium.CHROMIUM_HELP).count("\\n") == 0  # one line
