"""Events reports publishes and consumes (payloads only grow; a breaking change is a new type).

Published:

* ``report.completed`` ``{report_id, account_id, project, sha, snapshot_count}`` — a report is
  whole (posted whole, its partials completed, cloned, or an async report finalised).
* ``comparison.requested`` and ``comparison.completed`` — see :mod:`shared.comparisons`.

Consumed: ``report.completed`` (runs the comparisons scheduled on it), ``comparison.diffed``
(processing's pixel diffs), ``comparison.completed`` (e-mails to subscribers).
"""

from shared.comparisons import COMPARISON_COMPLETED, COMPARISON_DIFFED, COMPARISON_REQUESTED

REPORT_COMPLETED = "report.completed"

__all__ = [
    "COMPARISON_COMPLETED",
    "COMPARISON_DIFFED",
    "COMPARISON_REQUESTED",
    "REPORT_COMPLETED",
]
