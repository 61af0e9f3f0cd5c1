"""What the renderer puts into a page: the JavaScript it evaluates there (each a function
playwright calls with one argument), the CSS that steadies a render, and the documents built
for DOM snapshots.

Nothing here is installed as a global of the page: each function is sent with the call that
needs it, so a package sees no Darkroom API (and can break only its own screenshots).
"""

from __future__ import annotations

import html
import json
import re

from shared.rendering import CssBlock, DomSnapshot, TargetOptions

#: The id of the ``<style>`` element that holds the steadying CSS and the global CSS.
STYLE_ID = "__darkroom-render-style"

#: True once the package's ``window.happo`` can hand out examples.
HAPPO_READY = "() => !!(window.happo && typeof window.happo.nextExample === 'function')"

#: Put ``css`` into the document in a style element of ours (again if the page removed it).
ENSURE_STYLE = """css => {
    let style = document.getElementById(STYLE_ID);
    if (!style) {
        style = document.createElement('style');
        style.id = STYLE_ID;
        (document.head || document.documentElement).appendChild(style);
    }
    if (style.textContent !== css) style.textContent = css;
}""".replace("STYLE_ID", json.dumps(STYLE_ID))

#: ``window.happo.init({targetName, chunk, only})``, or ``initChunk(chunk)`` for older packages.
HAPPO_INIT = """async ({targetName, chunk, only}) => {
    const happo = window.happo;
    chunk = chunk || undefined;
    only = only === null ? undefined : only;
    if (typeof happo.init === 'function') await happo.init({targetName, chunk, only});
    else if (typeof happo.initChunk === 'function') await happo.initChunk(chunk);
}"""

#: Whether ``text`` shows in the page yet (``waitForContent``).
HAS_TEXT = "text => !!document.body && document.body.innerText.includes(text)"

#: Elements whose pseudo-state a snapshot asks for, by attribute.
PSEUDO_STATES = (
    ("data-happo-hover", "hover"),
    ("data-happo-focus", "focus"),
    ("data-happo-active", "active"),
    ("data-happo-focus-visible", "focus-visible"),
)
_PSEUDO_SELECTOR = ",".join(f"[{attribute}]" for attribute, _state in PSEUDO_STATES)
HAS_PSEUDO_STATES = f"() => !!document.querySelector({json.dumps(_PSEUDO_SELECTOR)})"

#: The next example, once it has rendered; null when there are no more. ``pseudo``: whether it
#: has elements that ask for a pseudo-state.
HAPPO_NEXT = (
    """async () => {
    const item = await window.happo.nextExample();
    if (!item) return null;
    const text = value => (typeof value === 'string' ? value : null);
    return {
        component: text(item.component),
        variant: text(item.variant),
        waitForContent: text(item.waitForContent),
        skipped: item.skipped === true,
        pseudo: ("""
    + HAS_PSEUDO_STATES
    + """)(),
    };
}"""
)

#: A DOM snapshot's document as the client had it: shadow content into open shadow roots
#: (deepest first, moving the nodes so inner roots survive), modal dialogs shown modally.
PREPARE_SNAPSHOT = """() => {
    const contents = Array.from(document.querySelectorAll('happo-shadow-content')).reverse();
    for (const content of contents) {
        const host = content.parentElement;
        content.remove();
        if (!host) continue;
        let root = host.shadowRoot;
        if (!root) {
            try { root = host.attachShadow({mode: 'open'}); } catch (e) { continue; }
        }
        root.append(...content.childNodes);
    }
    for (const dialog of document.querySelectorAll('dialog[data-happo-modal]')) {
        try {
            if (dialog.open) dialog.close();
            dialog.removeAttribute('open');
            dialog.showModal();
        } catch (e) { /* not connected or not a dialog: leave it */ }
    }
}"""

#: Settle the page and measure what to shoot: returns ``{nodes}`` alone when the document has
#: more elements than allowed, else ``{nodes, sx, sy, clip: {x, y, width, height}}`` (the
#: window scroll and the clip in document CSS pixels).
#: Waits for images (``<img>``, ``srcset``, CSS backgrounds of elements and their
#: ``::before``/``::after``), web fonts and two animation frames; freezes CSS and Web
#: Animations (at the end of their run for ``last``, at 0 for ``first``), SVG animations and
#: videos; applies ``data-happo-scrollposition``; (re)adds ``css`` in our style element unless
#: it is null.
STABILISE = (
    """async o => {
    const nodes = document.getElementsByTagName('*').length;
    if (nodes > o.maxNodes) return {nodes};
    if (o.css !== null) ("""
    + ENSURE_STYLE
    + """)(o.css);
    const body = document.body || document.documentElement;
    const capped = (promise, ms) => Promise.race([promise, new Promise(r => setTimeout(r, ms))]);

    // Images: lazy ones load now; wait for every <img> and every CSS background image.
    const waits = [];
    for (const img of document.images) {
        if (img.loading === 'lazy') img.loading = 'eager';
        if (!img.complete) waits.push(new Promise(resolve => {
            img.addEventListener('load', resolve, {once: true});
            img.addEventListener('error', resolve, {once: true});
        }));
        else if (img.naturalWidth > 0 && img.decode) waits.push(img.decode().catch(() => {}));
    }
    const urls = new Set();
    const collect = value => {
        if (!value || value === 'none' || value.indexOf('url(') < 0) return;
        for (const match of value.matchAll(/url\\("((?:[^"\\\\]|\\\\.)*)"\\)/g)) {
            if (!match[1].startsWith('data:')) urls.add(match[1].replace(/\\\\(.)/g, '$1'));
        }
    };
    const elements = body.getElementsByTagName('*');
    const scan = Math.min(elements.length, o.maxBackgroundScan);
    for (let i = 0; i < scan; i++) {
        const el = elements[i];
        collect(getComputedStyle(el).backgroundImage);
        for (const pseudo of ['::before', '::after']) {
            const style = getComputedStyle(el, pseudo);
            if (style.content !== 'none') collect(style.backgroundImage);
        }
    }
    for (const url of urls) {
        const img = new Image();
        img.src = url;
        waits.push(img.decode().catch(() => {}));
    }
    await capped(Promise.all(waits), o.waitMs);
    void body.offsetHeight;
    await capped(document.fonts.ready, o.waitMs);

    // Freeze what moves.
    for (const animation of document.getAnimations()) {
        try {
            const timing = animation.effect ? animation.effect.getComputedTiming() : null;
            if (o.freeze === 'first' || !timing) {
                animation.pause();
                animation.currentTime = 0;
                continue;
            }
            const finite = Number.isFinite(timing.activeDuration);
            if (finite && (timing.fill === 'forwards' || timing.fill === 'both')) {
                animation.finish();
                continue;
            }
            const iteration = Number.isFinite(timing.duration) ? timing.duration : 0;
            const end = (timing.delay || 0) + (finite ? timing.activeDuration : iteration);
            animation.pause();
            animation.currentTime = Math.max(0, end - 0.001);
        } catch (e) {
            try { animation.pause(); } catch (e2) { /* gone */ }
        }
    }
    for (const svg of document.querySelectorAll('svg')) {
        if (typeof svg.pauseAnimations === 'function') {
            svg.pauseAnimations();
            svg.setCurrentTime(0);
        }
    }
    const seeks = [];
    for (const video of document.querySelectorAll('video')) {
        video.autoplay = false;
        video.pause();
        if (video.currentTime !== 0) {
            seeks.push(new Promise(r => video.addEventListener('seeked', r, {once: true})));
            video.currentTime = 0;
        }
    }
    await capped(Promise.all(seeks), o.waitMs);

    for (const el of document.querySelectorAll('[data-happo-scrollposition]')) {
        const [top, left] = el.getAttribute('data-happo-scrollposition').split(',').map(Number);
        if (Number.isFinite(top)) el.scrollTop = top;
        if (Number.isFinite(left)) el.scrollLeft = left;
    }
    await new Promise(r => requestAnimationFrame(r));

    // What to shoot.
    const sx = window.scrollX, sy = window.scrollY;
    let left = Infinity, top = Infinity, right = -Infinity, bottom = -Infinity;
    const add = rect => {
        if (rect.width <= 0 || rect.height <= 0) return;
        left = Math.min(left, rect.left + sx);
        top = Math.min(top, rect.top + sy);
        right = Math.max(right, rect.right + sx);
        bottom = Math.max(bottom, rect.bottom + sy);
    };
    const skip = new Set(['SCRIPT', 'STYLE', 'LINK', 'TEMPLATE', 'NOSCRIPT', 'META', 'TITLE',
                          'BASE', 'HAPPO-SHADOW-CONTENT']);
    // A box seen through ancestors that clip their overflow (hidden, auto, scroll, clip) counts
    // only where it shows: the hidden part of a scrolled list would be blank rows in the shot.
    const within = (r, b) => {
        const l = Math.max(r.left, b.left), t = Math.max(r.top, b.top);
        const rr = Math.min(r.right, b.right), bb = Math.min(r.bottom, b.bottom);
        return {left: l, top: t, right: rr, bottom: bb, width: rr - l, height: bb - t};
    };
    const walk = (parent, bounds) => {
        for (const el of parent.children) {
            if (skip.has(el.tagName.toUpperCase())) continue;
            const rect = el.getBoundingClientRect();
            if (!el.hasAttribute('data-happo-ignore')) add(within(rect, bounds));
            let inner = bounds;
            if (el.firstElementChild || el.shadowRoot) {
                const style = getComputedStyle(el);
                const clipsX = style.overflowX !== 'visible';
                const clipsY = style.overflowY !== 'visible';
                if ((clipsX || clipsY) && style.display !== 'contents') {
                    inner = {
                        left: clipsX ? Math.max(bounds.left, rect.left) : bounds.left,
                        right: clipsX ? Math.min(bounds.right, rect.right) : bounds.right,
                        top: clipsY ? Math.max(bounds.top, rect.top) : bounds.top,
                        bottom: clipsY ? Math.min(bounds.bottom, rect.bottom) : bounds.bottom,
                    };
                }
            }
            walk(el, inner);
            if (el.shadowRoot) walk(el.shadowRoot, inner);
        }
    };
    const clipped = document.querySelector('[data-happo-clip]');
    if (o.fullPage) {
        const root = document.documentElement;
        left = 0; top = 0;
        right = Math.max(root.scrollWidth, body.scrollWidth, window.innerWidth);
        bottom = Math.max(root.scrollHeight, body.scrollHeight, window.innerHeight);
    } else if (clipped) {
        add(clipped.getBoundingClientRect());
    } else {
        walk(body, {left: -Infinity, top: -Infinity, right: Infinity, bottom: Infinity});
    }
    if (left === Infinity) return {nodes, sx, sy, clip: {x: 0, y: 0, width: 1, height: 1}};
    const x = Math.max(0, Math.floor(left)), y = Math.max(0, Math.floor(top));
    const width = Math.min(o.maxWidth, Math.max(1, Math.ceil(right) - x));
    const height = Math.min(o.maxHeight, Math.max(1, Math.ceil(bottom) - y));
    return {nodes, sx, sy, clip: {x, y, width, height}};
}"""
)

#: ``HAPPO_NEXT``, then ``STABILISE(o)`` unless the example is skipped, waits for content or
#: asks for pseudo-states (those settle after the renderer has done its part): ``{item,
#: settled?}`` (``item`` null at the end).
NEXT_AND_STABILISE = (
    "async o => { const item = await ("
    + HAPPO_NEXT
    + ")(); if (!item || item.skipped || item.waitForContent || item.pseudo) return {item};"
    + " return {item, settled: await ("
    + STABILISE
    + ")(o)}; }"
)

#: ``PREPARE_SNAPSHOT``, then ``STABILISE(o)`` unless the snapshot asks for pseudo-states:
#: ``{pseudo, settled?}``.
PREPARE_AND_STABILISE = (
    "async o => { ("
    + PREPARE_SNAPSHOT
    + ")(); const pseudo = ("
    + HAS_PSEUDO_STATES
    + ")(); if (pseudo) return {pseudo}; return {pseudo, settled: await ("
    + STABILISE
    + ")(o)}; }"
)

#: Scripts every document of a render gets first: no peer-to-peer or QUIC transports (the
#: browser's flags refuse them too; this makes them fail at once).
LOCKDOWN = """(() => {
    for (const name of ['RTCPeerConnection', 'webkitRTCPeerConnection', 'WebTransport']) {
        try { delete window[name]; } catch (e) { /* not configurable */ }
    }
})();"""


def steadying_css(options: TargetOptions) -> str:
    """The CSS every render gets: no transitions, no caret, hidden ``data-happo-hide``
    elements (unless ``hideBehavior`` is ``ignore``), no pointer events unless allowed."""
    rules = [
        "*, *::before, *::after { transition: none !important;"
        " caret-color: transparent !important; }",
        "html { scroll-behavior: auto !important; }",
    ]
    if options.hide_behavior != "ignore":
        rules.append("[data-happo-hide], [data-happo-hide] * { visibility: hidden !important; }")
    if not options.allow_pointer_events:
        rules.append("*, *::before, *::after { pointer-events: none !important; }")
    return "\n".join(rules)


_ATTRIBUTE_NAME = re.compile(r"^[^\s\"'>/=\x00-\x1f\x7f]+$")
_STYLE_END = re.compile(r"</(style)", re.IGNORECASE)


def snapshot_document(
    snapshot: DomSnapshot, blocks: tuple[CssBlock, ...], options: TargetOptions
) -> str:
    """One DOM snapshot as a document: doctype, the html/body attributes, the CSS blocks that
    apply to it (unconditional ones always, conditional ones when its ``stylesheets`` lists
    their id) in ``globalCSS`` order, its own CSS, the steadying CSS, then its HTML."""
    listed = set(snapshot.stylesheets)
    styles = [
        block.css
        for block in blocks
        if block.css and (not block.conditional or (block.id is not None and block.id in listed))
    ]
    if snapshot.css:
        styles.append(snapshot.css)
    head = "".join(f"<style>{_style_text(css)}</style>" for css in styles)
    steady = f'<style id="{STYLE_ID}">{_style_text(steadying_css(options))}</style>'
    return (
        "<!DOCTYPE html>\n"
        f"<html{_attributes(snapshot.html_attributes)}>"
        f'<head><meta charset="utf-8">{head}{steady}</head>'
        f"<body{_attributes(snapshot.body_attributes)}>{snapshot.html}</body></html>"
    )


def _style_text(css: str) -> str:
    # ``</style`` would end the element early; ``<\/style`` reads the same to CSS.
    return _STYLE_END.sub(r"<\\/\1", css)


def _attributes(pairs: tuple[tuple[str, str], ...]) -> str:
    return "".join(
        f' {name}="{html.escape(value, quote=True)}"'
        for name, value in pairs
        if _ATTRIBUTE_NAME.match(name)
    )
