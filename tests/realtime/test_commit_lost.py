"""A COMMIT whose outcome the server does not know: the connection to the database drops after
the COMMIT went out. The database may have committed the report, and then every process's
phones must get its alert, the one that made it too; and the client is told that the report
may have been written, to send it again with the same Idempotency-Key, not that it was
rolled back."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import event
from sqlalchemy.engine import make_url
from websockets.exceptions import ConnectionClosed

from alerts.fanout import APPLICATION_NAME
from alerts.hub import Hub
from alerts.store import Envelope
from dispatch.auth.service import BOARD_MAILBOX, USERS_CHANNEL
from dispatch.errors import DATABASE_RETRY_AFTER_S
from dispatch.realtime import LOGGED_OUT
from dispatch.runtime import MESSAGES_CHANNEL
from tests.auth.test_tokens import me
from tests.conftest import server_settings, two_servers_on
from tests.support import QINGXI, TcpProxy, World

REPORT = {"location": {"lon": QINGXI[0], "lat": QINGXI[1], "crs": "wgs84"}, "category": "fight"}


class CommitAnswerLost(TcpProxy):
    """A TCP proxy in front of PostgreSQL. Once armed, the first transaction that announces
    to the other processes on ``channel`` (a statement naming it: ``dispatch_messages``, new
    messages, unless told) has its COMMIT passed on, and PostgreSQL's answer, sent once it has
    committed, is lost: the connection is cut both ways before the answer reaches the server.
    A network fault, the kind that leaves the server not knowing whether its transaction
    committed.

    The fan-out listener's connection (its LISTEN names the channel too) is passed as it is."""

    def __init__(
        self, upstream_host: str, upstream_port: int, channel: str = MESSAGES_CHANNEL
    ) -> None:
        super().__init__()
        self.upstream = (upstream_host, upstream_port)
        self.channel = channel.encode()
        self.armed = False
        # Set once a COMMIT's answer was lost.
        self.cut = asyncio.Event()

    async def _serve(self, client: asyncio.StreamReader, to_client: asyncio.StreamWriter) -> None:
        ends = [to_client]
        # This connection's transaction announces messages; its COMMIT's answer is to be lost.
        state = {"announcing": False, "losing": False}

        def cut() -> None:
            for end in ends:
                end.transport.abort()

        async def up(to_server: asyncio.StreamWriter) -> None:
            listener = False
            try:
                while data := await client.read(65536):
                    # The startup message names the connection's application.
                    listener = listener or APPLICATION_NAME.encode() in data
                    if not listener and self.channel in data:
                        state["announcing"] = True
                    # A simple query, as the driver sends COMMIT and ROLLBACK.
                    if data[:1] == b"Q" and (b"COMMIT" in data or b"ROLLBACK" in data):
                        if self.armed and state["announcing"] and b"COMMIT" in data:
                            self.armed = False
                            # Before the COMMIT goes: its answer may come back at once.
                            state["losing"] = True
                        state["announcing"] = False
                    to_server.write(data)
                    await to_server.drain()
            finally:
                # Either end that closes closes the other (a client waits for it).
                to_server.close()

        async def down(server: asyncio.StreamReader) -> None:
            try:
                while data := await server.read(65536):
                    if state["losing"]:
                        # PostgreSQL's answer to the COMMIT: it has committed. Lost on the way.
                        cut()
                        self.cut.set()
                        return
                    to_client.write(data)
                    await to_client.drain()
            finally:
                to_client.close()

        try:
            server, to_server = await asyncio.open_connection(*self.upstream)
            ends.append(to_server)
            self._ends.add(to_server)
            await asyncio.gather(up(to_server), down(server), return_exceptions=True)
        except ConnectionError:
            pass
        finally:
            cut()
            for end in ends:
                self._ends.discard(end)


def two_servers_one_through(
    proxy_url: str, direct_url: str
) -> AbstractAsyncContextManager[tuple[World, World]]:
    """Two servers on one database and one driven clock: A reaches it through ``proxy_url``,
    B directly."""
    settings = server_settings(proxy_url)
    return two_servers_on(settings, settings.model_copy(update={"database_url": direct_url}))


def reported(by_headers: dict[str, str], key: str) -> dict[str, str]:
    return {**by_headers, "Idempotency-Key": key}


def assert_outcome_unknown(reply: httpx.Response) -> None:
    assert reply.status_code == 503, reply.text
    body = reply.json()
    assert body["error"] == "database_unavailable"
    assert "rolled back" not in body["detail"], body["detail"]
    assert "unknown" in body["detail"] and "Idempotency-Key" in body["detail"], body["detail"]
    assert body["retry_after_s"] == DATABASE_RETRY_AFTER_S
    assert reply.headers["Retry-After"] == str(DATABASE_RETRY_AFTER_S)


async def test_a_report_whose_commit_answer_is_lost_reaches_the_phones_of_its_own_process(
    postgres_only: str,
) -> None:
    """SQLite has no such test: it is a library inside the server process, with no connection
    between a COMMIT and its answer to lose (the test below covers a COMMIT that raises)."""
    url = make_url(postgres_only)
    proxy = CommitAnswerLost(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    through = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    try:
        async with two_servers_one_through(through, postgres_only) as (a, b):
            team = await a.team()
            leader = await a.leader(team)
            operator = await a.operator()
            phone_a, phone_b = await a.connect(leader), await b.connect(leader)
            console_a = await a.connect(operator)
            key = uuid.uuid4().hex

            proxy.armed = True
            reply = await a.http.post(
                "/api/v1/incidents", json=REPORT, headers=reported(operator.headers, key)
            )
            assert proxy.cut.is_set(), "the report's COMMIT answer was not the one lost"
            assert_outcome_unknown(reply)

            # It committed: B's phone hears of it through the database's announcement.
            alert_b = await phone_b.next_of("alert", timeout=30)
            incident_id = alert_b["data"]["incident"]["id"]
            # A's phone and console get it live too: no retry, no later message to the
            # mailbox, no reconnect brings it (the clock stands, so no deadline passes).
            alert_a = await phone_a.next_of("alert", timeout=30)
            assert (alert_a["seq"], alert_a["data"]["incident"]["id"]) == (1, incident_id)
            board = await console_a.next_of("incident.updated", timeout=30)
            assert board["data"]["id"] == incident_id

            # Sent again with the same key, the report is answered with the incident stored.
            again = await a.http.post(
                "/api/v1/incidents", json=REPORT, headers=reported(operator.headers, key)
            )
            assert again.status_code == 201, again.text
            assert again.json()["id"] == incident_id
            # And a later message to the mailbox follows the alert, no copy of it between.
            second = await a.report(operator)
            follow = await phone_a.next_of("alert", timeout=30)
            assert (follow["seq"], follow["data"]["incident"]["id"]) == (2, second["id"])
            for socket in (phone_a, phone_b, console_a):
                await socket.close()
    finally:
        await proxy.close()


async def test_a_logout_whose_commit_answer_is_lost_ends_the_token_in_its_own_process(
    postgres_only: str,
) -> None:
    """The logout committed; the process that made it forgets the user's cached tokens and
    closes their sockets all the same, as after a commit it heard the answer of. Before, its
    cache kept taking the token for up to DISPATCH_PRINCIPAL_CACHE_S (other processes heard
    the announcement), and its sockets of the user stayed open."""
    url = make_url(postgres_only)
    proxy = CommitAnswerLost(url.host or "127.0.0.1", url.port or 5432, USERS_CHANNEL)
    await proxy.start()
    through = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    try:
        async with two_servers_one_through(through, postgres_only) as (a, _):
            leader = await a.leader(await a.team())
            assert (await me(a, leader.token))[0] == 200  # cached on A now
            phone = await a.connect(leader)

            proxy.armed = True
            reply = await a.http.post("/api/v1/auth/logout", headers=leader.headers)
            assert proxy.cut.is_set(), "the logout's COMMIT answer was not the one lost"
            assert_outcome_unknown(reply)

            logged_out = (401, "the bearer token was revoked (logged out)")
            assert await me(a, leader.token) == logged_out
            with pytest.raises(ConnectionClosed) as closed:
                await phone.next(timeout=30)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == LOGGED_OUT
    finally:
        await proxy.close()


@contextmanager
def reports_failing(world: World, where: str) -> Iterator[None]:
    """The next report's transaction loses its connection: in its COMMIT (``commit``: the
    driver is never asked to commit, so it did not), or at its first statement writing the
    incident (``before``). The rest of the server's transactions go on as ever."""
    engine = world.runtime.engine.sync_engine
    armed = [True]

    def statement(connection: Any, _cursor: Any, text: str, *_: Any) -> None:
        if armed[0] and "INSERT INTO incidents" in text:
            if where == "before":
                armed[0] = False
                raise ConnectionResetError("the connection to the database was lost")
            connection.info["reporting"] = True

    def commit(connection: Any) -> None:
        if armed[0] and connection.info.pop("reporting", False):
            armed[0] = False
            raise ConnectionResetError("the connection to the database was lost")

    def rollback(connection: Any) -> None:
        connection.info.pop("reporting", None)

    listeners = [("before_cursor_execute", statement), ("commit", commit), ("rollback", rollback)]
    for name, listener in listeners:
        event.listen(engine, name, listener)
    try:
        yield
        assert not armed[0], "no report met the fault"
    finally:
        for name, listener in listeners:
            event.remove(engine, name, listener)


@contextmanager
def nudges_seen(hub: Hub) -> Iterator[asyncio.Queue[set[str]]]:
    """Each ``hub.nudge`` call's mailboxes, as it is made."""
    seen: asyncio.Queue[set[str]] = asyncio.Queue()
    nudge = hub.nudge

    def spy(mailboxes: Iterable[str]) -> None:
        mailboxes = set(mailboxes)
        seen.put_nowait(mailboxes)
        nudge(mailboxes)

    hub.nudge = spy  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        del hub.nudge


@pytest.mark.parametrize("where", ["commit", "before"])
async def test_a_report_failing_in_its_commit_is_told_apart_from_one_failing_before(
    world: World, where: str
) -> None:
    team = await world.team()
    leader = await world.leader(team)
    operator = await world.operator()
    phone = await world.connect(leader)
    key = uuid.uuid4().hex
    with nudges_seen(world.runtime.hub) as nudges, reports_failing(world, where):
        reply = await world.http.post(
            "/api/v1/incidents", json=REPORT, headers=reported(operator.headers, key)
        )
        if where == "commit":
            assert_outcome_unknown(reply)
            # The sockets of the report's mailboxes look at the store, at once and once more
            # a little later (a commit the database was still completing).
            expected = {leader.id, BOARD_MAILBOX}
            assert await asyncio.wait_for(nudges.get(), 10) == expected
            assert await asyncio.wait_for(nudges.get(), 10) == expected
        else:
            assert reply.status_code == 503, reply.text
            body = reply.json()
            assert body["error"] == "database_unavailable"
            assert "rolled back" in body["detail"], body["detail"]
            # Nothing was committed: nothing to catch up on (the nudge would come before the
            # answer, from the failing transaction itself).
            assert nudges.empty()
    # This fault kept the report from committing: sent again, it is stored now, and alerts.
    again = await world.http.post(
        "/api/v1/incidents", json=REPORT, headers=reported(operator.headers, key)
    )
    assert again.status_code == 201, again.text
    alert = await phone.next_of("alert", timeout=30)
    assert (alert["seq"], alert["data"]["incident"]["id"]) == (1, again.json()["id"])
    await phone.close()


async def test_a_nudge_has_only_the_sockets_of_its_mailboxes_look_at_the_store() -> None:
    hub = Hub(queue_size=2)
    first, second = hub.subscribe("leader-1"), hub.subscribe("leader-1")
    other = hub.subscribe("leader-2")
    consoles = [hub.subscribe(f"operator-{n}", mailbox=BOARD_MAILBOX) for n in (1, 2)]

    # Each socket once, however often its mailbox is named; a mailbox nobody reads is passed.
    hub.nudge(["leader-1", BOARD_MAILBOX, "leader-1", "nobody-connected"])
    hub.publish([message("leader-1", 1), message("leader-2", 1), message(BOARD_MAILBOX, 1)])

    for subscription in (first, second, *consoles):
        assert await subscription.get() is None
        assert await subscription.get() == message(subscription.mailbox, 1)
    # A socket of another mailbox was not nudged: its message is the first thing it gets.
    assert await other.get() == message("leader-2", 1)

    # Nothing to nudge: nothing offered.
    hub.nudge([])
    hub.publish([message("leader-1", 2)])
    assert await first.get() == message("leader-1", 2)

    # A socket whose queue is full is cut off, as by any other offer (it catches up when it
    # reconnects), and taken off the hub at once.
    for _ in range(3):
        hub.nudge(["leader-2"])
    assert other.overflowed
    assert hub.connected_users() == {"leader-1", "operator-1", "operator-2"}


def message(mailbox: str, seq: int) -> Envelope:
    return Envelope(mailbox, seq, "incident.updated", {"n": seq})
