"""Settings of the gateway."""

from __future__ import annotations

from dataclasses import dataclass

from shared.config import CommonConfig, setting


def parse_rate(raw: str) -> tuple[int, float]:
    """``"20/5"`` → 20 requests per 5 seconds (whole seconds: budgets live in Redis keys that
    expire by the second)."""
    count, _, seconds = raw.partition("/")
    parsed = int(count), float(seconds or 1)
    if parsed[0] < 1 or parsed[1] < 1 or not parsed[1].is_integer():
        raise ValueError(f"rate must be N/SECONDS with N ≥ 1 and whole SECONDS ≥ 1: {raw!r}")
    return parsed


@dataclass(frozen=True)
class GatewayConfig(CommonConfig):
    """The gateway's settings: the common ones plus limits and caching."""

    max_body_bytes: int = setting(
        "DARKROOM_MAX_BODY_BYTES",
        65 * 1024 * 1024,
        "Largest request body the gateway forwards (a Happo package's 60 MB plus form overhead;"
        " each service streams bodies and holds its own, lower limit per kind of upload).",
    )
    max_header_bytes: int = setting(
        "DARKROOM_MAX_HEADER_BYTES", 16 * 1024, "Largest total size of a request's headers."
    )
    auth_cache_seconds: float = setting(
        "DARKROOM_AUTH_CACHE_SECONDS",
        10.0,
        "How long a resolved credential is trusted before asking auth again"
        " (revocations evict at once).",
    )
    edge_cache_bytes: int = setting(
        "DARKROOM_EDGE_CACHE_BYTES",
        32 * 1024 * 1024,
        "Memory for answers the gateway replays to the same caller without asking a service"
        " again (answers up to 256 kB its services mark as unchanging: derived images, Happo's"
        " already uploaded; per caller and URL); 0 turns it off.",
    )
    rate_oauth: tuple[int, float] = setting(
        "DARKROOM_RATE_OAUTH",
        (20, 5.0),
        "Requests per seconds for each OAuth access token (Progimage: 20/5).",
        parse=parse_rate,
    )
    rate_api_key: tuple[int, float] = setting(
        "DARKROOM_RATE_API_KEY",
        (2000, 10.0),
        "Requests per seconds for each API key, JWT or bearer token (Happo bursts uploads).",
        parse=parse_rate,
    )
    rate_session: tuple[int, float] = setting(
        "DARKROOM_RATE_SESSION",
        (300, 10.0),
        "Requests per seconds for each web session.",
        parse=parse_rate,
    )
    rate_anonymous: tuple[int, float] = setting(
        "DARKROOM_RATE_ANONYMOUS",
        (120, 60.0),
        "Requests per seconds for each client address without valid credentials.",
        parse=parse_rate,
    )
    redis_url: str = setting(
        "REDIS_URL",
        "",
        "Redis that keeps the rate-limit budgets every gateway replica shares"
        " (redis://host:6379/0); empty: each gateway counts in its own memory, right for one"
        " gateway. If Redis fails, each gateway counts alone until it is back (fail open).",
    )
    redis_prefix: str = setting(
        "DARKROOM_REDIS_PREFIX",
        "darkroom",
        "Prefix of the gateway's keys in Redis, so that several platforms can share a server.",
    )
    redis_timeout: float = setting(
        "DARKROOM_REDIS_TIMEOUT",
        0.25,
        "Seconds a rate-limit check may wait for Redis before this gateway counts alone; a"
        " failed Redis is then tried by one request a second, so a hung one stalls no request"
        " longer and few at all (shorter trips on event-loop lag under load).",
    )
    trust_forwarded: bool = setting(
        "DARKROOM_TRUST_FORWARDED",
        False,
        "Take the client address from X-Forwarded-For (only behind a proxy you control).",
    )
    upstream_timeout: float = setting(
        "DARKROOM_UPSTREAM_TIMEOUT", 120.0, "Seconds a proxied request may take in all."
    )
