"""What the pull request should say, recorded in the transaction of the change that says it
(the outbox rule: the status row commits with the job, the comparison's outcome, the review,
the skip or the cancel, or not at all); :mod:`delivery` posts it.

Who speaks for a commit: a job (for an orchestration, only its one combined status; its
projects' jobs speak through it); a comparison no job covers speaks for itself. The state is
the job's own (:func:`services.reports.jobs.job_status`, the one rule the API and the job page
read too); this module adds the text and the link, and addresses it to the account's
integrations whose host the ``link`` names (a status is never posted for a repository the
account's own calls did not name).
"""

from __future__ import annotations

import asyncpg

from services.reports import domain as reports_domain
from services.reports import jobs, matching, repo
from services.reports.domain import Comparison, Job
from services.reports.statuses import domain
from services.reports.statuses import repo as statuses_repo
from services.reports.statuses.domain import Status


async def post_job(conn: asyncpg.Connection, public_url: str, job: Job) -> None:
    """A job changed (created, cancelled): post its status, or its orchestration's."""
    if job.parent_id is not None:
        parent = await repo.jobs.job_by_id(conn, job.parent_id)
        if parent is not None:
            job = parent
    link, status = await _job_status(conn, public_url.rstrip("/"), job)
    await _record(conn, job.account_id, job.project, link, job.sha2, status)


async def post_comparison(conn: asyncpg.Connection, public_url: str, comparison_id: int) -> None:
    """A comparison concluded or its review changed: post for the jobs it settles, or for the
    comparison itself when no job covers it."""
    comparison = await repo.comparisons.comparison_by_id(conn, comparison_id)
    if comparison is None:
        return
    job = await repo.jobs.job(
        conn, comparison.account_id, comparison.sha1, comparison.sha2, comparison.project
    )
    if job is not None:
        await post_job(conn, public_url, job)
        return
    base = public_url.rstrip("/")
    status = Status(
        reports_domain.build_status(comparison.status),
        await _comparison_text(conn, comparison),
        f"{base}/comparisons/{comparison.id}",
        comparison_id=comparison.id,
    )
    await _record(
        conn, comparison.account_id, comparison.project, comparison.link, comparison.sha2, status
    )


async def post_skip(
    conn: asyncpg.Connection, public_url: str, account_id: str, project: str, sha: str
) -> None:
    """``sha`` was skipped: the jobs it is the after sha of succeed."""
    for job in await repo.jobs.jobs_of_after(conn, account_id, project, sha):
        await post_job(conn, public_url, job)


async def _job_status(conn: asyncpg.Connection, base: str, job: Job) -> tuple[str | None, Status]:
    """The link naming the job's repository, and its status."""
    job_url = f"{base}/jobs/{job.id}"
    if job.project is None:
        states = [
            await jobs.job_status(conn, child) for child in await repo.jobs.children(conn, job.id)
        ]
        text = domain.orchestration_text(states)
        return job.link, Status(reports_domain.combine(states), text, job_url, job_id=job.id)
    state = await jobs.job_status(conn, job)
    comparison = await repo.comparisons.comparison(
        conn, job.account_id, job.project, job.sha1, job.sha2
    )
    link = job.link or (comparison.link if comparison else None)
    # The same order job_status decides in: a cancel, then a skip, then the comparison.
    if job.cancelled_status is not None:
        text = job.cancel_message or "Cancelled"
    elif (
        label := await repo.jobs.skip_label(conn, job.account_id, job.project, job.sha2)
    ) is not None:
        text = label
    elif comparison is None:
        text = "Waiting for the reports to compare"
    elif not comparison.done:
        text = "Comparing the screenshots"
    else:
        text = await _comparison_text(conn, comparison)
    target = f"{base}/comparisons/{comparison.id}" if comparison else job_url
    return link, Status(
        state,
        domain.shorten(text),
        target,
        job_id=job.id,
        comparison_id=comparison.id if comparison else None,
    )


async def _comparison_text(conn: asyncpg.Connection, comparison: Comparison) -> str:
    if not comparison.done:
        return "Comparing the screenshots"
    tally = matching.Tally.of(await repo.comparisons.kind_counts(conn, comparison.id))
    return domain.shorten(
        domain.comparison_text(tally.diffs, tally.added, tally.deleted, comparison.review)
    )


async def _record(
    conn: asyncpg.Connection,
    account_id: str,
    project: str | None,
    link: str | None,
    sha: str,
    status: Status,
) -> None:
    if not link:
        return
    for integration in await statuses_repo.integrations_for(conn, account_id, project):
        repository = domain.repository_of(integration.provider, integration.base_url, link)
        if repository is None:
            continue
        context = domain.context_of(integration, project)
        await statuses_repo.record_status(conn, integration, repository, sha, context, status)
