"""Jobs: a CI run's promise of a comparison of two shas, one per project or one orchestration
job over several projects, each settled by its comparison, by a skipped sha, or by a cancel.
The API and the job page read a job's status through :func:`job_status`, so they never tell
two stories.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from services.reports import domain, events, repo
from services.reports.domain import Comparison, Job
from services.reports.statuses import posting
from shared import errors
from shared.events import record_event
from shared.http import Principal


@dataclass(frozen=True)
class JobView:
    """A job as the API shows it: its status, and an orchestration job's projects."""

    job: Job
    status: str
    projects: list[str | None] | None


@dataclass(frozen=True)
class ProjectLine:
    """One project of a job: its status and its comparison, once there is one."""

    job: Job
    status: str
    comparison: Comparison | None


async def job_status(conn: asyncpg.Connection, job: Job) -> str:
    """A job's status: an orchestration job's combines its projects'; a project's job is its
    cancel status when cancelled, ``success`` when ``sha2`` was skipped, else its comparison's
    build status (``pending`` until that comparison has run)."""
    if job.project is None:
        return domain.combine(
            [await job_status(conn, child) for child in await repo.jobs.children(conn, job.id)]
        )
    if job.cancelled_status is not None:
        return job.cancelled_status
    if await repo.jobs.skipped_shas(conn, job.account_id, job.project, [job.sha2]):
        return domain.SUCCESS
    comparison = await repo.comparisons.comparison(
        conn, job.account_id, job.project, job.sha1, job.sha2
    )
    if comparison is None:
        return domain.PENDING
    return domain.build_status(comparison.status)


class Jobs:
    """The use cases of jobs and skipped shas."""

    def __init__(self, pool: asyncpg.Pool, public_url: str) -> None:
        self.pool = pool
        self.public_url = public_url

    async def create(
        self,
        principal: Principal,
        project: str,
        sha1: str,
        sha2: str,
        *,
        link: str | None,
        message: str | None,
    ) -> JobView:
        """The orchestration job of these shas when one covers the project, else this
        project's job (created once; retries get the same)."""
        account_id = str(principal.account_id)
        async with self.pool.acquire() as conn, conn.transaction():
            parent = await repo.jobs.job(conn, account_id, sha1, sha2, None)
            job = await repo.jobs.create_job(
                conn,
                account_id,
                sha1,
                sha2,
                project,
                parent_id=parent.id if parent else None,
                link=link,
                message=message,
            )
            await posting.post_job(conn, self.public_url, job)
            return await _view(conn, parent or job)

    async def orchestrate(
        self,
        principal: Principal,
        projects: list[str],
        sha1: str,
        sha2: str,
        *,
        link: str | None,
        message: str | None,
    ) -> JobView:
        """An orchestration job with one job per project (one combined status)."""
        account_id = str(principal.account_id)
        async with self.pool.acquire() as conn, conn.transaction():
            parent = await repo.jobs.create_job(
                conn, account_id, sha1, sha2, None, parent_id=None, link=link, message=message
            )
            for name in projects:
                await repo.jobs.create_job(
                    conn,
                    account_id,
                    sha1,
                    sha2,
                    name,
                    parent_id=parent.id,
                    link=link,
                    message=message,
                )
            await posting.post_job(conn, self.public_url, parent)
            return await _view(conn, parent)

    async def cancel(
        self,
        principal: Principal,
        project: str,
        sha1: str,
        sha2: str,
        status: str,
        message: str | None,
    ) -> JobView:
        """Settle a job with ``status``; the job shown is its orchestration job when it has
        one. 404 ``No job found`` for an unknown one."""
        account_id = str(principal.account_id)
        async with self.pool.acquire() as conn, conn.transaction():
            job = await repo.jobs.job(conn, account_id, sha1, sha2, project)
            if job is None:
                raise errors.NotFound(f"No job found for {sha1}..{sha2}")
            await repo.jobs.cancel_job(conn, job.id, status, message)
            cancelled = await repo.jobs.job_by_id(conn, job.id)
            assert cancelled is not None
            await record_event(
                conn,
                events.JOB_CANCELLED,
                {
                    "job_id": cancelled.id,
                    "account_id": account_id,
                    "project": cancelled.project,
                    "sha1": sha1,
                    "sha2": sha2,
                    "status": status,
                    "message": message,
                    "job_url": f"{self.public_url.rstrip('/')}/jobs/{cancelled.id}",
                },
            )
            await posting.post_job(conn, self.public_url, cancelled)
            shown = await repo.jobs.job_by_id(conn, job.parent_id or job.id)
            assert shown is not None
            return await _view(conn, shown)

    async def skip(self, principal: Principal, project: str, sha: str, label: str) -> datetime:
        """A successful status for the sha (its jobs succeed); when it was recorded."""
        account_id = str(principal.account_id)
        async with self.pool.acquire() as conn, conn.transaction():
            created = await repo.jobs.skip(conn, account_id, project, sha, label)
            await posting.post_skip(conn, self.public_url, account_id, project, sha)
            return created

    async def lines(self, principal: Principal, job_id: int) -> tuple[Job, str, list[ProjectLine]]:
        """The caller's job for its page: the job, its status, and each project's line; 404
        for another account's."""
        async with self.pool.acquire() as conn:
            job = await repo.jobs.job_by_id(conn, job_id)
            if job is None or job.account_id != principal.account_id:
                raise errors.NotFound("No such job")
            projects = [job] if job.project is not None else await repo.jobs.children(conn, job.id)
            lines = []
            for each in projects:
                assert each.project is not None  # an orchestration job's children have one
                comparison = await repo.comparisons.comparison(
                    conn, each.account_id, each.project, each.sha1, each.sha2
                )
                lines.append(ProjectLine(each, await job_status(conn, each), comparison))
        status = (
            domain.combine(line.status for line in lines)
            if job.project is None
            else lines[0].status
        )
        return job, status, lines


async def _view(conn: asyncpg.Connection, job: Job) -> JobView:
    projects = None
    if job.project is None:
        projects = [child.project for child in await repo.jobs.children(conn, job.id)]
    return JobView(job, await job_status(conn, job), projects)
