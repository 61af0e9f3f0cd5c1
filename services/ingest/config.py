"""Settings of the ingest service."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from shared.config import StorageConfig, secret, setting


def parse_networks(raw: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Comma-separated CIDRs; a host part with bits set is refused, so a typo cannot widen."""
    return tuple(ipaddress.ip_network(part.strip()) for part in raw.split(",") if part.strip())


@dataclass(frozen=True)
class IngestConfig(StorageConfig):
    """Ingest's settings: the common and storage ones plus upload limits and URL signing."""

    max_upload_bytes: int = setting(
        "DARKROOM_MAX_UPLOAD_BYTES",
        30 * 1024 * 1024,
        "Largest uploaded file, in bytes; refused while streaming once exceeded.",
    )
    max_pixels: int = setting(
        "DARKROOM_MAX_PIXELS",
        100_000_000,
        "Largest width x height x frames of an uploaded image (decompression-bomb guard).",
    )
    max_frames: int = setting(
        "DARKROOM_MAX_FRAMES", 500, "Most frames (pages) an uploaded animated image may have."
    )
    upload_url_seconds: int = setting(
        "DARKROOM_UPLOAD_URL_SECONDS",
        3600,
        "Lifetime of a signed upload URL (Happo, Haut.ai), in seconds.",
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
    signing_key: str = secret(
        "DARKROOM_SIGNING_KEY", "Signs upload URLs and the anti-forgery token of its pages' forms."
    )
    orphan_grace_seconds: float = setting(
        "DARKROOM_ORPHAN_GRACE_SECONDS",
        3600.0,
        "How long stored bytes with no blob record are left alone before the sweeper deletes them.",
    )
    sweep_interval_seconds: float = setting(
        "DARKROOM_SWEEP_INTERVAL_SECONDS",
        600.0,
        "Seconds between two passes of the orphan-blob sweeper.",
    )
    remote_allow_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = setting(
        "DARKROOM_REMOTE_ALLOW_NETWORKS",
        (),
        "Comma-separated CIDRs a remote_file_url may reach although they are on the deny list"
        " (loopback, private, link-local, ...); empty: only public addresses.",
        parse=parse_networks,
    )
    remote_timeout_seconds: float = setting(
        "DARKROOM_REMOTE_TIMEOUT_SECONDS",
        10.0,
        "Whole remote_file_url fetch, redirects and body included, in seconds.",
    )
    remote_max_redirects: int = setting(
        "DARKROOM_REMOTE_MAX_REDIRECTS", 3, "Most redirects a remote_file_url fetch follows."
    )
