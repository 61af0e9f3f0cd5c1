"""Settings of the ingest service."""

from __future__ import annotations

from dataclasses import dataclass

from shared.config import CommonConfig


@dataclass(frozen=True)
class IngestConfig(CommonConfig):
    """Ingest's settings: the common ones (its own arrive with its features)."""
