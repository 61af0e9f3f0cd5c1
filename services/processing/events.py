"""Events processing publishes and consumes (payloads only grow; breaking = new type).

The derivative conversation's names and payloads are the contract in
:mod:`shared.derivatives`, the quality analysis's in :mod:`shared.analysis`, the pixel diffs' in
:mod:`shared.comparisons` (their docstrings), shared with the services that ask.
"""

from shared.analysis import ANALYSIS_COMPLETED, ANALYSIS_FAILED, ANALYSIS_REQUESTED
from shared.comparisons import COMPARISON_DIFFED, COMPARISON_REQUESTED
from shared.derivatives import (
    DERIVATIVE_ABANDONED,
    DERIVATIVE_COMPUTED,
    DERIVATIVE_FAILED,
    DERIVATIVE_REQUESTED,
)

#: Routing keys processing consumes, each on its own queue of competing consumers:
#: ``derivative.requested``, ``analysis.requested`` and ``comparison.requested``.
CONSUMED: tuple[str, ...] = (DERIVATIVE_REQUESTED, ANALYSIS_REQUESTED, COMPARISON_REQUESTED)

#: Routing keys every processing replica hears on its private queue: ``derivative.abandoned``
#: (a request whose asker stopped waiting, skipped if not yet begun).
BROADCAST: tuple[str, ...] = (DERIVATIVE_ABANDONED,)

#: Events processing publishes: ``derivative.computed`` (the key is stored, or already was),
#: ``derivative.failed`` (the original cannot become that derivative), ``analysis.completed``
#: (the original's quality, aux images stored), ``analysis.failed`` (the original cannot be
#: analysed at all: missing, not the bytes named, or a malformed request) and
#: ``comparison.diffed`` (every pair of a comparison diffed, or why it could not be).
PUBLISHED: tuple[str, ...] = (
    DERIVATIVE_COMPUTED,
    DERIVATIVE_FAILED,
    ANALYSIS_COMPLETED,
    ANALYSIS_FAILED,
    COMPARISON_DIFFED,
)
