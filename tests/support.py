"""Test helpers that act as the users do: over HTTP and over real websockets."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import json
import os
import socket
import ssl
import uuid
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.etree import ElementTree

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import Engine, event
from websockets.asyncio.client import ClientConnection, connect
from websockets.uri import parse_uri

from dispatch.auth import service as auth
from dispatch.auth.models import Role
from dispatch.clock import ManualClock
from dispatch.runtime import Runtime

if TYPE_CHECKING:
    from tests.conftest import RunningServer

QINGXI = (114.159, 22.847)
# The retention job's statements (alerts.store.purge_before, dispatch.jobs.service.
# purge_done_before).
PURGE = "DELETE FROM messages WHERE messages.created_at <"
PURGE_JOBS = "DELETE FROM jobs WHERE jobs.status ="


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The certificate store an httpx client loads when it is made (some 50 ms each, though
    the test servers speak plain HTTP): loaded once, for every test's client."""
    return httpx.create_ssl_context()


def sync_engines(runtime: Runtime) -> list[Engine]:
    """The server's engines: the writers' and, where it is another, the readers'."""
    return [engine.sync_engine for engine in runtime.pools().values()]


@contextmanager
def statements_sent(sender: Runtime | Engine) -> Iterator[list[str]]:
    """The SQL statements the server's engines (or the one engine) send while the block runs,
    in order; not the retention job's purges, which run in their own task as the server starts,
    whenever the event loop gets to it (sometimes in the middle of a test's block)."""
    sent: list[str] = []

    def seen(_connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if not statement.startswith((PURGE, PURGE_JOBS)):
            sent.append(statement)

    engines = [sender] if isinstance(sender, Engine) else sync_engines(sender)
    for engine in engines:
        event.listen(engine, "before_cursor_execute", seen)
    try:
        yield sent
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", seen)


@dataclass
class Account:
    id: str
    name: str
    role: str
    password: str
    token: str
    team_id: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


# Frames whose seq is the mailbox's (welcome, resync) or the socket's (pong), not a message's.
CONTROL_FRAMES = ("welcome", "resync", "pong")


@dataclass
class Socket:
    """A websocket client that speaks the hello/ack protocol and remembers its last seq."""

    connection: ClientConnection
    welcome: dict[str, Any]
    last_seq: int = 0
    received: list[dict[str, Any]] = field(default_factory=list)

    async def next(self, timeout: float = 5.0) -> dict[str, Any]:
        message: dict[str, Any] = json.loads(
            await asyncio.wait_for(self.connection.recv(), timeout)
        )
        if isinstance(message.get("seq"), int) and message["type"] not in CONTROL_FRAMES:
            assert message["seq"] == self.last_seq + 1, (message["seq"], self.last_seq)
            self.last_seq = message["seq"]
        elif message.get("type") == "resync":
            # As a client does: it reloads its state and carries on from the resync's seq.
            self.last_seq = message["seq"]
        self.received.append(message)
        return message

    async def next_of(self, kind: str, timeout: float = 5.0) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            message = await self.next(max(remaining, 0.01))
            if message["type"] == kind:
                return message

    async def ack(self, seq: int | None = None) -> None:
        await self.connection.send(json.dumps({"type": "ack", "seq": seq or self.last_seq}))

    async def silent(self, seconds: float = 0.3) -> bool:
        try:
            await asyncio.wait_for(self.connection.recv(), seconds)
        except TimeoutError:
            return True
        return False

    async def close(self) -> None:
        await self.connection.close()


async def open_socket(ws_url: str, token: str, resume_from: int = 0) -> Socket:
    """Connect and say hello; the welcome is checked and kept."""
    connection = await connect(ws_url, compression=None, open_timeout=10)
    hello = {"type": "hello", "token": token, "resume_from": resume_from}
    await connection.send(json.dumps(hello))
    welcome = json.loads(await asyncio.wait_for(connection.recv(), 10))
    assert welcome["type"] == "welcome", welcome
    data = welcome["data"]
    if data["mailbox"] != data["user_id"] and resume_from == 0 and welcome["seq"] > 0:
        # New to a shared mailbox (the operators' board): told to start at its latest message.
        resync = json.loads(await asyncio.wait_for(connection.recv(), 10))
        assert resync["type"] == "resync", resync
        return Socket(connection, welcome, last_seq=resync["seq"], received=[resync])
    return Socket(connection, welcome, last_seq=resume_from)


async def get_token(http: httpx.AsyncClient, name: str, password: str) -> str:
    reply = await http.post("/api/v1/auth/token", data={"username": name, "password": password})
    assert reply.status_code == 200, reply.text
    token: str = reply.json()["access_token"]
    return token


def unreadable_parts(workbook: bytes) -> list[str]:
    """The XML parts of an .xlsx that are not well-formed XML, with the parser's reason: a
    workbook with one is corrupt to Excel (openpyxl writes what XML cannot hold, if given it)."""
    broken = []
    with zipfile.ZipFile(io.BytesIO(workbook)) as archive:
        for name in archive.namelist():
            if name.endswith(".xml"):
                try:
                    ElementTree.fromstring(archive.read(name))
                except ElementTree.ParseError as error:
                    broken.append(f"{name}: {error}")
    return broken


class World:
    """The server under test, seen from outside, plus its runtime for setting up users."""

    def __init__(self, app: FastAPI, base_url: str, clock: ManualClock) -> None:
        self.app = app
        self.base_url = base_url
        self.ws_url = base_url.replace("http://", "ws://") + "/ws"
        self.clock = clock
        self.http = httpx.AsyncClient(base_url=base_url, timeout=10, verify=tls_context())
        self._admin: Account | None = None

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self.app.state.runtime
        return runtime

    async def close(self) -> None:
        await self.http.aclose()

    async def account(self, role: str, team_id: str | None = None) -> Account:
        name = f"{role}-{uuid.uuid4().hex[:8]}"
        password = "pw-" + uuid.uuid4().hex
        async with self.runtime.transaction() as session:
            user = await auth.create_user(
                session,
                name=name,
                password=password,
                role=Role(role),
                team_id=team_id,
                now=self.clock.now(),
                hasher=self.runtime.passwords,
            )
        return await self.login(name, password, user.id, role, team_id)

    async def login(
        self, name: str, password: str, user_id: str, role: str, team_id: str | None
    ) -> Account:
        reply = await self.http.post(
            "/api/v1/auth/token", data={"username": name, "password": password}
        )
        assert reply.status_code == 200, reply.text
        token = reply.json()["access_token"]
        return Account(user_id, name, role, password, token, team_id)

    async def relogin(self, account: Account) -> Account:
        """A fresh token, after the clock moved past the old one's expiry."""
        return await self.login(
            account.name, account.password, account.id, account.role, account.team_id
        )

    def long_logins(self, seconds: int = 30 * 86400) -> None:
        """Logins from now on last ``seconds`` (tokens and the login's maximum age alike), for
        a test whose clock jumps days or weeks ahead between the requests of one login."""
        settings = self.runtime.settings
        settings.token_ttl_s = settings.login_max_age_s = seconds

    async def admin(self) -> Account:
        if self._admin is None:
            self._admin = await self.account("admin")
        return self._admin

    async def operator(self) -> Account:
        return await self.account("operator")

    async def leader(self, team: dict[str, Any]) -> Account:
        return await self.account("leader", team_id=team["id"])

    async def team(
        self,
        kind: str = "fixed_post",
        lon: float = QINGXI[0],
        lat: float = QINGXI[1],
        crs: str = "wgs84",
        **extra: Any,
    ) -> dict[str, Any]:
        body = {
            "name": f"{kind}-{uuid.uuid4().hex[:6]}",
            "kind": kind,
            "location": {"lon": lon, "lat": lat, "crs": crs},
            **extra,
        }
        reply = await self.http.post(
            "/api/v1/teams", json=body, headers=(await self.admin()).headers
        )
        assert reply.status_code == 201, reply.text
        team: dict[str, Any] = reply.json()
        return team

    async def report(
        self,
        by: Account,
        lon: float = QINGXI[0],
        lat: float = QINGXI[1],
        crs: str = "wgs84",
        category: str = "fight",
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        reply = await self.http.post(
            "/api/v1/incidents",
            json={"location": {"lon": lon, "lat": lat, "crs": crs}, "category": category},
            headers={**by.headers, **(headers or {})},
        )
        assert reply.status_code == 201, reply.text
        incident: dict[str, Any] = reply.json()
        return incident

    async def incident(self, by: Account, incident_id: str) -> dict[str, Any]:
        incident: dict[str, Any] = await self.read(f"/api/v1/incidents/{incident_id}", by)
        return incident

    async def read(self, path: str, by: Account, **params: Any) -> Any:
        """What ``GET path?params`` answers ``by`` (asserted 200)."""
        reply = await self.http.get(path, params=params, headers=by.headers)
        assert reply.status_code == 200, reply.text
        return reply.json()

    async def connect(self, account: Account, resume_from: int = 0) -> Socket:
        return await open_socket(self.ws_url, account.token, resume_from)

    async def arrive(self, incident: dict[str, Any], team: dict[str, Any], by: Account) -> int:
        """The team's leader says it is on scene; the answer's status."""
        dispatch = next(d["id"] for d in incident["dispatches"] if d["team_id"] == team["id"])
        reply = await self.http.post(f"/api/v1/dispatches/{dispatch}/arrive", headers=by.headers)
        return reply.status_code

    async def read_while(
        self,
        path: str,
        by: Account,
        after_reading: str,
        meanwhile: Callable[[], Awaitable[None]],
        **params: Any,
    ) -> Any:
        """GET ``path``, with ``meanwhile`` done (awaited) right after the first of its
        statements that holds ``after_reading``."""
        done: list[bool] = []

        def after(connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
            if not done and after_reading in statement:
                done.append(True)
                # The statement has run; the request waits on its connection while
                # ``meanwhile`` goes through the API, by the same server, on the writers' pool.
                connection.connection.dbapi_connection.run_async(lambda _: meanwhile())

        engine = self.runtime.read_engine.sync_engine
        event.listen(engine, "after_cursor_execute", after)
        try:
            reply = await self.http.get(path, params=params, headers=by.headers)
        finally:
            event.remove(engine, "after_cursor_execute", after)
        assert done, f"nothing read with {after_reading!r}"
        assert reply.status_code == 200, reply.text
        return reply.json()

    async def wait_for(
        self, by: Account, incident_id: str, predicate: Any, timeout: float = 5.0
    ) -> dict[str, Any]:
        """Poll an incident over HTTP until ``predicate(incident)`` holds."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            incident = await self.incident(by, incident_id)
            if predicate(incident):
                return incident
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"condition never held: {incident}")
            await asyncio.sleep(0.02)


class TcpProxy:
    """A TCP proxy on a free port of 127.0.0.1; what it passes, and how, is the subclass's
    ``_serve``, one task a connection. ``close`` cuts every connection still open and ends
    their tasks: the client's end of each is in ``_ends`` while its task runs, and a subclass
    adds there the ends it opens to the upstream server."""

    def __init__(self) -> None:
        self.port = 0
        self._server: asyncio.Server | None = None
        self._ends: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for end in list(self._ends):
            end.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, client: asyncio.StreamReader, to_client: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._ends.add(to_client)
        try:
            await self._serve(client, to_client)
        finally:
            self._ends.discard(to_client)
            self._tasks.discard(task)

    async def _serve(self, client: asyncio.StreamReader, to_client: asyncio.StreamWriter) -> None:
        raise NotImplementedError


class SilentProxy(TcpProxy):
    """A TCP proxy in front of a server that can fall silent: it stops passing bytes either way
    and closes nothing, which is how a line that died without a word (a phone's Wi-Fi dropped
    behind NAT, a server host gone) looks from both of its ends.

    What was connected when it fell silent, and what connects while it is silent, passes
    nothing ever again. Once it speaks again new connections pass, and the dead ones are reset
    (as a host that came back answers a packet of a connection it no longer knows)."""

    def __init__(self, upstream_port: int) -> None:
        super().__init__()
        self.upstream_port = upstream_port
        self.silent = False
        self.connections = 0
        # Connections made before the latest fall into silence are dead.
        self._era = 0
        # Each open end's era.
        self._eras: dict[asyncio.StreamWriter, int] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fall_silent(self) -> None:
        self.silent = True
        self._era += 1

    def speak(self, reset_dead: bool = True) -> None:
        """New connections pass again. ``reset_dead=False``: the dead ones stay dead, passing
        nothing and never reset, as a phone's after it moved from one network to another."""
        self.silent = False
        if not reset_dead:
            return
        for writer, era in list(self._eras.items()):
            if era < self._era:
                writer.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        # Made while silent: of the dead era, it never passes anything.
        era = self._era - 1 if self.silent else self._era
        ends = [writer]
        self._eras[writer] = era
        try:
            if self.silent:
                while await reader.read(65536):
                    pass
                return
            upstream_reader, upstream = await asyncio.open_connection(
                "127.0.0.1", self.upstream_port
            )
            ends.append(upstream)
            self._ends.add(upstream)
            self._eras[upstream] = era
            await asyncio.gather(
                self._pump(reader, upstream, era), self._pump(upstream_reader, writer, era)
            )
        except ConnectionError:
            pass
        finally:
            for end in ends:
                self._ends.discard(end)
                self._eras.pop(end, None)
                end.transport.abort()

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, era: int
    ) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await source.read(65536):
                if era < self._era:
                    continue  # the line is dead: what was sent is lost
                sink.write(data)
                await sink.drain()
        if era == self._era:
            # A close on a live line goes through; on a dead one it is lost with the rest.
            sink.close()


def open_websockets(server: RunningServer) -> int:
    """The websocket connections uvicorn still holds: its own count, not the hub's."""
    return sum("WebSocket" in type(c).__name__ for c in server.server.server_state.connections)


def the_websocket(server: RunningServer) -> Any:
    """uvicorn's end of the one websocket connection the server holds."""
    (connection,) = [
        c for c in server.server.server_state.connections if "WebSocket" in type(c).__name__
    ]
    return connection


@contextlib.asynccontextmanager
async def frozen_phone(world: World, token: str) -> AsyncIterator[ClientConnection]:
    """A phone welcomed, then frozen with its connection up: its system still acknowledges
    the packets, its window shut. The window is small, so that the kernel's buffers on the
    way fill with a few megabytes."""
    uri = parse_uri(world.ws_url)
    line = socket.socket()
    line.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    line.connect((uri.host, uri.port))
    async with connect(world.ws_url, sock=line, compression=None, close_timeout=0.1) as ws:
        await ws.send(json.dumps({"type": "hello", "token": token, "resume_from": 0}))
        await asyncio.wait_for(ws.recv(), 5)
        ws.transport.pause_reading()
        yield ws


async def assert_let_go(world: World, server: RunningServer, user_id: str) -> None:
    """The user's socket has left the hub and uvicorn holds no websocket connection (within
    a few seconds)."""
    for _ in range(60):
        if not world.runtime.hub.is_connected(user_id) and open_websockets(server) == 0:
            break
        await asyncio.sleep(0.05)
    assert not world.runtime.hub.is_connected(user_id)
    assert open_websockets(server) == 0


def watch_folder_syncs(
    monkeypatch: pytest.MonkeyPatch, folder: Path, seen: Callable[[], bool]
) -> list[bool]:
    """From now on, at each fsync of ``folder`` (which makes the names in it last through a
    power loss), what ``seen()`` said of what was in place then."""
    synced: list[bool] = []
    fsync = os.fsync
    watched = os.stat(folder)

    def watched_fsync(fd: int) -> None:
        fsync(fd)
        target = os.fstat(fd)
        if (target.st_dev, target.st_ino) == (watched.st_dev, watched.st_ino):
            synced.append(seen())

    monkeypatch.setattr(os, "fsync", watched_fsync)
    return synced
