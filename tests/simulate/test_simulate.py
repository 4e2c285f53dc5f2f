"""The town simulator, run for real: its own server process on the test database, leaders on
real websockets in worker processes, incidents over HTTP, and the report from the server's record.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from dispatch.auth.models import User
from dispatch.cli import main
from dispatch.db import create_engine
from dispatch.incidents.models import Incident
from dispatch.simulate import town as towns
from dispatch.simulate.run import CATEGORIES
from dispatch.teams.models import Team, TeamKind
from tests.simulate.runs import ctrl_c_after, started_in_a_terminal

# A fixed post and police over it: a town small enough to start at once.
QUIET_TOWN = [
    {"name": "驻点", "kind": "fixed_post", "lon": 114.16, "lat": 22.847},
    {"name": "巡逻", "kind": "patrol", "lon": 114.159, "lat": 22.847, "radius_m": 3000},
]


def simulate(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dispatch", "simulate", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        timeout=300,
        check=False,
    )


def test_a_generated_town_follows_the_plan() -> None:
    town = towns.generate(stations=2, fixed_per_station=4, mobile_per_station=2, seed=3)
    counts = town.counts()
    assert counts == {"fixed_post": 8, "mobile": 4, "patrol": 2, "response": 4}
    radius = {t.kind: t.radius_m for t in town.teams if t.kind.value in ("fixed_post", "mobile")}
    assert radius == {TeamKind.FIXED_POST: 100.0, TeamKind.MOBILE: 500.0}
    assert town.leader_count == len(town.teams)
    assert len({t.name for t in town.teams}) == len(town.teams), "a name is one team's"
    # The same seed gives the same town: a layout can be compared run against run.
    again = towns.generate(stations=2, fixed_per_station=4, mobile_per_station=2, seed=3)
    assert again.to_json() == town.to_json()


async def test_a_short_run_reports_every_tier_of_every_incident(
    clean_database: str, tmp_path: Path
) -> None:
    out = tmp_path / "report.json"
    done = simulate(
        "--database-url", clean_database,
        "--stations", "1", "--fixed-per-station", "4", "--mobile-per-station", "2",
        "--side-km", "4", "--incidents", "4", "--rate", "240", "--speed", "30",
        "--miss", "0", "--json", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict[str, Any] = json.loads(out.read_text())

    assert report["incidents"] == 4
    assert report["leaders"] == 4 + 2 + 1 + 1
    nothing_dropped = {"phones": 0, "phones_resumed": 0, "console": 0, "console_resumed": 0}
    assert report["disconnects"] == nothing_dropped
    assert "leaders online (0 failed to connect)" in done.stdout
    for tier in ("1", "2", "3"):
        outcome = report["tiers"][tier]
        # Every tier ends met or breached: the run waits for each deadline.
        assert outcome["met"] + outcome["breached"] == 4, outcome
        assert 0.0 <= outcome["met_share"] <= 1.0
    counts = report["dispatch_counts"]
    assert counts["dispatches"] > 0
    # Every leader's phone acknowledged its alert, so the server recorded every delivery.
    assert counts["delivered"] == counts["dispatches"]
    assert counts["arrived"] <= counts["accepted"] <= counts["dispatches"]
    # The phones sent their position on the way, as the phone page does, and the server's
    # geofence recorded every arrival: no leader had to press arrive.
    acts = report["leader_actions"]
    assert acts["geofence"] == acts["arrived"] > 0 and acts["button"] == 0, acts
    # Sped up on its own server, a phone sends the first fix on the way and those that could
    # record the arrival, the one within the geofence that did: two a journey at most.
    assert acts["arrived"] <= acts["fixes"] <= 2 * acts["accepted"], acts
    assert counts["arrived"] > 0
    assert report["arrival_sources"] == {
        "button": 0,
        "geofence": counts["arrived"],
        "operator": 0,
    }, report["arrival_sources"]
    share = report["tiers"]["1"]["met_share"]
    assert f"With these teams, {share:.0%} of incidents would meet 1 minute." in done.stdout
    assert "#1    reported" in done.stdout
    assert f"{acts['arrived']} arrived ({acts['arrived']} by geofence, 0 by button)" in done.stdout


async def test_a_town_file_is_loaded_with_its_coordinate_system(
    clean_database: str, tmp_path: Path
) -> None:
    layout = {
        "name": "试点片区",
        "teams": [
            # GCJ-02, as copied from a Chinese web map.
            {"name": "工业园驻点", "kind": "fixed_post", "lon": 114.1661, "lat": 22.8460,
             "crs": "gcj02", "leaders": 2},
            {"name": "机动队", "kind": "mobile", "lon": 114.1600, "lat": 22.8490},
            {"name": "巡逻", "kind": "patrol", "lon": 114.159, "lat": 22.847, "radius_m": 3000},
        ],
        "hotspots": [{"lon": 114.1612, "lat": 22.8488}],
    }  # fmt: skip
    path = tmp_path / "town.json"
    path.write_text(json.dumps(layout, ensure_ascii=False), encoding="utf-8")
    loaded = towns.load(path)
    fixed = loaded.teams[0]
    # Stored as WGS84: hundreds of metres away from the GCJ-02 numbers.
    assert abs(fixed.lon - 114.1661) > 0.003 and fixed.leaders == 2

    out = tmp_path / "report.json"
    # Twice on one database: the first run's teams are retired, and their names free again.
    for run in (1, 2):
        done = simulate(
            "--town", str(path), "--database-url", clean_database,
            "--incidents", "2", "--rate", "240", "--speed", "30", "--json", str(out),
        )  # fmt: skip
        assert done.returncode == 0, (run, done.stderr[-3000:])
        assert "retired the 3 simulated teams" in done.stdout
        report = json.loads(out.read_text())
        assert report["town"] == "试点片区" and report["leaders"] == 4
        assert report["teams"] == {"fixed_post": 1, "mobile": 1, "patrol": 1, "response": 0}
        assert report["tiers"]["3"]["covered"] == 0
        # Only this run's teams were alerted: each had a leader online to take the alert.
        counts = report["dispatch_counts"]
        assert counts["delivered"] == counts["dispatches"] > 0, counts
    # The runs' accounts (4 leaders and an operator each) are disabled: no token of theirs
    # works on a server of this database.
    engine = create_engine(clean_database)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                select(User.name, User.disabled).where(User.name.startswith("sim-"))
            )
            accounts = rows.all()
    finally:
        await engine.dispose()
    assert len(accounts) == 10 and all(disabled for _, disabled in accounts), accounts


def test_a_bad_town_file_is_refused_naming_the_place(tmp_path: Path) -> None:
    path = tmp_path / "town.json"
    teams = [
        {"kind": "fixed_post", "lon": 114.1, "lat": 22.8},
        {"kind": "castle", "lon": 114.1, "lat": 22.8},
    ]
    path.write_text(json.dumps({"teams": teams}))
    done = simulate("--town", str(path))
    assert done.returncode == 2
    assert "teams[1].kind" in done.stderr
    for teams, problem in (
        ([{"name": "机动队", "kind": "mobile", "lon": 114.1, "lat": 22.8}] * 2, "teams[1].name"),
        ([{"name": "机动\u202e队", "kind": "mobile", "lon": 114.1, "lat": 22.8}], "teams[0].name"),
    ):
        path.write_text(json.dumps({"teams": teams}))
        done = simulate("--town", str(path))
        assert done.returncode == 2 and problem in done.stderr, done.stderr


def test_a_town_file_holds_only_what_the_teams_api_takes(tmp_path: Path) -> None:
    """On its own server the simulator writes the teams straight into the database: a radius
    the teams API refuses (under a metre; true, which is no number), a place no float holds,
    or a file nested deeper than any town is refused naming it, not seeded or a traceback."""
    path = tmp_path / "town.json"

    def mobile(**fields: Any) -> str:
        return json.dumps({"teams": [{"kind": "mobile", "lon": 114.16, "lat": 22.85, **fields}]})

    huge = '{"teams": [{"kind": "mobile", "lon": 1' + "0" * 400 + ', "lat": 22.8}]}'
    deep = '{"teams": ' + "[" * 5000 + "]" * 5000 + "}"
    for text, problem in (
        (mobile(radius_m=0.5), "teams[0].radius_m: a mobile team needs a number of metres"),
        (mobile(radius_m=True), "teams[0].radius_m"),
        (mobile(radius_m=50_001), "teams[0].radius_m"),
        (mobile(radius_m=float("nan")), "teams[0].radius_m"),
        (mobile(lat=True), "teams[0].lat"),
        (mobile(crs="osgb36"), "teams[0].crs"),
        (mobile(leaders=10**9), "teams[0].leaders"),
        (huge, "teams[0].lon"),
        (deep, "nested too deeply"),
    ):
        path.write_text(text)
        with pytest.raises(towns.TownFileError, match=re.escape(problem)):
            towns.load(path)
    for radius in (1, 50_000):
        path.write_text(mobile(radius_m=radius))
        assert towns.load(path).teams[0].radius_m == radius

    path.write_text(huge)
    done = simulate("--town", str(path))
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("error: teams[0].lon:"), done.stderr


def test_a_file_the_run_cannot_write_is_said_before_it_runs(tmp_path: Path) -> None:
    """A report or a town to be written into a folder that is not there, or over a folder, is
    one line and a failed exit before anything runs, not a traceback after the run (or, for
    the town, a success that wrote nothing)."""
    missing = tmp_path / "no such folder" / "out.json"
    for args, problem in (
        (["--save-town", str(missing), "--no-run"], f"--save-town: no folder {missing.parent}"),
        (["--save-town", str(tmp_path)], f"--save-town: {tmp_path} is a folder"),
        (["--json", str(missing)], f"--json: no folder {missing.parent}"),
        (["--json", str(tmp_path), "--compare", "proposed.json"], f"--json: {tmp_path} is a"),
    ):
        done = simulate(*args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert done.stderr.startswith(f"error: {problem}"), done.stderr
        assert done.stderr.count("\n") == 1 and "seeding" not in done.stdout, done.stdout
    assert list(tmp_path.iterdir()) == [], "nothing made, nothing left"


def test_a_generated_town_is_bounded_and_the_bound_is_named(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--side-km 12000 would have made some two million response teams and run for hours:
    the side, the stations and the town's teams and leaders in all have bounds, each said in
    one line before anything is made."""
    for args, problem in (
        (["--side-km", "12000"], "--side-km: a generated town is at most 60 km across"),
        (["--stations", "5000"], "--stations: at most 1000"),
        (["--fixed-per-station", "100000"], "a simulated town has at most 20000"),
        (["--leaders-per-team", "5000"], "leaders; a simulated town has at most 50000"),
    ):
        code: int | str | None
        try:
            code = main(["simulate", *args, "--save-town", os.devnull, "--no-run"])
        except SystemExit as exit:  # argparse's refusal of an option
            code = exit.code
        assert code == 2 and problem in capsys.readouterr().err, args
    done = simulate("--side-km", "12000")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    # At the bounds a town is made, and every zone in it is one the teams API takes.
    town = towns.generate(stations=1, side_m=towns.MAX_SIDE_M)
    assert max(t.radius_m or 0 for t in town.teams) <= 50_000
    with pytest.raises(towns.TownTooLarge):
        towns.generate(side_m=towns.MAX_SIDE_M + 1)


def test_incidents_come_at_the_rate_the_run_drew(tmp_path: Path) -> None:
    """Each report goes out at its moment on the run's timeline, however long the one before
    took to answer: slept after each answer, every round trip counted --speed times over and
    the docs' --rate 12 --speed 30 reported a quarter slower than asked."""
    path = tmp_path / "town.json"
    path.write_text(json.dumps({"teams": QUIET_TOWN}), encoding="utf-8")
    seed, n, rate = 5, 30, 12.0
    out = tmp_path / "report.json"
    done = simulate(
        "--town", str(path), "--incidents", str(n), "--rate", f"{rate:g}", "--speed", "30",
        "--seed", str(seed), "--miss", "0", "--json", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    rates = json.loads(out.read_text())["rate_per_min"]
    # The gaps the run drew, drawn again from its seed as the run draws them.
    rng, town, drawn_s = random.Random(seed), towns.load(path), 0.0
    for k in range(1, n + 1):
        town.incident_point(rng)
        rng.choice(CATEGORIES)
        if k < n:
            drawn_s += rng.expovariate(1.0) * 60.0 / rate
    assert rates["asked"] == rate
    assert rates["drawn"] == pytest.approx((n - 1) * 60.0 / drawn_s, abs=0.01)
    # By the times the server recorded the reports at, scaled back by --speed. The defect left
    # a quarter of the rate behind; a loaded 2-core box, each stall magnified 30 times by
    # --speed, has been seen to leave an eighth.
    assert rates["achieved"] >= 0.85 * rates["drawn"], rates
    assert f"reported at {rates['achieved']:.1f}/min by the server's record" in done.stdout


async def test_ctrl_c_on_its_own_server_leaves_the_database_as_a_finished_run_does(
    clean_database: str, tmp_path: Path
) -> None:
    """Ctrl-C reaches the run's whole terminal group, but not its own server: the run closes
    the incidents it reported there before stopping it, then retires its teams and disables
    its accounts in the database, which outlives it; exit 130, no traceback."""
    path = tmp_path / "town.json"
    path.write_text(json.dumps({"teams": QUIET_TOWN}), encoding="utf-8")
    process = await started_in_a_terminal(
        "--town", str(path), "--database-url", clean_database, "--incidents", "40",
        "--rate", "6", "--speed", "10",
    )  # fmt: skip
    output = await ctrl_c_after(process, "#2 ")
    assert process.returncode == 130 and "Traceback" not in output, output[-3000:]
    assert "the run stopped: closed the 2 incidents it reported" in output, output
    engine = create_engine(clean_database)
    try:
        async with engine.connect() as connection:
            incidents = (await connection.execute(select(Incident.status))).scalars().all()
            teams = (await connection.execute(select(Team.retired_at))).scalars().all()
            users = (await connection.execute(select(User.disabled))).scalars().all()
    finally:
        await engine.dispose()
    assert incidents == ["closed", "closed"], incidents
    assert len(teams) == 2 and None not in teams, teams
    assert len(users) == 3 and all(users), users
