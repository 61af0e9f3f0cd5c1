"""The one refresh-token rotation rule, for both kinds of access/refresh pair auth issues: the
API login's (``login_tokens``, a family per login) and OAuth's (``oauth_tokens``, a family per
grant).

Presenting a refresh token locks its pair; a pair already used is a replay, so the whole family
is revoked and the token refused (OAuth 2.0 Security BCP §4.14); a revoked or expired pair is
refused; otherwise the pair is retired and the caller issues its successor in the same
transaction. The rule answers an outcome, not an error: each dialect words its own refusal.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, Protocol, TypeVar

import asyncpg

from services.auth import domain


class RefreshOutcome(enum.Enum):
    """What presenting a refresh token came to."""

    #: No such refresh token (or it is another client's): nothing happened.
    UNKNOWN = "unknown"
    #: Already used once: every live pair of its family is now revoked.
    REPLAYED = "replayed"
    #: Revoked (signed out, application deleted, grant revoked) without having been used.
    REVOKED = "revoked"
    EXPIRED = "expired"
    #: Valid: its pair is retired and the caller issues the next one.
    ROTATED = "rotated"


class RefreshPair(Protocol):
    """What the rule reads of a stored pair."""

    @property
    def refresh_expires_at(self) -> datetime: ...

    @property
    def rotated_at(self) -> datetime | None: ...

    @property
    def revoked_at(self) -> datetime | None: ...


P = TypeVar("P", bound=RefreshPair)


@dataclass(frozen=True)
class PairStore(Generic[P]):
    """How one kind of pair is stored: lock a pair by its refresh token's digest (until the
    transaction ends), revoke its family, retire it. The last two return the revoked ids."""

    lock: Callable[[asyncpg.Connection, bytes], Awaitable[P | None]]
    revoke_family: Callable[[asyncpg.Connection, P], Awaitable[list[uuid.UUID]]]
    retire: Callable[[asyncpg.Connection, P], Awaitable[list[uuid.UUID]]]


@dataclass(frozen=True)
class Rotation(Generic[P]):
    """The outcome, the pair presented (None when unknown) and the pairs this revoked."""

    outcome: RefreshOutcome
    pair: P | None
    revoked: list[uuid.UUID]


async def rotate(
    conn: asyncpg.Connection,
    store: PairStore[P],
    refresh_token: str,
    *,
    belongs: Callable[[P], bool] | None = None,
) -> Rotation[P]:
    """Apply the rotation rule to ``refresh_token`` inside the caller's transaction, which must
    commit even when the token is refused: a replay must cost the thief the family. A pair for
    which ``belongs`` is false counts as unknown (it is never revoked on a stranger's word)."""
    pair = await store.lock(conn, domain.digest(refresh_token))
    if pair is None or (belongs is not None and not belongs(pair)):
        return Rotation(RefreshOutcome.UNKNOWN, None, [])
    if pair.rotated_at is not None:
        return Rotation(RefreshOutcome.REPLAYED, pair, await store.revoke_family(conn, pair))
    if pair.revoked_at is not None:
        return Rotation(RefreshOutcome.REVOKED, pair, [])
    if pair.refresh_expires_at <= datetime.now(UTC):
        return Rotation(RefreshOutcome.EXPIRED, pair, [])
    return Rotation(RefreshOutcome.ROTATED, pair, await store.retire(conn, pair))
