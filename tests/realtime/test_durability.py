"""No alert lost, no deadline missed: kill -9 mid-burst, two processes, a reconnect storm."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pyproj import Geod
from websockets.exceptions import ConnectionClosed

from dispatch.schemas import DISPLAY_TZ
from tests.processes import ServerProcess, cli, server_env
from tests.support import QINGXI, Socket, get_token, open_socket

GEOD = Geod(ellps="WGS84")
ESCALATE_AFTER_S = 1.5


def at(metres: float, azimuth: float) -> dict[str, float]:
    lon, lat, _ = GEOD.fwd(*QINGXI, azimuth, metres)
    return {"lon": float(lon), "lat": float(lat)}


def t(value: str) -> datetime:
    return datetime.fromisoformat(value)


@dataclass
class Leader:
    """A leader's phone across reconnects: its last seq and every alert it was shown."""

    name: str
    team_id: str
    token: str = ""
    last_seq: int = 0
    alerts: list[str] = field(default_factory=list)
    socket: Socket | None = None

    async def connect(self, ws_url: str) -> None:
        self.socket = await open_socket(ws_url, self.token, self.last_seq)

    async def read_until_closed(self) -> None:
        assert self.socket is not None
        with contextlib.suppress(ConnectionClosed, TimeoutError):
            while True:
                self._take(await self.socket.next(30))

    async def catch_up(self, until_seq: int) -> None:
        assert self.socket is not None
        while self.socket.last_seq < until_seq:
            self._take(await self.socket.next(10))

    def _take(self, message: dict[str, Any]) -> None:
        assert self.socket is not None
        self.last_seq = self.socket.last_seq
        if message["type"] == "alert":
            self.alerts.append(message["data"]["dispatch"]["id"])


@dataclass
class Town:
    admin: dict[str, str]
    operator: dict[str, str]
    leaders: list[Leader]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def build_town(server: ServerProcess, ring_team: bool = True) -> Town:
    """Teams covering Qingxi (and one 800 m away for escalation), a leader for each."""
    await cli(server.env, "users", "add", "chief", "--role", "admin", stdin="admin-password\n")
    await server.start()
    specs: list[dict[str, Any]] = [
        {"kind": "fixed_post", "location": at(30, 0)},
        {"kind": "mobile", "location": at(300, 90)},
        {"kind": "patrol", "location": at(1000, 180), "radius_m": 3000},
    ]
    if ring_team:
        specs.append({"kind": "mobile", "location": at(800, 270)})
    leaders = []
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        admin = bearer(await get_token(http, "chief", "admin-password"))
        await add_user(http, admin, "duty", "operator")
        operator = bearer(await get_token(http, "duty", "operator-password"))
        for n, spec in enumerate(specs):
            reply = await http.post("/api/v1/teams", json={"name": f"队{n}", **spec}, headers=admin)
            team = reply.json()
            name = f"leader{n}"
            await add_user(http, admin, name, "leader", team["id"])
            leader = Leader(name, team["id"])
            leader.token = await get_token(http, name, "leader-password")
            leaders.append(leader)
    return Town(admin, operator, leaders)


async def add_user(
    http: httpx.AsyncClient,
    admin: dict[str, str],
    name: str,
    role: str,
    team_id: str | None = None,
) -> None:
    body = {"name": name, "password": f"{role}-password", "role": role, "team_id": team_id}
    reply = await http.post("/api/v1/users", json=body, headers=admin)
    assert reply.status_code == 201, reply.text


async def incidents_in_db(server: ServerProcess, town: Town) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        reply = await http.get("/api/v1/incidents?limit=1000", headers=town.operator)
        found: list[dict[str, Any]] = reply.json()
        return found


async def events_of(server: ServerProcess, town: Town, incident_id: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        reply = await http.get(f"/api/v1/incidents/{incident_id}/events", headers=town.operator)
        found: list[dict[str, Any]] = reply.json()
        return found


async def once_everything_fell_due(
    server: ServerProcess, town: Town, timeout_s: float = 60.0
) -> dict[str, dict[str, Any]]:
    """The incidents, by id, once every tier of each is breached and each has escalated.

    The deadlines fall due some seconds after the reports in the server's real time; a loaded
    box runs its timer late, so this waits for what it did rather than for a fixed while."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        stored = {i["id"]: i for i in await incidents_in_db(server, town)}
        breached = all(tier["status"] == "breached" for i in stored.values() for tier in i["chain"])
        escalated = 0
        for incident_id in stored if breached else ():
            events = await events_of(server, town, incident_id)
            escalated += any(e["type"] == "escalated" for e in events)
        if breached and escalated == len(stored):
            return stored
        assert asyncio.get_running_loop().time() < deadline, "deadlines still not due"
        await asyncio.sleep(0.1)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path


async def test_kill_9_mid_burst_loses_nothing_and_deadlines_fire_after_restart(
    clean_database: str, folder: Path, servers: list[ServerProcess]
) -> None:
    env = server_env(
        clean_database,
        folder,
        chain_targets="2,3,4",
        escalation_after_s=str(ESCALATE_AFTER_S),
        # A burst and its retries from one operator: lift the per-user report limit.
        report_burst="1000",
        report_per_min="100000",
    )
    server = ServerProcess(env, folder / "server.log")
    servers.append(server)
    town = await build_town(server)
    for leader in town.leaders:
        await leader.connect(server.ws_url)
    readers = [asyncio.create_task(leader.read_until_closed()) for leader in town.leaders]

    acknowledged: dict[str, str] = {}
    keys = [f"burst-{n:03d}" for n in range(40)]

    async def report(http: httpx.AsyncClient, key: str) -> None:
        body = {"location": {"lon": QINGXI[0], "lat": QINGXI[1]}, "category": "violence"}
        with contextlib.suppress(httpx.TransportError):
            reply = await http.post(
                "/api/v1/incidents", json=body, headers={**town.operator, "Idempotency-Key": key}
            )
            if reply.status_code == 201:
                acknowledged[key] = reply.json()["id"]

    async def burst() -> None:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
            for n in range(0, len(keys), 4):
                await asyncio.gather(*(report(http, k) for k in keys[n : n + 4]))

    reporting = asyncio.create_task(burst())
    while len(acknowledged) < 12:
        await asyncio.sleep(0.005)
    server.kill()
    await reporting
    await asyncio.gather(*readers)
    before_kill = dict(acknowledged)
    assert 12 <= len(before_kill) < len(keys), "the kill must land mid-burst"

    await server.start()
    # Every incident that got a 201 survived, with every dispatch.
    stored = {i["id"]: i for i in await incidents_in_db(server, town)}
    assert set(before_kill.values()) <= set(stored)
    for incident_id in before_kill.values():
        assert {d["team_id"] for d in stored[incident_id]["dispatches"] if d["ring"] == 0} == {
            leader.team_id for leader in town.leaders[:3]
        }
    # The client retries what got no answer; the same key never makes a second incident.
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        for key in keys:
            await report(http, key)
    assert {k: acknowledged[k] for k in before_kill} == before_kill
    assert len(set(acknowledged.values())) == len(keys)

    # Every leader resumes from its last seq and sees each of its alerts exactly once, in order.
    stored = await once_everything_fell_due(server, town)
    for leader in town.leaders:
        await leader.connect(server.ws_url)
    for incident in stored.values():
        for tier in incident["chain"]:
            assert tier["status"] == "breached"
            assert tier["breached_at"] == tier["deadline"], "recorded at the deadline"
    for leader in town.leaders:
        mine = sorted(
            (d["alerted_at"], d["id"])
            for i in stored.values()
            for d in i["dispatches"]
            if d["team_id"] == leader.team_id
        )
        assert leader.socket is not None
        await leader.catch_up(leader.socket.welcome["seq"])
        assert sorted(leader.alerts) == sorted(d for _, d in mine), leader.name
        assert len(leader.alerts) == len(set(leader.alerts)), "no alert twice"
        await leader.socket.close()
    # Escalation fired once per incident, recorded at its due time, also across the restart.
    ring = town.leaders[3]
    assert len(ring.alerts) == len(stored)
    for incident in stored.values():
        escalations = [
            e for e in await events_of(server, town, incident["id"]) if e["type"] == "escalated"
        ]
        assert len(escalations) == 1
        due = t(incident["reported_at"]) + timedelta(seconds=ESCALATE_AFTER_S)
        assert t(escalations[0]["at"]) == due


async def test_two_processes_are_one_system(
    postgres_only: str, folder: Path, servers: list[ServerProcess]
) -> None:
    env = server_env(postgres_only, folder, chain_targets="1,1.5,2", escalation_after_s="60")
    a = ServerProcess(env, folder / "a.log")
    b = ServerProcess(env, folder / "b.log")
    servers.extend([a, b])
    town = await build_town(a, ring_team=False)
    await b.start()
    leader = town.leaders[0]
    await leader.connect(b.ws_url)
    operator_token = town.operator["Authorization"].removeprefix("Bearer ")
    console = await open_socket(a.ws_url, operator_token)

    async with (
        httpx.AsyncClient(base_url=a.base_url) as on_a,
        httpx.AsyncClient(base_url=b.base_url) as on_b,
    ):
        body = {"location": {"lon": QINGXI[0], "lat": QINGXI[1]}, "category": "fight"}
        reply = await on_a.post("/api/v1/incidents", json=body, headers=town.operator)
        incident = reply.json()
        assert leader.socket is not None
        alert = await leader.socket.next_of("alert")
        assert alert["data"]["incident"]["id"] == incident["id"]

        # A team made on B covers new ground on A.
        far = at(5000, 45)
        team = {"name": "新驻点", "kind": "fixed_post", "location": far}
        assert (await on_b.post("/api/v1/teams", json=team, headers=town.admin)).is_success
        for _ in range(100):
            reply = await on_a.get("/api/v1/teams/covering", params=far, headers=town.operator)
            if reply.json():
                break
            await asyncio.sleep(0.02)
        assert [t["name"] for t in reply.json()] == ["新驻点"]

    # Each deadline fires once across both processes.
    breaches = []
    while len(breaches) < 3:
        message = await console.next(10)
        if message["type"] == "chain.breached":
            breaches.append(message["data"]["tier"]["tier"])
    assert breaches == [1, 2, 3]
    later = []
    with contextlib.suppress(TimeoutError):
        while True:
            later.append((await console.next(1.0))["type"])
    assert "chain.breached" not in later, "a deadline fired twice"
    events = await events_of(a, town, incident["id"])
    assert [e["data"]["tier"] for e in events if e["type"] == "breached"] == [1, 2, 3]
    await console.close()

    # A village imported on B tags the incidents reported on A.
    async with (
        httpx.AsyncClient(base_url=a.base_url) as on_a,
        httpx.AsyncClient(base_url=b.base_url) as on_b,
    ):
        lon, lat = far["lon"], far["lat"]
        ring = [[lon - 0.01, lat - 0.01], [lon + 0.01, lat - 0.01], [lon, lat + 0.01]]
        village = {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}
        geojson = {
            "type": "FeatureCollection",
            "features": [{"type": "Feature", "properties": {"name": "新村"}, "geometry": village}],
        }
        upload = {**town.admin, "content-type": "application/geo+json"}
        imported = await on_b.post(
            "/api/v1/villages/import", content=json.dumps(geojson), headers=upload
        )
        assert imported.json()["created"] == ["新村"]
        there = {"location": {"lon": lon, "lat": lat}, "category": "theft"}
        for _ in range(50):
            reply = await on_a.post("/api/v1/incidents", json=there, headers=town.operator)
            if reply.json()["village_id"] is not None:
                break
            await asyncio.sleep(0.05)
        villages = (await on_a.get("/api/v1/villages", headers=town.operator)).json()
        assert reply.json()["village_id"] == villages[0]["id"]

        # A duty schedule set on B skips its team in the reports made on A: A's duty book
        # reloads on B's announcement. The team is off duty now (its hours begin in 2 h).
        spot = at(9000, 135)
        mobile = {"name": "机动队", "kind": "mobile", "location": spot}
        team_id = (await on_b.post("/api/v1/teams", json=mobile, headers=town.admin)).json()["id"]
        local = datetime.now(DISPLAY_TZ)
        hours = {
            "start": (local + timedelta(hours=2)).strftime("%H:%M"),
            "end": (local + timedelta(hours=3)).strftime("%H:%M"),
            "rotation_start": local.date().isoformat(),
            "units": [],
        }
        duty = await on_b.put(f"/api/v1/rosters/duty/{team_id}", json=hours, headers=town.admin)
        assert duty.is_success, duty.text
        there = {"location": spot, "category": "theft"}
        for _ in range(20):
            reply = await on_a.post("/api/v1/incidents", json=there, headers=town.operator)
            if reply.json()["skipped"]:
                break
            await asyncio.sleep(0.1)
        assert [s["team_id"] for s in reply.json()["skipped"]] == [team_id]
        assert reply.json()["dispatches"] == []


async def test_a_reconnect_storm_after_restart_catches_everyone_up(
    clean_database: str, folder: Path, servers: list[ServerProcess]
) -> None:
    env = server_env(clean_database, folder, chain_targets="60,180,300")
    server = ServerProcess(env, folder / "server.log")
    servers.append(server)
    town = await build_town(server, ring_team=False)
    leader = town.leaders[0]
    phones = [Leader(leader.name, leader.team_id, leader.token) for _ in range(150)]
    await asyncio.gather(*(p.connect(server.ws_url) for p in phones))
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        body = {"location": {"lon": QINGXI[0], "lat": QINGXI[1]}, "category": "fight"}
        first = (await http.post("/api/v1/incidents", json=body, headers=town.operator)).json()
    await asyncio.gather(*(p.catch_up(1) for p in phones))
    assert server.terminate() in (0, -15)
    for phone in phones:
        assert phone.socket is not None
        with contextlib.suppress(ConnectionClosed):
            await phone.socket.next(5)
    await server.start()
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        for category in ("theft", "fire", "robbery"):
            body = {"location": {"lon": QINGXI[0], "lat": QINGXI[1]}, "category": category}
            await http.post("/api/v1/incidents", json=body, headers=town.operator)
    # All at once, each from where it left off.
    await asyncio.gather(*(p.connect(server.ws_url) for p in phones))
    latest = max(p.socket.welcome["seq"] for p in phones if p.socket is not None)
    await asyncio.gather(*(p.catch_up(latest) for p in phones))
    expected = json.dumps(phones[0].alerts)
    assert len(phones[0].alerts) == 4
    assert phones[0].alerts[0] == first["dispatches"][0]["id"]
    assert all(json.dumps(p.alerts) == expected for p in phones)
    for phone in phones:
        assert phone.socket is not None
        await phone.socket.close()


async def test_two_processes_breach_and_escalate_once_and_tell_every_console_once(
    postgres_only: str, folder: Path, servers: list[ServerProcess]
) -> None:
    """Both processes run timers on one database: each deadline and the escalation step fall
    due on both, are recorded once, and every operator's socket on either process hears of
    each once."""
    env = server_env(postgres_only, folder, chain_targets="1.5,2,2.5", escalation_after_s="1")
    a = ServerProcess(env, folder / "a.log")
    b = ServerProcess(env, folder / "b.log")
    servers.extend([a, b])
    town = await build_town(a)
    await b.start()
    operator_token = town.operator["Authorization"].removeprefix("Bearer ")
    consoles = [await open_socket(s.ws_url, operator_token) for s in (a, b, a, b)]
    async with httpx.AsyncClient(base_url=b.base_url) as on_b:
        body = {"location": {"lon": QINGXI[0], "lat": QINGXI[1]}, "category": "fight"}
        incident = (await on_b.post("/api/v1/incidents", json=body, headers=town.operator)).json()
    await once_everything_fell_due(a, town)
    events = await events_of(b, town, incident["id"])
    assert [e["data"]["tier"] for e in events if e["type"] == "breached"] == [1, 2, 3]
    assert [e["type"] for e in events].count("escalated") == 1
    stored = (await incidents_in_db(b, town))[0]
    assert [d["ring"] for d in stored["dispatches"]].count(1) == 1
    for tier in stored["chain"]:
        assert tier["breached_at"] == tier["deadline"]

    # A second report after all that: what each socket was sent before it is all it will hear
    # of the first.
    async with httpx.AsyncClient(base_url=a.base_url) as on_a:
        body = {"location": {"lon": QINGXI[0], "lat": QINGXI[1]}, "category": "theft"}
        marker = (await on_a.post("/api/v1/incidents", json=body, headers=town.operator)).json()
    for n, console in enumerate(consoles):
        heard: list[tuple[str, Any]] = []
        while True:
            message = await console.next(10)
            data = message.get("data") or {}
            if data.get("id") == marker["id"] or data.get("incident_id") == marker["id"]:
                break
            if message["type"] == "chain.breached":
                heard.append(("breached", data["tier"]["tier"]))
            elif message["type"] == "escalation":
                heard.append(("escalation", data["incident_id"]))
        assert sorted(heard, key=str) == sorted(
            [("breached", 1), ("breached", 2), ("breached", 3), ("escalation", incident["id"])],
            key=str,
        ), (n, heard)
        await console.close()


async def test_a_server_killed_as_a_deadline_falls_due_breaches_once_at_it_after_restart(
    clean_database: str, folder: Path, servers: list[ServerProcess]
) -> None:
    """kill -9 as tier 2 falls due, and down across tier 3's deadline: on start each tier is
    breached once, at its deadline, the escalation stays one, and the operators' console,
    resuming where it left off, hears of each breach and the escalation once in all."""
    env = server_env(clean_database, folder, chain_targets="1.5,3,5", escalation_after_s="1")
    server = ServerProcess(env, folder / "server.log")
    servers.append(server)
    town = await build_town(server)
    operator_token = town.operator["Authorization"].removeprefix("Bearer ")
    console = await open_socket(server.ws_url, operator_token)
    body = {"location": {"lon": QINGXI[0], "lat": QINGXI[1]}, "category": "fight"}
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        incident = (await http.post("/api/v1/incidents", json=body, headers=town.operator)).json()
    deadlines = [t(tier["deadline"]) for tier in incident["chain"]]
    heard: list[tuple[str, int | None]] = []

    def take(message: dict[str, Any]) -> None:
        if message["type"] == "chain.breached":
            heard.append(("breached", message["data"]["tier"]["tier"]))
        elif message["type"] == "escalation":
            heard.append(("escalation", None))

    while ("breached", 1) not in heard:
        take(await console.next(10))
    # The kill lands as tier 2 falls due, before, while or after the timer breaches it.
    await asyncio.sleep(max((deadlines[1] - datetime.now(deadlines[1].tzinfo)).total_seconds(), 0))
    server.kill()
    with contextlib.suppress(ConnectionClosed, TimeoutError):
        while True:
            take(await console.next(5))
    await asyncio.sleep(max((deadlines[2] - datetime.now(deadlines[2].tzinfo)).total_seconds(), 0))
    await server.start()

    stored = await once_everything_fell_due(server, town)
    for tier in stored[incident["id"]]["chain"]:
        assert tier["breached_at"] == tier["deadline"], "recorded at the deadline"
    events = await events_of(server, town, incident["id"])
    assert [e["data"]["tier"] for e in events if e["type"] == "breached"] == [1, 2, 3]
    assert [e["type"] for e in events].count("escalated") == 1

    resumed = await open_socket(server.ws_url, operator_token, console.last_seq)
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        marker = (await http.post("/api/v1/incidents", json=body, headers=town.operator)).json()
    while True:
        message = await resumed.next(10)
        data = message.get("data") or {}
        if marker["id"] in (data.get("id"), data.get("incident_id")):
            break
        take(message)
    assert sorted(heard, key=str) == sorted(
        [("escalation", None), ("breached", 1), ("breached", 2), ("breached", 3)], key=str
    ), heard
    await resumed.close()
