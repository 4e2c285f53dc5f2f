"""Durable scheduled steps: schedule in the caller's transaction, claim when due, fire once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from alerts.bulk import Added
from dispatch.db import falls_due, new_id, table_of
from dispatch.jobs.models import Job, JobStatus

# A handler does the step inside the claiming transaction and returns a short outcome.
Handler = Callable[[AsyncSession, Job, datetime], Awaitable[str]]


def new_job(
    kind: str,
    due_at: datetime,
    *,
    incident_id: str | None = None,
    data: dict[str, Any] | None = None,
) -> Job:
    """A pending job, to ``schedule``."""
    return Job(**_pending(kind, due_at, incident_id, data))


def _pending(
    kind: str, due_at: datetime, incident_id: str | None, data: dict[str, Any] | None
) -> dict[str, Any]:
    return {
        "id": new_id(),
        "kind": kind,
        "incident_id": incident_id,
        "due_at": due_at,
        "status": JobStatus.PENDING.value,
        "data": data or {},
        "attempts": 0,
        "fired_at": None,
        "outcome": None,
    }


def schedule(session: AsyncSession, job: Job) -> Job:
    """Add the job to the session, written with its next flush."""
    session.add(job)
    falls_due(session, job.due_at)
    return job


def job_rows(
    session: AsyncSession,
    kind: str,
    due_at: datetime,
    *,
    incident_id: str | None = None,
    data: dict[str, Any] | None = None,
) -> Added:
    """A pending job as a row for ``alerts.bulk.write_rows``, past the unit of work: for the
    report, whose other rows go in the same statement, so its commit has nothing left to flush
    (and no mapped object is built: its instrumented attributes cost thirty times the row)."""
    falls_due(session, due_at)
    return Added(table_of(Job), [_pending(kind, due_at, incident_id, data)])


async def claim_due(session: AsyncSession, now: datetime, limit: int) -> list[Job]:
    """Lock due jobs; another process skips them rather than firing them a second time."""
    rows = await session.scalars(
        select(Job)
        .where(Job.status == JobStatus.PENDING.value, Job.due_at <= now)
        .order_by(Job.due_at)
        .limit(limit)
        .with_for_update(skip_locked=True, key_share=True)
    )
    return list(rows)


async def fire(
    session: AsyncSession, job: Job, now: datetime, handlers: Mapping[str, Handler]
) -> None:
    """Do the job's step and mark it done. Its kind has a handler: one without is left pending
    by the caller (``dispatch.jobs.tasks.JobQueue``), never marked done."""
    outcome = await handlers[job.kind](session, job, now)
    job.status, job.fired_at, job.outcome = JobStatus.DONE.value, now, outcome[:255]
    job.attempts += 1
    await session.flush()


async def postpone(session: AsyncSession, job_id: str, until: datetime, reason: str) -> None:
    """After a failed attempt: try again later, and say why. The attempt's rollback let go
    of the job's row: another process may have fired it since, and its record stands."""
    await session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.PENDING.value)
        .values(due_at=until, attempts=Job.attempts + 1, outcome=reason[:255])
    )


async def purge_done_before(session: AsyncSession, cutoff: datetime) -> int:
    """Delete the jobs done before ``cutoff``: nothing reads a done job again (what its step
    did is in the incident's events), and every report leaves at least one, which was kept
    for ever. Done at or after its due time, so the due index narrows the search."""
    result = await session.execute(
        delete(Job).where(
            Job.status == JobStatus.DONE.value, Job.due_at < cutoff, Job.fired_at < cutoff
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def next_due(session: AsyncSession) -> datetime | None:
    due: datetime | None = await session.scalar(
        select(Job.due_at)
        .where(Job.status == JobStatus.PENDING.value)
        .order_by(Job.due_at)
        .limit(1)
    )
    return due
