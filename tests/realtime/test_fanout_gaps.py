"""What another process announces while a server's fan-out listener is off the database
(PostgreSQL, two servers on one database), cut off with PostgreSQL's own tools: new
connections to the database are refused (ALLOW_CONNECTIONS false) and the listener's backend
is ended (pg_terminate_backend). The pools' open connections go on serving."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
from sqlalchemy.engine import make_url
from websockets.exceptions import ConnectionClosed

from alerts.fanout import APPLICATION_NAME
from dispatch.clock import ManualClock
from dispatch.realtime import ACCOUNT_DISABLED
from tests.conftest import RunningServer, clock_start, pg_admin, server_settings
from tests.support import Socket, World


async def listening_backends(database_url: str) -> set[int]:
    name = make_url(database_url).database
    async with pg_admin() as admin:
        rows = await admin.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = $2",
            name,
            APPLICATION_NAME,
        )
    return {row["pid"] for row in rows}


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.02)


class Pair:
    """Two servers on one database, and each one's LISTEN backend."""

    def __init__(self, database_url: str) -> None:
        self.url = database_url
        self.clock = ManualClock(clock_start())
        settings = server_settings(database_url)
        self.servers = [RunningServer(settings, self.clock), RunningServer(settings, self.clock)]
        self.worlds: list[World] = []
        self.listeners: list[int] = []

    async def start(self) -> None:
        seen: set[int] = set()
        for server in self.servers:
            await server.start()
            new: set[int] = set()
            for _ in range(100):
                new = await listening_backends(self.url) - seen
                if new:
                    break
                await asyncio.sleep(0.05)
            assert len(new) == 1, new
            self.listeners.append(new.pop())
            seen.add(self.listeners[-1])
            self.worlds.append(World(server.app, f"http://127.0.0.1:{server.port}", self.clock))

    async def stop(self) -> None:
        for world in self.worlds:
            await world.close()
        for server in self.servers:
            await server.stop()

    @asynccontextmanager
    async def listener_cut(self, index: int) -> AsyncIterator[None]:
        """Server ``index``'s listener is off the database inside the block, and reconnects
        (by itself) after it."""
        name = make_url(self.url).database
        world = self.worlds[index]
        fanout = world.runtime.fanout
        assert fanout is not None
        async with pg_admin() as admin:
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            try:
                await admin.execute("SELECT pg_terminate_backend($1)", self.listeners[index])
                await until(lambda: not fanout.connected)
                yield
            finally:
                await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await until(lambda: fanout.connected, timeout=20)
        new = await listening_backends(self.url) - set(self.listeners)
        if new:
            self.listeners[index] = new.pop()


@pytest.fixture
async def pair(postgres_only: str) -> AsyncIterator[Pair]:
    servers = Pair(postgres_only)
    await servers.start()
    yield servers
    await servers.stop()


async def closed_with(socket: Socket, timeout: float) -> int | None:
    try:
        while True:
            await socket.next(timeout)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None


async def test_alerts_announced_while_the_listener_was_away_arrive_in_order_once(
    pair: Pair,
) -> None:
    a, b = pair.worlds
    team = await a.team()
    leader = await a.leader(team)
    operator = await a.operator()
    phone = await b.connect(leader)
    async with pair.listener_cut(1):
        first = await a.report(operator)
        second = await a.report(operator, category="violence")
        assert await phone.silent(0.5)
    alerts = [await phone.next_of("alert", timeout=10), await phone.next_of("alert", timeout=10)]
    assert [m["data"]["incident"]["id"] for m in alerts] == [first["id"], second["id"]]
    # Live again, and nothing twice.
    third = await a.report(operator)
    alert = await phone.next_of("alert", timeout=10)
    assert alert["data"]["incident"]["id"] == third["id"]
    seqs = [m["seq"] for m in phone.received if m["type"] not in ("welcome", "resync", "pong")]
    assert seqs == sorted(set(seqs))
    await phone.close()


async def test_a_leader_disabled_while_the_listener_was_away_is_closed_once_it_is_back(
    pair: Pair,
) -> None:
    """The announcement B missed is made up for as when it arrives (delivery.md 6): the
    reconnect has every socket judged again, rather than the leader's idle phone staying open
    on B until its token expired, 12 h later."""
    a, b = pair.worlds
    team = await a.team()
    leader = await a.leader(team)
    admin = await a.admin()
    phone = await b.connect(leader)
    async with pair.listener_cut(1):
        reply = await a.http.patch(
            f"/api/v1/users/{leader.id}", json={"disabled": True}, headers=admin.headers
        )
        assert reply.status_code == 200, reply.text
    assert await closed_with(phone, 10) == ACCOUNT_DISABLED
    assert not b.runtime.hub.is_connected(leader.id)
