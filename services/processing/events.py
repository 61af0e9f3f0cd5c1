"""Events processing publishes and consumes (payloads only grow; breaking = new type).

The derivative conversation's names and payloads are the contract in
:mod:`shared.derivatives` (its docstring), shared with the services that ask.
"""

from shared.derivatives import DERIVATIVE_COMPUTED, DERIVATIVE_FAILED, DERIVATIVE_REQUESTED

#: Routing keys processing consumes: ``derivative.requested`` (competing, one queue).
CONSUMED: tuple[str, ...] = (DERIVATIVE_REQUESTED,)

#: Events processing publishes: ``derivative.computed`` (the key is stored, or already was)
#: and ``derivative.failed`` (the original cannot become that derivative).
PUBLISHED: tuple[str, ...] = (DERIVATIVE_COMPUTED, DERIVATIVE_FAILED)
