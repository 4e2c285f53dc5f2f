"""Alerts over real websockets: hello, welcome, replay, live, acks, and bad clients."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State
from websockets.uri import parse_uri

from alerts import store as mailboxes
from alerts.hub import Signal
from alerts.store import Outgoing
from dispatch.schemas import show_time
from dispatch.websocket_protocol import WebSocketProtocol
from tests.conftest import RunningServer
from tests.support import World, statements_sent


async def test_alert_reaches_the_leader_and_ack_records_delivery(world: World) -> None:
    team = await world.team("fixed_post")
    other_team = await world.team("fixed_post", 114.2, 22.9)
    leader = await world.leader(team)
    bystander = await world.leader(other_team)
    operator = await world.operator()
    phone = await world.connect(leader)
    quiet_phone = await world.connect(bystander)
    console = await world.connect(operator)
    assert phone.welcome["seq"] == 0

    incident = await world.report(operator)

    alert = await phone.next()
    assert alert["type"] == "alert" and alert["seq"] == 1
    assert alert["data"]["incident"]["id"] == incident["id"]
    dispatch = alert["data"]["dispatch"]
    assert dispatch["team_id"] == team["id"] and dispatch["tier"] == 1
    update = await console.next()
    assert update["type"] == "incident.updated" and update["data"]["id"] == incident["id"]
    assert await quiet_phone.silent()

    world.clock.advance(0.25)
    acked_at = world.clock.now()
    await phone.ack(alert["seq"])
    # Operators hear of the delivery as one dispatch's change, not the whole incident again.
    delivered = await console.next()
    assert delivered["type"] == "dispatches.updated"
    (d,) = delivered["data"]["dispatches"]
    assert d["incident_id"] == incident["id"]
    assert d["id"] == dispatch["id"] and d["delivered_at"] is not None
    assert datetime.fromisoformat(d["delivered_at"]) == acked_at
    after = await world.incident(operator, incident["id"])
    assert after["dispatches"][0]["delivered_at"] == d["delivered_at"]
    # The leaders are not sent it, and a second ack of the same alert changes nothing.
    assert await phone.silent()
    await phone.ack(alert["seq"])
    assert await console.silent()
    for socket in (phone, quiet_phone, console):
        await socket.close()


async def test_missed_alerts_arrive_on_reconnect_in_order_once(world: World) -> None:
    team = await world.team("mobile")
    leader = await world.leader(team)
    operator = await world.operator()
    phone = await world.connect(leader)
    first = await world.report(operator)
    assert (await phone.next_of("alert"))["data"]["incident"]["id"] == first["id"]
    last_seen = phone.last_seq
    await phone.close()

    missed = [await world.report(operator, category=c) for c in ("theft", "fire", "robbery")]

    phone = await world.connect(leader, resume_from=last_seen)
    assert phone.welcome["seq"] > last_seen
    alerts = []
    while phone.last_seq < phone.welcome["seq"]:
        message = await phone.next()
        if message["type"] == "alert":
            alerts.append(message["data"]["incident"]["id"])
    assert alerts == [m["id"] for m in missed]
    assert await phone.silent()
    await phone.close()

    # Resuming from the newest seq replays nothing; a new alert arrives live.
    phone = await world.connect(leader, resume_from=phone.last_seq)
    assert await phone.silent()
    live = await world.report(operator)
    assert (await phone.next_of("alert"))["data"]["incident"]["id"] == live["id"]
    await phone.close()


async def test_a_phone_up_to_date_is_welcomed_with_one_read_and_no_replay(world: World) -> None:
    # After a restart thousands of phones say hello at once, nearly all of them up to date.
    team = await world.team("fixed_post")
    leader = await world.leader(team)
    operator = await world.operator()
    phone = await world.connect(leader)
    incident = await world.report(operator)
    await phone.next_of("alert")
    await phone.ack()
    await world.wait_for(
        operator, incident["id"], lambda i: i["dispatches"][0]["delivered_at"] is not None
    )
    await phone.close()

    # Its hello acknowledges what is on record already: no write, no read of the messages.
    with statements_sent(world.runtime) as sent:
        phone = await world.connect(leader, resume_from=phone.last_seq)
        assert await phone.silent()
    mailbox_reads = [s for s in sent if "FROM mailboxes" in s]
    replays = [s for s in sent if "messages.seq >" in s]
    assert (len(mailbox_reads), replays) == (1, [])
    # What is stored after the welcome still arrives.
    live = await world.report(operator)
    assert (await phone.next_of("alert"))["data"]["incident"]["id"] == live["id"]
    await phone.close()


async def test_resume_from_the_future_gets_an_explicit_resync(world: World) -> None:
    operator = await world.operator()
    console = await world.connect(operator, resume_from=999)
    resync = json.loads(await console.connection.recv())
    assert resync["type"] == "resync"
    await console.close()


async def test_a_socket_without_a_valid_hello_is_closed_with_1008(world: World) -> None:
    operator = await world.operator()
    cases = [
        None,  # says nothing
        {"type": "ack", "seq": 1},
        {"type": "ping"},
        {"type": "hello", "token": "forged", "resume_from": 0},
        {"type": "hello", "token": operator.token, "resume_from": -3},
        {"type": "hello", "resume_from": 0},
    ]
    for hello in cases:
        async with connect(world.ws_url, compression=None) as ws:
            if hello is not None:
                await ws.send(json.dumps(hello))
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 1008, (hello, closed.value.rcvd)


async def test_a_ping_is_answered_by_a_pong_in_line_with_the_messages(world: World) -> None:
    """The pages' own look at their line (the protocol's pings are answered by the browser,
    unseen by the page). A pong's seq is the last one the socket sent before it: what came
    before it in the stream. It acknowledges nothing. It carries the server's time as it was
    written, which a page takes for the middle of the ping's round trip."""
    team = await world.team("fixed_post")
    leader = await world.leader(team)
    operator = await world.operator()
    phone = await world.connect(leader)
    await phone.connection.send(json.dumps({"type": "ping"}))
    pong = await phone.next()
    assert pong == {"type": "pong", "seq": 0, "data": {"server_time": pong["data"]["server_time"]}}
    assert datetime.fromisoformat(pong["data"]["server_time"]) == world.clock.now()
    world.clock.advance(1.5)
    await phone.connection.send(json.dumps({"type": "ping"}))
    later = (await phone.next())["data"]["server_time"]
    assert datetime.fromisoformat(later) == world.clock.now()
    assert later.endswith("+08:00"), later

    incident = await world.report(operator)
    # Pings while the report's messages are on their way, one with more than it needs.
    for n in range(5):
        await phone.connection.send(json.dumps({"type": "ping", "n": n}))
    pongs, seen = 0, 0
    while pongs < 5:
        frame = await phone.next()
        if frame["type"] == "pong":
            assert (frame["type"], frame["seq"], list(frame["data"])) == (
                "pong",
                seen,
                ["server_time"],
            )
            pongs += 1
        else:
            seen = frame["seq"]
    assert any(f["type"] == "alert" for f in phone.received)
    after = await world.incident(operator, incident["id"])
    assert after["dispatches"][0]["delivered_at"] is None
    await phone.close()


async def test_a_sockets_welcome_and_pongs_leave_the_shown_times_cache_alone(
    world: World,
) -> None:
    """The server's time in a welcome or a pong is the clock's reading as it is written, an
    instant shown once and never again: kept in the cache of shown times, each would push out
    an instant a report shows again and again (every phone pings every 20 s), and the churn of
    thousands of phones would keep that cache full of the clock's old readings."""
    team = await world.team("fixed_post")
    leader = await world.leader(team)
    show_time.cache_clear()
    phone = await world.connect(leader)
    for _ in range(20):
        world.clock.advance(0.001)
        await phone.connection.send(json.dumps({"type": "ping"}))
        assert (await phone.next())["type"] == "pong"
    await phone.close()
    assert show_time.cache_info().currsize == 0


async def writes_paused(server: RunningServer) -> None:
    """Wait until the server's writes to a websocket wait for its line (its transport's buffer
    is full: the client is not reading)."""
    for _ in range(1000):
        connections = server.server.server_state.connections
        if any(isinstance(c, WebSocketProtocol) and not c.writable.is_set() for c in connections):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the server's writes never waited")


async def test_a_pong_on_a_slow_line_carries_the_seq_just_before_it(
    world: World, server: RunningServer
) -> None:
    """A phone on a slow line pings while the server is still writing to it, in a replay on
    reconnect and in a burst of live messages: its pong comes right after the message being
    written (ahead of the rest) and carries that message's seq."""
    leader = await world.leader(await world.team())

    async def burst(n: int) -> None:
        # Enough to fill the line's buffers many times over: the server waits to write.
        async with world.runtime.transaction() as session:
            messages = [Outgoing(leader.id, "incident.updated", {"pad": "x" * 20_000})] * n
            await mailboxes.enqueue(session, messages, now=world.clock.now())

    def pong_in_line(frames: list[dict[str, Any]], latest: int) -> None:
        kinds = [f["type"] for f in frames]
        assert kinds.count("pong") == 1, kinds
        at = kinds.index("pong")
        assert frames[at - 1]["seq"] == frames[at]["seq"], (frames[at - 1]["seq"], frames[at])
        # The messages after it were waiting when the ping came: the line was slow.
        assert frames[at + 1 :] and frames[-1]["seq"] == latest, (at, len(frames))

    await burst(400)
    # A client that reads slowly: it takes one frame, and the server's writes pause.
    async with connect(world.ws_url, compression=None, max_queue=1, max_size=2**20) as ws:
        await ws.send(json.dumps({"type": "hello", "token": leader.token, "resume_from": 0}))
        welcome = json.loads(await ws.recv())
        for latest in (welcome["seq"], welcome["seq"] + 400):
            if latest > welcome["seq"]:
                await burst(400)
            await writes_paused(server)
            await ws.send(json.dumps({"type": "ping"}))
            frames: list[dict[str, Any]] = []
            last = ("incident.updated", latest)
            while not frames or (frames[-1]["type"], frames[-1]["seq"]) != last:
                frames.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
            pong_in_line(frames, latest)


async def test_malformed_frames_close_with_a_clear_code(world: World) -> None:
    operator = await world.operator()
    for frame, code in [("not json", 1007), (b"\x00\x01", 1003), ("[1, 2]", 1007)]:
        async with connect(world.ws_url, compression=None) as ws:
            await ws.send(frame)
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == code
    socket = await world.connect(operator)
    await socket.connection.send(json.dumps({"type": "shout"}))
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(socket.connection.recv(), 5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


@contextmanager
def uvicorn_says() -> Iterator[list[logging.LogRecord]]:
    """Every record uvicorn's server logger writes meanwhile, down to DEBUG (it does not
    propagate to the root logger, where caplog listens)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append  # type: ignore[method-assign]
    said = logging.getLogger("uvicorn.error")
    level = said.level
    said.addHandler(handler)
    said.setLevel(logging.DEBUG)
    try:
        yield records
    finally:
        said.removeHandler(handler)
        said.setLevel(level)


async def close_code_after_raw_text(world: World, payload: bytes, token: str | None) -> int:
    """The code of the close the server answers a text frame of ``payload`` with, written on
    the wire as it is (a client library checks its UTF-8), after a hello with ``token``."""
    uri = parse_uri(world.ws_url)
    reader, writer = await asyncio.open_connection(uri.host, uri.port)
    protocol = ClientProtocol(uri)

    async def flush() -> None:
        for data in protocol.data_to_send():
            writer.write(data)
        await writer.drain()

    async def read() -> None:
        data = await asyncio.wait_for(reader.read(65536), 5)
        assert data, "the server went away without a close frame"
        protocol.receive_data(data)
        protocol.events_received()

    try:
        protocol.send_request(protocol.connect())
        await flush()
        while protocol.state is not State.OPEN:
            await read()
        if token is not None:
            protocol.send_text(json.dumps({"type": "hello", "token": token}).encode())
        protocol.send_text(payload)
        await flush()
        while protocol.close_rcvd is None:
            await read()
        return protocol.close_rcvd.code
    finally:
        writer.close()


async def test_a_text_frame_that_is_not_utf8_closes_1007_as_the_clients_fault(
    world: World,
) -> None:
    """Closed with 1007 as before, but not logged as a server error: uvicorn wrote "Invalid
    UTF-8 sequence received from client." at ERROR with a traceback for any client's garbage."""
    operator = await world.operator()
    with uvicorn_says() as records:
        for payload, token in (
            (b"\xff\xfe", None),
            (b'{"type": "ping", "x": "\xe4\xb8"}', operator.token),
        ):
            assert await close_code_after_raw_text(world, payload, token) == 1007, payload
    assert not [r for r in records if r.levelno >= logging.WARNING or r.exc_info], [
        (r.levelname, r.getMessage()) for r in records
    ]
    said = [r.getMessage() for r in records if "not UTF-8" in r.getMessage()]
    assert len(said) == 2, [r.getMessage() for r in records]
    # The server goes on: the operator's next socket is served.
    socket = await world.connect(operator)
    await socket.connection.send(json.dumps({"type": "ping"}))
    assert (await socket.next_of("pong"))["type"] == "pong"


async def test_an_unknown_type_is_quoted_within_a_close_frame(world: World) -> None:
    """The reason quotes the type the client sent: escaped, and cut to the 123 bytes a close
    frame holds (a longer one failed the close, an error of the server, and the client saw
    the connection drop, 1006)."""
    operator = await world.operator()
    for kind, reason in (
        ("\u202eshout", "unknown message type '\\u202eshout'"),
        ("叫" * 300, "unknown message type '" + "叫" * 32 + "..."),
    ):
        socket = await world.connect(operator)
        await socket.connection.send(json.dumps({"type": kind}))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(socket.connection.recv(), 5)
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008, reason)


async def test_frames_over_the_size_cap_are_refused(world: World) -> None:
    operator = await world.operator()
    socket = await world.connect(operator)
    await socket.connection.send(json.dumps({"type": "ack", "seq": 1, "pad": "x" * 70_000}))
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(socket.connection.recv(), 5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


async def test_the_sockets_take_a_units_alerts_before_its_caller_goes_on(world: World) -> None:
    # A report's sockets write its alerts before its request goes on to the reporter's answer.
    leader = await world.leader(await world.team())
    subscription = world.runtime.hub.subscribe(leader.id)
    taken: list[str] = []

    async def sender() -> None:
        envelope = await subscription.get()
        assert envelope is not None and not isinstance(envelope, Signal)
        taken.append(envelope.type)

    waiting = asyncio.create_task(sender())
    await asyncio.sleep(0)
    try:
        async with world.runtime.transaction() as session:
            await mailboxes.enqueue(
                session, [Outgoing(leader.id, "alert", {})], now=world.clock.now()
            )
        assert taken == ["alert"]
    finally:
        waiting.cancel()
        world.runtime.hub.unsubscribe(subscription)


async def test_a_slow_consumer_is_dropped_and_catches_up_by_resume(world: World) -> None:
    leader = await world.leader(await world.team())
    world.runtime.hub.queue_size = 3
    slow = await world.connect(leader)
    # A burst larger than the socket's queue, published in one go after one commit.
    async with world.runtime.transaction() as session:
        burst = [Outgoing(leader.id, "incident.updated", {"n": n}) for n in range(10)]
        await mailboxes.enqueue(session, burst, now=world.clock.now())
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await slow.next(5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
    world.runtime.hub.queue_size = 1000
    again = await world.connect(leader, resume_from=slow.last_seq)
    while again.last_seq < again.welcome["seq"]:
        await again.next()
    assert [m["data"]["n"] for m in slow.received + again.received] == list(range(10))
    await again.close()


async def test_a_message_never_published_here_is_sent_before_the_live_one_after_it(
    world: World,
) -> None:
    # Committed and stored, but never published to this process (another process wrote it
    # and its announcement was lost): the next live message's seq shows the gap, which is
    # filled from the store, so the phone gets both, in order.
    leader = await world.leader(await world.team())
    phone = await world.connect(leader)
    async with world.runtime.sessionmaker() as session:
        unheard = [Outgoing(leader.id, "incident.updated", {"n": 1})]
        await mailboxes.enqueue(session, unheard, now=world.clock.now())
        await session.commit()
    async with world.runtime.transaction() as session:
        live = [Outgoing(leader.id, "incident.updated", {"n": 2})]
        await mailboxes.enqueue(session, live, now=world.clock.now())
    received = [await phone.next(), await phone.next()]
    assert [(m["seq"], m["data"]["n"]) for m in received] == [(1, 1), (2, 2)]
    assert await phone.silent()
    await phone.close()
