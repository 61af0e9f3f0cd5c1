"""Events reports publishes and consumes (payloads only grow; a breaking change is a new type).

Published:

* ``report.completed`` ``{report_id, account_id, project, sha, snapshot_count}`` — a report is
  whole (posted whole, its partials completed, cloned, or an async report finalised).
* ``comparison.requested`` and ``comparison.completed`` — see :mod:`shared.comparisons`.
* ``comparison.reviewed`` ``{comparison_id, account_id, project, sha1, sha2, status,
  previous_status, review, reviewed_by, summary, compare_url}`` — a person's decisions on the
  comparison page changed its review (accepted, rejected, or back to awaiting review: None).
* ``job.cancelled`` ``{job_id, account_id, project, sha1, sha2, status, message, job_url}`` —
  a client cancelled a job with the status it chose (``project`` is the cancelled project's).

Consumed: ``report.completed`` (runs the comparisons scheduled on it), ``comparison.diffed``
(processing's pixel diffs), ``comparison.completed`` (e-mails to subscribers); and for
webhooks every type an endpoint may subscribe to (``report.completed``,
``comparison.completed``, ``comparison.reviewed``, ``job.cancelled``, rendering's
``render.failed``).
"""

from shared.comparisons import COMPARISON_COMPLETED, COMPARISON_DIFFED, COMPARISON_REQUESTED

REPORT_COMPLETED = "report.completed"
COMPARISON_REVIEWED = "comparison.reviewed"
JOB_CANCELLED = "job.cancelled"

__all__ = [
    "COMPARISON_COMPLETED",
    "COMPARISON_DIFFED",
    "COMPARISON_REQUESTED",
    "COMPARISON_REVIEWED",
    "JOB_CANCELLED",
    "REPORT_COMPLETED",
]
