"""Events the gateway consumes (it publishes none)."""

from services.auth.events import CREDENTIAL_REVOKED

#: Routing keys the gateway listens to, on a private queue of each gateway process.
CONSUMED: tuple[str, ...] = (CREDENTIAL_REVOKED,)
