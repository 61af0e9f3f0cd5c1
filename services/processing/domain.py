"""Processing's rules as plain computation: reading derivative requests,
``analysis.requested`` and ``comparison.requested`` payloads, checking that what they ask for is
consistent, and shaping the answers of a comparison. No pyvips, no I/O (transforms live in
:mod:`services.processing.transforms`, the quality analysis in
:mod:`services.processing.quality`, pixel diffs in :mod:`services.processing.diffs`)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.derivatives import Transform, derivative_key
from shared.errors import InvalidRequest
from shared.store_keys import blob_key

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class UnanswerableRequest(ValueError):
    """A requested job's payload without the id its answer names (an ``analysis.requested``
    without an ``image_id``, a ``comparison.requested`` without a ``comparison_id``): nobody
    could be told the outcome, so it is poison for the dead-letter queue."""


@dataclass(frozen=True)
class DerivativeRequest:
    """What a derivative request asks: the original at ``original_key`` (whose bytes hash to
    ``original_sha256``) through ``transform``, stored at ``key``."""

    key: str
    original_sha256: str
    original_key: str
    transform: Transform


def claimed_sha256(data: Mapping[str, Any]) -> str | None:
    """The original's hash as the payload gives it, if it gives one (for a failure report)."""
    original = data.get("original")
    sha256 = original.get("sha256") if isinstance(original, Mapping) else None
    return sha256 if isinstance(sha256, str) else None


def read_request(data: Mapping[str, Any]) -> DerivativeRequest:
    """Read and check a derivative request (the contract in :mod:`shared.derivatives`).

    The key must be the one :func:`shared.derivatives.derivative_key` gives for the original
    and the transform: the key is where the result is written, so a request must not be able
    to name any other place in the store. Raises :class:`InvalidRequest` for anything wrong.
    """
    key = data.get("key")
    if not isinstance(key, str) or not key:
        raise InvalidRequest("The request names no derivative key")
    sha256, original_key = _requested_original(data)
    raw_transform = data.get("transform")
    if not isinstance(raw_transform, Mapping):
        raise InvalidRequest("The request has no transform")
    transform = Transform.from_dict(raw_transform)
    if key != derivative_key(sha256, transform):
        raise InvalidRequest("The derivative key does not match the original and the transform")
    return DerivativeRequest(key, sha256, original_key, transform)


def _requested_original(data: Mapping[str, Any]) -> tuple[str, str]:
    """``(sha256, store key)`` of the original a request names; :class:`InvalidRequest` when
    it names none or names it badly."""
    original = data.get("original")
    if not isinstance(original, Mapping):
        raise InvalidRequest("The request names no original image")
    sha256, original_key = original.get("sha256"), original.get("key")
    if not isinstance(sha256, str) or not _SHA256.match(sha256):
        raise InvalidRequest("The original's sha256 is not a SHA-256 hex digest")
    if original_key != blob_key(sha256):
        # Originals are trusted by their content key (hashed when written): any other key
        # could hold other bytes under this hash's derivatives.
        raise InvalidRequest("The original's store key is not its content key")
    return sha256, original_key


@dataclass(frozen=True)
class AnalysisRequest:
    """What an ``analysis.requested`` event asks: analyse the original at ``original_key``
    (whose bytes hash to ``original_sha256``) for the image ``image_id``."""

    image_id: str
    original_sha256: str
    original_key: str


def requested_image_id(data: Mapping[str, Any]) -> str:
    """The image an analysis is for; raises :class:`UnanswerableRequest` without one (nobody
    could be told the outcome)."""
    image_id = data.get("image_id")
    if not isinstance(image_id, str) or not image_id:
        raise UnanswerableRequest("analysis.requested without an image_id")
    return image_id


def read_analysis_request(data: Mapping[str, Any]) -> AnalysisRequest:
    """Read and check an ``analysis.requested`` payload. Raises :class:`UnanswerableRequest`
    without an ``image_id``, :class:`InvalidRequest` for anything else wrong."""
    image_id = requested_image_id(data)
    sha256, original_key = _requested_original(data)
    return AnalysisRequest(image_id, sha256, original_key)


def analysis_lock_name(sha256: str, algorithm: str) -> str:
    """The name of the advisory lock that serialises every analysis of one original by one
    algorithm."""
    return f"processing.analysis.{algorithm}.{sha256}"


# --- pixel diffs (shared.comparisons) ---------------------------------------------------------


@dataclass(frozen=True)
class DiffSide:
    """One image of a pair: bytes that hash to ``sha256``, stored at ``key``."""

    sha256: str
    key: str


@dataclass(frozen=True)
class DiffPair:
    """A pair a ``comparison.requested`` asks to diff, ``before`` → ``after``."""

    before: DiffSide
    after: DiffSide


@dataclass(frozen=True)
class MalformedPair:
    """A pair that cannot be diffed as given; answered with ``message`` as its ``error``. The
    hashes are the ones the payload claims (None when it gives no string)."""

    before_sha256: str | None
    after_sha256: str | None
    message: str


@dataclass(frozen=True)
class ComparisonRequest:
    """What a ``comparison.requested`` event asks. ``threshold`` and ``include_anti_aliasing``
    are echoed as given; ``options`` is ``(threshold, include_anti_aliasing)`` checked and
    canonical, or None with ``error`` saying why the request as a whole cannot be answered (then
    every pair carries that error too)."""

    comparison_id: str | int
    threshold: Any
    include_anti_aliasing: Any
    options: tuple[float, bool] | None
    pairs: tuple[DiffPair | MalformedPair, ...]
    error: str | None = None


def requested_comparison_id(data: Mapping[str, Any]) -> str | int:
    """The comparison a request is for; raises :class:`UnanswerableRequest` without one (nobody
    could be told the outcome)."""
    comparison_id = data.get("comparison_id")
    if isinstance(comparison_id, bool) or not isinstance(comparison_id, str | int):
        raise UnanswerableRequest("comparison.requested without a comparison_id")
    if isinstance(comparison_id, str) and not comparison_id:
        raise UnanswerableRequest("comparison.requested without a comparison_id")
    return comparison_id


def diff_threshold(threshold: Any) -> float:
    """``threshold`` as the diff uses it: a number from 0 to 1, rounded to 6 decimals, because
    :func:`shared.comparisons.diff_key` names the options to 6 decimals — two thresholds closer
    than that share one diff image, so they must be one diff. Raises :class:`InvalidRequest`."""
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, int | float)
        or not math.isfinite(threshold)
        or not 0 <= threshold <= 1
    ):
        raise InvalidRequest("The diff threshold must be a number from 0 to 1")
    return round(float(threshold), 6)


def read_comparison_request(data: Mapping[str, Any]) -> ComparisonRequest:
    """Read a ``comparison.requested`` payload. Raises :class:`UnanswerableRequest` without a
    ``comparison_id``; anything else wrong is carried in the request (``error``, or a
    :class:`MalformedPair` in place of a pair), so that the comparison is still answered."""
    comparison_id = requested_comparison_id(data)
    threshold = _echoable(data.get("threshold"))
    include_anti_aliasing = _echoable(data.get("include_anti_aliasing"))
    raw_pairs = data.get("pairs")
    if not isinstance(raw_pairs, list):
        return ComparisonRequest(
            comparison_id,
            threshold,
            include_anti_aliasing,
            None,
            (),
            "The request's pairs are not a list",
        )
    pairs = tuple(_read_pair(raw) for raw in raw_pairs)
    try:
        canonical = diff_threshold(threshold)
        if not isinstance(include_anti_aliasing, bool):
            raise InvalidRequest("include_anti_aliasing must be true or false")
    except InvalidRequest as exc:
        unanswered = tuple(
            MalformedPair(*_claimed_pair(pair), exc.message)
            if isinstance(pair, DiffPair)
            else MalformedPair(pair.before_sha256, pair.after_sha256, exc.message)
            for pair in pairs
        )
        return ComparisonRequest(
            comparison_id, threshold, include_anti_aliasing, None, unanswered, exc.message
        )
    return ComparisonRequest(
        comparison_id,
        threshold,
        include_anti_aliasing,
        (canonical, include_anti_aliasing),
        pairs,
    )


def _echoable(value: Any) -> Any:
    """``value`` if the answer can carry it back, else None: Python's JSON reads ``NaN`` and
    ``Infinity``, which PostgreSQL's jsonb refuses, so echoing them would make the answer fail
    to be recorded on every delivery."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    return None


def _claimed_pair(pair: DiffPair) -> tuple[str, str]:
    return pair.before.sha256, pair.after.sha256


def _read_pair(raw: Any) -> DiffPair | MalformedPair:
    if not isinstance(raw, Mapping):
        return MalformedPair(None, None, "A pair is not an object")
    before_sha256, after_sha256 = (
        _claimed_side_sha256(raw, "before"),
        _claimed_side_sha256(raw, "after"),
    )
    try:
        return DiffPair(_read_side(raw, "before"), _read_side(raw, "after"))
    except InvalidRequest as exc:
        return MalformedPair(before_sha256, after_sha256, exc.message)


def _claimed_side_sha256(raw: Mapping[str, Any], side: str) -> str | None:
    found = raw.get(side)
    sha256 = found.get("sha256") if isinstance(found, Mapping) else None
    return sha256 if isinstance(sha256, str) else None


def _read_side(raw: Mapping[str, Any], side: str) -> DiffSide:
    found = raw.get(side)
    if not isinstance(found, Mapping):
        raise InvalidRequest(f"The pair names no {side} image")
    sha256, key = found.get("sha256"), found.get("key")
    if not isinstance(sha256, str) or not _SHA256.match(sha256):
        raise InvalidRequest(f"The {side} image's sha256 is not a SHA-256 hex digest")
    if key != blob_key(sha256):
        # Images are trusted by their content key (hashed when written), see _requested_original.
        raise InvalidRequest(f"The pair gives no content key for the {side} image")
    return DiffSide(sha256, key)


def diff_result(pair: DiffPair, figures: Mapping[str, Any], *, cached: bool) -> dict[str, Any]:
    """The ``comparison.diffed`` result of a pair that was diffed (``figures``: the
    ``pixel_diffs`` columns of :func:`services.processing.repo.pixel_diffs`)."""
    bbox = figures["bbox"]
    return {
        "before_sha256": pair.before.sha256,
        "after_sha256": pair.after.sha256,
        "changed_pixels": figures["changed_pixels"],
        "total_pixels": figures["total_pixels"],
        "width": figures["width"],
        "height": figures["height"],
        "bbox": list(bbox) if bbox is not None else None,
        "anti_aliased_pixels": figures["anti_aliased_pixels"],
        "size_mismatch": figures["size_mismatch"],
        "diff_key": figures["diff_key"],
        "diff_bytes": figures["diff_bytes"],
        "error": None,
        "cached": cached,
    }


def error_result(before_sha256: str | None, after_sha256: str | None, message: str) -> dict:
    """The ``comparison.diffed`` result of a pair that could not be diffed: no figures."""
    return {
        "before_sha256": before_sha256,
        "after_sha256": after_sha256,
        "changed_pixels": None,
        "total_pixels": None,
        "width": None,
        "height": None,
        "bbox": None,
        "anti_aliased_pixels": None,
        "size_mismatch": None,
        "diff_key": None,
        "diff_bytes": None,
        "error": message,
        "cached": False,
    }
