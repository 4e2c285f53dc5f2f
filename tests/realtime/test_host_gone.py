"""A server whose host goes dark (power lost, network cut) in the middle of a transaction:
PostgreSQL keeps the session and its row locks until it learns the connection is dead, and
every report locks the board's mailbox. The other servers' reports must not wait on it for
longer than DISPATCH_DB_IDLE_IN_TRANSACTION_S."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url

from alerts.fanout import APPLICATION_NAME
from dispatch.runtime import MESSAGES_CHANNEL
from tests.processes import ServerProcess, server_env
from tests.realtime.test_durability import build_town
from tests.support import QINGXI, TcpProxy

REPORT = {"location": {"lon": QINGXI[0], "lat": QINGXI[1]}, "category": "fight"}


class GoesDark(TcpProxy):
    """A TCP proxy in front of PostgreSQL. Once armed, the first transaction that announces
    new messages (a report's, which holds the board's mailbox from its last statement) has
    its COMMIT swallowed, and from then on nothing passes either way on that connection, which
    stays open at PostgreSQL's end: the server's host went dark with the transaction open, and
    nothing tells the database so. The fan-out listener's connection passes as it is."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        super().__init__()
        self.upstream = (upstream_host, upstream_port)
        self.armed = False
        # Set once a transaction was left open.
        self.dark = asyncio.Event()

    async def _serve(self, client: asyncio.StreamReader, to_client: asyncio.StreamWriter) -> None:
        server, to_server = await asyncio.open_connection(*self.upstream)
        # Left open at PostgreSQL's end when dark, until the proxy closes.
        self._ends.add(to_server)
        state = {"announcing": False, "dark": False}

        async def up() -> None:
            listener = False
            while data := await client.read(65536):
                if state["dark"]:
                    continue
                listener = listener or APPLICATION_NAME.encode() in data
                if not listener and MESSAGES_CHANNEL.encode() in data:
                    state["announcing"] = True
                # A simple query, as the driver sends COMMIT.
                if data[:1] == b"Q" and b"COMMIT" in data:
                    if self.armed and state["announcing"]:
                        self.armed = False
                        state["dark"] = True
                        self.dark.set()
                        continue
                    state["announcing"] = False
                to_server.write(data)
                await to_server.drain()
            if not state["dark"]:
                to_server.close()

        async def down() -> None:
            while data := await server.read(65536):
                if not state["dark"]:
                    to_client.write(data)
                    await to_client.drain()
            to_client.close()

        await asyncio.gather(up(), down(), return_exceptions=True)


async def test_a_server_gone_dark_in_a_report_holds_up_the_other_servers_reports_briefly(
    postgres_only: str, tmp_path: Path, servers: list[ServerProcess]
) -> None:
    url = make_url(postgres_only)
    proxy = GoesDark(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    through = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    env_b = server_env(postgres_only, tmp_path, db_idle_in_transaction_s="2")
    a = ServerProcess({**env_b, "DISPATCH_DATABASE_URL": through}, tmp_path / "a.log")
    b = ServerProcess(env_b, tmp_path / "b.log")
    servers.extend([a, b])
    try:
        town = await build_town(a, ring_team=False)
        await b.start()
        proxy.armed = True
        async with httpx.AsyncClient(base_url=a.base_url, timeout=60) as on_a:
            lost = asyncio.create_task(
                on_a.post("/api/v1/incidents", json=REPORT, headers=town.operator)
            )
            await asyncio.wait_for(proxy.dark.wait(), 30)
            # Its host is off: the report holds the board's mailbox at PostgreSQL's end.
            a.kill()
            with contextlib.suppress(httpx.TransportError):
                await lost
        # Before, B's report waited on that lock until the database gave the connection up
        # (two hours of TCP keepalive by default; here, for ever).
        async with httpx.AsyncClient(base_url=b.base_url, timeout=30) as on_b:
            reply = await on_b.post("/api/v1/incidents", json=REPORT, headers=town.operator)
        assert reply.status_code == 201, reply.text
    finally:
        await proxy.close()
