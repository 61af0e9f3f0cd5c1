"""Settings of the ingest service."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from shared.config import ImagingConfig, RemoteFetchConfig, SigningConfig, setting


@dataclass(frozen=True)
class IngestConfig(RemoteFetchConfig, SigningConfig, ImagingConfig):
    """Ingest's settings: the common, storage and remote-fetch ones plus upload limits and URL
    signing."""

    max_frames: int = setting(
        "DARKROOM_MAX_FRAMES", 500, "Most frames (pages) an uploaded animated image may have."
    )
    processing_timeout_seconds: float = setting(
        "DARKROOM_PROCESSING_TIMEOUT_SECONDS",
        60.0,
        "How long an upload waits for its derivatives before answering 503 (nothing is kept).",
    )
    max_bulk_items: int = setting(
        "DARKROOM_MAX_BULK_ITEMS", 50, "Most images one Progimage POST /user/images may carry."
    )
    remote_fetch_concurrency: int = setting(
        "DARKROOM_REMOTE_FETCH_CONCURRENCY",
        4,
        "Remote images one request downloads at once (a bulk request's others wait).",
    )


#: The app's settings, for every dialect's handlers.
CONFIG = web.AppKey("ingest.config", IngestConfig)
