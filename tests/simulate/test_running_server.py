"""The simulator against a running server (``--url``): a real ``dispatch serve`` process, with
settings of its own where a test needs them, and ``dispatch simulate`` run as a user runs it."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from dispatch.simulate.leaders import Behaviour, Leader, Phones, WorkerJob
from dispatch.simulate.run import Console
from dispatch.simulate.seed import SIMULATED_TEAM, login, ok
from tests.processes import ServerProcess, cli, server_env
from tests.simulate.runs import ctrl_c_after, started_in_a_terminal
from tests.simulate.test_town_from import simulate_beside

ADMIN_PASSWORD = "admin-password-1"
# A fixed post and a mobile team where the incidents happen, patrol and response police.
TOWN = {
    "name": "试点片区",
    "teams": [
        {"name": "驻点", "kind": "fixed_post", "lon": 114.1600, "lat": 22.8470},
        {"name": "机动", "kind": "mobile", "lon": 114.1610, "lat": 22.8480},
        {"name": "巡逻", "kind": "patrol", "lon": 114.159, "lat": 22.847, "radius_m": 3000},
        {"name": "处突", "kind": "response", "lon": 114.159, "lat": 22.847, "radius_m": 6000},
    ],
    "hotspots": [{"lon": 114.1601, "lat": 22.8471}],
}


@asynccontextmanager
async def a_running_server(
    database_url: str, folder: Path, **settings: str
) -> AsyncIterator[ServerProcess]:
    """``dispatch serve`` on the database, with an admin account, until the block ends."""
    env = server_env(database_url, folder, **settings)
    await cli(env, "users", "add", "admin", "--role", "admin", stdin=ADMIN_PASSWORD + "\n")
    server = ServerProcess(env, folder / "server.log")
    await server.start()
    try:
        yield server
    finally:
        server.stop()


def town_file(folder: Path, town: dict[str, Any] = TOWN) -> Path:
    path = folder / "town.json"
    path.write_text(json.dumps(town, ensure_ascii=False), encoding="utf-8")
    return path


async def as_admin(server: ServerProcess, path: str, **params: Any) -> Any:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        login = {"username": "admin", "password": ADMIN_PASSWORD}
        token = (await http.post("/api/v1/auth/token", data=login)).json()["access_token"]
        reply = await http.get(path, params=params, headers={"Authorization": f"Bearer {token}"})
        assert reply.status_code == 200, reply.text
        return reply.json()


async def test_the_report_judges_by_the_targets_of_the_server_it_ran_on(
    clean_database: str, tmp_path: Path
) -> None:
    """A running server keeps its own targets (here 3, 6 and 9 s): the report's targets, its
    labels and its last line are the chain's, read from each incident, not the defaults."""
    async with a_running_server(clean_database, tmp_path, chain_targets="3,6,9") as server:
        out = tmp_path / "report.json"
        code, stdout, stderr = await simulate_beside(
            "--url", server.base_url, "--admin", "admin", "--town", str(town_file(tmp_path)),
            "--incidents", "2", "--rate", "120", "--json", str(out),
            stdin=ADMIN_PASSWORD + "\n",
        )  # fmt: skip
        assert code == 0, stderr[-3000:]
    report = json.loads(out.read_text())
    assert {k: v["target_s"] for k, v in report["tiers"].items()} == {"1": 3, "2": 6, "3": 9}
    for tier in report["tiers"].values():
        assert tier["met"] + tier["breached"] == 2, tier
    assert "  tier 1 (3 s): covered" in stdout and "  tier 3 (9 s): covered" in stdout, stdout
    share = report["tiers"]["1"]["met_share"]
    assert f"With these teams, {share:.0%} of incidents would meet 3 seconds." in stdout


async def simulated_left(server: ServerProcess) -> tuple[list[str], list[str]]:
    """The run's teams still in service, and its accounts still enabled."""
    teams = await as_admin(server, "/api/v1/teams")
    users = await as_admin(server, "/api/v1/users")
    return (
        [t["name"] for t in teams if SIMULATED_TEAM.search(t["name"])],
        [u["name"] for u in users if u["name"].startswith("sim-") and not u["disabled"]],
    )


async def test_a_town_the_server_refuses_part_way_leaves_nothing_of_the_run_in_service(
    clean_database: str, tmp_path: Path
) -> None:
    """The server refuses the third team (its zones take fewer vertices than the file's): the
    run fails naming the refusal, and the two teams made before it are retired again and their
    leaders' accounts disabled, where they stayed in service, alerted for the server's own
    incidents and counted as its tier-1 cover. A run that ends well disables its accounts too:
    their tokens die with it."""
    square = [[114.149, 22.838], [114.169, 22.838], [114.169, 22.856], [114.149, 22.856]]
    zone = {"type": "Polygon", "coordinates": [[*square, square[0]]]}
    patrol = {"name": "巡逻", "kind": "patrol", "lon": 114.159, "lat": 22.847, "zone": zone}
    refused = {**TOWN, "teams": [*TOWN["teams"][:2], patrol, TOWN["teams"][3]]}
    settings = {"max_zone_vertices": "4", "chain_targets": "3,6,9"}
    async with a_running_server(clean_database, tmp_path, **settings) as server:
        code, _, stderr = await simulate_beside(
            "--url", server.base_url, "--admin", "admin", "--town",
            str(town_file(tmp_path, refused)), "--incidents", "1", stdin=ADMIN_PASSWORD + "\n",
        )  # fmt: skip
        assert code == 1 and "POST /api/v1/teams" in stderr, stderr[-2000:]
        assert "more than 4 vertices" in stderr
        assert await simulated_left(server) == ([], [])
        users = await as_admin(server, "/api/v1/users")
        assert len([u for u in users if u["name"].startswith("sim-")]) == 2, "one each"

        code, _, stderr = await simulate_beside(
            "--url", server.base_url, "--admin", "admin", "--town", str(town_file(tmp_path)),
            "--incidents", "1", "--keep-town", stdin=ADMIN_PASSWORD + "\n",
        )  # fmt: skip
        assert code == 0, stderr[-2000:]
        teams, enabled = await simulated_left(server)
        assert len(teams) == 4 and enabled == [], "the town kept, its accounts disabled"


async def open_simulated_incidents(server: ServerProcess) -> list[str]:
    incidents = await as_admin(server, "/api/v1/incidents", status="open", limit=1000)
    return [i["description"] for i in incidents if i["description"].startswith("模拟警情")]


async def test_ctrl_c_closes_the_incidents_the_run_reported(
    clean_database: str, tmp_path: Path
) -> None:
    """Stopped part-way, the run closes what it reported (it had left them open on the
    server's console and in its record), retires its teams and exits 130, without a
    traceback from it or from its leaders' workers."""
    async with a_running_server(clean_database, tmp_path) as server:
        process = await started_in_a_terminal(
            "--url", server.base_url, "--admin", "admin", "--town", str(town_file(tmp_path)),
            "--incidents", "30", "--rate", "30",
        )  # fmt: skip
        assert process.stdin is not None
        process.stdin.write((ADMIN_PASSWORD + "\n").encode())
        output = await ctrl_c_after(process, "#3 ")
        assert process.returncode == 130, output[-3000:]
        assert "Traceback" not in output and output.endswith("stopped (Ctrl-C)\n"), output
        assert "the run stopped: closed the 3 incidents it reported" in output, output
        assert "retired the 4 simulated teams" in output
        assert await open_simulated_incidents(server) == []
        assert await simulated_left(server) == ([], [])


async def test_the_servers_report_limit_holds_the_run_back_and_it_goes_on(
    clean_database: str, tmp_path: Path
) -> None:
    """The server takes two reports at once and one a second after (its per-user report
    limit: 429 with Retry-After). The run had stopped at the third, leaving the two open;
    now it waits as told, reports every incident and says how long it was held back."""
    settings = {"report_burst": "2", "report_per_min": "60", "chain_targets": "3,6,9"}
    async with a_running_server(clean_database, tmp_path, **settings) as server:
        out = tmp_path / "report.json"
        code, stdout, stderr = await simulate_beside(
            "--url", server.base_url, "--admin", "admin", "--town", str(town_file(tmp_path)),
            "--incidents", "4", "--rate", "600", "--json", str(out),
            stdin=ADMIN_PASSWORD + "\n",
        )  # fmt: skip
        assert code == 0, stderr[-3000:]
        report = json.loads(out.read_text())
        assert report["incidents"] == 4 and report["held_back"]["times"] >= 1, report
        assert "held back by the server (429, its report limit): again in 1 s" in stdout
        held = report["held_back"]
        assert f"the server held reports back {held['times']} times" in stdout
        assert await open_simulated_incidents(server) == []


async def a_leader(server: ServerProcess) -> tuple[Leader, dict[str, str]]:
    """A fixed post with a leader, made by the admin; the leader and the admin's headers."""
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        admin = await login(http, "admin", ADMIN_PASSWORD)
        site = {"lon": 114.16, "lat": 22.847}
        body: dict[str, Any] = {"name": "驻点", "kind": "fixed_post", "location": site}
        team = ok(await http.post("/api/v1/teams", json=body, headers=admin))
        body = {"name": "leader-1", "password": "leader-password-1", "role": "leader"}
        user = ok(
            await http.post("/api/v1/users", json={**body, "team_id": team["id"]}, headers=admin)
        )
        token = (await login(http, "leader-1", "leader-password-1"))["Authorization"]
    leader = Leader(user["id"], token.removeprefix("Bearer "), team["id"], "fixed_post")
    return leader, admin


async def test_the_phones_and_the_console_come_back_when_the_server_restarts(
    clean_database: str, tmp_path: Path
) -> None:
    """The server restarts (a deploy; as for a socket dropped as too slow, 1013, or a blip):
    the pages reconnect and resume, and so now do the simulated phone and console. The phone
    had left every later alert of its team unanswered, counted as the layout's breach, and
    the console heard nothing more of the chains."""
    async with a_running_server(clean_database, tmp_path) as server:
        leader, admin = await a_leader(server)
        behaviour = Behaviour(speed=10.0, miss_share=0.0, accept_median_s=2.0)
        job = WorkerJob(server.ws_url, server.base_url, [leader], "simulate", behaviour)
        phones = Phones(job)
        await phones.connect_all()
        console = Console(1.0, lambda _: None)
        token = admin["Authorization"].removeprefix("Bearer ")
        listening = asyncio.create_task(console.listen(server.ws_url, server.base_url, token))
        try:
            await asyncio.sleep(1)  # the console's socket is open
            server.terminate()  # every socket closed with 1012
            await server.start()
            async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
                body = {"location": {"lon": 114.16, "lat": 22.8471}, "category": "fight"}
                incident = ok(await http.post("/api/v1/incidents", json=body, headers=admin))
                console.update(incident)  # as the run does with each report's answer
                # The phone takes the alert, its team walks the few metres and is on scene:
                # the console hears the chain met.
                async with asyncio.timeout(30):
                    while console.chains[incident["id"]][1]["status"] != "met":
                        await asyncio.sleep(0.2)
        finally:
            listening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listening
            results = await phones.finish()
    assert (results["drops"], results["resumed"], results["acts"]["accepted"]) == (1, 1, 1)
    assert (console.drops, console.resumed) == (1, 1)
