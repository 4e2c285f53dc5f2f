"""The database's host goes dark (power lost, the network cut: packets dropped, nothing sent
back) while a report's statement waits for its answer. Nothing tells the server's end of the
connection so: it waited for TCP to give up, hours by default, and the report with it. Now it
is given up after about DISPATCH_DB_HOST_TIMEOUT_S: the report is answered 503, the pool
drops the dead connection, and once the host is back the report sent again is stored, once.

The server runs in a network namespace of the test's own, joined to this host by two links:
one to the database (through a proxy on this host), which the test takes down, so that the
kernel drops what crosses it, and one that the test's requests take. The same holds for the
dedicated connection on which the server LISTENs for other processes' announcements, and for
the commands an operator runs (``dispatch db upgrade``, ``dispatch audit verify``)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import URL, make_url

from tests.processes import ServerProcess, server_env
from tests.realtime.test_durability import build_town
from tests.support import QINGXI, open_socket

REPORT = {"location": {"lon": QINGXI[0], "lat": QINGXI[1]}, "category": "fight"}
HOST_TIMEOUT_S = 2.0


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


class Namespace:
    """A network namespace with two links to this host, each a veth pair with a /30 of the
    link-local range: ``database`` (this host's end at ``host_db``) and ``api`` (the
    namespace's end at ``inside_api``)."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:6]
        self.name = f"dispatch-{tag}"
        self.database = f"dz{tag}d"
        self.api = f"dz{tag}a"
        octet = random.randint(1, 254)
        self.host_db, self.inside_db = f"169.254.{octet}.1", f"169.254.{octet}.2"
        self.host_api, self.inside_api = f"169.254.{octet}.5", f"169.254.{octet}.6"

    def create(self) -> None:
        ip("netns", "add", self.name)
        ip("-n", self.name, "link", "set", "lo", "up")
        for link, host, inside in (
            (self.database, self.host_db, self.inside_db),
            (self.api, self.host_api, self.inside_api),
        ):
            peer = f"{link}n"
            ip("link", "add", link, "type", "veth", "peer", "name", peer)
            ip("link", "set", peer, "netns", self.name)
            ip("addr", "add", f"{host}/30", "dev", link)
            ip("link", "set", link, "up")
            ip("-n", self.name, "addr", "add", f"{inside}/30", "dev", peer)
            ip("-n", self.name, "link", "set", peer, "up")

    def go_dark(self) -> None:
        """What crosses the database's link is dropped from now on, without a word back."""
        ip("link", "set", self.database, "down")

    def come_back(self) -> None:
        ip("link", "set", self.database, "up")

    def remove(self) -> None:
        for link in (self.database, self.api):
            subprocess.run(["ip", "link", "del", link], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=10)


class DarkMidStatement:
    """A TCP proxy on this host's end of the database's link, in front of PostgreSQL. Once
    armed, the first statement that holds ``swallow`` (by default: writes an incident) is
    swallowed and the link goes dark: the client waits for its answer, and nothing it sends
    from then on arrives. PostgreSQL's end of that connection stays open, its transaction
    with it, as when the network between is cut. Never armed, it only relays."""

    def __init__(
        self,
        listen_host: str,
        upstream: tuple[str, int],
        namespace: Namespace,
        swallow: bytes = b"INSERT INTO incidents",
    ) -> None:
        self.listen_host = listen_host
        self.swallow = swallow
        self.upstream = upstream
        self.namespace = namespace
        self.port = 0
        self.armed = False
        self.dark = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._ends: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.listen_host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for end in self._ends:
            end.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, client: asyncio.StreamReader, to_client: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._ends.append(to_client)
        server, to_server = await asyncio.open_connection(*self.upstream)
        self._ends.append(to_server)
        swallowing = [False]

        async def up() -> None:
            while data := await client.read(65536):
                if self.armed and self.swallow in data:
                    self.armed = False
                    swallowing[0] = True
                    self.namespace.go_dark()
                    self.dark.set()
                if swallowing[0]:
                    continue
                to_server.write(data)
                await to_server.drain()
            if not swallowing[0]:
                to_server.close()

        async def down() -> None:
            while data := await server.read(65536):
                if not swallowing[0]:
                    to_client.write(data)
                    await to_client.drain()
            to_client.close()

        try:
            await asyncio.gather(up(), down(), return_exceptions=True)
        finally:
            self._tasks.discard(task)


class ServerInNamespace(ServerProcess):
    """``dispatch serve`` inside ``namespace``, listening on its end of the ``api`` link."""

    def __init__(self, env: dict[str, str], log: Path, namespace: Namespace) -> None:
        super().__init__(env, log, args=("--host", namespace.inside_api))
        self.namespace = namespace
        self.base_url = f"http://{namespace.inside_api}:{self.port}"
        self.ws_url = f"ws://{namespace.inside_api}:{self.port}/ws"

    def command(self) -> list[str]:
        return ["ip", "netns", "exec", self.namespace.name, *super().command()]


def can_make_networks(namespace: Namespace) -> None:
    """Make the namespace; a developer's machine without root or ``ip`` skips the test, CI
    (``CI`` set, as ``.ci/run`` sets it, running as root) fails it instead."""
    try:
        namespace.create()
    except (OSError, subprocess.SubprocessError) as error:
        said = (getattr(error, "stderr", b"") or b"").decode(errors="replace").strip()
        reason = f"cannot make a network namespace here: {error} {said}"
        if os.environ.get("CI"):
            raise AssertionError(reason) from error
        pytest.skip(reason)


@dataclass
class DarkLink:
    """A namespace of the test's own and the proxy on its database link, started: the server
    (or command) inside reaches the database at ``url``."""

    namespace: Namespace
    proxy: DarkMidStatement
    url: URL

    def env(self, tmp_path: Path, **settings: str) -> dict[str, str]:
        """A server's environment through the link, giving a dark host up after
        HOST_TIMEOUT_S."""
        through = self.url.render_as_string(hide_password=False)
        return server_env(through, tmp_path, db_host_timeout_s=str(HOST_TIMEOUT_S), **settings)


@contextlib.asynccontextmanager
async def dark_link(database_url: str, swallow: bytes | None = None) -> AsyncIterator[DarkLink]:
    namespace = Namespace()
    url = make_url(database_url)
    upstream = (url.host or "127.0.0.1", url.port or 5432)
    proxy = DarkMidStatement(
        namespace.host_db, upstream, namespace, *([swallow] if swallow else [])
    )
    try:
        can_make_networks(namespace)
        await proxy.start()
        yield DarkLink(namespace, proxy, url.set(host=namespace.host_db, port=proxy.port))
    finally:
        await proxy.close()
        namespace.remove()


async def test_a_report_whose_database_host_goes_dark_mid_statement_fails_in_bounded_time(
    postgres_only: str, tmp_path: Path, servers: list[ServerProcess]
) -> None:
    async with dark_link(postgres_only) as link:
        namespace, proxy = link.namespace, link.proxy
        env = link.env(tmp_path, db_idle_in_transaction_s="2")
        server = ServerInNamespace(env, tmp_path / "server.log", namespace)
        servers.append(server)
        town = await build_town(server, ring_team=False)
        reported = {**town.operator, "Idempotency-Key": uuid.uuid4().hex}

        proxy.armed = True
        # Before, the report was still waiting when the client gave up.
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:
            started = time.monotonic()
            reply = await http.post("/api/v1/incidents", json=REPORT, headers=reported)
            waited = time.monotonic() - started
        assert proxy.dark.is_set(), "the report's statement was not the one swallowed"
        assert reply.status_code == 503, reply.text
        assert reply.json()["error"] == "database_unavailable", reply.text
        # Given up after the keepalive's probes went unanswered (about HOST_TIMEOUT_S),
        # with room for a loaded machine.
        assert waited < HOST_TIMEOUT_S + 8, f"answered after {waited:.1f} s"

        namespace.come_back()
        # The pool's connections of the dark time are dropped; new ones are made. Sent again
        # with its key, the report is stored, and only once: nothing of the first was kept.
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            deadline = time.monotonic() + 30
            while True:
                again = await http.post("/api/v1/incidents", json=REPORT, headers=reported)
                if again.status_code != 503 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.5)
            assert again.status_code == 201, again.text
            assert "Idempotent-Replayed" not in again.headers
            listed = await http.get("/api/v1/incidents", headers=town.operator)
        assert [incident["id"] for incident in listed.json()] == [again.json()["id"]]


async def fanout_connected(server: ServerProcess) -> float:
    """The server's ``dispatch_fanout_connected``, read from /metrics (which asks the
    database nothing, so it answers while the database's host is dark)."""
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as http:
        exposition = (await http.get("/metrics")).text
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == "dispatch_fanout_connected":
                return sample.value
    raise AssertionError("no dispatch_fanout_connected in /metrics")


async def test_the_fan_out_listener_gives_a_dark_host_up_and_catches_up_once_it_is_back(
    postgres_only: str, tmp_path: Path, servers: list[ServerProcess]
) -> None:
    async with dark_link(postgres_only) as link:
        namespace = link.namespace
        here = ServerInNamespace(link.env(tmp_path), tmp_path / "here.log", namespace)
        servers.append(here)
        town = await build_town(here, ring_team=False)
        # Another process on the same database, on this host: its link never goes dark.
        elsewhere = ServerProcess(server_env(postgres_only, tmp_path), tmp_path / "there.log")
        servers.append(elsewhere)
        await elsewhere.start()
        leader = town.leaders[0]
        phone = await open_socket(here.ws_url, leader.token)
        assert await fanout_connected(here) == 1

        namespace.go_dark()
        # The listener's connection is given up after about HOST_TIMEOUT_S unheard (room
        # left for a loaded machine). Before, its own keep-alive query took 10 to 20 s to
        # notice, whatever DISPATCH_DB_HOST_TIMEOUT_S said, and PostgreSQL's end of it stayed
        # for as long as TCP's defaults held it.
        deadline = time.monotonic() + HOST_TIMEOUT_S + 6
        while await fanout_connected(here) == 1:
            assert time.monotonic() < deadline, "the listener still thinks itself connected"
            await asyncio.sleep(0.2)

        # Reported in the other process while this one hears nothing: its announcement is lost
        # to this process, the rows are not.
        async with httpx.AsyncClient(base_url=elsewhere.base_url, timeout=30) as http:
            reply = await http.post("/api/v1/incidents", json=REPORT, headers=town.operator)
        assert reply.status_code == 201, reply.text

        namespace.come_back()
        # The listener connects again (within a second or so of the host), catches up from
        # the database, and the leader's phone on this process is sent the alert.
        alert = await phone.next_of("alert", timeout=HOST_TIMEOUT_S + 5 + 10)
        assert alert["data"]["incident"]["id"] == reply.json()["id"]
        assert await fanout_connected(here) == 1
        await phone.close()


# Each command and a statement of its own that the dark link swallows: the migrations' lock
# (its first statement, on the migrations' engine), and verify's read of the event log (after
# it has checked the schema on an engine of its own).
COMMANDS = {
    "db upgrade": (("db", "upgrade"), b"pg_advisory_xact_lock"),
    "audit verify": (("audit", "verify"), b"incident_events"),
}


async def dispatch_in_namespace(
    link: DarkLink, tmp_path: Path, args: Sequence[str], what: str
) -> str:
    """Run ``dispatch <args>`` inside the link's namespace, through its armed proxy, and give
    what it said on stderr once it has stopped with exit 1 after sending the swallowed
    statement. It is given a minute, room enough for a loaded machine."""
    child = await asyncio.create_subprocess_exec(
        *("ip", "netns", "exec", link.namespace.name, sys.executable, "-m", "dispatch"),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=link.env(tmp_path),
    )
    try:
        out, err = await asyncio.wait_for(child.communicate(), 60)
    except TimeoutError:
        child.kill()  # not left running
        await child.wait()
        raise AssertionError(f"{what} still waiting a minute on a dark host") from None
    assert link.proxy.dark.is_set(), (f"{what} never sent its statement", err)
    said = err.decode()
    assert child.returncode == 1, (child.returncode, out, said)
    return said


@pytest.mark.parametrize("command", COMMANDS)
async def test_a_command_whose_database_host_goes_dark_mid_statement_says_so_and_exits(
    postgres_only: str, tmp_path: Path, command: str
) -> None:
    args, statement = COMMANDS[command]
    async with dark_link(postgres_only, swallow=statement) as link:
        link.proxy.armed = True
        # Before, the command waited for the answer until TCP gave up, hours later.
        said = await dispatch_in_namespace(link, tmp_path, args, f"dispatch {command}")
        # One line naming the setting it came from and what happened, without a traceback.
        assert said.startswith("error: DISPATCH_DATABASE_URL ("), said
        assert said.count("\n") == 1, said
        assert "heard nothing from for DISPATCH_DB_HOST_TIMEOUT_S" in said, said


# What seeds a town before any server serves it, each on connections of its own, and the
# statement of the seeding that the dark link swallows: the demo's first team, and the
# simulator's teams (after its migrations).
SEEDINGS = {
    "serve --demo": ("serve", "--demo"),
    "simulate": (
        *("simulate", "--stations", "1", "--fixed-per-station", "1"),
        *("--mobile-per-station", "0", "--side-km", "2", "--incidents", "1"),
    ),
}


@pytest.mark.parametrize("seeding", SEEDINGS)
async def test_a_seeding_whose_database_host_goes_dark_mid_statement_says_so_and_exits(
    postgres_only: str, tmp_path: Path, seeding: str
) -> None:
    async with dark_link(postgres_only, swallow=b"INSERT INTO teams") as link:
        link.proxy.armed = True
        args = SEEDINGS[seeding]
        if seeding == "simulate":
            through = link.url.render_as_string(hide_password=False)
            args = (*args, "--database-url", through)
        # Before, the seeding's connections took no DISPATCH_DB_HOST_TIMEOUT_S: it waited
        # for the answer until TCP gave up, hours later.
        said = await dispatch_in_namespace(link, tmp_path, args, f"dispatch {seeding}")
        # One line naming where the database came from and what happened, no traceback.
        assert said.startswith("error: "), said
        assert said.count("\n") == 1, said
        assert "heard nothing from for DISPATCH_DB_HOST_TIMEOUT_S" in said, said


async def test_the_fan_out_listener_is_back_promptly_once_a_dark_host_returns(
    postgres_only: str, tmp_path: Path, servers: list[ServerProcess]
) -> None:
    """Alerts of other processes reach this one's phones live again within a second or two of
    the database's host answering again, however long it was dark. Before, the listener
    waited out its pause between tries, up to 5 s, and a try begun while the host was dark
    waited out its timeout: alerts of that gap came only with the catch-up."""
    async with dark_link(postgres_only) as link:
        namespace = link.namespace
        log = tmp_path / "here.log"
        here = ServerInNamespace(link.env(tmp_path), log, namespace)
        servers.append(here)
        town = await build_town(here, ring_team=False)
        elsewhere = ServerProcess(server_env(postgres_only, tmp_path), tmp_path / "there.log")
        servers.append(elsewhere)
        await elsewhere.start()
        phone = await open_socket(here.ws_url, town.leaders[0].token)

        namespace.go_dark()
        deadline = time.monotonic() + HOST_TIMEOUT_S + 6
        while await fanout_connected(here) == 1:
            assert time.monotonic() < deadline, "the listener still thinks itself connected"
            await asyncio.sleep(0.2)
        # Dark for a while, tries failing one after another; back just as the listener begins
        # its longest pause between tries, if it keeps one (the worst moment for it).
        longest = "reconnecting in 5.0s"
        before = log.read_text(errors="replace").count(longest)
        dark_until = time.monotonic() + 20
        while time.monotonic() < dark_until:
            if log.read_text(errors="replace").count(longest) > before:
                break
            await asyncio.sleep(0.05)
        namespace.come_back()
        back = time.monotonic()
        while await fanout_connected(here) != 1:
            assert time.monotonic() < back + 30, "the listener never came back"
            await asyncio.sleep(0.05)
        gap = time.monotonic() - back
        print(f"fan-out listener back {gap:.2f} s after the host")
        assert gap < 3, f"the listener came back {gap:.1f} s after the host"

        # And live again: a report in the other process reaches this one's phone at once.
        async with httpx.AsyncClient(base_url=elsewhere.base_url, timeout=30) as http:
            sent = time.monotonic()
            reply = await http.post("/api/v1/incidents", json=REPORT, headers=town.operator)
        assert reply.status_code == 201, reply.text
        alert = await phone.next_of("alert", timeout=10)
        assert alert["data"]["incident"]["id"] == reply.json()["id"]
        assert time.monotonic() - sent < 3
        await phone.close()
