"""The server's time: the host's wall clock at start, advanced by the time since boot.

``Host`` stands in for the two sources (``time.time_ns`` and the count since boot), which
``SystemClock`` takes as plain functions; the test moves them.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from datetime import datetime, timedelta

import pytest

from dispatch.clock import EPOCH, ManualClock, StepWatch, SystemClock
from dispatch.config import Settings
from tests.conftest import world_serving
from tests.observability.test_metrics import scrape, value

SECOND_NS = 1_000_000_000
# 2026-11-28T10:00:00Z, a whole second: times on record are exact to the microsecond.
START_NS = 1_795_860_000 * SECOND_NS


class Host:
    """The host's wall clock, which can be stepped, and its monotonic clock, which cannot."""

    def __init__(self, wall_ns: int = START_NS, monotonic_ns: int = 7_000 * SECOND_NS) -> None:
        self.wall_ns = wall_ns
        self.monotonic_ns = monotonic_ns

    def wall(self) -> int:
        return self.wall_ns

    def monotonic(self) -> int:
        return self.monotonic_ns

    def elapse(self, seconds: float) -> None:
        """Time passes: both clocks move alike."""
        self.wall_ns += round(seconds * SECOND_NS)
        self.monotonic_ns += round(seconds * SECOND_NS)

    def step(self, seconds: float) -> None:
        """The wall clock is set (``date -s``, an NTP client that steps)."""
        self.wall_ns += round(seconds * SECOND_NS)


def s(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


def test_the_server_starts_at_the_host_time_and_counts_with_the_monotonic_clock() -> None:
    host = Host()
    clock = SystemClock(host.wall, host.monotonic)
    start = clock.now()
    assert start == EPOCH + timedelta(microseconds=START_NS // 1000)
    assert start.tzinfo is not None and start.utcoffset() == timedelta(0)
    host.elapse(1.5)
    assert clock.now() - start == s(1.5)


@pytest.mark.skipif(sys.platform != "linux", reason="CLOCK_BOOTTIME is Linux's")
def test_time_the_host_spent_asleep_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    # The defect as seen: the control room's computer slept ten minutes; the monotonic clock
    # stood still meanwhile, and the server stayed ten minutes behind, every arrival recorded
    # that much early, until a restart. The kernel's clocks stand in for the host's.
    host = Host()
    asleep_ns = 0

    def kernel_clock_ns(clock_id: int) -> int:
        if clock_id == time.CLOCK_BOOTTIME:
            return host.monotonic_ns + asleep_ns
        assert clock_id == time.CLOCK_MONOTONIC
        return host.monotonic_ns

    monkeypatch.setattr(time, "clock_gettime_ns", kernel_clock_ns)
    monkeypatch.setattr(time, "monotonic_ns", lambda: kernel_clock_ns(time.CLOCK_MONOTONIC))
    clock = SystemClock(host.wall)
    before = clock.now()
    host.wall_ns += 600 * SECOND_NS  # the host asleep: its wall clock moves on (NTP, RTC) ...
    asleep_ns += 600 * SECOND_NS  # ... the monotonic clock does not
    assert clock.now() - before == s(600)
    assert clock.offset_s() == 0  # in agreement with the host, no step to warn of


def test_a_step_back_of_the_host_clock_does_not_move_the_server_time() -> None:
    # The defect as seen: reported, the host clock set back a minute two seconds later, the
    # team on scene at eight seconds. The arrival must be eight seconds after the report.
    host = Host()
    clock = SystemClock(host.wall, host.monotonic)
    reported = clock.now()
    host.elapse(2)
    host.step(-60)
    assert clock.now() - reported == s(2)
    host.elapse(6)
    arrived = clock.now()
    assert arrived - reported == s(8)
    assert host.wall_ns < START_NS  # by the host's clock, before the report


def test_a_step_forward_of_the_host_clock_does_not_move_the_server_time() -> None:
    # Followed, it would breach every pending tier at once and purge messages early.
    host = Host()
    clock = SystemClock(host.wall, host.monotonic)
    reported = clock.now()
    host.step(3600)
    assert clock.now() == reported
    host.elapse(59.999999)
    assert clock.now() - reported == s(59.999999)


def test_durations_follow_the_monotonic_clock_alone() -> None:
    host = Host()
    clock = SystemClock(host.wall, host.monotonic)
    start = clock.now()
    # A host clock that stands still (or is slewed apart) does not hold the server's time.
    host.monotonic_ns += 45 * SECOND_NS
    assert clock.now() - start == s(45)
    # Whole microseconds, rounded down: a reading a nanosecond later is never earlier.
    readings = []
    for _ in range(2_000):
        host.monotonic_ns += 1
        readings.append(clock.now())
    assert readings == sorted(readings)
    assert readings[-1] - readings[0] == timedelta(microseconds=2)


def test_the_offset_is_how_far_the_host_clock_moved_away() -> None:
    host = Host()
    clock = SystemClock(host.wall, host.monotonic)
    assert clock.offset_s() == 0
    host.elapse(30)
    assert clock.offset_s() == 0
    host.step(-60)
    assert clock.offset_s() == -60
    host.step(3660)
    assert clock.offset_s() == 3600
    assert ManualClock().offset_s() == 0


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "dispatch.clock" and record.levelno == logging.WARNING
    ]


def test_a_step_is_told_once_and_so_is_the_return_to_agreement(
    caplog: pytest.LogCaptureFixture,
) -> None:
    host = Host()
    watch = StepWatch(SystemClock(host.wall, host.monotonic), threshold_s=2.0)
    host.step(1.5)  # within the threshold: an NTP correction's worth, not a step
    assert watch.check() == 1.5
    assert warnings_of(caplog) == []

    host.step(-61.5)
    for _ in range(3):
        host.elapse(10)
        assert watch.check() == -60
    [told] = warnings_of(caplog)
    assert "-60.000 s" in told and "restart" in told
    assert caplog.records[-1].__dict__["clock_offset_s"] == -60

    host.step(-1)  # moved, but not by more than the threshold since it was told
    watch.check()
    assert len(warnings_of(caplog)) == 1
    host.step(-30)
    watch.check()
    assert "-91.000 s" in warnings_of(caplog)[-1]

    host.step(91)
    assert watch.check() == 0
    assert "agrees" in warnings_of(caplog)[-1]
    assert len(warnings_of(caplog)) == 3


async def test_the_running_server_keeps_its_time_when_the_host_clock_steps_back(
    settings: Settings, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    # The host's time now, so that what the test sets up directly (accounts, on ``clock``)
    # is of the same day as what the server records.
    host = Host(wall_ns=time.time_ns())
    configured = settings.model_copy(
        update={"chain_targets": (6.0, 18.0, 30.0), "clock_check_s": 0.05}
    )
    server_clock = SystemClock(host.wall, host.monotonic)
    async with world_serving(configured, clock, server_clock=server_clock) as world:
        team = await world.team("fixed_post")
        leader = await world.leader(team)
        operator = await world.operator()
        incident = await world.report(operator)
        [d] = incident["dispatches"]

        host.elapse(2)
        host.step(-60)
        host.elapse(6)
        reply = await world.http.post(
            f"/api/v1/dispatches/{d['id']}/arrive", headers=leader.headers
        )
        assert reply.status_code == 200, reply.text
        after = reply.json()
        first = after["chain"][0]
        # Eight seconds against six: late, whatever the host clock said meanwhile.
        assert first["elapsed_s"] == 8
        assert first["status"] == "breached"
        assert first["breached_at"] == first["deadline"]
        [arrived] = after["dispatches"]
        reported_at = datetime.fromisoformat(after["reported_at"])
        assert datetime.fromisoformat(arrived["arrived_at"]) - reported_at == s(8)

        assert value(await scrape(world), "dispatch_clock_offset_seconds") == -60
        for _ in range(500):
            if warnings_of(caplog):
                break
            await asyncio.sleep(0.02)
        [told] = warnings_of(caplog)
        assert "-60.000 s" in told
