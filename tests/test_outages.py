"""A database that goes away: requests are answered 503 database_unavailable (nothing written),
/readyz reports the server not ready until a write succeeds again, bugs stay 500, and
acknowledgements received before a shutdown are not silently lost."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event, text
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from dispatch.clock import ManualClock
from dispatch.config import Settings
from dispatch.db import create_engine
from dispatch.errors import install_error_handlers
from dispatch.outages import database_unavailable, error_kind
from dispatch.runtime import Runtime
from tests.conftest import RunningServer, free_port, pg_admin
from tests.processes import ServerProcess, cli, server_env
from tests.support import World, get_token, open_socket

REPORT = {"location": {"lon": 114.159, "lat": 22.847}, "category": "fight"}


async def refuse_connections(database_url: str) -> None:
    """PostgreSQL stops taking connections to this database (and only this one), and ends the
    ones it has."""
    name = make_url(database_url).database
    async with pg_admin() as admin:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )


async def allow_connections(database_url: str) -> None:
    name = make_url(database_url).database
    async with pg_admin() as admin:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


@asynccontextmanager
async def sqlite_write_locked(database_url: str) -> AsyncIterator[None]:
    """Another connection holds SQLite's write lock: the server's writes fail with "database
    is locked" once its busy timeout has passed. The lock is taken off the event loop: the
    server on this loop may be inside a write of its own (a heartbeat), which must finish for
    the lock to come free."""
    path = str(make_url(database_url).database)
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        await asyncio.to_thread(holder.execute, "BEGIN IMMEDIATE")
        yield
        holder.execute("ROLLBACK")
    finally:
        holder.close()


@asynccontextmanager
async def outage(backend: str, database_url: str) -> AsyncIterator[None]:
    if backend == "sqlite":
        async with sqlite_write_locked(database_url):
            yield
        return
    await refuse_connections(database_url)
    try:
        yield
    finally:
        await allow_connections(database_url)


async def ready_again(http: httpx.AsyncClient) -> httpx.Response:
    """/readyz until it answers 200 (the fan-out listener reconnects on its own schedule)."""
    for _ in range(600):
        reply = await http.get("/readyz")
        if reply.status_code == 200:
            return reply
        await asyncio.sleep(0.05)
    raise AssertionError(f"never ready again: {reply.text}")


@pytest.fixture
async def quiet_server(settings: Settings, clock: ManualClock) -> AsyncIterator[RunningServer]:
    # Background writes (presence) rare, so that on SQLite the request is what meets the lock.
    running = RunningServer(settings.model_copy(update={"presence_heartbeat_s": 3600}), clock)
    await running.start()
    yield running
    await running.stop()


async def test_a_database_outage_is_a_503_with_retry_after_and_readyz_follows_it(
    backend: str, quiet_server: RunningServer
) -> None:
    world = World(quiet_server.app, f"http://127.0.0.1:{quiet_server.port}", quiet_server.clock)
    url = quiet_server.settings.database_url
    operator = await world.operator()
    await world.team()
    # SQLite's busy timeout is 10 s: a longer wait than the helper's client takes.
    async with httpx.AsyncClient(base_url=world.base_url, timeout=120) as http:
        schema = (await http.get("/openapi.json")).json()
        declared = schema["paths"]["/api/v1/incidents"]["post"]["responses"]["503"]
        assert "database_unavailable" in declared["description"]
        async with outage(backend, url):
            reply = await http.post("/api/v1/incidents", json=REPORT, headers=operator.headers)
            assert reply.status_code == 503, reply.text
            body = reply.json()
            assert body["error"] == "database_unavailable"
            assert body["detail"]
            assert reply.headers["Retry-After"] == str(body["retry_after_s"])
            assert body["retry_after_s"] >= 1
            ready = await http.get("/readyz")
            assert ready.status_code == 503, ready.text
            assert ready.json()["status"] != "ready"
            assert int(ready.headers["Retry-After"]) >= 1
            # Counted by its kind, not by the driver's class name ("Error", "OperationalError").
            metrics = (await http.get("/metrics")).text
            kind = "locked" if backend == "sqlite" else "connection"
            assert f'dispatch_database_errors_total{{error="{kind}"}}' in metrics
        # Once a write succeeds again (readyz's own), ready; nothing of the refused report.
        assert (await ready_again(http)).json()["status"] == "ready"
        listed = await http.get("/api/v1/incidents", headers=operator.headers)
        assert listed.status_code == 200 and listed.json() == []
        reply = await http.post("/api/v1/incidents", json=REPORT, headers=operator.headers)
        assert reply.status_code == 201, reply.text
    await world.close()


async def test_readyz_stays_not_ready_while_writes_fail_though_reads_work(
    backend: str, quiet_server: RunningServer
) -> None:
    if backend != "sqlite":
        pytest.skip("on PostgreSQL an unreachable database fails the reads too")
    url = quiet_server.settings.database_url
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{quiet_server.port}", timeout=120
    ) as http:
        assert (await http.get("/readyz")).status_code == 200
        async with sqlite_write_locked(url):
            # A unit of work of the server meets the outage (a write of its own).
            runtime = quiet_server.app.state.runtime
            with pytest.raises(DBAPIError):
                async with runtime.transaction() as session:
                    await session.execute(text("DELETE FROM presence_beats WHERE instance = 'x'"))
            ready = await http.get("/readyz")
            assert ready.status_code == 503
            assert ready.json() == {"status": "database refuses writes", "detail": "locked"}
            assert int(ready.headers["Retry-After"]) >= 1
        assert (await ready_again(http)).json()["status"] == "ready"


# A name no DNS answers for (RFC 6761).
UNRESOLVED_HOST = "no-such-db-host.invalid"


@contextmanager
def connecting_with(**params: object) -> Iterator[None]:
    """Every connection to PostgreSQL this process makes meanwhile is made with these of
    asyncpg's parameters (``host=UNRESOLVED_HOST``: as compose's ``postgres`` while its
    container restarts, a name nobody answers for)."""

    def changed(_dialect: Any, _record: Any, _cargs: Any, cparams: dict[str, Any]) -> None:
        cparams.update(params)

    # On the dialect's class: its listeners come before an engine's own, and an engine's
    # listener that makes the connection is the last one asked.
    event.listen(PGDialect_asyncpg, "do_connect", changed)
    try:
        yield
    finally:
        event.remove(PGDialect_asyncpg, "do_connect", changed)


async def test_a_database_host_that_does_not_resolve_is_an_outage_not_a_bug(
    backend: str, quiet_server: RunningServer
) -> None:
    """The name resolving to nothing was answered 500, left /readyz's write check alone and
    was counted as no database error: the driver raises the network's error as it is."""
    if backend == "sqlite":
        pytest.skip("SQLite has no host to reach")
    world = World(quiet_server.app, f"http://127.0.0.1:{quiet_server.port}", quiet_server.clock)
    runtime: Runtime = quiet_server.app.state.runtime
    operator = await world.operator()
    await world.team()
    async with httpx.AsyncClient(base_url=world.base_url, timeout=120) as http:
        with connecting_with(host=UNRESOLVED_HOST):
            # The restart ended every connection the server held.
            for engine in runtime.pools().values():
                await engine.dispose()
            reply = await http.post("/api/v1/incidents", json=REPORT, headers=operator.headers)
            assert reply.status_code == 503, reply.text
            body = reply.json()
            assert body["error"] == "database_unavailable"
            assert reply.headers["Retry-After"] == str(body["retry_after_s"])
            assert runtime.writes.failing
            assert (await http.get("/readyz")).status_code == 503
            metrics = (await http.get("/metrics")).text
            assert 'dispatch_database_errors_total{error="connection"}' in metrics
        assert (await ready_again(http)).json()["status"] == "ready"
        reply = await http.post("/api/v1/incidents", json=REPORT, headers=operator.headers)
        assert reply.status_code == 201, reply.text
    await world.close()


async def test_readyz_names_the_kind_of_a_database_error_and_logs_its_text(
    backend: str, quiet_server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Anyone may ask /readyz (nginx passes it): it answered the driver's text, which names the
    database's host and port (a connect refused) or its name."""
    if backend == "sqlite":
        pytest.skip("SQLite has no host to reach")
    runtime: Runtime = quiet_server.app.state.runtime
    port = free_port()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{quiet_server.port}") as http:
        with connecting_with(port=port), caplog.at_level(logging.WARNING, logger="dispatch.app"):
            for engine in runtime.pools().values():
                await engine.dispose()
            ready = await http.get("/readyz")
        assert ready.status_code == 503
        assert ready.json() == {"status": "unavailable", "detail": "connection"}
        assert str(port) not in ready.text
        [logged] = [r.getMessage() for r in caplog.records if r.name == "dispatch.app"]
        assert logged.startswith("/readyz: the database did not answer (connection)")
        assert str(port) in logged
        assert (await ready_again(http)).json()["status"] == "ready"


# ---------------------------------------------------------------- what counts as an outage


async def test_refusals_for_the_data_or_the_statement_are_not_outages(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("CREATE TEMPORARY TABLE t (id INTEGER PRIMARY KEY)"))
            await connection.execute(text("INSERT INTO t VALUES (1)"))
            with pytest.raises(DBAPIError) as duplicate:
                await connection.execute(text("INSERT INTO t VALUES (1)"))
        assert not database_unavailable(duplicate.value)
        assert error_kind(duplicate.value) == "constraint"
        async with engine.connect() as connection:
            with pytest.raises(DBAPIError) as missing:
                await connection.execute(text("SELECT * FROM no_such_table"))
        assert not database_unavailable(missing.value)
        # The same word on both: SQLite raises OperationalError, PostgreSQL ProgrammingError.
        assert error_kind(missing.value) == "statement"
    finally:
        await engine.dispose()


async def test_a_database_that_cannot_be_reached_is_an_outage(backend: str) -> None:
    if backend == "sqlite":
        url = "sqlite+aiosqlite:////no/such/dir/dispatch.db"
    else:
        url = "postgresql+asyncpg://postgres@127.0.0.1:5432/dispatch_no_such_database"
    engine = create_engine(url)
    try:
        with pytest.raises(DBAPIError) as refused:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        assert database_unavailable(refused.value)
        assert error_kind(refused.value) == "connection"
    finally:
        await engine.dispose()


async def test_a_connect_that_times_out_is_an_outage() -> None:
    """A host that takes the connection and never answers (a firewall dropping the packets,
    a hung machine): asyncpg gives up after its connect timeout with a TimeoutError."""

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    listening = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    engine = create_engine(f"postgresql+asyncpg://dispatch@127.0.0.1:{port}/dispatch")
    try:
        # asyncpg's connect timeout, 60 s unless told.
        with connecting_with(timeout=0.5), pytest.raises(DBAPIError) as timed_out:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        assert isinstance(timed_out.value.orig.__cause__, TimeoutError)
        assert database_unavailable(timed_out.value)
        assert error_kind(timed_out.value) == "connection"
        assert "timed out connecting" in str(timed_out.value)
    finally:
        await engine.dispose()
        listening.close()
        await listening.wait_closed()


async def test_an_os_error_that_is_not_the_databases_stays_a_500() -> None:
    """Only what reaching the database raised is an outage: a file the server cannot read is
    a bug, not a reason for the client to try again."""
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/read")
    async def read() -> None:
        await asyncio.to_thread(Path("/no/such/dir/file").read_text)

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        reply = await http.post("/read")
    assert reply.status_code == 500
    assert not database_unavailable(FileNotFoundError(2, "No such file or directory"))


async def test_a_bug_in_a_database_statement_stays_a_500(tmp_path: Path) -> None:
    """The handler answers outages only: a constraint failure is re-raised to the 500."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'bug.db'}")
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/twice")
    async def twice() -> None:
        async with engine.begin() as connection:
            await connection.execute(text("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY)"))
            await connection.execute(text("INSERT INTO t VALUES (1)"))
            await connection.execute(text("INSERT INTO t VALUES (1)"))

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            reply = await http.post("/twice")
        assert reply.status_code == 500
        assert "database_unavailable" not in reply.text
    finally:
        await engine.dispose()


# ---------------------------------------------------------------- acknowledgements at shutdown


async def _alerted_and_acked_while_refused(
    env: dict[str, str], server: ServerProcess, database_url: str
) -> tuple[str, str, str]:
    """A leader's phone acknowledges an alert while PostgreSQL refuses connections: returns
    the leader's id and token and the dispatch id, once the server said it could not record it."""
    await cli(env, "users", "add", "chief", "--role", "admin", stdin="admin-password\n")
    await server.start()
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        admin = {"Authorization": f"Bearer {await get_token(http, 'chief', 'admin-password')}"}
        body = {"name": "三中驻点队", "kind": "fixed_post", "location": REPORT["location"]}
        team = (await http.post("/api/v1/teams", json=body, headers=admin)).json()
        body = {"name": "lead", "password": "leader-password", "role": "leader"}
        added = await http.post(
            "/api/v1/users", json={**body, "team_id": team["id"]}, headers=admin
        )
        assert added.status_code == 201, added.text
        token = await get_token(http, "lead", "leader-password")
        phone = await open_socket(server.ws_url, token)
        reply = await http.post("/api/v1/incidents", json=REPORT, headers=admin)
        assert reply.status_code == 201, reply.text
    alert = await phone.next_of("alert", timeout=20)
    await refuse_connections(database_url)
    await phone.ack()
    for _ in range(1200):
        if "could not record acknowledgements" in server.output():
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError(server.output())
    await phone.close()
    return added.json()["id"], token, alert["data"]["dispatch"]["id"]


async def _delivered_at(database_url: str, dispatch_id: str) -> object:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            found = await connection.execute(
                text("SELECT delivered_at FROM dispatches WHERE id = :id"), {"id": dispatch_id}
            )
            return found.scalar_one()
    finally:
        await engine.dispose()


async def test_acknowledgements_refused_at_shutdown_are_retried_until_the_database_is_back(
    postgres_only: str, tmp_path: Path
) -> None:
    env = server_env(postgres_only, tmp_path, shutdown_ack_flush_s="120")
    server = ServerProcess(env, tmp_path / "server.log")
    try:
        _, _, dispatch_id = await _alerted_and_acked_while_refused(env, server, postgres_only)
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        # The stop tries again (the window is long) until the database comes back.
        for _ in range(1200):
            _, stopping, after = server.output().partition("Waiting for application shutdown")
            if stopping and "could not record acknowledgements" in after:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(server.output())
        assert server.process.poll() is None, server.output()
        await allow_connections(postgres_only)
        assert server.process.wait(60) in (0, -signal.SIGTERM), server.output()
    finally:
        await allow_connections(postgres_only)
        server.stop()
    assert "were not recorded" not in server.output()
    assert await _delivered_at(postgres_only, dispatch_id) is not None


async def test_acknowledgements_still_refused_are_named_and_recorded_when_the_phone_resumes(
    postgres_only: str, tmp_path: Path
) -> None:
    env = server_env(postgres_only, tmp_path, shutdown_ack_flush_s="0.5")
    server = ServerProcess(env, tmp_path / "server.log")
    try:
        leader_id, token, dispatch_id = await _alerted_and_acked_while_refused(
            env, server, postgres_only
        )
        assert server.terminate() in (0, -signal.SIGTERM)
    finally:
        await allow_connections(postgres_only)
        server.stop()
    errors = [line for line in server.output().splitlines() if "were not recorded" in line]
    assert len(errors) == 1, server.output()
    error = json.loads(errors[0])
    assert error["level"] == "ERROR"
    assert error["message"].startswith("1 acknowledgements of 1 users were not recorded")
    assert f"{leader_id}: 1" in error["message"]
    assert "when those phones resume" in error["message"]
    assert await _delivered_at(postgres_only, dispatch_id) is None

    # The phone comes back and resumes from the alert it holds: that records the receipt.
    again = ServerProcess(env, tmp_path / "again.log")
    try:
        await again.start()
        phone = await open_socket(again.ws_url, token, resume_from=1)
        for _ in range(600):
            if await _delivered_at(postgres_only, dispatch_id) is not None:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(again.output())
        await phone.close()
    finally:
        again.terminate()
        again.stop()
