"""The gateway's event handling: evict revoked credentials from the principal cache."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from gateway.domain import PrincipalCache
from shared.events import Envelope
from shared.logging import get_logger

log = get_logger("darkroom.gateway")


def credential_revoked(cache: PrincipalCache) -> Callable[[Envelope], Awaitable[None]]:
    """Handler for ``credential.revoked``: the credential is refused from the next request."""

    async def handle(envelope: Envelope) -> None:
        evicted = cache.evict_credential(str(envelope.data.get("credential_id")))
        log.info(
            "credential.evicted", credential_id=envelope.data.get("credential_id"), entries=evicted
        )

    return handle
