"""Status badges: a comparison's status as an SVG image at a public URL, for pull requests and
READMEs. The URL carries the comparison id and its permanent signature (the ``badge`` signer),
so ids cannot be enumerated and a badge already embedded somewhere keeps working."""

from __future__ import annotations

import asyncpg
import jinja2

from services.reports import domain, repo
from services.reports.domain import AWAITING_REVIEW, FAILURE, PENDING, SUCCESS
from services.reports.matching import Tally
from shared import errors
from shared.signing import Signer

LABEL = "darkroom"
_COLOURS = {
    SUCCESS: "#2e7d32",
    FAILURE: "#c62828",
    AWAITING_REVIEW: "#ef6c00",
    PENDING: "#757575",
}


def badge_message(status: str, tally: Tally | None) -> str:
    """The words on a comparison's badge."""
    if status == PENDING or tally is None:
        return "pending"
    if status == SUCCESS and tally.equal:
        return "no diffs"
    if status == SUCCESS:
        return "accepted"
    if status == FAILURE and tally.changes == 0:
        return "rejected"
    # The comparison page's headline counts the same thing: "N changes: d diffs, a added, …".
    return f"{tally.changes} change" if tally.changes == 1 else f"{tally.changes} changes"


class Badges:
    """Makes badge URLs and draws badges."""

    def __init__(
        self, pool: asyncpg.Pool, signer: Signer, templates: jinja2.Environment, public_url: str
    ) -> None:
        self.pool = pool
        self.signer = signer
        self.templates = templates
        self.public_url = public_url.rstrip("/")

    def url(self, comparison_id: int) -> str:
        """The public, signed URL of a comparison's badge."""
        signature = self.signer.sign(str(comparison_id))
        return f"{self.public_url}/badges/{comparison_id}-{signature}.svg"

    async def svg(self, badge: str) -> str:
        """The SVG of the badge ``<id>-<signature>``; 404 for one that is not ours."""
        raw_id, _, signature = badge.partition("-")
        comparison_id = domain.parse_id(raw_id)
        if comparison_id is None or not self.signer.verify(str(comparison_id), signature):
            raise errors.NotFound("No such badge")
        async with self.pool.acquire() as conn:
            comparison = await repo.comparisons.comparison_by_id(conn, comparison_id)
            counts = await repo.comparisons.kind_counts(conn, comparison_id) if comparison else {}
        if comparison is None:
            raise errors.NotFound("No such badge")
        status = comparison.status
        message = badge_message(status, Tally.of(counts) if comparison.done else None)
        return self.templates.get_template("badge.svg").render(
            label=LABEL,
            message=message,
            label_width=8 + 7 * len(LABEL),
            message_width=10 + 7 * len(message),
            colour=_COLOURS.get(status, "#757575"),
        )
