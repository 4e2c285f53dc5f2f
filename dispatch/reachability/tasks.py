"""Keeping this process's presence rows true: written when sockets come and go, refreshed
while they stay, and closed when the process stops."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from dispatch.reachability import service
from dispatch.runtime import Runtime

log = logging.getLogger(__name__)

# Sockets come and go in the hub in memory; the rows follow within this much.
SYNC_S = 0.5
FORGET_AFTER = timedelta(days=30)


class PresenceTracker:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.instance = runtime.origin
        # The users with a socket here, as the rows say.
        self.known: set[str] = set()
        # When each user's row was last written, while the hub remembers him.
        self.written: dict[str, datetime] = {}

    async def run(self) -> None:
        """Forget what is long stale once, then keep the rows in step with the hub. The
        database may be away a while (locked, restarting, out of connections as several
        workers start): each step is tried again on the next turn, and one that fails stops
        neither the other nor the task, whose presence the other processes read."""
        loop = asyncio.get_running_loop()
        next_beat = loop.time()
        forgotten = False
        while True:
            if not forgotten:
                try:
                    async with self.runtime.transaction() as session:
                        cutoff = self.runtime.clock.now() - FORGET_AFTER
                        await service.forget_before(session, cutoff)
                    forgotten = True
                except Exception:
                    log.exception("could not forget stale presence")
            beat = loop.time() >= next_beat
            try:
                await self.sync(beat)
                if beat:
                    next_beat = loop.time() + self.runtime.settings.presence_heartbeat_s
            except Exception:
                log.exception("could not record presence")
            await asyncio.sleep(SYNC_S)

    async def sync(self, beat: bool = False) -> None:
        hub = self.runtime.hub
        now = self.runtime.clock.now()
        # Only users whose sockets came or went since the last look can have changed.
        changed = hub.take_changed()
        # A socket the server closed as it stops stays open on record until the process has
        # stopped (``stop``): its leader was connected when it stopped.
        connected = {u for u in changed if hub.is_connected(u) or u in hub.closed_for_restart}
        seen = {u: hub.last_seen[u] for u in changed if u in hub.last_seen}
        changes = [service.Change(u, True, seen.get(u, now)) for u in connected - self.known]
        # Closed since the last look, including a socket that opened and closed in between.
        changes += [
            service.Change(u, False, at)
            for u, at in seen.items()
            if u not in connected and (u in self.known or self.written.get(u) != at)
        ]
        if not (changes or beat):
            return
        try:
            async with self.runtime.transaction() as session:
                await service.record_presence(session, self.instance, changes)
                if beat:
                    await service.heartbeat(session, self.instance, now)
        except BaseException:
            hub.mark_changed(changed)
            raise
        self.known = (self.known - changed) | connected
        self.written.update(seen)
        # Whose last socket here closed is now on record: his row says when he was last seen,
        # and neither the hub nor this keeps him (each leader ever seen stayed for months).
        for user_id in seen.keys() - connected:
            hub.forget_seen(user_id, seen[user_id])
            if user_id not in hub.last_seen:
                del self.written[user_id]

    async def stop(self) -> None:
        """Say this process's sockets are gone, so no one waits for rows to go stale, and that
        it stopped: the sockets still open on record, those the stop closed among them, are
        written closed at the moment it stopped (the notifiers' reconnection grace reads them
        as connected when it stopped)."""
        now = self.runtime.clock.now()
        hub = self.runtime.hub
        changed = hub.take_changed()
        # Closed by their clients since the last look, at their own times; the others were
        # open when the process stopped, those opened and closed for the restart since the
        # last look among them.
        left = {u for u in changed if not hub.is_connected(u) and u not in hub.closed_for_restart}
        opened = (changed & hub.closed_for_restart) - self.known
        try:
            async with self.runtime.transaction() as session:
                changes = [service.Change(u, True, hub.last_seen.get(u, now)) for u in opened]
                await service.record_presence(session, self.instance, changes)
                changes = [
                    service.Change(u, False, hub.last_seen.get(u, now)) for u in left & self.known
                ]
                changes += [service.Change(u, False, now) for u in (self.known - left) | opened]
                await service.record_presence(session, self.instance, changes)
                await service.stopped(session, self.instance, now)
        except Exception:
            log.exception("could not close presence rows on the way out")
        self.known = set()
