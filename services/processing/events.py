"""Events processing publishes and consumes (payloads only grow; breaking = new type)."""

#: Routing keys processing consumes.
CONSUMED: tuple[str, ...] = ()
