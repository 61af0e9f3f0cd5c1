"""Settings of the processing service."""

from __future__ import annotations

from dataclasses import dataclass

from shared.config import CommonConfig


@dataclass(frozen=True)
class ProcessingConfig(CommonConfig):
    """Processing's settings: the common ones (its own arrive with its features)."""
