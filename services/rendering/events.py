"""Events rendering consumes and publishes; their payloads are the contract in
:mod:`shared.rendering` (its docstring), shared with reports."""

from shared.rendering import RENDER_COMPLETED, RENDER_FAILED, RENDER_REQUESTED

#: Routing keys rendering consumes, on one queue of competing consumers.
CONSUMED: tuple[str, ...] = (RENDER_REQUESTED,)

#: Events rendering publishes: ``render.completed`` and ``render.failed``.
PUBLISHED: tuple[str, ...] = (RENDER_COMPLETED, RENDER_FAILED)
