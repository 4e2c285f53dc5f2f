"""The one clock of the server. Every timestamp comes from here, so tests can drive time.

The server's time is the host's wall clock read once, when the clock is made (in production
at start-up), advanced from then on by the monotonic clock. A step of the host clock (a manual
``date -s``, an NTP client that steps, a virtual machine resumed) is not followed: durations
between records stay exact and time never goes backwards. The host's clock is only compared with
it (``offset_s``) so that operations see a step; a restart adopts the host's time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


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
    """The host's time at the start, then the monotonic clock's count of seconds since.

    ``wall_ns`` and ``monotonic_ns`` are the standard library's sources, given as parameters so
    that a test can stand in for the host.
    """

    def __init__(
        self,
        wall_ns: Callable[[], int] = time.time_ns,
        monotonic_ns: Callable[[], int] = time.monotonic_ns,
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
        # The event loop waits on the monotonic clock too, so the wait is as long as now()
        # says: a step of the host clock neither cuts it short nor stretches it.
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
