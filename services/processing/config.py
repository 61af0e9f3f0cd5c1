"""Settings of the processing service."""

from __future__ import annotations

from dataclasses import dataclass

from shared.config import StorageConfig


@dataclass(frozen=True)
class ProcessingConfig(StorageConfig):
    """Processing's settings: the common ones (its own arrive with its features)."""
