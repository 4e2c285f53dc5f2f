"""The one clock of the server. Every timestamp comes from here, so tests can drive time.

The server's time is the host's wall clock read once, when the clock is made (in production
at start-up), advanced from then on by the count of seconds since the host booted, suspended
time included (``since_boot_ns``). A step of the host clock (a manual ``date -s``, an NTP
client that steps) is not followed: durations between records stay exact and time never goes
backwards. The host's clock is only compared with
it (``offset_s``) so that operations see a step; a restart adopts the host's time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

log = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


if sys.platform == "linux":

    def since_boot_ns() -> int:
        """Nanoseconds since the host booted, counting the time it spent suspended
        (``CLOCK_BOOTTIME``). The monotonic clock stands still while the host sleeps: a server
        on a control room's computer that slept ten minutes would have stayed ten minutes
        behind from then on, every deadline and arrival recorded that much early, until a
        restart. Slewed by NTP like the monotonic clock, and never stepped."""
        return time.clock_gettime_ns(time.CLOCK_BOOTTIME)

else:  # No such clock: the monotonic one, which stops while the host sleeps.
    since_boot_ns = time.monotonic_ns


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware, in UTC."""
        ...

    async def sleep_until(self, when: datetime, wake: asyncio.Event) -> None:
        """Return at ``when`` or as soon as ``wake`` is set, whichever comes first."""
        ...

    def offset_s(self) -> float:
        """The host's wall clock minus this clock, in seconds (positive: the host is ahead)."""
        ...


class SystemClock:
    """The host's time at the start, then the count of seconds since, suspended time included.

    ``wall_ns`` and ``monotonic_ns`` are the sources (``time.time_ns`` and ``since_boot_ns``),
    given as parameters so that a test can stand in for the host.
    """

    def __init__(
        self,
        wall_ns: Callable[[], int] = time.time_ns,
        monotonic_ns: Callable[[], int] = since_boot_ns,
    ) -> None:
        self._wall_ns = wall_ns
        self._monotonic_ns = monotonic_ns
        # The one read of the wall clock that the record depends on: the time at start.
        self._anchor_mono_ns = monotonic_ns()
        self._anchor_wall_ns = wall_ns()

    def _now_ns(self) -> int:
        return self._anchor_wall_ns + (self._monotonic_ns() - self._anchor_mono_ns)

    def now(self) -> datetime:
        # On the alert path: one monotonic read, no wall clock. Whole microseconds, as
        # datetime keeps them, rounded down so that a later reading is never earlier.
        return EPOCH + timedelta(microseconds=self._now_ns() // 1000)

    def offset_s(self) -> float:
        # The wall clock is read here on purpose: the point is how far the host has moved
        # away from the server's time (a step), never to take a time for the record.
        return (self._wall_ns() - self._now_ns()) / 1e9

    async def sleep_until(self, when: datetime, wake: asyncio.Event) -> None:
        # The event loop waits on the monotonic clock, so a step of the host clock neither
        # cuts the wait short nor stretches it. A host that sleeps meanwhile stretches it by
        # the sleep (the monotonic clock stands still): the timer's waits are at most
        # DISPATCH_TIMER_POLL_S, so what fell due meanwhile fires that soon after the wake.
        delay = (when - self.now()).total_seconds()
        if delay <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=delay)


class ManualClock:
    """A clock that moves only when told; sleepers wake when it passes their time."""

    def __init__(self, start: datetime | None = None) -> None:
        # The host's time as a plausible starting point for a test; from here on only
        # advance() moves it.
        self._now = (start or datetime.now(UTC)).astimezone(UTC)
        self._tick = asyncio.Event()

    def now(self) -> datetime:
        return self._now

    def offset_s(self) -> float:
        # Driven by hand, it follows no host clock: there is nothing to disagree with.
        return 0.0

    def advance(self, seconds: float) -> datetime:
        self._now += timedelta(seconds=seconds)
        tick, self._tick = self._tick, asyncio.Event()
        tick.set()
        return self._now

    async def sleep_until(self, when: datetime, wake: asyncio.Event) -> None:
        while self._now < when and not wake.is_set():
            waiters = {
                asyncio.create_task(self._tick.wait()),
                asyncio.create_task(wake.wait()),
            }
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in waiters:
                    task.cancel()


# A start whose time is this far behind the newest time on record is logged.
BEHIND_RECORD_WARN_S = 1.0


def check_against_record(now: datetime, newest: datetime | None) -> float:
    """Compare the server's time at start with the newest time on record; return how far it
    is behind (0 when it is not), and log a WARNING when that is more than
    ``BEHIND_RECORD_WARN_S``.

    Behind the record: this host's clock is behind the one that wrote it, another host's
    serving the same database, or this one's before a restart, when it was ahead (set back
    since, as it should be). The server's time is not moved to the record's: a clock that
    ran fast would then stay fast. What is recorded from now on that follows what is on
    record (a hop after its report, its alert and its earlier hops; a close) is recorded at
    the later time, its event keeping how far behind this process's reading was, so the
    record stays in order and no duration on it is negative."""
    if newest is None:
        return 0.0
    behind = (newest - now).total_seconds()
    if behind <= BEHIND_RECORD_WARN_S:
        return max(behind, 0.0)
    log.warning(
        "the server's time at start, %s, is %.3f s behind the newest time on record, %s: the "
        "host's clock is behind the one that wrote it (another host's, or this one's before "
        "a restart while it was ahead). The server keeps the host's time; a hop that follows "
        "a later time on record is recorded at that time, its event keeping clock_behind_s. "
        "Check the hosts' clocks (chronyc tracking)",
        now.isoformat(),
        behind,
        newest.isoformat(),
        extra={"clock_behind_record_s": round(behind, 6)},
    )
    return behind


class StepWatch:
    """Tells operations when the host clock and the server's time part (a step of the host
    clock) or agree again: one WARNING each time the offset changes by more than
    ``threshold_s``, never one a check. The server's time is not re-anchored while running:
    following the host there would be the step itself, in the middle of the record."""

    def __init__(self, clock: Clock, threshold_s: float) -> None:
        self._clock = clock
        self._threshold_s = threshold_s
        # The offset last told of; 0: in agreement (as at start, where the clock is anchored).
        self._told = 0.0

    def check(self) -> float:
        """Compare the clocks once, warn if their offset changed; return the offset."""
        offset = self._clock.offset_s()
        if abs(offset - self._told) <= self._threshold_s:
            return offset
        if abs(offset) > self._threshold_s:
            log.warning(
                "the host clock is %+.3f s from the server's time (a step of the host clock); "
                "the server keeps its own time so that durations stay exact, and adopts the "
                "host's at its next restart",
                offset,
                extra={"clock_offset_s": round(offset, 6)},
            )
            self._told = offset
        else:
            log.warning(
                "the host clock agrees with the server's time again (%+.3f s)",
                offset,
                extra={"clock_offset_s": round(offset, 6)},
            )
            self._told = 0.0
        return offset

    async def run(self, every_s: float) -> None:
        # asyncio.sleep counts on the monotonic clock: a step does not change the rhythm.
        while True:
            self.check()
            await asyncio.sleep(every_s)
