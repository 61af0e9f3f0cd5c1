"""Processing's rules as plain computation: reading ``derivative.requested`` and
``analysis.requested`` payloads and checking that what they ask for is consistent. No pyvips,
no I/O (transforms live in :mod:`services.processing.transforms`, the quality analysis in
:mod:`services.processing.quality`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.derivatives import Transform, derivative_key
from shared.errors import InvalidRequest

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class UnanswerableRequest(ValueError):
    """A ``derivative.requested`` payload without a key: nobody could be told the outcome, so
    it is poison for the dead-letter queue, not a ``derivative.failed``."""


@dataclass(frozen=True)
class DerivativeRequest:
    """What a ``derivative.requested`` event asks: the original at ``original_key`` (whose
    bytes hash to ``original_sha256``) through ``transform``, stored at ``key``."""

    key: str
    original_sha256: str
    original_key: str
    transform: Transform


def requested_key(data: Mapping[str, Any]) -> str:
    """The derivative key a payload asks for; raises :class:`UnanswerableRequest` without one."""
    key = data.get("key")
    if not isinstance(key, str) or not key:
        raise UnanswerableRequest("derivative.requested without a key")
    return key


def claimed_sha256(data: Mapping[str, Any]) -> str | None:
    """The original's hash as the payload gives it, if it gives one (for a failure report)."""
    original = data.get("original")
    sha256 = original.get("sha256") if isinstance(original, Mapping) else None
    return sha256 if isinstance(sha256, str) else None


def read_request(data: Mapping[str, Any]) -> DerivativeRequest:
    """Read and check a ``derivative.requested`` payload.

    The key must be the one :func:`shared.derivatives.derivative_key` gives for the original
    and the transform: the key is where the result is written, so a payload must not be able
    to name any other place in the store. Raises :class:`UnanswerableRequest` without a key,
    :class:`InvalidRequest` for anything else wrong.
    """
    key = requested_key(data)
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
    if not isinstance(original_key, str) or not original_key:
        raise InvalidRequest("The request gives no store key for the original")
    return sha256, original_key


def lock_name(key: str) -> str:
    """The name of the advisory lock that serialises every computation of ``key``."""
    return f"processing.derivative.{key}"


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
