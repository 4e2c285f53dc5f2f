"""The town a running server serves, read for the simulator: its teams in service with their
zones and leaders, and the places of its latest incidents, saved as a town file an office can
edit; and a town file's drawn zones and incident places honoured by a simulation."""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from dispatch.simulate import town as towns
from dispatch.simulate.export import town_of_server
from dispatch.teams.models import TeamKind
from tests.simulate.runs import ctrl_c_after, started_in_a_terminal
from tests.simulate.test_simulate import simulate
from tests.support import QINGXI, World

# A patrol zone drawn as an area: about 2 km by 2 km around the town's centre.
SQUARE = {
    "type": "Polygon",
    "coordinates": [
        [[114.149, 22.838], [114.169, 22.838], [114.169, 22.856], [114.149, 22.856],
         [114.149, 22.838]]
    ],
}  # fmt: skip


def rounded(places: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """Places to the nanodegree (a tenth of a millimetre): as stored, whatever the backend."""
    return [(round(lon, 9), round(lat, 9)) for lon, lat in places]


async def simulate_beside(*args: str, stdin: str = "") -> tuple[int, str, str]:
    """The CLI in its own process while this event loop keeps serving the test's server."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dispatch", "simulate", *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(stdin.encode()), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def a_served_town(world: World) -> dict[str, Any]:
    """Teams of every sort a server holds, and incidents reported at three places."""
    admin = await world.admin()
    fixed = await world.team("fixed_post", name="工业园驻点")
    await world.leader(fixed)
    await world.leader(fixed)
    gone = await world.leader(fixed)
    disabled = await world.http.patch(
        f"/api/v1/users/{gone.id}", json={"disabled": True}, headers=admin.headers
    )
    assert disabled.status_code == 200, disabled.text
    await world.team("mobile", QINGXI[0] + 0.01, QINGXI[1], name="机动队")
    await world.team("patrol", name="巡逻", zone=SQUARE)
    retired = await world.team("fixed_post", QINGXI[0] - 0.01, QINGXI[1], name="旧驻点")
    removed = await world.http.delete(f"/api/v1/teams/{retired['id']}", headers=admin.headers)
    assert removed.status_code == 204, removed.text
    # Left by a simulation run with --keep-town: not the town's.
    await world.team("mobile", name="机动队 (sim-3f2a1c)")
    operator = await world.operator()
    places = [(QINGXI[0] + 0.001 * n, QINGXI[1] - 0.0005 * n) for n in range(3)]
    for lon, lat in places:
        await world.report(operator, lon, lat)
        world.clock.advance(10)
    simulated = await world.http.post(
        "/api/v1/incidents",
        json={"location": {"lon": 114.2, "lat": 22.9}, "category": "fight",
              "description": "模拟警情 #1"},
        headers=operator.headers,
    )  # fmt: skip
    assert simulated.status_code == 201, simulated.text
    return {"admin": admin, "places": places}


async def test_the_town_a_server_serves_is_saved_for_the_office_to_edit(
    world: World, tmp_path: Path
) -> None:
    served = await a_served_town(world)
    admin = served["admin"]
    path = tmp_path / "town.json"
    code, out, err = await simulate_beside(
        "--town-from", world.base_url, "--admin", admin.name, "--save-town", str(path),
        "--no-run", stdin=admin.password + "\n",
    )  # fmt: skip
    assert code == 0, err
    assert f"wrote {path}: 3 teams, 3 incident places" in out

    town = towns.load(path)
    teams = {t.name: t for t in town.teams}
    assert set(teams) == {"工业园驻点", "机动队", "巡逻"}, "retired and simulated teams left out"
    fixed, mobile, patrol = teams["工业园驻点"], teams["机动队"], teams["巡逻"]
    # Leaders are the accounts that take alerts: the disabled one does not.
    assert (fixed.kind, fixed.radius_m, fixed.leaders) == (TeamKind.FIXED_POST, 100.0, 2)
    assert (mobile.kind, mobile.radius_m, mobile.leaders) == (TeamKind.MOBILE, 500.0, 0)
    assert patrol.radius_m is None and patrol.zone == SQUARE
    assert (mobile.lon, mobile.lat) == pytest.approx((QINGXI[0] + 0.01, QINGXI[1]), abs=1e-9)
    # Newest first, as the server lists them; the simulator's own incident is not the town's.
    assert rounded(town.incident_places) == rounded(reversed(served["places"]))
    saved = json.loads(path.read_text(encoding="utf-8"))
    assert "radius_m" not in saved["teams"][[t["name"] for t in saved["teams"]].index("巡逻")]


async def test_reading_a_server_without_its_incidents_or_admin_is_said_plainly(
    world: World, tmp_path: Path
) -> None:
    served = await a_served_town(world)
    admin = served["admin"]
    town = await town_of_server(world.base_url, admin.name, admin.password, history=0)
    assert len(town.teams) == 3 and town.incident_places == []
    town = await town_of_server(world.base_url, admin.name, admin.password, history=2)
    # The latest two: the simulated one, left out, and the last place.
    assert rounded(town.incident_places) == rounded(served["places"][-1:])

    path = tmp_path / "town.json"
    code, _, err = await simulate_beside(
        "--town-from", world.base_url, "--admin", admin.name, "--save-town", str(path),
        stdin="wrong password\n",
    )  # fmt: skip
    assert code == 1 and "POST /api/v1/auth/token" in err, err
    assert not path.exists()
    for args, problem in (
        (["--town-from", world.base_url], "--town-from needs --admin"),
        (["--town-from", world.base_url, "--admin", "a", "--town", str(path)], "not both"),
        (["--no-run"], "--no-run writes the town only"),
        (["--town-from", world.base_url, "--admin", "a", "--url", world.base_url], "--url"),
    ):
        code, _, err = await simulate_beside(*args)
        assert code == 2 and problem in err, (args, err)


def test_a_town_file_keeps_drawn_zones_and_the_places_of_past_incidents(
    tmp_path: Path,
) -> None:
    places = [{"lon": 114.1601, "lat": 22.8472}, {"lon": 114.1633, "lat": 22.8455}]
    layout = {
        "name": "现有布局",
        "teams": [
            {"name": "驻点", "kind": "fixed_post", "lon": 114.1605, "lat": 22.8470},
            # Nobody leads it: alerted, never answering, as in service.
            {"name": "机动队", "kind": "mobile", "lon": 114.1620, "lat": 22.8460, "leaders": 0},
            {"name": "巡逻", "kind": "patrol", "lon": 114.159, "lat": 22.847,
             "zone": {**SQUARE, "crs": "gcj02"}},
        ],
        "incidents": places,
    }  # fmt: skip
    path = tmp_path / "town.json"
    path.write_text(json.dumps(layout, ensure_ascii=False), encoding="utf-8")
    town = towns.load(path)
    patrol = town.teams[2]
    # Drawn on a Chinese web map (GCJ-02), kept in WGS84 as the server keeps zones.
    assert patrol.zone is not None and patrol.radius_m is None
    corner = patrol.zone["coordinates"][0][0]
    assert abs(corner[0] - 114.149) > 0.003
    assert town.leader_count == 2, "the patrol team takes one leader by default"
    # Saved and loaded again, the town is the same.
    again = tmp_path / "again.json"
    again.write_text(json.dumps(town.to_json(), ensure_ascii=False), encoding="utf-8")
    assert towns.load(again).to_json() == town.to_json()

    out = tmp_path / "report.json"
    done = simulate(
        "--town", str(path), "--incidents", "3", "--rate", "240", "--speed", "30",
        "--miss", "0", "--json", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "at the places of 2 past incidents" in done.stdout
    report = json.loads(out.read_text())
    outcomes = report["incident_outcomes"]
    reported = rounded((o["lon"], o["lat"]) for o in outcomes)
    assert set(reported) <= set(rounded((p["lon"], p["lat"]) for p in places)), reported
    # Every place lies in the drawn zone: patrol police covered every incident, and no
    # response team is in the town.
    assert report["tiers"]["2"]["covered"] == 3
    for outcome in outcomes:
        assert outcome["tiers"]["2"] in ("met", "breached"), outcome
        assert outcome["tiers"]["3"] == "uncovered", outcome
    # The team nobody leads was alerted and never answered; the fixed post's leader did.
    counts = report["dispatch_counts"]
    assert counts["delivered"] == counts["dispatches"] - 3, counts


def test_a_bad_zone_or_place_in_a_town_file_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "town.json"
    for teams, extra, problem in (
        ([{"kind": "fixed_post", "lon": 114.1, "lat": 22.8, "zone": SQUARE}], {},
         "teams[0].zone: a fixed_post team's zone is a circle"),
        ([{"kind": "patrol", "lon": 114.1, "lat": 22.8, "zone": SQUARE, "radius_m": 300}], {},
         "teams[0]: give either radius_m or zone"),
        ([{"kind": "patrol", "lon": 114.1, "lat": 22.8,
           "zone": {"type": "Polygon", "coordinates": [[[114.1, 22.8], [114.2, 22.8]]]}}], {},
         "teams[0].zone"),
        ([{"kind": "response", "lon": 114.1, "lat": 22.8, "radius_m": 6000}],
         {"incidents": [{"lon": 114.1, "lat": "north"}]}, "incidents[0]"),
        ([{"kind": "mobile", "lon": 114.1, "lat": 22.8, "leaders": -1}], {},
         "teams[0].leaders"),
    ):  # fmt: skip
        path.write_text(json.dumps({"teams": teams, **extra}))
        done = simulate("--town", str(path))
        assert done.returncode == 2 and problem in done.stderr, (problem, done.stderr)


def test_two_layouts_are_compared_on_the_same_incident_places(tmp_path: Path) -> None:
    places = [{"lon": 114.1601, "lat": 22.8472}, {"lon": 114.1604, "lat": 22.8469}]
    police = {"name": "巡逻", "kind": "patrol", "lon": 114.159, "lat": 22.847, "radius_m": 3000}
    today = {
        "name": "现有布局",
        # The only fixed post stands 2 km from where incidents happen.
        "teams": [{"name": "驻点", "kind": "fixed_post", "lon": 114.18, "lat": 22.8472}, police],
        "incidents": places,
    }
    proposed = {
        **today,
        "name": "拟调整布局",
        "teams": [{"name": "驻点", "kind": "fixed_post", "lon": 114.1602, "lat": 22.8471}, police],
    }
    paths = []
    for layout in (today, proposed):
        path = tmp_path / f"{layout['name']}.json"
        path.write_text(json.dumps(layout, ensure_ascii=False), encoding="utf-8")
        paths.append(path)
    out = tmp_path / "report.json"
    done = simulate(
        "--town", str(paths[0]), "--compare", str(paths[1]), "--incidents", "2",
        "--rate", "240", "--speed", "30", "--miss", "0", "--json", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    first, second = json.loads(out.read_text())["compared"]
    assert (first["town"], second["town"]) == ("现有布局", "拟调整布局")
    # Moved to where the incidents happen, the fixed post covers every one of them.
    assert (first["tiers"]["1"]["covered"], second["tiers"]["1"]["covered"]) == (0, 2)
    lines = done.stdout.splitlines()
    assert "Compared on the same 2 incidents:" in lines
    covered = next(line for line in lines if line.strip().startswith("tier 1 covered"))
    assert covered.split()[3:] == ["0%", "100%", "+100", "points"], covered

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"teams": []}))
    done = simulate("--town", str(paths[0]), "--compare", str(bad))
    assert done.returncode == 2 and "--compare:" in done.stderr, done.stderr
    assert "reported" not in done.stdout, "a bad second town costs no simulation"


def test_a_compared_town_meets_the_first_towns_incidents() -> None:
    """By default incidents gather at the tier-1 sites: a post added in the second town would
    draw them to itself and flatter it. Compared, it meets the first town's incidents."""
    first = towns.generate(stations=1, fixed_per_station=3, mobile_per_station=1, seed=3)
    lon, lat = first.centre
    added = towns.TeamSpec("新增驻点", TeamKind.FIXED_POST, lon + 0.05, lat + 0.05, 100.0)
    second = replace(first, teams=[*first.teams, added], hotspots=[], incident_places=[])

    def incidents(town: towns.Town) -> list[tuple[float, float]]:
        rng = random.Random(7)
        return [town.incident_point(rng) for _ in range(200)]

    assert incidents(second) != incidents(first)
    compared = second.on_incidents_of(first)
    assert incidents(compared) == incidents(first)
    assert compared.teams == second.teams


async def test_a_comparison_stopped_in_its_second_run_keeps_the_first_report(
    tmp_path: Path,
) -> None:
    """The first town's report is written once it is done: a second run that fails or is
    stopped no longer takes it with it."""
    police = {"name": "巡逻", "kind": "patrol", "lon": 114.159, "lat": 22.847, "radius_m": 3000}
    paths = []
    for name, lon in (("现有布局", 114.18), ("拟调整布局", 114.1602)):
        fixed = {"name": "驻点", "kind": "fixed_post", "lon": lon, "lat": 22.8471}
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"name": name, "teams": [fixed, police]}), encoding="utf-8")
        paths.append(path)
    out = tmp_path / "compared.json"
    process = await started_in_a_terminal(
        "--town", str(paths[0]), "--compare", str(paths[1]), "--incidents", "2",
        "--rate", "240", "--speed", "30", "--json", str(out),
    )  # fmt: skip
    output = await ctrl_c_after(process, "the second town")
    assert process.returncode == 130, output[-3000:]
    assert f"the first town's report is in {out}" in output
    (first,) = json.loads(out.read_text(encoding="utf-8"))["compared"]
    assert (first["town"], first["incidents"]) == ("现有布局", 2)
