"""Each tier is reported with the target its incidents were judged by, not today's setting.

The hand-computed day of test_response_times is judged by 60/180/300 s. Then the targets are
changed to 90/240/360 s: the report of that day still shows 60 s for tier 1, so that B's
arrival at 90 s reads as breached against the 60 s it was judged by, and the histogram's line
stays at 60 s. An incident reported after the change is judged by 90 s: its tier-1 arrival at
75 s meets it, while I4's at 75 s (judged by 60 s) did not. A tier whose period holds both
shows no single target but both, in the API, the CSV and the workbook.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from openpyxl import load_workbook
from openpyxl.chart import ScatterChart

from tests.reports.test_response_times import report, seed, settle
from tests.support import World

NEW_TARGETS = (90.0, 240.0, 360.0)


async def histogram(world: World, **params: Any) -> Any:
    auditor = await world.account("auditor")
    reply = await world.http.get(
        "/api/v1/reports/arrival-histogram", params=params, headers=auditor.headers
    )
    assert reply.status_code == 200, reply.text
    return reply.json()


def tier_targets(body: dict[str, Any]) -> list[tuple[int, float | None, list[float]]]:
    return [(f["tier"], f["target_s"], f["targets_s"]) for f in body["totals"]]


async def test_targets_are_the_ones_the_incidents_were_judged_by(world: World) -> None:
    day = await seed(world)
    local_day = day.incidents[0]["reported_at"][:10]
    period = {"from": local_day, "to": f"{local_day}T23:59:59"}
    world.runtime.settings.chain_targets = NEW_TARGETS

    body = (await report(world, **period, group_by=["tier", "team"])).json()
    assert tier_targets(body) == [(1, 60, [60]), (2, 180, [180]), (3, 300, [300])]
    by = {g["by"]: g for g in body["groupings"]}
    team_b = next(g["tiers"][0] for g in by["team"]["groups"] if g["label"] == "B机动队")
    assert (team_b["target_s"], team_b["time_to_arrival"]["max_s"], team_b["breached"]) == (
        60,
        90,
        3,
    )
    drawn = await histogram(world, **period)
    assert (drawn["target_s"], drawn["targets_s"]) == (60, [60])
    assert drawn["bins"][-1]["to_s"] == 90  # two bins past 60 s, not past 90 s

    # Reported under the new targets: tier 1 is judged by 90 s.
    operator = await world.operator()
    i5 = await world.report(operator)
    assert [t["target_s"] for t in i5["chain"]] == list(NEW_TARGETS)
    world.clock.advance(75)
    await settle(world)
    await day.act(i5, "A", "arrive")

    body = (await report(world, **period)).json()
    tier1 = body["totals"][0]
    assert (tier1["target_s"], tier1["targets_s"]) == (None, [60, 90])
    # 50, 60 and 75 s (I5) met; 75 s (I4) breached.
    assert (tier1["met"], tier1["breached"]) == (3, 1)
    drawn = await histogram(world, **period)
    assert (drawn["target_s"], drawn["targets_s"]) == (None, [60, 90])
    assert drawn["bins"][-1]["to_s"] == 120  # two bins past 90 s
    assert {b["from_s"]: b["count"] for b in drawn["bins"]}[70] == 2

    figures = await report(world, **period, format="csv")
    rows = list(csv.DictReader(io.StringIO(figures.content.decode("utf-8-sig"))))
    assert [r["目标时限(秒)"] for r in rows] == [
        f"{old}/{new}（期间调整，各按当时时限判定）"
        for old, new in ((60, 90), (180, 240), (300, 360))
    ]

    workbook = await report(world, **period, format="xlsx")
    book = load_workbook(io.BytesIO(workbook.content))
    tiers = book["按梯队"]
    header = [c.value for c in tiers[2]]
    assert tiers.cell(row=3, column=header.index("目标时限(秒)") + 1).value == (
        "60/90（期间调整，各按当时时限判定）"
    )
    sheet = book["一梯队到场时间分布"]
    assert [sheet[f"F{r}"].value for r in range(3, 7)] == [60, 60, 90, 90]
    (combo,) = sheet._charts
    lines = combo._charts[1]
    assert isinstance(lines, ScatterChart)
    assert [s.xVal.numRef.f.split("!")[1] for s in lines.series] == ["$F$3:$F$4", "$F$5:$F$6"]
    details = list(book["警情明细"].iter_rows(min_row=3, values_only=True))
    # I4 and I5: 75 s each, judged by 60 s and by 90 s.
    assert [r[5:8] for r in details[3:]] == [("超时", 75, 60), ("达标", 75, 90)]
