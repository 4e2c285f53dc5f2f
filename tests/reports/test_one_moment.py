"""A report is of one moment of the record, though the chain goes on while it runs.

A report reads in several statements (each grouping's figures, the totals, the exclusions;
on SQLite the counts, then the values at the ranks they give). An arrival recorded between
two of them must change none of the report's figures: the next report has it.
"""

from __future__ import annotations

from typing import Any

from tests.support import World

REPORT = "/api/v1/reports/response-times"


def tier_1(report: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = report["totals"][0]
    assert found["tier"] == 1
    return found


async def test_an_arrival_recorded_while_a_report_runs_is_left_to_the_next_report(
    world: World,
) -> None:
    operator, auditor = await world.operator(), await world.account("auditor")
    post = await world.team("fixed_post", name="A驻点队")
    leader = await world.leader(post)
    for seconds in (40, 30):
        arrived = await world.report(operator)
        world.clock.advance(seconds)
        assert await world.arrive(arrived, post, leader) == 200
    last = await world.report(operator)
    world.clock.advance(20)
    landed: list[int] = []

    async def last_arrives() -> None:
        landed.append(await world.arrive(last, post, leader))

    # On SQLite the ranks are picked by a statement after the one that counts: had it seen
    # three arrivals where two were counted, it would have picked ranks 2 and 3 and left the
    # P50's rank 1 missing (the report failed).
    report = await world.read_while(REPORT, auditor, "FILTER (WHERE", last_arrives, group_by="team")

    assert landed == [200]
    totals = tier_1(report)
    assert (totals["incidents"], totals["with_arrival"], totals["pending"]) == (3, 2, 1)
    assert totals["time_to_arrival"] == {"n": 2, "p50_s": 30.0, "p90_s": 40.0, "max_s": 40.0}
    # The grouping by team, read by another statement than the totals, is of the same moment.
    (team,) = report["groupings"][0]["groups"]
    (by_team,) = team["tiers"]
    assert (by_team["with_arrival"], by_team["time_to_arrival"]["n"]) == (2, 2)
    # Tiers 2 and 3 have no team here: every incident's are excluded, uncovered.
    excluded = [(e["incident_id"], e["tier"]) for e in report["exclusions"] if e["covered"]]
    assert excluded == [(last["id"], 1)]
    assert report["exclusions_total"] == len(report["exclusions"]) == 7

    reply = await world.http.get(REPORT, headers=auditor.headers)
    after = tier_1(reply.json())
    assert (after["with_arrival"], after["pending"]) == (3, 0)
    assert after["time_to_arrival"] == {"n": 3, "p50_s": 30.0, "p90_s": 40.0, "max_s": 40.0}


async def test_an_incidents_record_is_of_one_moment_though_a_team_arrives_meanwhile(
    world: World,
) -> None:
    operator, auditor = await world.operator(), await world.account("auditor")
    post = await world.team("fixed_post", name="A驻点队")
    leader = await world.leader(post)
    incident = await world.report(operator)
    world.clock.advance(30)
    landed: list[int] = []

    async def record() -> None:
        landed.append(await world.arrive(incident, post, leader))

    # Right after the incident's own row is read: its events and teams are read after.
    path = f"/api/v1/reports/incidents/{incident['id']}"
    body = await world.read_while(path, auditor, "FROM incidents", record)
    assert landed == [200]
    # Neither the timeline nor the outcomes have the arrival that landed after the first read.
    assert "arrived" not in [e["type"] for e in body["timeline"]]
    assert [(t["tier"], t["outcome"]) for t in body["tiers"] if t["tier"] == 1] == [(1, "pending")]
    assert [(t["team_name"], t["outcome"]) for t in body["teams"]] == [("A驻点队", "pending")]
