"""Settings of the auth service."""

from __future__ import annotations

from dataclasses import dataclass

from shared.config import CommonConfig, secret, setting


@dataclass(frozen=True)
class AuthConfig(CommonConfig):
    """Auth's settings: the common ones plus keys and lifetimes of credentials."""

    secrets_key: str = secret(
        "DARKROOM_SECRETS_KEY",
        "Key (base64, 32 bytes) that encrypts API secrets at rest with AES-GCM.",
    )
    session_days: int = setting(
        "DARKROOM_SESSION_DAYS", 14, "Lifetime of a web sign-in session, in days."
    )
    jwt_leeway: int = setting(
        "DARKROOM_JWT_LEEWAY", 30, "Seconds of clock skew tolerated on JWT exp/nbf."
    )
