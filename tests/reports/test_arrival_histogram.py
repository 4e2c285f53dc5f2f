"""The tier-1 arrival histogram behind the console's chart, on the hand-computed seeded day.

Tier-1 times to arrival that day (see test_response_times): 50, 60 and 75 s per incident tier;
per team, B arrived once, at 90 s. Bins are closed on the right, like the target.
"""

from __future__ import annotations

from typing import Any

from tests.reports.test_response_times import seed
from tests.support import World


async def histogram(world: World, **params: Any) -> Any:
    auditor = await world.account("auditor")
    reply = await world.http.get(
        "/api/v1/reports/arrival-histogram", params=params, headers=auditor.headers
    )
    assert reply.status_code == 200, reply.text
    return reply.json()


def used(body: dict[str, Any]) -> dict[str, int]:
    return {f"{b['from_s']}-{b['to_s']}": b["count"] for b in body["bins"] if b["count"]}


async def test_tier_1_arrivals_in_bins_closed_on_the_right(world: World) -> None:
    day = await seed(world)
    local_day = day.incidents[0]["reported_at"][:10]
    period = {"from": local_day, "to": f"{local_day}T23:59:59"}

    body = await histogram(world, **period)
    assert body["unit"] == "incident_tier" and body["target_s"] == 60 and body["bin_s"] == 10
    # 60 s lies in (50, 60]: left of the target line, as it meets the target.
    assert used(body) == {"40-50": 1, "50-60": 1, "70-80": 1}
    assert body["n"] == 3
    # From 0, contiguous, at least two bins past the target even when nothing is there.
    assert [b["from_s"] for b in body["bins"]] == list(range(0, 90, 10))

    wide = await histogram(world, **period, bin_s=30)
    assert used(wide) == {"30-60": 2, "60-90": 1}

    team_b = await histogram(world, **period, team_id=day.teams["B"]["id"])
    assert team_b["unit"] == "dispatch" and used(team_b) == {"80-90": 1}

    theft = await histogram(world, **period, category="theft")
    assert used(theft) == {"70-80": 1}


async def test_bad_bins_are_refused(world: World) -> None:
    auditor = await world.account("auditor")
    for bin_s in (0, 301, "ten"):
        reply = await world.http.get(
            "/api/v1/reports/arrival-histogram", params={"bin_s": bin_s}, headers=auditor.headers
        )
        assert reply.status_code == 422, (bin_s, reply.text)
    leader = await world.leader(await world.team("fixed_post"))
    reply = await world.http.get("/api/v1/reports/arrival-histogram", headers=leader.headers)
    assert reply.status_code == 403
