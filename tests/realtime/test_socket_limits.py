"""What a socket may claim and what ends it: seqs a mailbox can hold, acks of what it was sent,
access that ends while it is open, a client that stops reading, frames no client sends."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from datetime import datetime

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from alerts import store as mailboxes
from alerts.acks import Acked, AckRecorder
from alerts.store import Outgoing
from dispatch.auth.models import User
from dispatch.clock import ManualClock
from dispatch.config import Settings
from dispatch.db import create_engine
from dispatch.realtime import (
    ACCOUNT_DISABLED,
    ACCOUNT_DISABLED_REASON,
    LOGGED_OUT,
    PASSWORD_RESET,
    PASSWORD_RESET_REASON,
    record_acknowledged,
)
from tests.conftest import RunningServer, world_serving
from tests.realtime.test_acks import acked_marks, delivered, recorder
from tests.support import (
    Account,
    Socket,
    World,
    assert_let_go,
    frozen_phone,
    open_websockets,
    the_websocket,
)

BEYOND_INT4 = 2**31


async def drained(socket: Socket) -> int:
    """The last seq of what the socket was sent, once nothing more comes."""
    with pytest.raises(TimeoutError):
        while True:
            await socket.next(0.3)
    return socket.last_seq


async def acked_mark_moved(world: World, user_id: str, before: int | None) -> int | None:
    """The user's acked seq once an ack has moved it from ``before``: the server writes acks in
    batches, a while after they come (a long while on a loaded box)."""
    deadline = asyncio.get_running_loop().time() + 20
    while (mark := (await acked_marks(world, [user_id])).get(user_id)) == before:
        assert asyncio.get_running_loop().time() < deadline, "the ack was never written"
        await asyncio.sleep(0.02)
    return mark


async def closed_with(socket: Socket, timeout: float = 5.0) -> tuple[int, str]:
    """Read until the server closes the socket; its code and reason."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await socket.next(timeout)
    assert closed.value.rcvd is not None, closed.value
    return closed.value.rcvd.code, closed.value.rcvd.reason


async def test_seqs_past_what_a_mailbox_column_holds_are_refused_naming_the_field(
    world: World,
) -> None:
    leader = await world.leader(await world.team())
    phone = await world.connect(leader)
    await phone.connection.send(json.dumps({"type": "ack", "seq": BEYOND_INT4}))
    code, reason = await closed_with(phone)
    assert (code, "ack.seq" in reason, "2^31-1" in reason) == (1008, True, True)
    for resume_from in (str(BEYOND_INT4), "9" * 5000):
        async with connect(world.ws_url, compression=None) as ws:
            hello = f'{{"type": "hello", "token": "{leader.token}", "resume_from": {resume_from}}}'
            await ws.send(hello)
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1008 and "resume_from" in closed.value.rcvd.reason
    # A 5000-digit ack is a bad seq too (1008), not a malformed frame (1007).
    phone = await world.connect(leader)
    await phone.connection.send('{"type": "ack", "seq": ' + "9" * 5000 + "}")
    code, reason = await closed_with(phone)
    assert code == 1008 and "ack.seq" in reason


async def test_an_ack_the_database_refuses_drops_alone_and_later_acks_are_recorded(
    world: World,
) -> None:
    team, other = await world.team(), await world.team()
    leader, colleague = await world.leader(team), await world.leader(other)
    operator = await world.operator()
    incident = await world.report(operator)
    acks = recorder(world)
    # Past what PostgreSQL's integer column takes: refused there, for what it holds.
    acks.submit(leader.id, BEYOND_INT4, world.clock.now())
    acks.submit(colleague.id, 1, world.clock.now())
    assert await acks.flush()
    assert (await delivered(world, incident["id"]))[other["id"]] is not None
    # Nothing is left to poison what comes after it.
    world.clock.advance(1)
    acks.submit(leader.id, 1, world.clock.now())
    assert await acks.flush()
    assert (await delivered(world, incident["id"]))[team["id"]] is not None
    assert await acked_marks(world, [leader.id, colleague.id]) == {leader.id: 1, colleague.id: 1}


async def test_an_ack_past_what_the_socket_was_sent_does_not_hide_later_acks(
    world: World,
) -> None:
    team = await world.team()
    leader = await world.leader(team)
    operator = await world.operator()
    phone = await world.connect(leader)
    await world.report(operator)
    await phone.next_of("alert")
    sent = await drained(phone)
    before = (await acked_marks(world, [leader.id]))[leader.id]
    await phone.ack(sent + 10)
    assert await acked_mark_moved(world, leader.id, before) == sent
    second_incident = await world.report(operator)
    second = await phone.next_of("alert")
    world.clock.advance(2)
    acked_at = world.clock.now()
    await phone.ack(second["seq"])
    after = await world.wait_for(
        operator,
        second_incident["id"],
        lambda i: i["dispatches"][0]["delivered_at"] is not None,
    )
    assert datetime.fromisoformat(after["dispatches"][0]["delivered_at"]) == acked_at
    await phone.close()


async def test_an_ack_covers_only_what_was_sent_on_its_socket(world: World) -> None:
    team = await world.team()
    leader = await world.leader(team)
    operator = await world.operator()
    phone = await world.connect(leader)
    await world.report(operator)
    await phone.next_of("alert")
    sent = await drained(phone)
    # A message stored but not yet sent on this socket (its process has not heard of it).
    async with world.runtime.sessionmaker() as session:
        later = Outgoing(leader.id, "incident.updated", {"unsent": True})
        await mailboxes.enqueue(session, [later], now=world.clock.now())
        await session.commit()
    before = (await acked_marks(world, [leader.id]))[leader.id]
    await phone.ack(sent + 1)
    assert await acked_mark_moved(world, leader.id, before) == sent
    await phone.close()


async def test_a_disabled_operator_is_sent_nothing_more_and_told_the_account_was_disabled(
    world: World,
) -> None:
    operator, colleague = await world.operator(), await world.operator()
    admin = await world.admin()
    console = await world.connect(operator)
    reply = await world.http.patch(
        f"/api/v1/users/{operator.id}", json={"disabled": True}, headers=admin.headers
    )
    assert reply.status_code == 200, reply.text
    # At once, on SQLite too: the change itself has this process's sockets judged again once
    # it commits, not the next message (PostgreSQL's other processes hear its announcement).
    assert await closed_with(console, 10) == (ACCOUNT_DISABLED, ACCOUNT_DISABLED_REASON)
    await world.report(colleague)
    assert not [m for m in console.received if m["type"] == "incident.updated"]


async def test_a_disabled_leaders_open_socket_is_closed_at_once_and_leaves_the_hub(
    world: World,
) -> None:
    team = await world.team()
    leader = await world.leader(team)
    admin = await world.admin()
    phone = await world.connect(leader)
    reply = await world.http.patch(
        f"/api/v1/users/{leader.id}", json={"disabled": True}, headers=admin.headers
    )
    assert reply.status_code == 200, reply.text
    # No message comes meanwhile to make the socket look at its token again.
    assert await closed_with(phone, 10) == (ACCOUNT_DISABLED, ACCOUNT_DISABLED_REASON)
    for _ in range(250):
        if not world.runtime.hub.is_connected(leader.id):
            break
        await asyncio.sleep(0.02)
    assert not world.runtime.hub.is_connected(leader.id)


async def test_a_leader_whose_password_is_reset_is_told_so_on_his_open_socket(
    world: World,
) -> None:
    """The admin resets a leader's password: the phone's socket is closed at once saying so
    (4003), so that the page asks for the new password rather than say the login expired. A
    disabling and a reset at once say the account is disabled: a new password lets no one in."""
    admin = await world.admin()
    leader = await world.leader(await world.team())
    phone = await world.connect(leader)
    url = f"/api/v1/users/{leader.id}"
    reply = await world.http.patch(
        url, json={"password": "a-new-long-password"}, headers=admin.headers
    )
    assert reply.status_code == 200, reply.text
    assert await closed_with(phone, 10) == (PASSWORD_RESET, PASSWORD_RESET_REASON)

    renewed = Account(**{**leader.__dict__, "password": "a-new-long-password"})
    again = await world.connect(await world.relogin(renewed))
    body = {"password": "another-long-password", "disabled": True}
    assert (await world.http.patch(url, json=body, headers=admin.headers)).is_success
    assert await closed_with(again, 10) == (ACCOUNT_DISABLED, ACCOUNT_DISABLED_REASON)


CACHE_S = 0.5


@pytest.fixture
async def short_cache_world(settings: Settings, clock: ManualClock) -> AsyncIterator[World]:
    short = settings.model_copy(update={"principal_cache_s": CACHE_S})
    async with world_serving(short, clock) as world:
        yield world


async def test_an_operator_disabled_in_the_database_stops_reading_the_board_as_rest_stops(
    short_cache_world: World, settings: Settings
) -> None:
    """A change made directly in the database is seen within DISPATCH_PRINCIPAL_CACHE_S
    (docs/security.md). The open console used to look at the rows again only when an API
    change moved the token cache's generation, and went on receiving the board (every
    incident's news) until its token expired, 12 h on."""
    world = short_cache_world
    await world.team()
    disabled, colleague = await world.operator(), await world.operator()
    console = await world.connect(disabled)
    assert (await world.http.get("/api/v1/auth/me", headers=disabled.headers)).status_code == 200
    engine = create_engine(settings.database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                update(User).where(User.id == disabled.id).values(disabled=True)
            )
    finally:
        await engine.dispose()
    await asyncio.sleep(CACHE_S + 0.3)
    assert (await world.http.get("/api/v1/auth/me", headers=disabled.headers)).status_code == 401
    await world.report(colleague)
    assert await closed_with(console) == (ACCOUNT_DISABLED, ACCOUNT_DISABLED_REASON)
    # The read runs beside the sender, so that no alert waits on it: the message that set it
    # off may have gone out, nothing after it.
    updates = [m for m in console.received if m["type"] == "incident.updated"]
    assert len(updates) <= 1


async def test_logging_out_closes_that_tokens_socket_only(world: World) -> None:
    team = await world.team()
    leader = await world.leader(team)
    other_device = await world.relogin(leader)
    operator = await world.operator()
    phone, tablet = await world.connect(leader), await world.connect(other_device)
    reply = await world.http.post("/api/v1/auth/logout", headers=leader.headers)
    assert reply.status_code == 204, reply.text
    # Closed at once, before any message would make it look at its token again.
    code, reason = await closed_with(phone, 10)
    assert (code, reason) == (LOGGED_OUT, "logged out: this login was ended; log in again")
    incident = await world.report(operator)
    alert = await tablet.next_of("alert")
    assert alert["data"]["incident"]["id"] == incident["id"]
    await tablet.close()


async def test_a_socket_whose_token_expired_is_sent_nothing_more(world: World) -> None:
    team = await world.team()
    leader = await world.leader(team)
    operator = await world.operator()
    phone = await world.connect(leader)
    world.clock.advance(world.runtime.settings.token_ttl_s + 1)
    fresh = await world.relogin(operator)
    await world.report(fresh)
    code, reason = await closed_with(phone)
    assert code == 1008 and "expired" in reason
    assert not [m for m in phone.received if m["type"] == "alert"]


async def test_a_client_that_stops_reading_is_let_go_at_once(
    world: World, server: RunningServer
) -> None:
    leader = await world.leader(await world.team())
    world.runtime.hub.queue_size = 3
    # Cut by the server, the client never reads the end of its stream (it stopped reading):
    # leaving the block would otherwise wait out its own close handshake (10 s by default).
    async with connect(world.ws_url, compression=None, max_queue=1, close_timeout=0.1) as ws:
        await ws.send(json.dumps({"type": "hello", "token": leader.token, "resume_from": 0}))
        await asyncio.wait_for(ws.recv(), 5)
        # Never read again: the server's writes fill every buffer on the way, then its queue.
        for _ in range(40):
            async with world.runtime.transaction() as session:
                pad = "x" * 400_000
                burst = [Outgoing(leader.id, "incident.updated", {"pad": pad}) for _ in range(2)]
                await mailboxes.enqueue(session, burst, now=world.clock.now())
            await asyncio.sleep(0.02)
            if not world.runtime.hub.is_connected(leader.id):
                break
        assert not world.runtime.hub.is_connected(leader.id)
        # And its connection is cut rather than left to the keepalive (40 s).
        for _ in range(50):
            if open_websockets(server) == 0:
                break
            await asyncio.sleep(0.1)
        assert open_websockets(server) == 0
    world.runtime.hub.queue_size = 1000


async def test_frames_nested_past_the_parsers_depth_close_with_1007(world: World) -> None:
    async with connect(world.ws_url, compression=None) as ws:
        await ws.send("[" * 30000)
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1007


async def test_acks_being_written_when_the_server_stops_are_written_by_its_last_flush(
    world: World,
) -> None:
    team = await world.team()
    leader = await world.leader(team)
    incident = await world.report(await world.operator())
    runtime = world.runtime
    writing = asyncio.Event()

    async def stopped_mid_write_once(session: AsyncSession, acked: Sequence[Acked]) -> None:
        if not writing.is_set():
            writing.set()
            await asyncio.sleep(10)
        await record_acknowledged(runtime, session, acked)

    acks = AckRecorder(runtime.transaction, stopped_mid_write_once)
    acks.submit(leader.id, 1, world.clock.now())
    flushing = asyncio.create_task(acks.flush())
    await writing.wait()
    # The lifespan cancels the recorder's task, then flushes what is left.
    flushing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await flushing
    assert await acks.flush()
    assert (await delivered(world, incident["id"]))[team["id"]] == world.clock.now()


async def test_a_frozen_phone_logged_out_is_let_go_once_its_close_goes_unanswered(
    world: World, server: RunningServer
) -> None:
    """A phone frozen with its connection up (its system still acknowledges the packets, its
    window shut), with alerts still unsent in the server's buffer, closed by the server (its
    token revoked): the close frame waited behind those alerts, and once the close handshake's
    time was up uvicorn closed the transport, which waits for them to drain, for ever. The
    connection and its buffers are let go then instead."""
    leader = await world.leader(await world.team())
    async with frozen_phone(world, leader.token):
        connection = the_websocket(server)
        # The close handshake's time (uvicorn's 10 s), shortened for the test.
        connection.close_timeout = 0.2
        # Alerts until the kernel's buffers are full and some wait in the server's own, less
        # than it holds before the socket's sender waits for room (64 KiB).
        for _ in range(400):
            if connection.transport.get_write_buffer_size() > 0:
                break
            async with world.runtime.transaction() as session:
                pad = "x" * 30_000
                await mailboxes.enqueue(
                    session,
                    [Outgoing(leader.id, "incident.updated", {"pad": pad})],
                    now=world.clock.now(),
                )
            await asyncio.sleep(0.01)
        assert 0 < connection.transport.get_write_buffer_size() < 64 * 1024
        reply = await world.http.post("/api/v1/auth/logout", headers=leader.headers)
        assert reply.status_code == 204, reply.text
        await assert_let_go(world, server, leader.id)


async def test_a_client_whose_bad_frame_was_refused_is_let_go_though_it_stops_reading(
    world: World, server: RunningServer
) -> None:
    """A client that sends a frame the server refuses (text that is not UTF-8) with alerts
    still unsent to it, and reads no more: uvicorn sent its close and closed the transport,
    which waits for the unsent alerts to drain, for ever. It is cut once the close
    handshake's time is up, as a client that leaves the server's own close unanswered is."""
    leader = await world.leader(await world.team())
    async with frozen_phone(world, leader.token) as ws:
        connection = the_websocket(server)
        # The close handshake's time (uvicorn's 10 s), shortened for the test.
        connection.close_timeout = 0.2
        async with world.runtime.transaction() as session:
            pad = "x" * 1_000_000
            burst = [Outgoing(leader.id, "incident.updated", {"pad": pad}) for _ in range(6)]
            await mailboxes.enqueue(session, burst, now=world.clock.now())
        for _ in range(100):
            if connection.transport.get_write_buffer_size() > 0:
                break
            await asyncio.sleep(0.05)
        assert connection.transport.get_write_buffer_size() > 0
        # Written on the wire as it is: the client library would check its UTF-8.
        ws.protocol.send_text(b"\xff\xfe")
        ws.transport.write(b"".join(ws.protocol.data_to_send()))
        await assert_let_go(world, server, leader.id)
