"""Typed configuration read once from the environment.

Each process declares one frozen dataclass whose fields are built with :func:`setting`; the
environment variable, the default and the documentation of a setting live together at its
declaration. :func:`load` reads the environment once at start; nothing else reads ``os.environ``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from shared.faults import parse_faults

T = TypeVar("T")

_MISSING_SECRET = object()
#: The services behind the gateway, each a process with its own schema, port and URL setting.
SERVICES = ("auth", "ingest", "processing", "reports", "rendering")
#: Where ``make run`` writes generated secrets, one file per variable (lower-cased name);
#: a secret not set in the environment is looked up there.
DEFAULT_SECRETS_DIR = "var/secrets"


class ConfigError(Exception):
    """A setting is missing or cannot be parsed; the message names the variable."""


def setting(env: str, default: Any, doc: str, *, parse: Callable[[str], Any] | None = None) -> Any:
    """Declare a configuration field read from ``env`` (or ``env + "_FILE"``) with a safe default.

    ``doc`` is the operator-facing description (the README's configuration table is built
    from it). ``parse`` overrides the parser picked from the field's type.
    """
    return dataclasses.field(default=default, metadata={"env": env, "doc": doc, "parse": parse})


def secret(env: str, doc: str) -> Any:
    """Declare a secret: it has no built-in value, so loading fails when it is not configured.

    The value comes from ``env``, from the file named by ``env + "_FILE"``, or from the file
    ``$DARKROOM_SECRETS_DIR/<env lower-cased>`` that ``make run`` generates.
    """
    return dataclasses.field(
        default=_MISSING_SECRET, metadata={"env": env, "doc": doc, "parse": None, "secret": True}
    )


def _read_secret_file(path: Path, origin: str) -> str:
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{origin}: cannot read {path}: {exc.strerror}") from exc


def _parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"not a boolean: {raw!r}")


def _parser_for(annotation: Any) -> Callable[[str], Any]:
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        inner_parse = _parser_for(inner[0])
        return lambda raw: None if raw == "" else inner_parse(raw)
    if annotation is bool:
        return _parse_bool
    if annotation is int:
        return int
    if annotation is float:
        return float
    if annotation is Path:
        return Path
    if typing.get_origin(annotation) is tuple:
        return lambda raw: tuple(part.strip() for part in raw.split(",") if part.strip())
    return str


def load(cls: type[T], environ: Mapping[str, str] | None = None, **overrides: Any) -> T:
    """Build ``cls`` from ``environ`` (default: the process environment), applying ``overrides``.

    Raises :class:`ConfigError` naming the variable when a value does not parse or a secret is
    missing.
    """
    env = os.environ if environ is None else environ
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        if field.name in overrides:
            values[field.name] = overrides[field.name]
            continue
        name = field.metadata.get("env")
        if name is None:
            continue
        raw = env.get(name)
        if raw is None and env.get(f"{name}_FILE"):
            raw = _read_secret_file(Path(env[f"{name}_FILE"]), f"{name}_FILE")
        if raw is None and field.metadata.get("secret"):
            stored = Path(env.get("DARKROOM_SECRETS_DIR", DEFAULT_SECRETS_DIR)) / name.lower()
            if stored.is_file():
                raw = _read_secret_file(stored, name)
        if raw is None:
            if field.default is _MISSING_SECRET:
                raise ConfigError(
                    f"{name} is not set (nor {name}_FILE, nor a file in DARKROOM_SECRETS_DIR);"
                    " run `make secrets` or set it"
                )
            continue
        parse = field.metadata.get("parse") or _parser_for(hints[field.name])
        try:
            values[field.name] = parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{name}: {exc}") from exc
    return cls(**values)


def describe(cls: type) -> list[tuple[str, str, str]]:
    """List ``(variable, default, doc)`` for every setting of ``cls``, for docs and ``--help``."""
    rows = []
    for field in dataclasses.fields(cls):
        if "env" not in field.metadata:
            continue
        default = "(secret, required)" if field.default is _MISSING_SECRET else repr(field.default)
        rows.append((field.metadata["env"], default, field.metadata["doc"]))
    return rows


@dataclasses.dataclass(frozen=True)
class ServersConfig:
    """Where the servers are: what the operator CLI needs to prepare the platform."""

    database_url: str = setting(
        "DATABASE_URL",
        "postgresql://postgres@127.0.0.1:5432/darkroom",
        "PostgreSQL server and database (created by `make run` when missing).",
    )
    amqp_url: str = setting(
        "AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/", "RabbitMQ server the events go through."
    )
    secrets_dir: str = setting(
        "DARKROOM_SECRETS_DIR",
        DEFAULT_SECRETS_DIR,
        "Folder of generated secrets (one file per variable), read when a secret is not set.",
    )


@dataclasses.dataclass(frozen=True)
class CommonConfig(ServersConfig):
    """Settings every Darkroom process reads; each service's config extends it."""

    host: str = setting("DARKROOM_HOST", "127.0.0.1", "Interface every process listens on.")
    public_url: str = setting(
        "DARKROOM_PUBLIC_URL",
        "http://127.0.0.1:8080",
        "Origin the public reaches the gateway at; every URL the API hands out starts with it.",
    )
    exchange: str = setting(
        "DARKROOM_EXCHANGE",
        "darkroom",
        "Topic exchange of the event stream; also prefixes every queue name.",
    )
    internal_key: str = secret(
        "DARKROOM_INTERNAL_KEY", "HMAC key that signs the principal on internal calls."
    )
    log_level: str = setting("DARKROOM_LOG_LEVEL", "info", "debug, info, warning or error.")
    log_format: str = setting(
        "DARKROOM_LOG_FORMAT", "auto", "json, console, or auto (console on a terminal)."
    )
    gateway_port: int = setting("DARKROOM_PORT", 8080, "Port of the public gateway.")
    auth_port: int = setting("DARKROOM_AUTH_PORT", 8081, "Port of the auth service.")
    ingest_port: int = setting("DARKROOM_INGEST_PORT", 8082, "Port of the ingest service.")
    processing_port: int = setting(
        "DARKROOM_PROCESSING_PORT", 8083, "Port of the processing service (health, metrics)."
    )
    reports_port: int = setting("DARKROOM_REPORTS_PORT", 8084, "Port of the reports service.")
    rendering_port: int = setting(
        "DARKROOM_RENDERING_PORT", 8085, "Port of the rendering service (package uploads)."
    )
    auth_url: str | None = setting(
        "DARKROOM_AUTH_URL", None, "Internal base URL of auth (default: host and auth port)."
    )
    ingest_url: str | None = setting(
        "DARKROOM_INGEST_URL", None, "Internal base URL of ingest (default: host and port)."
    )
    processing_url: str | None = setting(
        "DARKROOM_PROCESSING_URL",
        None,
        "Internal base URL of processing (default: host, port); several, comma-separated, and"
        " ingest sends each derivative to the one with the fewest of its calls in flight.",
    )
    reports_url: str | None = setting(
        "DARKROOM_REPORTS_URL", None, "Internal base URL of reports (default: host and port)."
    )
    rendering_url: str | None = setting(
        "DARKROOM_RENDERING_URL", None, "Internal base URL of rendering (default: host, port)."
    )
    db_pool_max: int = setting("DARKROOM_DB_POOL_MAX", 10, "Connections per process pool.")
    db_timeout: float = setting(
        "DARKROOM_DB_TIMEOUT",
        5.0,
        "Seconds to open a PostgreSQL connection or run one statement before giving up (the"
        " request answers 503): without it a database that drops packets hangs every request.",
    )
    event_delivery_limit: int = setting(
        "DARKROOM_EVENT_DELIVERY_LIMIT",
        5,
        "Deliveries of one event before it is dead-lettered as poison.",
    )
    event_retry_base: float = setting(
        "DARKROOM_EVENT_RETRY_BASE", 0.5, "Seconds of the first retry back-off (doubles each time)."
    )
    outbox_poll_interval: float = setting(
        "DARKROOM_OUTBOX_POLL", 1.0, "Seconds between outbox scans when no notification arrives."
    )
    shutdown_grace: float = setting(
        "DARKROOM_SHUTDOWN_GRACE",
        20.0,
        "Seconds a stopping process (SIGTERM) gives requests and events in flight to finish.",
    )

    faults: frozenset[str] = setting(
        "DARKROOM_FAULTS",
        frozenset(),
        "Test only (make chaos): fault points at which this process kills itself once with"
        " SIGKILL, comma-separated (see shared/faults.py). Never set it in a deployment.",
        parse=parse_faults,
    )

    def service_url(self, service: str) -> str:
        """Internal base URL of ``service`` (one of :data:`SERVICES`)."""
        explicit = getattr(self, f"{service}_url")
        if explicit:
            return explicit.rstrip("/")
        host = "127.0.0.1" if self.host in {"0.0.0.0", "::"} else self.host
        return f"http://{host}:{getattr(self, f'{service}_port')}"

    def service_urls(self, service: str) -> list[str]:
        """Every replica's internal base URL of ``service``: its setting may list several,
        comma-separated (ingest spreads derivative calls over processing's)."""
        return [url.strip().rstrip("/") for url in self.service_url(service).split(",") if url]

    def public(self, path: str) -> str:
        """Absolute public URL for ``path`` (which starts with ``/``)."""
        return self.public_url.rstrip("/") + path


@dataclasses.dataclass(frozen=True)
class SigningConfig:
    """The signing settings, declared once for every process that signs or checks a grant or
    a form token (auth, ingest, reports, rendering); mixed into their configs."""

    signing_key: str = secret(
        "DARKROOM_SIGNING_KEY",
        "Signs upload URLs (ingest's images, rendering's packages), status-image and unsubscribe"
        " links (reports), and the anti-forgery token of every signed-in page's forms (auth,"
        " ingest, reports: their pages post to auth's sign-out).",
    )
    upload_url_seconds: int = setting(
        "DARKROOM_UPLOAD_URL_SECONDS",
        3600,
        "Lifetime of a signed upload URL (Happo images and packages, Haut.ai), in seconds.",
    )


@dataclasses.dataclass(frozen=True)
class SecretsConfig:
    """The key of secrets at rest, declared once for every process that seals one (auth's API
    secrets, reports's commit-status provider tokens); mixed into their configs."""

    secrets_key: str = secret(
        "DARKROOM_SECRETS_KEY",
        "Key (base64, 32 bytes) that encrypts API secrets and commit-status provider tokens at"
        " rest with AES-GCM.",
    )


@dataclasses.dataclass(frozen=True)
class ImagingConfig:
    """The pixel limit, declared once for every process that decodes images (ingest at upload,
    processing before it decodes an original); mixed into their configs."""

    max_pixels: int = setting(
        "DARKROOM_MAX_PIXELS",
        100_000_000,
        "Largest image, as width x height x frames (every frame of an animation), read from its"
        " header before any pixel is decoded (decompression-bomb guard): ingest refuses a larger"
        " upload, processing a larger original.",
    )


@dataclasses.dataclass(frozen=True)
class StorageConfig(CommonConfig):
    """Settings of a process that reads or writes blobs: the common ones plus the blob store."""

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
    orphan_grace_seconds: float = setting(
        "DARKROOM_ORPHAN_GRACE_SECONDS",
        3600.0,
        "How long stored bytes with no record are left alone before a sweeper deletes them"
        " (ingest's blobs, rendering's packages): what a crash between write and commit leaves.",
    )
    sweep_interval_seconds: float = setting(
        "DARKROOM_SWEEP_INTERVAL_SECONDS",
        600.0,
        "Seconds between two passes of an orphan sweeper.",
    )


def parse_networks(raw: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Comma-separated CIDRs; a host part with bits set is refused, so a typo cannot widen."""
    return tuple(ipaddress.ip_network(part.strip()) for part in raw.split(",") if part.strip())


@dataclasses.dataclass(frozen=True)
class RemoteFetchConfig(StorageConfig):
    """Settings of a process that fetches URLs its clients name (ingest's ``remote_file_url``,
    the pages rendering loads): what they may reach, for how long, how much."""

    max_upload_bytes: int = setting(
        "DARKROOM_MAX_UPLOAD_BYTES",
        30 * 1024 * 1024,
        "Largest uploaded file, in bytes; refused while streaming once exceeded (also the most"
        " one remote fetch downloads).",
    )
    remote_allow_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = setting(
        "DARKROOM_REMOTE_ALLOW_NETWORKS",
        (),
        "Comma-separated CIDRs a remote fetch (remote_file_url, a rendered page's requests) or a"
        " commit status posted to a provider's base URL may reach although they are on the deny"
        " list (loopback, private, link-local, ...); empty: only public addresses.",
        parse=parse_networks,
    )
    remote_timeout_seconds: float = setting(
        "DARKROOM_REMOTE_TIMEOUT_SECONDS",
        10.0,
        "Whole remote fetch (redirects and body included) or commit-status post, in seconds.",
    )
    remote_max_redirects: int = setting(
        "DARKROOM_REMOTE_MAX_REDIRECTS", 3, "Most redirects a remote fetch follows."
    )
