"""Every team's duty schedule, unit sizes and leaders' units, held in memory for the reports
that ask.

Every report asks whether its covering teams are on duty, and which of a rotating team's
leaders serve with the unit on turn. The answer depends on a few hundred rows that change when
an admin edits a schedule, a roster or a member's account link, so each process keeps them and
reloads them when they change: after its own change commits, and on ``DUTY_CHANNEL`` for
another process's (and whenever the fan-out connects, the first time too). From a change until
the reload is in, ``current`` is None and reports read the tables as before: a book is never
older than the last change this process heard of. While the fan-out is down the process hears
of none, and reports read the tables too (``Runtime.duty_book``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.background import Background
from dispatch.db import after_commit, announce
from dispatch.rosters.duty import Rotation

log = logging.getLogger(__name__)

DUTY_CHANNEL = "dispatch_duty"
RETRY_AFTER_S = 5.0


@dataclass(frozen=True, slots=True)
class TeamDuty:
    """A team's duty hours and rotation, how many members each of its units has, and the unit
    of the member each linked leader account speaks for (``OnTurn.leader_units``)."""

    rotation: Rotation
    unit_sizes: Mapping[int, int]
    leader_units: Mapping[str, int]


Duties = dict[str, TeamDuty]
Load = Callable[[], Awaitable[Duties]]


class DutyBook:
    def __init__(self, load: Load) -> None:
        self._load = load
        self._duties: Duties | None = None
        # Moves on every change; a load installs its result only if none came meanwhile.
        self._generation = 0
        self._loading = Background()

    def current(self) -> Duties | None:
        """The teams that have a schedule, or None while a change is being loaded."""
        return self._duties

    async def load(self) -> None:
        """Load now (at start): the book is current once this returns."""
        self._generation += 1
        generation = self._generation
        duties = await self._load()
        if generation == self._generation:
            self._duties = duties

    def changed(self) -> None:
        """Schedules or rosters changed (committed): read the tables until reloaded. Once
        closed no reload starts: the second of a lost COMMIT's reloads, a second after it, may
        come after the server began to stop, and would retry against the closed database."""
        self._generation += 1
        self._duties = None
        self._loading.start(self._reload(self._generation), name="duty-book")

    async def close(self) -> None:
        """Stop the reloads in flight (before the database goes), and start no more."""
        await self._loading.cancel()

    async def _reload(self, generation: int) -> None:
        while generation == self._generation:
            try:
                duties = await self._load()
            except Exception:
                # Reports read the tables meanwhile: slower, never wrong.
                log.exception("could not load the duty schedules; retrying")
                await asyncio.sleep(RETRY_AFTER_S)
                continue
            if generation == self._generation:
                self._duties = duties
            return


def duty_changed(session: AsyncSession, book: DutyBook | None) -> None:
    """A schedule or a roster changes in ``session``'s transaction: once it commits, this
    process reloads its ``book`` and the other processes theirs (``DUTY_CHANNEL``)."""
    if book is not None:
        after_commit(session, book.changed, refresh=True)
    announce(session, DUTY_CHANNEL, "all")
