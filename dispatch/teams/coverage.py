"""The in-memory coverage index: every active team's zone, matched without the database."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from shapely.geometry import shape

from dispatch.teams.models import Team
from geo.zones import CircleZone, PolygonZone, Zone, ZoneIndex


@dataclass(frozen=True, slots=True)
class CoveredBy:
    team_id: str
    tier: int
    distance_m: float


def zone_of(team: Team) -> Zone:
    if team.zone is not None:
        return PolygonZone(team.id, team.lon, team.lat, shape(team.zone))
    assert team.radius_m is not None, "a team without a polygon has a radius"
    return CircleZone(team.id, team.lon, team.lat, team.radius_m)


class Coverage:
    """Rebuilt from the teams table at start; kept current as teams change."""

    def __init__(self) -> None:
        self._index = ZoneIndex([])
        self._tiers: dict[str, int] = {}
        self._names: dict[str, str] = {}

    def load(self, teams: Iterable[Team]) -> None:
        active = [t for t in teams if t.retired_at is None]
        self._index = ZoneIndex(zone_of(t) for t in active)
        self._tiers = {t.id: t.tier for t in active}
        self._names = {t.id: t.name for t in active}

    def put(self, team: Team) -> None:
        if team.retired_at is not None:
            self.drop(team.id)
            return
        self._index = self._index.replace(zone_of(team))
        self._tiers[team.id] = team.tier
        self._names[team.id] = team.name

    def drop(self, team_id: str) -> None:
        if team_id in self._tiers:
            self._index = self._index.remove(team_id)
            del self._tiers[team_id]
            del self._names[team_id]

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
