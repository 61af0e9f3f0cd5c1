"""Events ingest publishes and consumes (payloads only grow; a breaking change is a new type)."""

#: Routing keys ingest consumes.
CONSUMED: tuple[str, ...] = ()
