"""The timer loop: fires every due deadline and job, sleeping until the next one is due.

Everything due lives in rows, so a restart loses nothing: whatever fell due while the server
was down fires on start. With several processes, row locks (SKIP LOCKED) make each fire once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.jobs import service as jobs
from dispatch.jobs.models import Job
from dispatch.observability.logs import about_incident
from dispatch.runtime import Runtime

log = logging.getLogger(__name__)

# A failed job is tried again after 5 s, then after twice as long each time up to 5 minutes:
# never given up (it may be an escalation), but a job that keeps failing does not flood the log.
RETRY_AFTER_S = 5.0
RETRY_AFTER_MAX_S = 300.0


# How long a step waits, on PostgreSQL, for a row another transaction holds before it gives up
# and is tried again later (``retry_after_s``). The timer fires one job after another: a step
# waiting for one incident's row (held by a village import re-tagging its area, say) held back
# every other incident's escalation and every breach for as long. The rows a step takes are held
# for milliseconds by what else writes them (a hop, a close, a report's last statement).
STEP_LOCK_TIMEOUT_MS = 500
# lock_not_available: what a wait past lock_timeout (or a NOWAIT) ends in.
LOCK_NOT_AVAILABLE = "55P03"


async def bound_lock_waits(session: AsyncSession) -> None:
    """Make the rest of the job's transaction wait at most ``STEP_LOCK_TIMEOUT_MS`` for a row
    lock (PostgreSQL; SQLite has one writer, whose turn the busy timeout bounds)."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text(f"SET LOCAL lock_timeout = '{STEP_LOCK_TIMEOUT_MS}ms'"))


def row_held(error: BaseException) -> bool:
    """Whether ``error`` is a wait for a row lock that ran out (``bound_lock_waits``)."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        # SQLAlchemy's error, its adaptation of asyncpg's and asyncpg's own carry the SQLSTATE.
        if getattr(cause, "sqlstate", None) == LOCK_NOT_AVAILABLE:
            return True
        cause = getattr(cause, "orig", None) or cause.__cause__ or cause.__context__
    return False


def retry_after_s(attempts_before: int) -> float:
    """The wait before the next try of a job that had failed ``attempts_before`` times."""
    doublings: int = min(attempts_before, 16)
    return min(RETRY_AFTER_S * float(2**doublings), RETRY_AFTER_MAX_S)


class DueWork(Protocol):
    async def fire_due(self, runtime: Runtime) -> None: ...

    async def next_due(self, session: AsyncSession) -> datetime | None: ...


class JobQueue:
    def __init__(self, handlers: Mapping[str, jobs.Handler]) -> None:
        self._handlers = handlers

    async def fire_due(self, runtime: Runtime) -> None:
        # One job per transaction: a failing step must not hold back or undo the others.
        while True:
            job_id: str | None = None
            incident_id: str | None = None
            failed_before = 0
            try:
                async with runtime.transaction() as session:
                    claimed = await jobs.claim_due(session, runtime.clock.now(), 1)
                    if not claimed:
                        return
                    job = claimed[0]
                    job_id, failed_before, incident_id = job.id, job.attempts, job.incident_id
                    if job.kind not in self._handlers:
                        await self._leave(session, runtime, job)
                        continue
                    await bound_lock_waits(session)
                    await jobs.fire(session, job, runtime.clock.now(), self._handlers)
            except Exception as error:
                if job_id is None:
                    raise
                wait_s = retry_after_s(failed_before)
                # The handler's own lines carry the incident's id; the line that says its step
                # failed, outside the handler, is the one an investigation looks for.
                with about_incident(incident_id):
                    if row_held(error):
                        # Not a fault of the step: another transaction holds a row it needs.
                        log.warning(
                            "job %s waited %d ms for a row another transaction holds; "
                            "retrying in %ss",
                            job_id,
                            STEP_LOCK_TIMEOUT_MS,
                            wait_s,
                        )
                        reason = f"held: a row it needs was locked past {STEP_LOCK_TIMEOUT_MS} ms"
                    else:
                        log.exception("job %s failed; retrying in %ss", job_id, wait_s)
                        reason = f"failed: {error!r}"
                    retry_at = runtime.clock.now() + timedelta(seconds=wait_s)
                    async with runtime.transaction() as session:
                        await jobs.postpone(session, job_id, retry_at, reason)

    async def _leave(self, session: AsyncSession, runtime: Runtime, job: Job) -> None:
        """A job of a kind this release has no handler for: scheduled by a newer release (a
        rolling upgrade, or a rollback after one), whose processes may serve beside this one.
        Marked done it would be lost for good: left pending, looked at again less and less
        often, for a process that can run it to claim meanwhile."""
        wait_s = retry_after_s(job.attempts)
        with about_incident(job.incident_id):
            log.warning(
                "job %s is of kind %s, which this release cannot run; "
                "left for a process that can, looked at again in %ss",
                job.id,
                job.kind,
                wait_s,
            )
        retry_at = runtime.clock.now() + timedelta(seconds=wait_s)
        await jobs.postpone(session, job.id, retry_at, f"no handler for {job.kind} in this release")

    async def next_due(self, session: AsyncSession) -> datetime | None:
        return await jobs.next_due(session)


class Timer:
    def __init__(self, runtime: Runtime, works: Sequence[DueWork]) -> None:
        self._runtime = runtime
        self._works = works
        self._wake = asyncio.Event()
        # What the timer sleeps towards; None while it is firing.
        self._sleeping_until: datetime | None = None
        # The earliest time noted while it was firing, to sleep no later than.
        self._noted: datetime | None = None
        runtime.wake_timers.append(self.wake)

    def wake(self, due: datetime | None = None) -> None:
        """Something new falls due at ``due``: wake only if that is before the timer would
        wake anyway. Every report stores deadlines a minute or more ahead, and re-reading the
        tables after each one cost as much again as the report."""
        until = self._sleeping_until
        if due is not None and until is None:
            # Firing: whether or not its look at the tables saw this, the sleep that follows
            # ends by then. Waking at once instead would fire again for every report that
            # arrived meanwhile, and under a stream of reports the timer never slept.
            self._noted = due if self._noted is None else min(self._noted, due)
        elif due is None or until is None or due < until:
            self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            self._sleeping_until, self._noted = None, None
            started = self._runtime.clock.now()
            try:
                next_due = await self.fire_due()
            except Exception:
                # The database may be briefly unreachable; what is due waits in its rows.
                log.exception("timer could not fire what is due")
                next_due = None
            noted = self._noted
            if noted is not None and noted <= self._runtime.clock.now():
                continue  # already due (a job due at once): look again now
            if noted is not None:
                next_due = noted if next_due is None else min(next_due, noted)
            poll_s = self._runtime.settings.timer_poll_s
            self._sleeping_until = wake_time(self._runtime.clock.now(), started, next_due, poll_s)
            await self._runtime.clock.sleep_until(self._sleeping_until, self._wake)

    async def fire_due(self) -> datetime | None:
        """Fire everything due now; return when the next thing falls due."""
        fired: list[DueWork] = []
        for work in self._works:
            try:
                await work.fire_due(self._runtime)
            except Exception:
                # Each work has its own transactions: breaches that cannot be written must not
                # hold back the escalations and the notifiers, nor these those.
                log.exception("timer could not fire what is due of %s", type(work).__name__)
                continue
            fired.append(work)
        async with self._runtime.reading() as session:
            # What failed is due still, and is looked at again after the poll, not at once.
            dues = [await work.next_due(session) for work in fired]
        pending = [d for d in dues if d is not None]
        return min(pending) if pending else None


# How long to wait before looking again at something due that another transaction holds.
HELD_BACKOFF_S = 0.05


def wake_time(
    now: datetime, started: datetime, next_due: datetime | None, poll_s: float
) -> datetime:
    """When the timer looks again after a pass that began at ``started``.

    At the next thing due (the first moment each work can fire it: a job at its due time, a
    deadline once the clock is beyond it), or after ``poll_s`` (another process may have stored
    something due earlier). Something that could fire when the pass began and is due still was
    held by another transaction (SKIP LOCKED passed it by): looking again at once spun, a write
    transaction after another, as long as that transaction held it.
    """
    poll = now + timedelta(seconds=poll_s)
    if next_due is None:
        return poll
    if next_due <= started:
        return min(now + timedelta(seconds=HELD_BACKOFF_S), poll)
    return min(next_due, poll)
