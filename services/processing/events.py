"""Events processing publishes and consumes (payloads only grow; breaking = new type).

The derivative contract (a direct call, and the fact that follows) is in
:mod:`shared.derivatives`, the quality analysis's events in :mod:`shared.analysis`, the pixel
diffs' in :mod:`shared.comparisons` (their docstrings), shared with the services that ask.
"""

from shared.analysis import ANALYSIS_COMPLETED, ANALYSIS_FAILED, ANALYSIS_REQUESTED
from shared.comparisons import COMPARISON_DIFFED, COMPARISON_REQUESTED
from shared.derivatives import DERIVATIVE_STORED

#: Routing keys processing consumes, each on its own queue of competing consumers: work that
#: must survive a crash with nobody waiting (``analysis.requested``, ``comparison.requested``).
CONSUMED: tuple[str, ...] = (ANALYSIS_REQUESTED, COMPARISON_REQUESTED)

#: Events processing publishes: ``derivative.stored`` (a derivative made on request is in the
#: store, once per key), ``analysis.completed`` (the original's quality, aux images stored),
#: ``analysis.failed`` (the original cannot be analysed at all: missing or a malformed
#: request) and ``comparison.diffed`` (every pair of a comparison diffed, or why it could not
#: be).
PUBLISHED: tuple[str, ...] = (
    DERIVATIVE_STORED,
    ANALYSIS_COMPLETED,
    ANALYSIS_FAILED,
    COMPARISON_DIFFED,
)
