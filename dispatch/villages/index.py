"""Every village's boundary in memory: a new incident is tagged with its village with no query.

Villages change rarely (an import, a delete) and every report asks. The index is loaded at
start, replaced in the process that made a change once it commits, and reloaded by the other
processes when the announcement on ``VILLAGES_CHANNEL`` arrives (``dispatch/fanout.py``) or
their listener reconnects. The process that made a change whose COMMIT's outcome it does not
know (the connection lost with the answer) reloads its own from the tables too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

import numpy as np
import shapely
from shapely.geometry import shape

from dispatch.background import Background
from dispatch.villages.models import Village

log = logging.getLogger(__name__)

VILLAGES_CHANNEL = "dispatch_villages"
# A reload that could not read the tables (the database away) is tried again this much later.
RETRY_AFTER_S = 5.0


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


Load = Callable[[], Awaitable[VillageIndex]]


class Villages:
    """The index a process currently uses, swapped whole on a change. ``load`` reads every
    village from the tables."""

    def __init__(self, load: Load) -> None:
        self.index = VillageIndex()
        self._load = load
        # Moves with every index put in place: a reload whose read may be older than one put
        # in place meanwhile reads again.
        self._version = 0
        # One reload at a time: each reads the whole table, so in turn the last one reads the
        # newest; side by side an older read could be put in place last.
        self._reloading = asyncio.Lock()
        self._reloads = Background()

    def replace(self, index: VillageIndex) -> None:
        self._version += 1
        self.index = index

    async def reload(self) -> None:
        """Tag from the villages as the tables hold them now."""
        async with self._reloading:
            while True:
                version = self._version
                index = await self._load()
                if version == self._version:
                    self.replace(index)
                    return

    def reload_soon(self) -> None:
        """``reload`` in a task of its own, tried again until it reads the tables: for a change
        whose COMMIT's outcome is unknown, after which the index the transaction built may or
        may not be what the tables hold. None once closed: the second of a lost COMMIT's
        reloads, a second after it, may come after the server began to stop."""
        self._reloads.start(self._reload_until_read(), name="villages-reload")

    async def close(self) -> None:
        """Stop the reloads in flight (before the database goes), and start no more."""
        await self._reloads.cancel()

    async def _reload_until_read(self) -> None:
        while True:
            try:
                await self.reload()
                return
            except Exception:
                # Reports are tagged from the index as it was meanwhile.
                log.exception("could not load the villages; retrying")
                await asyncio.sleep(RETRY_AFTER_S)

    def village_at(self, lon: float, lat: float) -> str | None:
        return self.index.village_at(lon, lat)

    def named_at(self, lon: float, lat: float) -> tuple[str | None, str | None]:
        """The id and name of the village the point falls in, from one index; None, None."""
        index = self.index
        village_id = index.village_at(lon, lat)
        return village_id, index.names.get(village_id) if village_id is not None else None
