"""The server's time: the host's wall clock at start, advanced by the monotonic clock.

``Host`` stands in for the standard library's two sources (``time.time_ns`` and
``time.monotonic_ns``), which ``SystemClock`` takes as plain functions; the test moves them.
"""

from __future__ import annotations

from datetime import timedelta

from dispatch.clock import EPOCH, ManualClock, SystemClock

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
