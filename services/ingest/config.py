"""Settings of the ingest service."""

from __future__ import annotations

from dataclasses import dataclass

from shared.config import CommonConfig, secret, setting


@dataclass(frozen=True)
class IngestConfig(CommonConfig):
    """Ingest's settings: the common ones plus storage, upload limits and upload-URL signing."""

    blob_dir: str = setting(
        "DARKROOM_BLOB_DIR",
        "var/blobs",
        "Folder of the local blob store (used when no S3 bucket is configured).",
    )
    s3_endpoint_url: str | None = setting(
        "S3_ENDPOINT_URL", None, "S3-compatible endpoint (unset: AWS itself when a bucket is set)."
    )
    s3_bucket: str | None = setting(
        "S3_BUCKET", None, "Bucket that holds the blobs; when set, S3 replaces the local folder."
    )
    s3_region: str = setting("S3_REGION", "us-east-1", "Region of the S3 bucket.")
    s3_access_key: str | None = setting(
        "AWS_ACCESS_KEY_ID", None, "S3 access key (unset: botocore's default credential chain)."
    )
    s3_secret_key: str | None = setting(
        "AWS_SECRET_ACCESS_KEY", None, "S3 secret key (unset: botocore's default credential chain)."
    )
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
        "DARKROOM_UPLOAD_URL_SECONDS", 3600, "Lifetime of a signed Happo upload URL, in seconds."
    )
    signing_key: str = secret("DARKROOM_SIGNING_KEY", "Signs upload URLs (ingest).")
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
