"""The real server process: the CLI, uvicorn, HTTP and websockets over real sockets, real time."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import free_port


def cli(env: dict[str, str], *args: str, stdin: str = "") -> str:
    done = subprocess.run(
        [sys.executable, "-m", "dispatch", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture
async def process_env(clean_database: str, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DISPATCH_DATABASE_URL": clean_database,
        "DISPATCH_CHAIN_TARGETS": "1.5,2.5,30",
        "DISPATCH_SECRET_FILE": str(tmp_path / "secret.key"),
        "DISPATCH_TIMER_POLL_S": "0.2",
    }


@pytest.fixture
async def served(process_env: dict[str, str]) -> AsyncIterator[tuple[str, subprocess.Popen[str]]]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "dispatch", "serve", "--port", str(port)],
        env=process_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base) as client:
        for _ in range(300):
            try:
                if (await client.get("/readyz")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            await asyncio.sleep(0.05)
    yield base, process
    if process.poll() is None:
        process.kill()
    process.wait(10)


async def token(client: httpx.AsyncClient, name: str, password: str) -> dict[str, str]:
    reply = await client.post("/api/v1/auth/token", data={"username": name, "password": password})
    assert reply.status_code == 200, reply.text
    return {"Authorization": f"Bearer {reply.json()['access_token']}"}


async def test_the_served_process_alerts_measures_and_closes_cleanly(
    process_env: dict[str, str], served: tuple[str, subprocess.Popen[str]]
) -> None:
    base, process = served
    cli(process_env, "users", "add", "chief", "--role", "admin", stdin="admin-password\n")
    cli(process_env, "users", "add", "duty", "--role", "operator", stdin="operator-password\n")
    async with httpx.AsyncClient(base_url=base) as client:
        admin = await token(client, "chief", "admin-password")
        team_body = {
            "name": "三中驻点队",
            "kind": "fixed_post",
            "location": {"lon": 114.159, "lat": 22.847},
        }
        team = (await client.post("/api/v1/teams", json=team_body, headers=admin)).json()
        patrol_body = {
            "name": "巡逻警力",
            "kind": "patrol",
            "radius_m": 3000,
            "location": {"lon": 114.16, "lat": 22.85},
        }
        assert (await client.post("/api/v1/teams", json=patrol_body, headers=admin)).is_success
        cli(
            process_env,
            "users",
            "add",
            "lead",
            "--role",
            "leader",
            "--team",
            team["id"],
            stdin="leader-password\n",
        )
        leader = await token(client, "lead", "leader-password")
        operator = await token(client, "duty", "operator-password")

        ws_url = base.replace("http", "ws") + "/ws"
        phone = await connect(ws_url, compression=None)
        await phone.send(
            json.dumps({"type": "hello", "token": leader["Authorization"][7:], "resume_from": 0})
        )
        assert json.loads(await phone.recv())["type"] == "welcome"
        console = await connect(ws_url, compression=None)
        await console.send(
            json.dumps({"type": "hello", "token": operator["Authorization"][7:], "resume_from": 0})
        )
        assert json.loads(await console.recv())["type"] == "welcome"

        body = {"location": {"lon": 114.1591, "lat": 22.8471}, "category": "violence"}
        reply = await client.post("/api/v1/incidents", json=body, headers=operator)
        assert reply.status_code == 201
        incident = reply.json()
        alert = json.loads(await asyncio.wait_for(phone.recv(), 5))
        assert alert["type"] == "alert" and alert["seq"] == 1
        await phone.send(json.dumps({"type": "ack", "seq": 1}))
        dispatch_id = alert["data"]["dispatch"]["id"]
        arrived = await client.post(f"/api/v1/dispatches/{dispatch_id}/arrive", headers=leader)
        assert arrived.json()["chain"][0]["status"] == "met"

        breach = None
        while breach is None:
            message = json.loads(await asyncio.wait_for(console.recv(), 10))
            if message["type"] == "chain.breached":
                breach = message
        assert breach["data"]["tier"]["tier"] == 2
        after = (await client.get(f"/api/v1/incidents/{incident['id']}", headers=operator)).json()
        assert after["chain"][1]["breached_at"] == after["chain"][1]["deadline"]
        assert after["dispatches"][0]["delivered_at"] is not None

        process.send_signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(phone.recv(), 10)
        output_so_far = ""
        if closed.value.rcvd is None or closed.value.rcvd.code != 1012:
            process.wait(15)
            output_so_far = process.stdout.read() if process.stdout else ""
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012, output_so_far
        # uvicorn shuts down gracefully, then re-raises the signal it caught.
        assert process.wait(15) in (0, -signal.SIGTERM)
        output = process.stdout.read() if process.stdout else ""
        assert "Application shutdown complete" in output, output
