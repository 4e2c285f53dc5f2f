"""A later message never shows an older state of an incident."""

from __future__ import annotations

import asyncio

from pyproj import Geod

from tests.support import QINGXI, World

GEOD = Geod(ellps="WGS84")


async def test_concurrent_hops_reach_operators_in_the_order_they_happened(world: World) -> None:
    teams = []
    for n in range(8):
        lon, lat, _ = GEOD.fwd(*QINGXI, n * 45.0, 40.0)
        teams.append(await world.team("fixed_post", float(lon), float(lat)))
    leaders = [await world.leader(team) for team in teams]
    operator = await world.operator()
    console = await world.connect(operator)
    incident = await world.report(operator)
    by_team = {d["team_id"]: d["id"] for d in incident["dispatches"]}

    async def accept_and_arrive(n: int) -> None:
        dispatch_id = by_team[teams[n]["id"]]
        headers = leaders[n].headers
        await world.http.post(f"/api/v1/dispatches/{dispatch_id}/accept", headers=headers)
        await world.http.post(f"/api/v1/dispatches/{dispatch_id}/arrive", headers=headers)

    await asyncio.gather(*(accept_and_arrive(n) for n in range(len(teams))))
    progress = []
    while not progress or progress[-1] < 2 * len(teams):
        message = await console.next_of("incident.updated")
        hops = message["data"]["dispatches"]
        progress.append(
            sum(d["accepted_at"] is not None for d in hops)
            + sum(d["arrived_at"] is not None for d in hops)
        )
    assert progress == sorted(progress), progress
    await console.close()
