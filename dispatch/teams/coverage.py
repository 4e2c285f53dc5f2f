"""The in-memory coverage index: every active team's zone, matched without the database."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from shapely.geometry import shape
from sqlalchemy import ColumnElement, Integer, Select, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from alerts.bulk import Precondition
from dispatch.teams.models import Team
from geo.zones import CircleZone, PolygonZone, Zone, ZoneIndex


@dataclass(frozen=True, slots=True)
class CoveredBy:
    team_id: str
    tier: int
    distance_m: float


@functools.cache
def newest_revision() -> Select[tuple[Any]]:
    """The teams' newest revision (None while there are none). Built once, as the other
    statements a report sends are: every report reads it first."""
    return select(func.max(Team.revision))


@functools.cache
def teams_unchanged() -> ColumnElement[bool]:
    """No team changed after the revision given as ``coverage_revision``. Built once: it keys
    the compiled statement of the writes it holds."""
    newest = func.coalesce(newest_revision().scalar_subquery(), 0)
    return newest <= bindparam("coverage_revision", type_=Integer())


def teams_unchanged_since(revision: int) -> Precondition:
    """That no team changed after ``revision``: for the writes of a decision made on the index
    while it held that revision (``Coverage.revision``, read with no ``await`` before the
    decision), checked by the statement that makes them (``alerts.bulk.write_rows(only_if=...)``,
    PostgreSQL), in place of a catch-up's round trip before the decision."""
    return Precondition(teams_unchanged(), {"coverage_revision": revision})


def zone_of(team: Team) -> Zone:
    if team.zone is not None:
        return PolygonZone(team.id, team.lon, team.lat, shape(team.zone))
    assert team.radius_m is not None, "a team without a polygon has a radius"
    return CircleZone(team.id, team.lon, team.lat, team.radius_m)


class Coverage:
    """Every active team's zone, as of a revision of the teams table.

    Loaded from the table at start. Before each decision about who covers a point, the caller
    brings it up to the database's newest revision (``catch_up``, one index-only query when
    nothing changed), so a team changed through any process is honoured by the very next
    report, whether or not that process's NOTIFY has arrived yet.
    """

    def __init__(self) -> None:
        self._index = ZoneIndex([])
        self._tiers: dict[str, int] = {}
        self._names: dict[str, str] = {}
        # Every change up to this revision is applied. Team changes take revisions in the
        # order they commit (dispatch.teams.service.stamp), so the teams with a higher
        # revision are exactly the changes still to apply.
        self.revision = 0
        # The revision applied per team, of the changes applied ahead of ``revision`` (out of
        # turn: this process's own, after its commit), so that a change heard later never
        # undoes a newer one. A change up to ``revision`` needs no entry: it, or a newer one of
        # its team, is applied by then. Kept for every team ever changed, this held each team
        # ever dissolved for the life of the process.
        self._applied: dict[str, int] = {}
        # One catch-up at a time: two requests would both read and apply the same changes.
        self._catching_up = asyncio.Lock()

    def load(self, teams: Iterable[Team], revision: int) -> None:
        """Hold exactly ``teams``, read after ``revision`` was the database's newest: any
        of them changed since is applied (again) by the next catch-up."""
        teams = list(teams)
        active = [t for t in teams if t.retired_at is None]
        self._index = ZoneIndex(zone_of(t) for t in active)
        self._tiers = {t.id: t.tier for t in active}
        self._names = {t.id: t.name for t in active}
        self._applied = {t.id: t.revision for t in teams if t.revision > revision}
        self.revision = revision

    def put(self, team: Team) -> None:
        """Apply a committed change of ``team`` (a retired team is dropped), unless a newer
        one of the same team is applied already."""
        self.apply([team])

    def apply(self, teams: Iterable[Team]) -> None:
        """``put`` for committed changes in revision order, the index changed once for them
        all: a catch-up after a town's teams were imported through another process changes
        it once, not once a team (each a copy of every zone's numbers and a new tree)."""
        newest: dict[str, Team] = {}
        revision = self.revision
        for team in teams:
            seen = newest.get(team.id)
            # A change up to ``self.revision`` is applied, or a newer one of its team.
            held = seen.revision if seen else max(self._applied.get(team.id, 0), self.revision)
            if team.revision <= held:
                continue
            newest[team.id] = team
            if team.revision == revision + 1:
                # Every revision before it committed first, and is applied: nothing is skipped.
                revision = team.revision
        if not newest:
            return
        active = [team for team in newest.values() if team.retired_at is None]
        gone = [
            key
            for key, team in newest.items()
            if team.retired_at is not None and key in self._index
        ]
        # Worked out before anything is kept: a zone that cannot be built changes nothing.
        self._index = self._index.changed([zone_of(team) for team in active], gone)
        self.revision = revision
        for team in newest.values():
            self._applied[team.id] = team.revision
            self._tiers.pop(team.id, None)
            self._names.pop(team.id, None)
        for team in active:
            self._tiers[team.id] = team.tier
            self._names[team.id] = team.name
        self._forget_applied()

    def _forget_applied(self) -> None:
        """Drop the teams' revisions that ``revision`` has reached (``_applied``)."""
        self._applied = {k: r for k, r in self._applied.items() if r > self.revision}

    async def catch_up(self, session: AsyncSession) -> None:
        """Apply every team change committed so far, read in ``session``.

        Called before each decision about who covers a point (a report, the escalation ring,
        ``/covering``) and on each NOTIFY of a team change or reconnect of the listener.
        """
        await self.catch_up_to(session, await session.scalar(newest_revision()))

    async def catch_up_to(self, session: AsyncSession, newest: int | None) -> None:
        """``catch_up``, where the caller read the teams' newest revision itself (with
        ``newest_revision()``, in a statement of its own in ``session``)."""
        if newest is None or newest <= self.revision:
            return
        async with self._catching_up:
            # Whoever held the lock may have applied these already.
            if newest <= self.revision:
                return
            since = self.revision
            changed = await session.scalars(
                select(Team)
                .where(Team.revision > since)
                .order_by(Team.revision)
                # The session may hold an older copy of a team: take the row as it is now.
                .execution_options(populate_existing=True)
            )
            teams = changed.all()
            self.apply(teams)
            applied = teams[-1].revision if teams else since
            # One statement saw them all: the newest committed, so did every one before it.
            self.revision = max(self.revision, applied)
            self._forget_applied()

    def covering(self, lon: float, lat: float) -> list[CoveredBy]:
        hits = self._index.covering(lon, lat)
        return [CoveredBy(h.key, self._tiers[h.key], h.distance_m) for h in hits]

    def tier1_within(self, lon: float, lat: float, radius_m: float) -> list[CoveredBy]:
        """Tier-1 teams whose site lies within ``radius_m``: the wider ring for escalation."""
        hits = self._index.within(lon, lat, radius_m)
        return [CoveredBy(h.key, 1, h.distance_m) for h in hits if self._tiers.get(h.key) == 1]

    def name_of(self, team_id: str) -> str:
        """An active team's name ("" for a team the index does not hold)."""
        return self._names.get(team_id, "")

    def __len__(self) -> int:
        return len(self._tiers)
