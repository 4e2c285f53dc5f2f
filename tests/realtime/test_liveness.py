"""Dead sockets are found and dropped; clients far behind are told to resync."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from alerts import store as mailboxes
from alerts.store import Envelope, Outgoing
from dispatch.config import Settings
from tests.conftest import RunningServer
from tests.support import World, assert_let_go, frozen_phone


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"ws_ping_interval_s": 0.3, "ws_ping_timeout_s": 0.3})


async def test_a_socket_that_stops_answering_pings_is_dropped(world: World) -> None:
    operator = await world.operator()
    socket = await world.connect(operator)
    assert world.runtime.hub.is_connected(operator.id)
    # The phone went into a lift: nothing it sends or answers reaches the server any more.
    socket.connection.transport.pause_reading()
    for _ in range(100):
        if not world.runtime.hub.is_connected(operator.id):
            break
        await asyncio.sleep(0.05)
    assert not world.runtime.hub.is_connected(operator.id)


@dataclass
class FrameWatcher:
    """A client that sees every frame the server sends, the protocol's pings too (a client
    library answers those unseen); it answers them as any client does."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    protocol: ClientProtocol
    frames: list[Frame] = field(default_factory=list)

    @classmethod
    async def open(cls, ws_url: str, token: str) -> FrameWatcher:
        uri = parse_uri(ws_url)
        reader, writer = await asyncio.open_connection(uri.host, uri.port)
        watcher = cls(reader, writer, ClientProtocol(uri))
        watcher.protocol.send_request(watcher.protocol.connect())
        await watcher.flush()
        while watcher.protocol.state is not State.OPEN:
            await watcher.read(timeout_s=5)
        await watcher.send({"type": "hello", "token": token})
        return watcher

    async def flush(self) -> None:
        for data in self.protocol.data_to_send():
            self.writer.write(data)
        await self.writer.drain()

    async def send(self, frame: dict[str, str]) -> None:
        self.protocol.send_text(json.dumps(frame).encode())
        await self.flush()

    async def read(self, timeout_s: float) -> None:
        try:
            data = await asyncio.wait_for(self.reader.read(65536), timeout_s)
        except TimeoutError:
            return
        self.protocol.receive_data(data)
        self.frames += [e for e in self.protocol.events_received() if isinstance(e, Frame)]
        await self.flush()  # the pong to a ping

    async def watch(self, seconds: float, ping_every_s: float | None = None) -> None:
        loop = asyncio.get_running_loop()
        until = next_ping = loop.time() + seconds
        if ping_every_s is not None:
            next_ping = loop.time()
        while (now := loop.time()) < until:
            if now >= next_ping and ping_every_s is not None:
                await self.send({"type": "ping"})
                next_ping = now + ping_every_s
            await self.read(min(until, next_ping) - now)

    def count(self, opcode: Opcode, kind: str | None = None) -> int:
        return sum(
            1
            for frame in self.frames
            if frame.opcode is opcode and (kind is None or json.loads(frame.data)["type"] == kind)
        )

    def close(self) -> None:
        self.writer.close()


async def test_a_quiet_client_is_pinged_and_kept_while_it_answers(world: World) -> None:
    operator = await world.operator()
    watcher = await FrameWatcher.open(world.ws_url, operator.token)
    await watcher.watch(seconds=1.5)
    assert watcher.count(Opcode.TEXT, "welcome") == 1
    # After each 0.3 s of silence (the test's interval), and answered each time.
    assert watcher.count(Opcode.PING) >= 2
    assert world.runtime.hub.is_connected(operator.id)
    watcher.close()


async def test_a_client_that_pings_itself_is_not_pinged_by_the_server(world: World) -> None:
    # As the pages do: their own ping after a quiet spell, shorter than the server's interval.
    operator = await world.operator()
    watcher = await FrameWatcher.open(world.ws_url, operator.token)
    await watcher.watch(seconds=1.5, ping_every_s=0.1)
    assert watcher.count(Opcode.TEXT, "pong") >= 5
    assert watcher.count(Opcode.PING) == 0
    assert world.runtime.hub.is_connected(operator.id)
    # Gone quiet, it is pinged again.
    await watcher.watch(seconds=1.0)
    assert watcher.count(Opcode.PING) >= 1
    watcher.close()


async def test_messages_are_replayed_within_retention_and_resync_beyond(world: World) -> None:
    leader = await world.leader(await world.team())
    async with world.runtime.transaction() as session:
        old = [Outgoing(leader.id, "incident.updated", {"n": n}) for n in range(3)]
        await mailboxes.enqueue(session, old, now=world.clock.now())
    world.clock.advance(timedelta(days=6, hours=23).total_seconds())
    async with world.runtime.transaction() as session:
        await mailboxes.enqueue(
            session, [Outgoing(leader.id, "incident.updated", {"n": 3})], now=world.clock.now()
        )
        # The retention sweep keeps seven days.
        await mailboxes.purge_before(session, world.clock.now() - timedelta(days=7))
    leader = await world.relogin(leader)
    socket = await world.connect(leader, resume_from=1)
    assert [(await socket.next())["data"]["n"] for _ in range(3)] == [1, 2, 3]
    await socket.close()

    world.clock.advance(timedelta(days=1).total_seconds())
    async with world.runtime.transaction() as session:
        await mailboxes.purge_before(session, world.clock.now() - timedelta(days=7))
    leader = await world.relogin(leader)
    socket = await world.connect(leader, resume_from=1)
    resync = json.loads(await socket.connection.recv())
    assert resync["type"] == "resync"
    assert "retention" in resync["data"]["reason"]
    assert await socket.silent()
    await socket.close()


async def test_a_message_purged_between_two_kept_ones_is_a_resync_not_a_silent_gap(
    world: World,
) -> None:
    leader = await world.leader(await world.team())
    now = world.clock.now()
    # The purge deletes by time, and a message's clock can read a little earlier than the one
    # before it (two processes, one mailbox): the cutoff can fall between them.
    for n, at in enumerate([now, now - timedelta(milliseconds=2), now]):
        async with world.runtime.transaction() as session:
            await mailboxes.enqueue(
                session, [Outgoing(leader.id, "incident.updated", {"n": n})], now=at
            )
    async with world.runtime.transaction() as session:
        assert await mailboxes.purge_before(session, now - timedelta(milliseconds=1)) == 1

    socket = await world.connect(leader, resume_from=0)
    first = await socket.next()
    assert first["data"]["n"] == 0
    resync = await socket.next()
    assert resync["type"] == "resync" and resync["seq"] == first["seq"] + 1
    assert "retention" in resync["data"]["reason"]
    assert (await socket.next())["data"]["n"] == 2
    await socket.close()


async def test_a_client_that_stops_reading_with_alerts_still_unsent_is_let_go_by_the_keepalive(
    world: World, server: RunningServer
) -> None:
    """A phone frozen with its connection up (its system still acknowledges the packets, its
    window shut): the keepalive gave up on it, but the server's close waited for the unsent
    alerts to drain, which never happened. The leader stayed connected in the hub (reachable,
    said the console) and the connection held its buffers until queue_size more messages
    came to his mailbox, months for a leader."""
    leader = await world.leader(await world.team())
    async with frozen_phone(world, leader.token):
        # Far fewer than the hub's queue holds: the socket is not cut as a slow consumer.
        async with world.runtime.transaction() as session:
            pad = "x" * 1_000_000
            burst = [Outgoing(leader.id, "incident.updated", {"pad": pad}) for _ in range(6)]
            await mailboxes.enqueue(session, burst, now=world.clock.now())
        await assert_let_go(world, server, leader.id)
        assert world.runtime.hub.count_by_label() == {}


async def test_an_alert_for_a_client_the_keepalive_just_gave_up_on_is_no_server_error(
    world: World, server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    """An alert the socket's sender took up as the keepalive gave up on the phone: uvicorn had
    sent its close and the connection was not lost yet, so the write failed as a fault of the
    server, "websocket session failed" at ERROR with a traceback, a few times in every
    thousand phones that vanish. The phone is gone, and the socket ends as for any other."""
    caplog.set_level(logging.WARNING, logger="alerts.socket")
    leader = await world.leader(await world.team())
    phone = await world.connect(leader)
    (connection,) = [
        c for c in server.server.server_state.connections if "WebSocket" in type(c).__name__
    ]
    world.runtime.hub.publish([Envelope(leader.id, 1, "incident.updated", {"n": 1})])
    # The keepalive's timer, run by hand at the moment between the publish and the write.
    connection.keepalive_timeout()
    for _ in range(100):
        if not world.runtime.hub.is_connected(leader.id):
            break
        await asyncio.sleep(0.05)
    assert not world.runtime.hub.is_connected(leader.id)
    assert not [r.getMessage() for r in caplog.records if r.name == "alerts.socket"]
    await phone.connection.close()
