"""The websocket: Origin checked before accepting, the token only in the first frame, no
compression, frame floods closed, and the production server's own settings."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from dispatch.config import Settings
from dispatch.security.origins import origin_allowed
from tests.processes import ServerProcess, cli, server_env
from tests.support import World, open_socket


async def hello(world: World, token: str, origin: str | None) -> str:
    async with connect(world.ws_url, compression=None, origin=origin) as ws:
        await ws.send(json.dumps({"type": "hello", "token": token, "resume_from": 0}))
        return str(json.loads(await asyncio.wait_for(ws.recv(), 5))["type"])


async def test_pages_of_other_sites_cannot_open_the_socket(world: World) -> None:
    operator = await world.operator()
    own = world.base_url
    assert await hello(world, operator.token, own) == "welcome"
    assert await hello(world, operator.token, None) == "welcome"
    for foreign in ("http://evil.example", "null", own.replace("127.0.0.1", "localhost")):
        with pytest.raises(InvalidStatus) as refused:
            await hello(world, operator.token, foreign)
        assert refused.value.response.status_code == 403, foreign
    # Another origin is allowed only when listed.
    world.runtime.settings.ws_allowed_origins = ("https://console.example.gov.cn",)
    assert await hello(world, operator.token, "https://console.example.gov.cn") == "welcome"


def test_same_origin_is_judged_by_host_and_port() -> None:
    assert origin_allowed("https://dispatch.example", "dispatch.example", ())
    assert origin_allowed("https://dispatch.example", "dispatch.example:443", ())
    assert origin_allowed("http://[::1]:8000", "[::1]:8000", ())
    assert not origin_allowed("https://dispatch.example", "dispatch.example:8443", ())
    assert not origin_allowed("https://dispatch.example.evil", "dispatch.example", ())
    assert not origin_allowed("ftp://dispatch.example", "dispatch.example", ())
    assert not origin_allowed("https://dispatch.example", None, ())
    assert not origin_allowed("https://x:notaport", "x", ())


async def test_a_token_in_the_url_opens_nothing(world: World) -> None:
    operator = await world.operator()
    async with connect(f"{world.ws_url}?token={operator.token}", compression=None) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    assert closed.value.rcvd.reason == "no hello within the time allowed"


@pytest.mark.parametrize("kind", ["ack", "ping"])
async def test_a_socket_that_floods_frames_is_closed_and_others_go_on(
    world: World, kind: str
) -> None:
    world.runtime.settings.ws_frame_burst = 20
    world.runtime.settings.ws_frames_per_s = 1
    team = await world.team()
    leader = await world.leader(team)
    flooder = await world.operator()
    flood = await world.connect(flooder)
    phone = await world.connect(leader)
    for n in range(100):
        try:
            await flood.connection.send(json.dumps({"type": kind, "seq": n}))
        except ConnectionClosed:
            break
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(flood.connection.recv(), 5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    assert closed.value.rcvd.reason == "too many frames: slow down and reconnect"
    incident = await world.report(await world.operator())
    alert = await phone.next_of("alert")
    assert alert["data"]["incident"]["id"] == incident["id"]
    await phone.close()


async def test_seqs_past_what_a_mailbox_holds_close_the_socket_and_poison_no_acknowledgements(
    world: World,
) -> None:
    team = await world.team()
    leader = await world.leader(team)
    async with connect(world.ws_url, compression=None) as ws:
        hello = {"type": "hello", "token": leader.token, "resume_from": 2**31}
        await ws.send(json.dumps(hello))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    assert closed.value.rcvd.reason == "hello.resume_from must be a whole number from 0 to 2^31-1"
    bad = await world.connect(leader)
    await bad.connection.send(json.dumps({"type": "ack", "seq": 10**30}))
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(bad.connection.recv(), 5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    assert closed.value.rcvd.reason == "ack.seq must be a whole number from 0 to 2^31-1"
    # The phone's next connection gets its alert, and its ack is on record.
    phone = await world.connect(leader)
    incident = await world.report(await world.operator())
    alert = await phone.next_of("alert")
    await phone.ack(alert["seq"])
    found = await world.wait_for(
        leader, incident["id"], lambda i: i["dispatches"][0]["delivered_at"] is not None
    )
    assert found["dispatches"][0]["shown_at"] is None, "delivered by the ack alone"
    await phone.close()


def test_the_defaults_are_the_safe_ones() -> None:
    settings = Settings()
    assert settings.ws_hello_timeout_s == 5.0
    assert settings.ws_max_frame_bytes == 64 * 1024
    assert settings.ws_allowed_origins == ()


async def test_the_served_process_caps_frames_refuses_compression_and_keeps_its_secret(
    tmp_path: Path, database_url: str, clean_database: str
) -> None:
    env = server_env(clean_database, tmp_path)
    await cli(env, "users", "add", "duty", "--role", "operator", stdin="long-password\n")
    server = ServerProcess(env, tmp_path / "server.log")
    await server.start()
    try:
        secret_file = tmp_path / "secret.key"
        assert secret_file.stat().st_mode & 0o777 == 0o600
        secret = secret_file.read_text().strip()
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            reply = await http.post(
                "/api/v1/auth/token", data={"username": "duty", "password": "long-password"}
            )
            token = reply.json()["access_token"]
        async with connect(server.ws_url, compression="deflate") as ws:
            assert ws.response is not None
            assert "Sec-WebSocket-Extensions" not in ws.response.headers
        socket = await open_socket(server.ws_url, token)
        await socket.connection.send(json.dumps({"type": "ack", "seq": 1, "pad": "x" * 70_000}))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(socket.connection.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    finally:
        server.terminate()
    assert secret not in server.output()
    # Kept across restarts: the same file, the same secret, tokens still good.
    server = ServerProcess(env, tmp_path / "again.log")
    await server.start()
    try:
        assert (tmp_path / "secret.key").read_text().strip() == secret
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            me = await http.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
            assert me.status_code == 200
    finally:
        server.terminate()
