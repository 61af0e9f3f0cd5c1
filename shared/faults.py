"""Fault points: named places in the event path where a process can be told to die.

The resilience suite (``make chaos``) proves that nothing is lost when a process is killed at
the worst moment — after its database commit and before its ack, after the broker confirmed a
publish and before the outbox row was marked. A ``kill -9`` sent from outside cannot hit such a
window reliably, so the process kills itself there when ``DARKROOM_FAULTS`` names the point.

The setting is empty by default and in every deployment; an armed point fires once per process
(the restarted process runs clean), with ``SIGKILL``, so no ``finally``, no ``atexit`` and no
graceful shutdown runs — exactly what a crash or the OOM killer would leave behind.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field

#: Every point the code declares; a name outside this set is a configuration error.
POINTS = frozenset(
    {
        # EventConsumer: the handler's transaction committed, the delivery is not acked yet.
        "consumer.after_commit",
        # EventConsumer: the handler ran, its transaction is not committed yet.
        "consumer.before_commit",
        # OutboxRelay: the broker confirmed the batch, the rows are not marked published yet.
        "relay.after_confirm",
        # ingest: an upload's bytes are in the blob store, its record is not committed yet.
        "blob.after_put",
    }
)


def parse_faults(value: str) -> frozenset[str]:
    """``"a,b"`` → ``{"a", "b"}``; raises ``ValueError`` naming an unknown point."""
    names = frozenset(part.strip() for part in value.split(",") if part.strip())
    unknown = names - POINTS
    if unknown:
        raise ValueError(f"unknown fault point(s) {sorted(unknown)}; known: {sorted(POINTS)}")
    return names


@dataclass
class Faults:
    """The points armed in this process (none unless ``DARKROOM_FAULTS`` says so)."""

    armed: frozenset[str] = frozenset()
    _fired: set[str] = field(default_factory=set)

    def reach(self, point: str) -> None:
        """Kill this process with ``SIGKILL`` if ``point`` is armed (the first time only)."""
        if point in self.armed and point not in self._fired:
            self._fired.add(point)
            os.kill(os.getpid(), signal.SIGKILL)


#: Shared by every component that is not given its own: nothing armed.
NO_FAULTS = Faults()
