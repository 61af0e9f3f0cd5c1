"""The render contract between reports (which takes Happo snap requests) and rendering (which
renders them in Chromium): the events, and the one parser of a snap request's payload.

A Happo client asks the server to render with a *snap request*: a request type
(``browser-<type>``), a target name and a payload (``../shared/happo-rendering.md`` in the team
folder describes every key). Reports checks the payload with :func:`parse_payload` when the
request arrives (a bad one is a 4xx and nothing is kept), stores it, and records
``render.requested``; a rendering worker asks reports for the payload, parses it with the same
function, renders it and records the outcome.

The conversation, over the event stream:

* ``render.requested`` ``{request_id, account_id}`` — snap request ``request_id`` waits for a
  rendering worker (competing consumers on one durable queue).
* ``render.completed`` ``{request_id, account_id, snaps: [{component, variant, image_hash,
  sha256, key, width, height}], worker, seconds}`` — every example is stored as a Happo image
  of the account (``image_hash`` is the md5 of the PNG, as the Image API names uploads).
* ``render.failed`` ``{request_id, account_id, reason}`` — the request cannot be rendered (a
  target type Darkroom has no engine for, a package that is missing or hostile, a page that
  timed out or broke a limit); ``reason`` is shown to the client.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from shared.errors import InvalidRequest

RENDER_REQUESTED = "render.requested"
RENDER_COMPLETED = "render.completed"
RENDER_FAILED = "render.failed"

#: Target types rendered in Chromium (Edge is Chromium too). Any other type fails its request
#: with a message naming the type, never a screenshot from another engine under its name.
CHROMIUM_TYPES = frozenset({"chrome", "edge"})

#: Request types that are not a browser render: the snapshots of an earlier report.
EXTENDS_REPORT = "extends-report"

STATIC, DOM, PAGES = "static", "dom", "pages"

#: Largest viewport side a payload may ask for, in CSS pixels.
MAX_VIEWPORT_SIDE = 5000
#: ``maxHeight`` when a payload gives none (and ``maxWidth`` defaults to ``maxHeight``).
DEFAULT_MAX_HEIGHT = 5000

_VIEWPORT = re.compile(r"^([0-9]{1,5})x([0-9]{1,5})$")
_TYPE = re.compile(r"^browser-([a-z0-9][a-z0-9-]{0,39})$")
_NAME_LIMIT = 500


@dataclass(frozen=True)
class TargetOptions:
    """How a target renders (the payload's target options, defaults filled in)."""

    browser: str
    viewport: tuple[int, int]
    max_width: int = DEFAULT_MAX_HEIGHT
    max_height: int = DEFAULT_MAX_HEIGHT
    #: ``first-frame`` (older clients' default) or ``last-frame``.
    freeze_animations: str = "first-frame"
    prefers_reduced_motion: bool = True
    allow_pointer_events: bool = False
    #: ``hide`` (``visibility: hidden``) or ``ignore`` (kept visible).
    hide_behavior: str = "hide"
    apply_pseudo_classes: bool = False
    #: ``light``, ``dark`` or None (the browser's default).
    prefers_color_scheme: str | None = None
    outgoing_request_headers: tuple[tuple[str, str], ...] = ()
    full_page_fallback: bool = False
    device_scale_factor: float = 1.0
    fail_on_wait_for_timeout: bool = False


@dataclass(frozen=True)
class CssBlock:
    """A block of global CSS; a conditional one applies to the DOM snapshots that list its id."""

    css: str
    id: str | None = None
    conditional: bool = False


@dataclass(frozen=True)
class DomSnapshot:
    """One DOM snapshot: an example's HTML as the client's browser had it."""

    component: str
    variant: str
    html: str
    css: str = ""
    stylesheets: tuple[str, ...] = ()
    html_attributes: tuple[tuple[str, str], ...] = ()
    body_attributes: tuple[tuple[str, str], ...] = ()
    #: Target names the snapshot is for (None: every target).
    targets: tuple[str, ...] | None = None


@dataclass(frozen=True)
class PageToShoot:
    """One page of a ``pages`` payload: navigate to ``url``, shoot it as component ``title``."""

    url: str
    title: str
    wait_for_content: str | None = None
    wait_for_selector: str | None = None


@dataclass(frozen=True)
class RenderJob:
    """A snap request's payload, parsed: what to render, for which target, how."""

    kind: str
    target_name: str
    options: TargetOptions
    global_css: tuple[CssBlock, ...] = ()
    #: The package path the client echoes back (``staticPackage`` or ``assetsPackage``).
    package: str | None = None
    snapshots: tuple[DomSnapshot, ...] = ()
    pages: tuple[PageToShoot, ...] = ()
    #: ``(index, total)`` of a chunked static package, or None for the whole of it.
    chunk: tuple[int, int] | None = None
    #: What the client passes on to ``window.happo.init`` as ``only`` (opaque to us).
    only: Any = field(default=None, compare=False)

    def applies(self, snapshot: DomSnapshot) -> bool:
        """Whether a DOM snapshot is for this job's target."""
        return snapshot.targets is None or self.target_name in snapshot.targets


def browser_of(request_type: str) -> str:
    """The target type of a ``browser-<type>`` request type; 422 for anything else."""
    match = _TYPE.match(request_type) if isinstance(request_type, str) else None
    if match is None:
        raise InvalidRequest(
            "`type` must be `browser-<type>` (e.g. browser-chrome) or extends-report"
        )
    return match.group(1)


def unrenderable(browser: str) -> str | None:
    """Why a target type cannot be rendered here, or None when Chromium renders it."""
    if browser in CHROMIUM_TYPES:
        return None
    return (
        f"Darkroom renders chrome and edge targets in Chromium; {browser!r} targets need an"
        " engine it does not ship, so this request is not rendered"
    )


def parse_payload(raw: Any, request_type: str, target_name: str) -> RenderJob:
    """Parse a snap request's payload (already decoded from JSON) into a :class:`RenderJob`;
    :class:`~shared.errors.InvalidRequest` names the first key that is wrong. Keys this
    parser does not know are ignored: clients add options over time."""
    if not isinstance(raw, dict):
        raise InvalidRequest("The payload must be a JSON object")
    target_name = _text(target_name, "targetName")
    options = _options(raw, browser_of(request_type))
    global_css = _global_css(raw.get("globalCSS"))
    chunk = _chunk(raw.get("chunk"))
    if raw.get("snapPayloads") is not None:
        snapshots = _list(raw["snapPayloads"], "snapPayloads")
        return RenderJob(
            kind=DOM,
            target_name=target_name,
            options=options,
            global_css=global_css,
            package=_optional_text(raw.get("assetsPackage"), "assetsPackage"),
            snapshots=tuple(_snapshot(item, i) for i, item in enumerate(snapshots)),
            chunk=chunk,
        )
    if raw.get("pages") is not None:
        pages = _list(raw["pages"], "pages")
        return RenderJob(
            kind=PAGES,
            target_name=target_name,
            options=options,
            global_css=global_css,
            pages=tuple(_page(item, i) for i, item in enumerate(pages)),
            chunk=chunk,
        )
    package = _optional_text(raw.get("staticPackage"), "staticPackage")
    if package is None:
        raise InvalidRequest(
            "The payload names nothing to render: `staticPackage`, `snapPayloads` or `pages`"
        )
    return RenderJob(
        kind=STATIC,
        target_name=target_name,
        options=options,
        global_css=global_css,
        package=package,
        chunk=chunk,
        only=raw.get("only"),
    )


# --- the parts ---------------------------------------------------------------------------------


def _options(raw: dict[str, Any], browser: str) -> TargetOptions:
    viewport = raw.get("viewport")
    match = _VIEWPORT.match(viewport) if isinstance(viewport, str) else None
    if match is None:
        raise InvalidRequest("`viewport` must be `<width>x<height>`, e.g. 1024x768")
    width, height = int(match.group(1)), int(match.group(2))
    if not (1 <= width <= MAX_VIEWPORT_SIDE and 1 <= height <= MAX_VIEWPORT_SIDE):
        raise InvalidRequest(f"`viewport` sides are 1 to {MAX_VIEWPORT_SIDE} pixels")
    max_height = _dimension(raw.get("maxHeight"), "maxHeight", DEFAULT_MAX_HEIGHT)
    # happo 6 always sends failOnWaitForTimeout and, for the targets a snapshot names itself,
    # `__dynamic` without the animation and pointer options: its defaults, not older clients'.
    happo6 = "failOnWaitForTimeout" in raw or raw.get("__dynamic") is True
    freeze = raw.get("freezeAnimations") or ("last-frame" if happo6 else "first-frame")
    if freeze not in ("first-frame", "last-frame"):
        raise InvalidRequest("`freezeAnimations` is first-frame or last-frame")
    hide = raw.get("hideBehavior") or "hide"
    if hide not in ("hide", "ignore"):
        raise InvalidRequest("`hideBehavior` is hide or ignore")
    scheme = raw.get("prefersColorScheme")
    if scheme not in (None, "light", "dark"):
        raise InvalidRequest("`prefersColorScheme` is light or dark")
    headers = raw.get("outgoingRequestHeaders") or {}
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise InvalidRequest("`outgoingRequestHeaders` must be an object of strings")
    scale = raw.get("deviceScaleFactor", 1)
    if isinstance(scale, bool) or not isinstance(scale, int | float) or not 0.5 <= scale <= 4:
        raise InvalidRequest("`deviceScaleFactor` is a number from 0.5 to 4")
    return TargetOptions(
        browser=browser,
        viewport=(width, height),
        max_height=max_height,
        max_width=_dimension(raw.get("maxWidth"), "maxWidth", max_height),
        freeze_animations=freeze,
        prefers_reduced_motion=_flag(raw, "prefersReducedMotion", True),
        allow_pointer_events=_flag(raw, "allowPointerEvents", happo6),
        hide_behavior=hide,
        apply_pseudo_classes=_flag(raw, "applyPseudoClasses", False),
        prefers_color_scheme=scheme,
        outgoing_request_headers=tuple(sorted(headers.items())),
        full_page_fallback=_flag(raw, "useFullPageFallbackForTallScreenshots", False),
        device_scale_factor=float(scale),
        fail_on_wait_for_timeout=_flag(raw, "failOnWaitForTimeout", False),
    )


def _global_css(raw: Any) -> tuple[CssBlock, ...]:
    if raw is None or raw == "":
        return ()
    if isinstance(raw, str):
        return (CssBlock(css=raw),)
    blocks = []
    for i, block in enumerate(_list(raw, "globalCSS")):
        if isinstance(block, str):
            blocks.append(CssBlock(css=block))
            continue
        if not isinstance(block, dict) or not isinstance(block.get("css", ""), str):
            raise InvalidRequest(f"globalCSS[{i}] must be a string or {{id, conditional, css}}")
        block_id = block.get("id")
        blocks.append(
            CssBlock(
                css=block.get("css", ""),
                id=None if block_id is None else str(block_id),
                conditional=bool(block.get("conditional", False)),
            )
        )
    return tuple(blocks)


def _snapshot(item: Any, i: int) -> DomSnapshot:
    where = f"snapPayloads[{i}]"
    if not isinstance(item, dict):
        raise InvalidRequest(f"{where} must be an object")
    html = item.get("html")
    if not isinstance(html, str):
        raise InvalidRequest(f"{where}.html must be a string")
    targets = item.get("targets")
    if targets is not None and (
        not isinstance(targets, list) or not all(isinstance(t, str) for t in targets)
    ):
        raise InvalidRequest(f"{where}.targets must be a list of target names")
    stylesheets = item.get("stylesheets") or []
    if not isinstance(stylesheets, list):
        raise InvalidRequest(f"{where}.stylesheets must be a list of ids")
    css = item.get("css") or ""
    if not isinstance(css, str):
        raise InvalidRequest(f"{where}.css must be a string")
    return DomSnapshot(
        component=_text(item.get("component"), f"{where}.component"),
        variant=_text(item.get("variant", "default"), f"{where}.variant"),
        html=html,
        css=css,
        stylesheets=tuple(str(s) for s in stylesheets),
        html_attributes=_attributes(item.get("htmlElementAttrs"), f"{where}.htmlElementAttrs"),
        body_attributes=_attributes(item.get("bodyElementAttrs"), f"{where}.bodyElementAttrs"),
        targets=None if targets is None else tuple(targets),
    )


def _page(item: Any, i: int) -> PageToShoot:
    where = f"pages[{i}]"
    if not isinstance(item, dict):
        raise InvalidRequest(f"{where} must be an object")
    url = _text(item.get("url"), f"{where}.url")
    if not url.startswith(("http://", "https://")):
        raise InvalidRequest(f"{where}.url must be an http(s) URL")
    return PageToShoot(
        url=url,
        title=_text(item.get("title"), f"{where}.title"),
        wait_for_content=_optional_text(item.get("waitForContent"), f"{where}.waitForContent"),
        wait_for_selector=_optional_text(item.get("waitForSelector"), f"{where}.waitForSelector"),
    )


def _attributes(raw: Any, where: str) -> tuple[tuple[str, str], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise InvalidRequest(f"{where} must be an object")
    return tuple((str(k), "" if v is None else str(v)) for k, v in raw.items())


def _chunk(raw: Any) -> tuple[int, int] | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise InvalidRequest("`chunk` must be {index, total}")
    index, total = raw.get("index"), raw.get("total")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (index, total)) or not (
        0 <= index < total <= 10_000
    ):
        raise InvalidRequest("`chunk` must be {index, total} with 0 <= index < total")
    return (index, total)


def _dimension(raw: Any, name: str, default: int) -> int:
    if raw is None:
        return default
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= 50_000:
        raise InvalidRequest(f"`{name}` is a whole number of pixels from 1 to 50000")
    return raw


def _flag(raw: dict[str, Any], name: str, default: bool) -> bool:
    value = raw.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidRequest(f"`{name}` must be true or false")
    return value


def _list(raw: Any, name: str) -> list[Any]:
    if not isinstance(raw, list):
        raise InvalidRequest(f"`{name}` must be a list")
    return raw


def _text(raw: Any, name: str) -> str:
    if not isinstance(raw, str) or not raw or len(raw) > _NAME_LIMIT:
        raise InvalidRequest(f"`{name}` must be a string of 1 to {_NAME_LIMIT} characters")
    return raw


def _optional_text(raw: Any, name: str) -> str | None:
    return None if raw is None else _text(raw, name)
