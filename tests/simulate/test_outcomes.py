"""What the simulator's report counts, checked on real runs of small towns whose outcome is
known from the layout: covered by a zone or only by the escalation's ring, a team still on its
way when its tier is breached, the escalation at the run's speed; and the report's arithmetic."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

from dispatch.simulate import run as sim
from dispatch.simulate import town as towns

PLACE = (114.16, 22.847)


def simulate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dispatch", "simulate", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        timeout=300,
        check=False,
    )


def run_town(tmp_path: Path, teams: list[dict[str, Any]], *args: str) -> tuple[dict[str, Any], str]:
    """A town of ``teams`` whose incidents all happen at PLACE, run at --speed 30 (its targets
    2, 6 and 10 real seconds); the JSON report and what the run printed."""
    path = tmp_path / "town.json"
    town = {"teams": teams, "incidents": [{"lon": PLACE[0], "lat": PLACE[1]}]}
    path.write_text(json.dumps(town, ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "report.json"
    done = simulate(
        "--town", str(path), "--rate", "240", "--speed", "30", "--json", str(out), *args
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report: dict[str, Any] = json.loads(out.read_text())
    return report, done.stdout


def team(name: str, kind: str, east_m: float = 0.0, **extra: Any) -> dict[str, Any]:
    lon, lat = towns.offset(*PLACE, east_m, 0.0)
    return {"name": name, "kind": kind, "lon": lon, "lat": lat, **extra}


def test_a_place_only_the_escalation_ring_reaches_is_uncovered(tmp_path: Path) -> None:
    """The only fixed post stands 500 m away: its 100 m zone leaves the place out, and the
    server alerts it from the wider ring at the report (its ``covered`` is then true). The
    report counts tier 1 covered where a zone of the tier covers the place, as it says."""
    report, stdout = run_town(
        tmp_path,
        [
            team("驻点", "fixed_post", 500.0),
            team("巡逻", "patrol", radius_m=3000),
            team("处突", "response", radius_m=6000),
        ],
        "--incidents", "2", "--miss", "0",
    )  # fmt: skip
    # The ring's fixed post was alerted for each incident, beside the police.
    assert report["dispatch_counts"]["dispatches"] == 2 * 3, report["dispatch_counts"]
    assert report["tiers"]["1"]["covered"] == 0, report["tiers"]["1"]
    assert report["tiers"]["2"]["covered"] == report["tiers"]["3"]["covered"] == 2
    assert [o["tiers"]["1"] for o in report["incident_outcomes"]] == ["uncovered"] * 2
    assert "tier 1 (1 min): covered 0%" in stdout, stdout
    assert "BREACHED (no team's zone covers it)" in stdout, stdout


def test_a_team_on_its_way_when_its_tier_is_breached_counts_on_scene(tmp_path: Path) -> None:
    """The mobile team covering the place starts 470 m away and rides in after the minute;
    the police, at the place, are there at once. Every tier is settled at the minute, which
    stopped the run with the team on the way: its tier had no time on scene, and the median
    came only of those that had arrived. The team now goes on and its time counts."""
    report, stdout = run_town(
        tmp_path,
        [
            team("机动队", "mobile", 470.0),
            team("巡逻", "patrol", radius_m=3000),
            team("处突", "response", radius_m=6000),
        ],
        "--incidents", "2", "--miss", "0",
    )  # fmt: skip
    tier1 = report["tiers"]["1"]
    assert tier1["covered"] == 2 and tier1["met"] == 0 and tier1["breached"] == 2, tier1
    assert tier1["on_scene_median_s"] is not None and tier1["on_scene_median_s"] > 60, tier1
    assert tier1["on_scene_p90_s"] > 60, tier1
    assert (tier1["on_scene_alerted"], tier1["on_scene_arrivals"]) == (2, 2), tier1
    assert tier1["on_scene_beyond"] == 0, tier1
    assert report["leader_actions"]["closed"] == 0, report["leader_actions"]
    median = f"{tier1['on_scene_median_s']:.0f} s"
    assert f"on scene median {median}, p90 " in stdout and "(of 2 alerted: 2 on scene)" in stdout


def test_a_tier_nobody_reaches_is_beyond_the_run_not_left_out(tmp_path: Path) -> None:
    """Nobody answers: every tier's alerted incidents had nobody on scene, which the report
    says, instead of a time on scene of none."""
    report, stdout = run_town(
        tmp_path,
        [team("驻点", "fixed_post"), team("巡逻", "patrol", radius_m=3000)],
        "--incidents", "1", "--miss", "1",
    )  # fmt: skip
    tier1 = report["tiers"]["1"]
    assert (tier1["on_scene_alerted"], tier1["on_scene_arrivals"]) == (1, 0), tier1
    assert tier1["on_scene_beyond"] == 1 and tier1["on_scene_median_s"] is None, tier1
    assert "on scene median beyond the run, p90 beyond the run" in stdout, stdout
    assert "(of 1 alerted: 0 on scene, 1 not by the run's end)" in stdout, stdout
    # Tier 3: no team at all, nobody alerted, no time on scene to give.
    assert report["tiers"]["3"]["on_scene_alerted"] == 0
    assert "tier 3 (5 min): covered 0%" in stdout and "on scene median -, p90 -" in stdout


def test_the_escalation_comes_at_the_runs_speed(tmp_path: Path) -> None:
    """Nobody answers the fixed post covering the place: 20 s of the town's time on, the
    server alerts the tier-1 teams within 1 km, the fixed post 500 m away among them. Sped up
    30 times, the server waited 20 real seconds (10 town minutes), after the run had ended at
    the last deadline, 5 town minutes on: the escalation never came."""
    report, stdout = run_town(
        tmp_path,
        [
            team("驻点", "fixed_post"),
            team("驻点远", "fixed_post", 500.0),
            team("巡逻", "patrol", radius_m=3000),
            team("处突", "response", radius_m=6000),
        ],
        "--incidents", "1", "--miss", "1",
    )  # fmt: skip
    # The covering post and the police at the report, and the ring's post at the escalation.
    assert report["dispatch_counts"]["dispatches"] == 4, report["dispatch_counts"]
    assert report["tiers"]["1"]["covered"] == 1
    assert "escalation after 0.666667 s" in stdout, stdout


def test_the_p90_is_the_nearest_rank() -> None:
    """The reports' rule: the ceil(0.9 n)-th value, not the one after it."""
    assert sim._p90([float(i) for i in range(1, 11)]) == 9.0
    assert sim._p90([float(i) for i in range(1, 21)]) == 18.0
    assert sim._p90([5.0]) == 5.0
    assert sim._p90([]) is None


def test_the_hops_are_all_in_the_towns_seconds() -> None:
    """Delivery was given in real seconds beside the accept and arrival in the town's: the
    line mixed clocks. At --speed 10, 0.1 real seconds are a town second, for each hop."""
    at = "2026-01-01T00:00:{:06.3f}+00:00"
    dispatch = {
        "alerted_at": at.format(0.0),
        "delivered_at": at.format(0.1),
        "accepted_at": at.format(0.5),
        "arrived_at": at.format(2.0),
    }
    hops = sim._hops([{"dispatches": [dispatch]}], 10.0)
    assert hops == {"alert→delivered": 1.0, "alert→accepted": 5.0, "alert→arrived": 20.0}


def test_a_saved_town_reloads_with_its_area(tmp_path: Path) -> None:
    """--save-town writes the town's centre and side; read back, the town has them, and the
    incidents away from the hotspots fall in the same square, not the one around the teams."""
    town = towns.generate(stations=2, fixed_per_station=3, mobile_per_station=1, seed=1)
    path = tmp_path / "town.json"
    path.write_text(json.dumps(town.to_json(), ensure_ascii=False), encoding="utf-8")
    again = towns.load(path)
    assert (again.centre, again.side_m) == (town.centre, town.side_m)
    first, second = random.Random(4), random.Random(4)
    assert [town.incident_point(first) for _ in range(50)] == [
        again.incident_point(second) for _ in range(50)
    ]
    # A hand-written file without them still gets the square around its teams.
    path.write_text(json.dumps({"teams": [team("驻点", "fixed_post")]}), encoding="utf-8")
    assert towns.load(path).side_m == 1000.0
    for bad in (0, -5, "wide", True):
        path.write_text(json.dumps({"teams": [team("驻点", "fixed_post")], "side_m": bad}))
        try:
            towns.load(path)
        except towns.TownFileError as error:
            assert "side_m" in str(error)
        else:
            raise AssertionError(f"side_m {bad!r} was taken")
