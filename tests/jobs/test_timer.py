"""The timer sleeps towards the next thing due and wakes early only when something new is due
before it."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.jobs import service as jobs
from dispatch.jobs.models import Job
from dispatch.jobs.tasks import (
    HELD_BACKOFF_S,
    STEP_LOCK_TIMEOUT_MS,
    JobQueue,
    Timer,
    retry_after_s,
)
from dispatch.observability import logs
from dispatch.runtime import Runtime
from tests.incidents.test_escalation import at
from tests.support import QINGXI, World, sync_engines


class Scheduled:
    """Work due at one time (a job: it fires once the clock reaches it), counting how often
    the timer looked for what is due."""

    def __init__(self, due: datetime) -> None:
        self.due: datetime | None = due
        self.looked = 0
        self.fired = 0

    async def fire_due(self, runtime: Runtime) -> None:
        self.looked += 1
        if self.due is not None and runtime.clock.now() >= self.due:
            self.fired, self.due = self.fired + 1, None

    async def next_due(self, session: AsyncSession) -> datetime | None:
        return self.due


async def settled(work: Scheduled) -> int:
    """Let the timer run until it sleeps again; how often it has looked."""
    for _ in range(20):
        await asyncio.sleep(0.01)
    return work.looked


@asynccontextmanager
async def running(runtime: Runtime, work: Scheduled) -> AsyncIterator[None]:
    """A timer over ``work`` alone, its poll bound far away so that only deadlines and
    wake-ups move it."""
    runtime.settings.timer_poll_s = 3600
    timer = Timer(runtime, [work])
    task = asyncio.create_task(timer.run())
    try:
        yield
    finally:
        task.cancel()
        runtime.wake_timers.remove(timer.wake)


async def test_a_later_deadline_does_not_wake_the_timer_and_an_earlier_one_does(
    world: World,
) -> None:
    runtime = world.runtime
    clock = world.clock
    work = Scheduled(clock.now() + timedelta(seconds=60))
    async with running(runtime, work):
        assert await settled(work) == 1

        # Reports keep storing deadlines a minute or more ahead: no re-reading for those.
        runtime.wake(clock.now() + timedelta(seconds=61))
        runtime.wake(clock.now() + timedelta(seconds=300))
        assert await settled(work) == 1

        # Something due before the timer's own next time wakes it to look again.
        runtime.wake(clock.now() + timedelta(seconds=20))
        assert await settled(work) == 2
        # So does a change whose time is unknown.
        runtime.wake()
        assert await settled(work) == 3

        # And what is due fires once the clock passes it.
        assert work.fired == 0
        clock.advance(61)
        assert await settled(work) == 4 and work.fired == 1


async def test_a_job_fires_when_the_clock_reaches_its_time_with_nothing_else_waking_the_timer(
    world: World,
) -> None:
    """The timer used to sleep until a millisecond past everything due, as a deadline needs:
    a job due at the very time the clock stopped at waited for something else to wake it."""
    runtime = world.runtime
    clock = world.clock
    work = Scheduled(clock.now() + timedelta(seconds=15))
    async with running(runtime, work):
        assert await settled(work) == 1
        clock.advance(15)
        assert await settled(work) == 2 and work.fired == 1


class Failing(Scheduled):
    """Work that cannot be fired (its table unwritable, say)."""

    async def fire_due(self, runtime: Runtime) -> None:
        self.looked += 1
        raise RuntimeError("cannot write")


async def test_work_that_fails_holds_back_neither_the_other_work_nor_the_next_pass(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    runtime = world.runtime
    clock = world.clock
    runtime.settings.timer_poll_s = 3600
    failing = Failing(clock.now())
    work = Scheduled(clock.now() + timedelta(seconds=15))
    timer = Timer(runtime, [failing, work])
    task = asyncio.create_task(timer.run())
    try:
        assert await settled(work) == 1
        clock.advance(15)
        assert await settled(work) == 2 and work.fired == 1
        # Not in a loop: the failing work is looked at again on each pass, not at once.
        assert failing.looked == 2
    finally:
        task.cancel()
        runtime.wake_timers.remove(timer.wake)
    assert "could not fire what is due of Failing" in caplog.text


class ReportedWhileFiring(Scheduled):
    """Work whose every look coincides with a report storing a deadline at ``reported``."""

    def __init__(self, due: datetime, reported: timedelta) -> None:
        super().__init__(due)
        self.reported = reported

    async def fire_due(self, runtime: Runtime) -> None:
        await super().fire_due(runtime)
        runtime.wake(runtime.clock.now() + self.reported)
        await asyncio.sleep(0)


async def test_reports_arriving_while_the_timer_fires_do_not_make_it_fire_again(
    world: World,
) -> None:
    runtime = world.runtime
    clock = world.clock
    work = ReportedWhileFiring(clock.now() + timedelta(seconds=60), timedelta(seconds=61))
    async with running(runtime, work):
        # Each look saw a report arrive; a later deadline than the next one is no reason to
        # look again at once (under a stream of reports the timer used to never sleep).
        assert await settled(work) == 1
        assert await settled(work) == 1


async def test_an_earlier_deadline_noted_while_firing_ends_the_next_sleep_in_time(
    world: World,
) -> None:
    runtime = world.runtime
    clock = world.clock
    # The work's own rows say nothing is due for an hour, but a report made during the look
    # stored a deadline 10 s ahead, which that look may not have seen.
    work = ReportedWhileFiring(clock.now() + timedelta(seconds=3600), timedelta(seconds=10))
    async with running(runtime, work):
        assert await settled(work) == 1
        clock.advance(9)
        assert await settled(work) == 1
        clock.advance(2)
        assert await settled(work) == 2


async def test_something_due_at_once_stored_while_firing_is_looked_at_at_once(
    world: World,
) -> None:
    runtime = world.runtime
    clock = world.clock

    class JobDueNow(Scheduled):
        async def fire_due(self, runtime: Runtime) -> None:
            await super().fire_due(runtime)
            if self.looked == 1:
                # A transaction of this look stores a job due now (its commit wakes the timer).
                self.due = runtime.clock.now()
                runtime.wake(self.due)

    work = JobDueNow(clock.now() + timedelta(seconds=3600))
    async with running(runtime, work):
        # The second look comes without the clock moving, and after it the timer sleeps.
        assert await settled(work) == 2
        assert await settled(work) == 2


async def test_something_due_that_another_transaction_holds_is_looked_at_again_after_a_moment(
    world: World,
) -> None:
    runtime = world.runtime
    clock = world.clock

    class Held(Scheduled):
        async def fire_due(self, runtime: Runtime) -> None:
            # Due and never fired: another process holds its row (SKIP LOCKED passes it by).
            self.looked += 1

    work = Held(clock.now() - timedelta(seconds=1))
    async with running(runtime, work):
        # One look, then a short sleep: before, the timer looked again and again at once, a
        # write transaction each time, for as long as the other transaction held the row.
        assert await settled(work) == 1
        clock.advance(HELD_BACKOFF_S)
        assert await settled(work) == 2


def test_a_job_that_keeps_failing_is_tried_again_less_and_less_often_but_never_dropped() -> None:
    waits = [retry_after_s(attempts) for attempts in range(10)]
    assert waits[:4] == [5.0, 10.0, 20.0, 40.0]
    assert waits[-1] == 300.0
    assert retry_after_s(10**6) == 300.0


async def test_a_timer_that_dies_is_logged_at_once_and_the_server_is_no_longer_ready(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    assert (await world.http.get("/readyz")).status_code == 200
    # The server's clock a moment before the end of the calendar: the deadline timer's next
    # wake-up (now + DISPATCH_TIMER_POLL_S) cannot be written, and its task ends.
    end = datetime.max.replace(tzinfo=UTC) - timedelta(milliseconds=100)
    with caplog.at_level(logging.ERROR, logger="dispatch.app"):
        world.clock.advance((end - world.clock.now()).total_seconds())
        for _ in range(250):
            ready = await world.http.get("/readyz")
            if ready.status_code != 200:
                break
            await asyncio.sleep(0.02)
    assert ready.status_code == 503
    assert int(ready.headers["Retry-After"]) >= 1
    # The error's class, for anyone who asks; its text is in the log.
    assert ready.json() == {
        "status": "background task stopped",
        "detail": "chain-timer: OverflowError",
    }
    [record] = [r for r in caplog.records if r.name == "dispatch.app"]
    assert record.levelno == logging.ERROR
    assert record.getMessage().startswith("background task chain-timer stopped (OverflowError")
    assert record.exc_info is not None and record.exc_info[0] is OverflowError


async def test_a_failed_attempt_leaves_a_job_another_process_fired_meanwhile_as_it_is(
    world: World,
) -> None:
    runtime = world.runtime
    # An hour ahead of the test's clock: the server's own timer leaves it alone.
    now = runtime.clock.now() + timedelta(hours=1)
    async with runtime.transaction() as session:
        job = jobs.schedule(session, jobs.new_job("nothing.to.do", now))
    # Between this process's failed attempt and its postponing, another process fired it.
    async with runtime.transaction() as session:
        [claimed] = await jobs.claim_due(session, now, 1)
        await jobs.fire(session, claimed, now, {"nothing.to.do": done})
    async with runtime.transaction() as session:
        await jobs.postpone(session, job.id, now + timedelta(seconds=5), "failed: busy")
    async with runtime.transaction() as session:
        fired = await session.get(Job, job.id)
        assert fired is not None
        assert (fired.status, fired.outcome, fired.attempts, fired.due_at) == (
            "done",
            "done by the other process",
            1,
            now,
        )


async def done(session: AsyncSession, job: Job, now: datetime) -> str:
    return "done by the other process"


# The escalation step's read of whether a tier-1 team answered (dispatch.incidents.service).
ANSWERED = "ORDER BY dispatches.accepted_at IS NULL"


async def test_a_failed_step_of_an_incident_is_logged_with_the_incidents_id(world: World) -> None:
    """docs/deploy.md: incident_id on every line about an incident, the steps that fall due
    for it included. The ERROR that says an incident's escalation failed, and when it is
    tried again, is the line an investigation looks for; it was written without the id."""
    await world.team("fixed_post")  # covers it; nobody accepts within 20 s
    await world.team("fixed_post", lon=QINGXI[0] + 0.006)  # in the 1 km escalation ring
    incident = await world.report(await world.operator())
    left = [1]

    def fail_once(_connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if ANSWERED in statement and left[0]:
            left[0] -= 1
            raise RuntimeError("the escalation step's read failed")

    stream = io.StringIO()
    handler = logs.handler(stream)
    logger = logging.getLogger("dispatch.jobs.tasks")
    logger.addHandler(handler)
    engines = sync_engines(world.runtime)
    for engine in engines:
        event.listen(engine, "before_cursor_execute", fail_once)
    try:
        world.clock.advance(21)
        for _ in range(250):
            lines = [json.loads(line) for line in stream.getvalue().splitlines()]
            if lines:
                break
            await asyncio.sleep(0.02)
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", fail_once)
        logger.removeHandler(handler)
    [line] = lines
    assert line["level"] == "ERROR"
    assert "failed; retrying in 5.0s" in line["message"]
    assert line["incident_id"] == incident["id"]


# A kind of job the next release schedules, which this one has no handler for.
NEXT_RELEASE = "alert.next_release_step"


async def job_row(world: World, job_id: str, until: Callable[[Job], bool]) -> Job:
    """The job's row once ``until`` holds of it (the server's timer works on its own)."""
    seen = "no row"
    for _ in range(250):
        async with world.runtime.sessionmaker() as session:
            row = await session.get(Job, job_id)
        assert row is not None
        if until(row):
            return row
        seen = f"{row.status} / {row.attempts} / {row.outcome}"
        await asyncio.sleep(0.02)
    raise AssertionError(f"never held: {seen}")


async def test_a_job_this_release_cannot_run_is_left_for_a_process_that_can(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """docs/deploy.md (upgrading): servers of the release before serve beside the new ones on
    the migrated database, and going back a release is the same case. A job of a kind this
    process has no handler for was marked done by whichever process claimed it first, and its
    step was lost for good."""
    runtime = world.runtime
    clock = world.clock
    incident = await world.report(await world.operator())
    scheduled_at = clock.now()
    async with runtime.transaction() as session:
        job = jobs.schedule(
            session,
            jobs.new_job(
                NEXT_RELEASE,
                scheduled_at,
                incident_id=incident["id"],
                data={"user_id": "u", "dispatch_id": "d", "seq": 1},
            ),
        )
    with caplog.at_level(logging.WARNING, logger="dispatch.jobs.tasks"):
        left = await job_row(world, job.id, lambda row: row.attempts == 1)
        assert (left.status, left.fired_at) == ("pending", None)
        assert left.outcome == f"no handler for {NEXT_RELEASE} in this release"
        assert left.due_at == scheduled_at + timedelta(seconds=retry_after_s(0))

        # Looked at again less and less often, never marked done.
        clock.advance(retry_after_s(0))
        again = await job_row(world, job.id, lambda row: row.attempts == 2)
        assert again.status == "pending"
        assert again.due_at == clock.now() + timedelta(seconds=retry_after_s(1))
    said = [r for r in caplog.records if r.name == "dispatch.jobs.tasks"]
    assert [r.levelno for r in said] == [logging.WARNING, logging.WARNING]
    assert NEXT_RELEASE in said[0].getMessage() and said[0].exc_info is None

    # A process of the release that has the handler claims it once it is due (unless this
    # one's timer claimed it first, and left it again).
    newer = JobQueue({NEXT_RELEASE: done})
    row = again
    for _ in range(5):
        clock.advance(max((row.due_at - clock.now()).total_seconds(), 0))
        await newer.fire_due(runtime)
        row = await job_row(world, job.id, lambda row: True)
        if row.status == "done":
            break
    assert (row.status, row.outcome) == ("done", "done by the other process")


async def test_one_incidents_held_row_holds_back_no_other_incidents_escalation(
    world: World, backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The timer fires one job after another, and the escalation step waited for its
    incident's row without a bound. While another transaction held one incident's row (a
    village import re-tagging the incidents of its area holds them until it commits; here an
    outside transaction stands for it), every other incident's escalation, and every breach,
    waited behind that one step."""
    if backend != "postgresql":
        pytest.skip("SQLite has one writer: every transaction waits for every other")
    operator = await world.operator()
    await world.team("fixed_post")
    await world.team("fixed_post", *at(800, 90))
    elsewhere = at(5000, 0)
    await world.team("fixed_post", *elsewhere)
    held = await world.report(operator)
    world.clock.advance(1)
    other = await world.report(operator, *elsewhere)
    held_step = await step_of(world, held["id"])
    other_step = await step_of(world, other["id"])

    url = make_url(world.runtime.settings.database_url).set(drivername="postgresql")
    outside = await asyncpg.connect(url.render_as_string(hide_password=False))
    try:
        async with outside.transaction():
            await outside.execute(
                "SELECT id FROM incidents WHERE id = $1 FOR NO KEY UPDATE", held["id"]
            )
            with caplog.at_level(logging.WARNING, logger="dispatch.jobs.tasks"):
                world.clock.advance(20)  # both escalations are due
                fired = await job_row(world, other_step, lambda row: row.status == "done")
                assert fired.outcome is not None and fired.outcome.startswith("escalated")
                waited = await job_row(world, held_step, lambda row: row.attempts == 1)
        assert waited.status == "pending"
        assert waited.outcome == f"held: a row it needs was locked past {STEP_LOCK_TIMEOUT_MS} ms"
        # Said once, as a wait, not as a failed step with its traceback.
        [said] = [r for r in caplog.records if r.name == "dispatch.jobs.tasks"]
        assert said.levelno == logging.WARNING and said.exc_info is None
        assert said.getMessage().startswith(f"job {held_step} waited {STEP_LOCK_TIMEOUT_MS} ms")
    finally:
        await outside.close()
    # Once the row is let go the step fires when it is tried again.
    world.clock.advance(retry_after_s(0))
    late = await job_row(world, held_step, lambda row: row.status == "done")
    assert late.outcome is not None and late.outcome.startswith("escalated")


async def step_of(world: World, incident_id: str) -> str:
    """The id of the incident's one job (its escalation step)."""
    async with world.runtime.sessionmaker() as session:
        [job_id] = await session.scalars(select(Job.id).where(Job.incident_id == incident_id))
    return job_id


async def test_jobs_done_before_the_retention_window_are_purged_and_no_other(
    world: World,
) -> None:
    """Every report leaves at least one job, and a done job is never read again: they were
    kept for ever. The retention sweep drops those done before its cutoff, as it drops the
    stored messages."""
    runtime = world.runtime
    # Hours ahead of the test's clock: the server's own timer leaves them alone.
    start = runtime.clock.now() + timedelta(hours=1)
    later = start + timedelta(days=7)
    async with runtime.transaction() as session:
        old = jobs.schedule(session, jobs.new_job("nothing.to.do", start))
        waiting = jobs.schedule(session, jobs.new_job("nothing.to.do", start))
        recent = jobs.schedule(session, jobs.new_job("nothing.to.do", later))
    for job, fired_at in ((old, start), (recent, later)):
        async with runtime.transaction() as session:
            claimed = await session.get(Job, job.id)
            assert claimed is not None
            await jobs.fire(session, claimed, fired_at, {"nothing.to.do": done})

    async with runtime.transaction() as session:
        assert await jobs.purge_done_before(session, later) == 1
    async with runtime.sessionmaker() as session:
        kept = {job.id: job.status for job in await session.scalars(select(Job))}
    # A job still pending stays, however long overdue.
    assert kept == {waiting.id: "pending", recent.id: "done"}
