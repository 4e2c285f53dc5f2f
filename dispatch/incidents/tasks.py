"""The chain timer: breaches every tier whose stored deadline passes with nobody on scene.

Deadlines are rows, so nothing is lost across restarts: on start the timer breaches whatever
fell due while the server was down, recorded at the deadline itself.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from alerts import store
from dispatch.incidents import service
from dispatch.runtime import Runtime

log = logging.getLogger(__name__)

BATCH = 100


class ChainTimer:
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._wake = asyncio.Event()
        runtime.wake_timers.append(self._wake.set)

    async def run(self) -> None:
        while True:
            self._wake.clear()
            try:
                next_due = await self.fire_due()
            except Exception:
                # The database may be briefly unreachable; the deadlines wait in their rows.
                log.exception("chain timer could not fire due deadlines")
                next_due = None
            await self._runtime.clock.sleep_until(self._until(next_due), self._wake)

    async def fire_due(self) -> datetime | None:
        """Breach everything due now; return the next pending deadline."""
        runtime = self._runtime
        while True:
            async with runtime.transaction() as session:
                fired = await service.fire_due_breaches(session, runtime.clock.now(), BATCH)
            if fired < BATCH:
                break
        async with runtime.sessionmaker() as session:
            return await service.next_deadline(session)

    def _until(self, next_due: datetime | None) -> datetime:
        # Poll as well: another process may have stored an earlier deadline.
        poll = self._runtime.clock.now() + timedelta(seconds=self._runtime.settings.timer_poll_s)
        return poll if next_due is None else min(next_due, poll)


async def purge_old_messages(runtime: Runtime) -> None:
    """Drop stored messages past the retention window; a client that far behind resyncs."""
    while True:
        cutoff = runtime.clock.now() - timedelta(days=runtime.settings.message_retention_days)
        try:
            async with runtime.transaction() as session:
                removed = await store.purge_before(session, cutoff)
            if removed:
                log.info("purged %d stored messages older than %s", removed, cutoff.isoformat())
        except Exception:
            log.exception("could not purge old messages")
        await asyncio.sleep(3600)
