"""The arrival histogram behind the console's chart, on the hand-computed seeded day.

Times to arrival that day (see test_response_times), per incident tier: tier 1 50, 60 and 75 s,
tier 2 100, 170 and 200 s, tier 3 250 and 300 s; per team, B arrived once, at 90 s, and the
patrol P at 100, 170 and 200 s. Bins are closed on the right, like the target.
"""

from __future__ import annotations

import io
from typing import Any

from openpyxl import load_workbook

from dispatch.reports.exports import histogram_sheet
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
    assert body["tier"] == 1
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


async def test_the_tier_filtered_by_or_the_teams_own_with_its_target(world: World) -> None:
    """Asked for tier 2 or 3, the histogram counts that tier's arrivals against its own target
    (180 s, 300 s), not tier 1's against 60 s; filtered by the patrol without a tier, the
    patrol's own arrivals against tier 2's target, as the workbook draws them."""
    day = await seed(world)
    local_day = day.incidents[0]["reported_at"][:10]
    period = {"from": local_day, "to": f"{local_day}T23:59:59"}

    two = await histogram(world, **period, tier=2)
    assert (two["tier"], two["target_s"], two["targets_s"], two["n"]) == (2, 180, [180], 3)
    assert two["filters"]["tier"] == 2 and two["unit"] == "incident_tier"
    assert used(two) == {"90-100": 1, "160-170": 1, "190-200": 1}
    # Two bins past the 180 s line, the last arrival being before it.
    assert two["bins"][-1]["to_s"] == 210

    three = await histogram(world, **period, tier=3)
    assert (three["tier"], three["target_s"], three["n"]) == (3, 300, 2)
    assert used(three) == {"240-250": 1, "290-300": 1}
    assert three["bins"][-1]["to_s"] == 330

    patrol = await histogram(world, **period, team_id=day.teams["P"]["id"])
    assert (patrol["tier"], patrol["target_s"], patrol["unit"]) == (2, 180, "dispatch")
    assert patrol["filters"]["tier"] is None
    assert used(patrol) == {"90-100": 1, "160-170": 1, "190-200": 1}

    # A tier with no measurement in the period is drawn against its current target.
    empty = await histogram(world, **{"from": "2020-01-01", "to": "2020-01-02"}, tier=3)
    assert (empty["tier"], empty["target_s"], empty["n"], used(empty)) == (3, 300, 0, {})

    auditor = await world.account("auditor")
    for tier in (0, 4):
        reply = await world.http.get(
            "/api/v1/reports/arrival-histogram", params={"tier": tier}, headers=auditor.headers
        )
        assert reply.status_code == 422, (tier, reply.text)


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


async def test_an_arrival_days_late_is_counted_in_one_overflow_bin(world: World) -> None:
    """One arrival recorded ten days after its report made 864 000 bins of a second (36 MB,
    16 s of the event loop), and as many rows in the workbook. The bins reach ten times the
    target (600 s for tier 1's 60 s, at most 1000 bins); one overflow bin counts the rest."""
    team = await world.team("fixed_post")
    leader = await world.leader(team)
    operator = await world.operator()
    on_time = await world.report(operator)
    world.clock.advance(45)
    reply = await world.http.post(
        f"/api/v1/dispatches/{on_time['dispatches'][0]['id']}/arrive", headers=leader.headers
    )
    assert reply.status_code == 200, reply.text
    late = await world.report(operator)
    world.clock.advance(10 * 86400)
    leader = await world.relogin(leader)
    reply = await world.http.post(
        f"/api/v1/dispatches/{late['dispatches'][0]['id']}/arrive", headers=leader.headers
    )
    assert reply.status_code == 200, reply.text

    for bin_s, regular in ((1, 600), (10, 60), (7, 86)):
        body = await histogram(world, bin_s=bin_s)
        bins = body["bins"]
        assert len(bins) == regular + 1, (bin_s, len(bins))
        assert body["n"] == 2 and sum(b["count"] for b in bins) == 2
        assert not any(b["overflow"] for b in bins[:-1])
        assert bins[-1] == {
            "from_s": regular * bin_s,
            "to_s": -(-864_000 // bin_s) * bin_s,
            "count": 1,
            "overflow": True,
        }, bin_s
        assert [b["to_s"] for b in bins[:-1]] == [(n + 1) * bin_s for n in range(regular)]
    # Without a late arrival the bins end as before: two past the target.
    early = await histogram(world, to=late["reported_at"])
    assert early["bins"][-1]["to_s"] == 90 and not early["bins"][-1]["overflow"]

    admin = await world.relogin(await world.admin())
    reply = await world.http.get(
        "/api/v1/reports/response-times", params={"format": "xlsx"}, headers=admin.headers
    )
    assert reply.status_code == 200, reply.text
    book = load_workbook(io.BytesIO(reply.content))
    rows = [r[:4] for r in book[histogram_sheet(1)].iter_rows(min_row=3, values_only=True)]
    rows = [r for r in rows if r[0] is not None]
    assert len(rows) == 61, len(rows)
    assert rows[-1] == (600, 864_000, "600秒以上", 1)
    assert rows[4] == (40, 50, "40-50秒", 1)
    about = {r[0]: r[1] for r in book["说明"].iter_rows(min_row=3, values_only=True)}
    assert "晚于600秒的到场合为最后一组" in about[histogram_sheet(1)]
