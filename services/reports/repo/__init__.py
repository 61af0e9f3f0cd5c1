"""All of reports's SQL (asyncpg, schema ``reports``), one module per aggregate: ``reports``
(reports, their snapshots, the snap requests they are built from), ``snap_requests``,
``comparisons`` (and their entries), ``ignored_diffs``,
``jobs`` (and skipped shas), ``subscriptions`` (and the e-mails sent); ``listings`` (the
account-wide lists of the pages, across aggregates)."""

from services.reports.repo import (
    comparisons,
    ignored_diffs,
    jobs,
    listings,
    reports,
    snap_requests,
    subscriptions,
)

__all__ = [
    "comparisons",
    "ignored_diffs",
    "jobs",
    "listings",
    "reports",
    "snap_requests",
    "subscriptions",
]
