"""Dead sockets are found and dropped; clients far behind are told to resync."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest

from alerts import store as mailboxes
from alerts.store import Outgoing
from dispatch.config import Settings
from tests.support import World


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
