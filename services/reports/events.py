"""Events reports publishes and consumes (payloads only grow; a breaking change is a new type)."""

#: Routing keys reports consumes.
CONSUMED: tuple[str, ...] = ()
