"""The real server process: the CLI, uvicorn, HTTP and websockets over real sockets, real time."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from tests.processes import ServerProcess, cli, server_env
from tests.support import get_token, open_socket


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
    cli(env, "users", "add", "chief", "--role", "admin", stdin="admin-password\n")
    cli(env, "users", "add", "duty", "--role", "operator", stdin="operator-password\n")
    await served.start()
    async with httpx.AsyncClient(base_url=served.base_url) as client:
        admin = bearer(await get_token(client, "chief", "admin-password"))
        body = {
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
        cli(
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
