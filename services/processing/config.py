"""Settings of the processing service."""

from __future__ import annotations

import os
from dataclasses import dataclass

from shared.config import ImagingConfig, StorageConfig, setting


@dataclass(frozen=True)
class ProcessingConfig(StorageConfig, ImagingConfig):
    """Processing's settings: the common, storage and imaging ones plus its worker pool."""

    workers: int = setting(
        "DARKROOM_PROCESSING_WORKERS",
        os.cpu_count() or 1,
        "Image jobs one process runs at once (threads, and deliveries it takes from each of its"
        " queues: analyses and comparisons); default the machine's CPU count. In a container,"
        " set it to the CPU limit. Each delivery in flight holds a database connection, so"
        " keep twice it below DARKROOM_DB_POOL_MAX.",
    )
    vips_concurrency: int = setting(
        "DARKROOM_VIPS_CONCURRENCY",
        1,
        "Threads libvips gives one job. 1 suits a busy queue (one job per core); more only"
        " shortens large jobs (no thumbnail box) while cores are idle.",
    )

    derivatives_in_flight: int = setting(
        "DARKROOM_DERIVATIVES_IN_FLIGHT",
        64,
        "Distinct derivatives one processing process makes at once while callers wait (beyond"
        " its workers they wait for a thread); a request for another is answered 503 with"
        " Retry-After at once, so a burst is shed rather than queued past its callers' patience.",
    )

    malloc_arenas: int = setting(
        "DARKROOM_MALLOC_ARENAS",
        2,
        "Most glibc malloc arenas a processing process uses: fewer arenas let the worker"
        " threads reuse each other's freed memory, so resident memory stays near what the jobs"
        " need (see services/processing/memory.py).",
    )

    def __post_init__(self) -> None:
        for name in (
            "workers",
            "max_pixels",
            "vips_concurrency",
            "derivatives_in_flight",
            "malloc_arenas",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
