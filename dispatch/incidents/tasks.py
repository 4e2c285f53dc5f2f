"""What falls due for incidents: chain deadlines (breaches) and escalation steps."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from alerts import store
from dispatch.incidents import service
from dispatch.jobs import service as jobs
from dispatch.jobs.models import Job
from dispatch.runtime import Runtime

log = logging.getLogger(__name__)

BATCH = 100
# How far past a deadline the timer looks again: the least step its clock can be beyond it, a
# microsecond (the finest a datetime, and both databases, keep). A millisecond left a clock
# stopped within it past a deadline with the tier due and nothing looking at it.
BEYOND = timedelta(microseconds=1)


class ChainDeadlines:
    """Breaches every tier whose stored deadline passed with nobody of it on scene."""

    async def fire_due(self, runtime: Runtime) -> None:
        while True:
            async with runtime.transaction() as session:
                fired = await service.fire_due_breaches(session, runtime.clock.now(), BATCH)
            if fired < BATCH:
                return

    async def next_due(self, session: AsyncSession) -> datetime | None:
        deadline = await service.next_deadline(session)
        # A tier is breached once the clock is beyond its deadline, not at it.
        return None if deadline is None else deadline + BEYOND


def job_handlers(runtime: Runtime) -> dict[str, jobs.Handler]:
    async def escalate(session: AsyncSession, job: Job, now: datetime) -> str:
        assert job.incident_id is not None
        teams = job.data.get("teams")
        return await service.escalate_if_unaccepted(
            session,
            job.incident_id,
            now,
            after_s=float(job.data["after_s"]),
            coverage=runtime.coverage,
            ring_m=float(job.data.get("ring_m", runtime.settings.escalation_ring_m)),
            # A step at the moment covering teams skipped off duty come on duty: those teams.
            teams=None if teams is None else [str(team) for team in teams],
        )

    async def send_again(session: AsyncSession, job: Job, now: datetime) -> str:
        assert job.incident_id is not None
        return await service.send_alert_again(
            session,
            job.incident_id,
            str(job.data["dispatch_id"]),
            str(job.data["user_id"]),
            int(job.data["seq"]),
            now,
        )

    return {service.ESCALATE: escalate, service.SEND_AGAIN: send_again}


async def purge_old_messages(runtime: Runtime) -> None:
    """Drop stored messages past the retention window; a client that far behind resyncs. And
    the jobs done before it, which nothing reads again."""
    while True:
        cutoff = runtime.clock.now() - timedelta(days=runtime.settings.message_retention_days)
        try:
            async with runtime.transaction() as session:
                removed = await store.purge_before(session, cutoff)
            if removed:
                log.info("purged %d stored messages older than %s", removed, cutoff.isoformat())
            async with runtime.transaction() as session:
                done = await jobs.purge_done_before(session, cutoff)
            if done:
                log.info("purged %d jobs done before %s", done, cutoff.isoformat())
        except Exception:
            log.exception("could not purge old messages and done jobs")
        await asyncio.sleep(3600)
