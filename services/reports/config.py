"""Settings of the reports service."""

from __future__ import annotations

from dataclasses import dataclass

from shared.config import CommonConfig


@dataclass(frozen=True)
class ReportsConfig(CommonConfig):
    """Reports's settings: the common ones (its own arrive with its features)."""
