"""Every village's boundary in memory: a new incident is tagged with its village with no query.

Villages change rarely (an import, a delete) and every report asks. The index is loaded at
start, replaced in the process that made a change once it commits, and reloaded by the other
processes when the announcement on ``VILLAGES_CHANNEL`` arrives (``dispatch/fanout.py``) or
their listener reconnects.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import shapely
from shapely.geometry import shape

from dispatch.villages.models import Village

VILLAGES_CHANNEL = "dispatch_villages"


class VillageIndex:
    """The villages in an STRtree; where boundaries overlap (or a point lies on a shared
    border), the smaller village wins, then the first by name."""

    def __init__(self, villages: Sequence[Village] = ()) -> None:
        self.ids = [v.id for v in villages]
        # Each village's name as stored, for the events that record an incident's village.
        self.names = {v.id: v.name for v in villages}
        order = sorted(range(len(villages)), key=lambda i: (villages[i].area_m2, villages[i].name))
        self.rank = np.empty(len(villages), dtype=np.int64)
        self.rank[order] = np.arange(len(villages))
        self.tree = shapely.STRtree([shape(v.boundary) for v in villages])

    def __len__(self) -> int:
        return len(self.ids)

    def village_at(self, lon: float, lat: float) -> str | None:
        """The id of the village the WGS84 point falls in, or None."""
        return self.locate([lon], [lat])[0]

    def locate(self, lons: Sequence[float], lats: Sequence[float]) -> list[str | None]:
        """The village of each point, or None: many points in one query of the tree."""
        found: list[str | None] = [None] * len(lons)
        if not self.ids or not lons:
            return found
        points = shapely.points(np.asarray(lons), np.asarray(lats))
        point_idx, village_idx = self.tree.query(points, predicate="intersects")
        best: dict[int, int] = {}
        for p, v in zip(point_idx.tolist(), village_idx.tolist(), strict=True):
            if p not in best or self.rank[v] < self.rank[best[p]]:
                best[p] = v
        for p, v in best.items():
            found[p] = self.ids[v]
        return found


class Villages:
    """The index a process currently uses, swapped whole on a change."""

    def __init__(self) -> None:
        self.index = VillageIndex()

    def replace(self, index: VillageIndex) -> None:
        self.index = index

    def village_at(self, lon: float, lat: float) -> str | None:
        return self.index.village_at(lon, lat)

    def named_at(self, lon: float, lat: float) -> tuple[str | None, str | None]:
        """The id and name of the village the point falls in, from one index; None, None."""
        index = self.index
        village_id = index.village_at(lon, lat)
        return village_id, index.names.get(village_id) if village_id is not None else None
