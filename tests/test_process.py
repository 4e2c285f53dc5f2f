"""The real server process: the CLI, uvicorn, HTTP and websockets over real sockets, real time."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from fastapi.routing import APIRoute
from websockets.exceptions import ConnectionClosed

from alerts.fanout import asyncpg_connect_args
from dispatch.clock import ManualClock
from dispatch.config import Settings
from dispatch.runtime import MESSAGES_CHANNEL
from tests.conftest import RunningServer, free_port
from tests.incidents.test_hop_locks import accepted
from tests.processes import ServerProcess, cli, server_env
from tests.support import World, get_token, open_socket


@pytest.fixture
def served(clean_database: str, tmp_path: Path) -> Iterator[ServerProcess]:
    env = server_env(clean_database, tmp_path, chain_targets="1.5,2.5,30")
    server = ServerProcess(env, tmp_path / "server.log")
    yield server
    server.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_the_served_process_alerts_measures_and_closes_cleanly(
    served: ServerProcess,
) -> None:
    env = served.env
    await cli(env, "users", "add", "chief", "--role", "admin", stdin="admin-password\n")
    await cli(env, "users", "add", "duty", "--role", "operator", stdin="operator-password\n")
    await served.start()
    async with httpx.AsyncClient(base_url=served.base_url) as client:
        admin = bearer(await get_token(client, "chief", "admin-password"))
        body: dict[str, object] = {
            "name": "三中驻点队",
            "kind": "fixed_post",
            "location": {"lon": 114.159, "lat": 22.847},
        }
        team = (await client.post("/api/v1/teams", json=body, headers=admin)).json()
        body = {
            "name": "巡逻警力",
            "kind": "patrol",
            "radius_m": 3000,
            "location": {"lon": 114.16, "lat": 22.85},
        }
        assert (await client.post("/api/v1/teams", json=body, headers=admin)).is_success
        await cli(
            env,
            "users",
            "add",
            "lead",
            "--role",
            "leader",
            "--team",
            team["id"],
            stdin="leader-password\n",
        )
        leader_token = await get_token(client, "lead", "leader-password")
        operator_token = await get_token(client, "duty", "operator-password")
        phone = await open_socket(served.ws_url, leader_token)
        console = await open_socket(served.ws_url, operator_token)

        body = {"location": {"lon": 114.1591, "lat": 22.8471}, "category": "violence"}
        reply = await client.post("/api/v1/incidents", json=body, headers=bearer(operator_token))
        assert reply.status_code == 201
        incident = reply.json()
        alert = await phone.next()
        assert alert["type"] == "alert" and alert["seq"] == 1
        await phone.ack()
        dispatch_id = alert["data"]["dispatch"]["id"]
        arrived = await client.post(
            f"/api/v1/dispatches/{dispatch_id}/arrive", headers=bearer(leader_token)
        )
        assert arrived.json()["chain"][0]["status"] == "met"

        breach = await console.next_of("chain.breached", timeout=10)
        assert breach["data"]["tier"]["tier"] == 2
        reply = await client.get(
            f"/api/v1/incidents/{incident['id']}", headers=bearer(operator_token)
        )
        after = reply.json()
        assert after["chain"][1]["breached_at"] == after["chain"][1]["deadline"]
        assert after["dispatches"][0]["delivered_at"] is not None

    assert served.process is not None
    served.process.send_signal(signal.SIGTERM)
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await phone.next(10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012, served.output()
    # uvicorn shuts down gracefully, then re-raises the signal it caught.
    assert served.process.wait(15) in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in served.output()
    await asyncio.sleep(0)


async def test_two_workers_on_postgresql_serve_one_town(postgres_only: str, tmp_path: Path) -> None:
    env = server_env(postgres_only, tmp_path)
    await cli(env, "users", "add", "chief", "--role", "admin", stdin="admin-password\n")
    server = ServerProcess(env, tmp_path / "server.log", args=("--workers", "2"))
    await server.start()
    listening = await asyncpg.connect(**asyncpg_connect_args(postgres_only))
    try:
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            admin = bearer(await get_token(client, "chief", "admin-password"))
            site = {"lon": 114.159, "lat": 22.847}
            body = {"name": "三中驻点队", "kind": "fixed_post", "location": site}
            team = (await client.post("/api/v1/teams", json=body, headers=admin)).json()
            body = {"name": "lead", "password": "leader-password", "role": "leader"}
            added = await client.post(
                "/api/v1/users", json={**body, "team_id": team["id"]}, headers=admin
            )
            assert added.status_code == 201, added.text
            phone = await open_socket(
                server.ws_url, await get_token(client, "lead", "leader-password")
            )
        # A new connection for each report: whichever process accepts it, the phone's own
        # process delivers the alert, in order. Until both processes have taken reports (each
        # announces its messages under its own origin), so that some crossed to the phone's.
        origins: set[str] = set()

        def announced(_connection: object, _pid: int, _channel: str, payload: str) -> None:
            origins.add(payload.partition(":")[0])

        await listening.add_listener(MESSAGES_CHANNEL, announced)
        n = 0
        while len(origins) < 2 or n < 6:
            n += 1
            assert n <= 40, f"one process took every report: {origins}"
            async with httpx.AsyncClient(base_url=server.base_url) as client:
                report = {"location": site, "category": "theft", "description": f"第{n}起"}
                reply = await client.post("/api/v1/incidents", json=report, headers=admin)
                assert reply.status_code == 201, reply.text
            alert = await phone.next(10)
            assert (alert["type"], alert["seq"]) == ("alert", n)
            assert alert["data"]["incident"]["description"] == f"第{n}起"
        await phone.close()
    finally:
        await listening.close()
        server.terminate()
        server.stop()
    started = set(re.findall(r"Started server process \[(\d+)\]", server.output()))
    assert len(started) == 2, server.output()


def process_gone(pid: int) -> bool:
    """Whether the process has ended (a zombie its new parent has not reaped has ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


async def started_workers(server: ServerProcess, count: int) -> list[int]:
    """The workers' process ids once each has finished its startup: the server is ready as soon
    as its first worker is, and a second still starting when the supervisor is killed would not
    be the unsupervised worker this means to catch."""
    for _ in range(400):
        output = server.output()
        workers = [int(p) for p in re.findall(r"Started server process \[(\d+)\]", output)]
        if len(workers) == count and output.count("Application startup complete") == count:
            return workers
        await asyncio.sleep(0.05)
    raise AssertionError(server.output())


async def test_workers_stop_when_their_supervisor_is_killed_and_the_server_starts_again(
    postgres_only: str, tmp_path: Path
) -> None:
    """kill -9 of `dispatch serve --workers 2` itself: its workers served on unsupervised,
    holding the port, and the server started again exited with "Address already in use"."""
    env = server_env(postgres_only, tmp_path)
    server = ServerProcess(env, tmp_path / "server.log", args=("--workers", "2"))
    try:
        await server.start()
        workers = await started_workers(server, 2)
        server.kill()
        for _ in range(600):
            if all(process_gone(pid) for pid in workers):
                break
            await asyncio.sleep(0.05)
        assert all(process_gone(pid) for pid in workers), server.output()
        assert "the supervisor (process" in server.output()
        await server.start()
        assert server.process is not None and server.process.poll() is None, server.output()
    finally:
        server.stop()
        for pid in re.findall(r"Started server process \[(\d+)\]", server.output()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)


async def test_a_killed_servers_metrics_directory_is_removed_by_the_next_start_and_no_other(
    postgres_only: str, tmp_path: Path
) -> None:
    """kill -9 of `dispatch serve --workers 2` left its dispatch-metrics-* directory in the
    temporary directory, one more a crash, for good. The next server started on the host
    removes it; a live server's stays, however many servers start beside it."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    env = {**server_env(postgres_only, tmp_path), "TMPDIR": str(temporary)}

    def metrics_directories() -> set[str]:
        return {p.name for p in temporary.iterdir() if p.name.startswith("dispatch-metrics-")}

    live = ServerProcess(env, tmp_path / "live.log", args=("--workers", "2"))
    killed = ServerProcess(env, tmp_path / "killed.log", args=("--workers", "2"))
    again = ServerProcess(env, tmp_path / "again.log")
    try:
        await live.start()
        (lives,) = metrics_directories()
        await killed.start()
        (stale,) = metrics_directories() - {lives}
        killed.kill()
        assert metrics_directories() == {lives, stale}
        await again.start()
        assert metrics_directories() == {lives}
        # With what its workers counted so far.
        assert any(name.endswith(".db") for name in os.listdir(temporary / lives))
        live.terminate()
        assert metrics_directories() == set()
    finally:
        for server in (live, killed, again):
            server.stop()
            if not server.log.exists():
                continue
            for pid in re.findall(r"Started server process \[(\d+)\]", server.output()):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)


def test_several_workers_are_refused_on_sqlite(tmp_path: Path) -> None:
    env = server_env(f"sqlite+aiosqlite:///{tmp_path / 'town.db'}", tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "dispatch", "serve", "--workers", "2"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    # One line, as the other refusals: what is wrong and the setting to change.
    assert done.stderr.splitlines() == [
        "error: --workers above 1 needs PostgreSQL: DISPATCH_DATABASE_URL is a SQLite file"
    ]


async def test_a_second_server_on_the_same_sqlite_file_is_refused(tmp_path: Path) -> None:
    database = tmp_path / "town.db"
    env = server_env(f"sqlite+aiosqlite:///{database}", tmp_path)
    first = ServerProcess(env, tmp_path / "first.log")
    await first.start()
    try:
        second = subprocess.run(
            [sys.executable, "-m", "dispatch", "serve", "--port", str(free_port())],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        assert second.returncode == 1, second.stderr
        assert "another dispatch server is serving" in second.stderr
        assert str(database) in second.stderr
        # kill -9: no shutdown at all, and the lock goes with the process.
        first.kill()
        again = ServerProcess(env, tmp_path / "again.log")
        await again.start()
        assert again.terminate() in (0, -signal.SIGTERM)
        again.stop()
    finally:
        first.stop()


def test_settling_freezes_what_exists_and_collects_young_objects_less_often() -> None:
    # In a process of its own: the collector's settings belong to the whole process.
    probe = (
        "import gc; from dispatch.app import settle_garbage_collector, GC_YOUNG_THRESHOLD; "
        "before = gc.get_freeze_count(); settle_garbage_collector(); "
        "print(before, gc.get_freeze_count() > 1000, gc.get_threshold()[0] == GC_YOUNG_THRESHOLD)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split() == ["0", "True", "True"]


@pytest.mark.parametrize("warm", [True, False])
async def test_a_started_server_built_its_routes_before_the_first_request(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, warm: bool
) -> None:
    """FastAPI builds an included router's request handlers on the first request that reaches
    it; the server builds them all as it starts, so that the first accept does not wait."""
    built: list[str] = []
    handler = APIRoute.get_route_handler

    def building(route: APIRoute) -> object:
        built.append(route.path)
        return handler(route)

    monkeypatch.setattr(APIRoute, "get_route_handler", building)
    server = RunningServer(settings.model_copy(update={"warm_routes": warm}), ManualClock())
    await server.start()
    world = World(server.app, f"http://127.0.0.1:{server.port}", server.clock)
    try:
        at_start = len(built)
        await accepted(world)
        assert (await world.http.get("/api/v1/nowhere")).status_code == 404
    finally:
        await world.close()
        await server.stop()
    if warm:
        assert at_start > 0 and len(built) == at_start
    else:
        # What the setting spares: routes built by the requests, the accept's among them.
        assert "/api/v1/dispatches/{dispatch_id}/accept" in built[at_start:]
