"""Settings of the auth service."""

from __future__ import annotations

from dataclasses import dataclass

from shared.config import CommonConfig, SecretsConfig, SigningConfig, setting


@dataclass(frozen=True)
class AuthConfig(CommonConfig, SigningConfig, SecretsConfig):
    """Auth's settings: the common ones plus keys and lifetimes of credentials."""

    session_days: int = setting(
        "DARKROOM_SESSION_DAYS", 14, "Lifetime of a web sign-in session, in days."
    )
    jwt_leeway: int = setting(
        "DARKROOM_JWT_LEEWAY", 30, "Seconds of clock skew tolerated on JWT exp/nbf."
    )
    oauth_code_seconds: int = setting(
        "DARKROOM_OAUTH_CODE_SECONDS",
        600,
        "Lifetime of an OAuth authorization code, in seconds (RFC 6749 advises ten minutes"
        " at most).",
    )
    oauth_token_seconds: int = setting(
        "DARKROOM_OAUTH_TOKEN_SECONDS",
        86400,
        "Lifetime of an OAuth access token, in seconds (the Progimage answer's expires_in).",
    )
    oauth_refresh_seconds: int = setting(
        "DARKROOM_OAUTH_REFRESH_SECONDS",
        30 * 86400,
        "Lifetime of an OAuth refresh token, in seconds; each use rotates it.",
    )
