"""Fan-out between server processes over PostgreSQL LISTEN/NOTIFY.

Notifications carry ids only (far below PostgreSQL's 8,000-byte payload limit); receivers read
the rows from the database. A NOTIFY sent inside a transaction is delivered only when that
transaction commits, so a receiver never hears of rows it cannot read yet.

An announcement this process could not act on (its receiver failed, retried) counts as missed,
like those sent while the connection was down: the listener reconnects and runs its catch-up,
which reads the rows anew. Every connection runs it, the first too: what the process holds was
loaded before it listened. Nothing ends the listener but ``stop``; until a catch-up has
succeeded it reports itself not connected.

A database host that goes dark (power lost, the network cut: packets dropped, nothing sent
back) says nothing to the connection. Given a ``HostTimeout``, the connection gives it up once
it has heard nothing from it for about that long, and PostgreSQL's end does the same.

Given a ``lock_key``, the connection holds that session-level advisory lock while it is up,
taken again on each new connection: the process is alive for as long as the lock is held. A
process that dies, even by ``kill -9``, has its connection closed by the kernel, and
PostgreSQL frees the lock at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from sqlalchemy import ARRAY, Select, Text, bindparam, func, select
from sqlalchemy.engine import URL, make_url

from alerts.bulk import Read

log = logging.getLogger(__name__)

Receiver = Callable[[str], Awaitable[None]]
Reconnected = Callable[[], Awaitable[None]]

MAX_PAYLOAD = 7900
KEEPALIVE_S = 10.0
# A receiver that fails is tried again after each of these pauses, then the announcement
# counts as missed.
RECEIVER_RETRIES_S = (0.05, 0.25, 1.0)
FIRST_BACKOFF_S = 0.1
MAX_BACKOFF_S = 5.0
# While the database's host answers nothing (a connect timed out, or found no route), the
# listener asks its port every this often, each time with a new connect (one SYN) given this
# long, and connects as soon as one is answered. A connect left to the kernel resends its SYN
# 1, 3, 7... s after the first, and the pause after a failed try grows to MAX_BACKOFF_S: the
# listener came back up to 5 s plus its connect's timeout after the host, and the alerts of
# other processes meanwhile reached this one's phones only with the catch-up. One SYN every
# half second is nothing to a host that is not there; a host that answers but refuses (the
# database starting, too many connections) is tried with the backoff as before.
PROBE_EVERY_S = 0.5
# How long connecting, and LISTENing on every channel, may take (less if ``HostTimeout``
# says so): a connection that drops part-way without a word (a network that loses the
# packets) would otherwise hold the listener until TCP gave up, many minutes later.
CONNECT_TIMEOUT_S = 10.0
# How long a catch-up may take before it counts as failed and is run again on a new
# connection: its reads wait for a pooled connection up to the pool's timeout (30 s by
# default), then read a whole table or two.
CATCH_UP_TIMEOUT_S = 60.0
# The LISTEN connection's name in pg_stat_activity, where an administrator (or a test) tells
# it from the pools' connections: the query shown there is its keep-alive's as often as not.
APPLICATION_NAME = "fanout-listener"
# What SQLAlchemy's asyncpg adapter keeps for itself and never hands to asyncpg.connect.
ADAPTER_OPTIONS = frozenset(
    {"prepared_statement_cache_size", "prepared_statement_name_func", "async_creator_fn"}
)


@dataclass(frozen=True)
class HostTimeout:
    """How the listener's connection gives up a database host it has heard nothing from for
    about ``seconds``, in plain values its caller works out: ``socket_options``, the
    (level, option, value) set on the connection's TCP socket (keepalive, TCP_USER_TIMEOUT),
    and ``server_settings``, PostgreSQL's for its end (``tcp_keepalives_*``,
    ``tcp_user_timeout``). Connecting, and LISTENing, wait no longer than ``seconds`` either
    (nor than ``CONNECT_TIMEOUT_S``).

    Without them the listener noticed a host gone dark only by its keep-alive query, 10 to
    20 s later whatever the rest of the server was told, and PostgreSQL kept its end of the
    dead connection, a session and a connection slot, for as long as TCP's defaults held
    it: hours. A host that is alive but slow answers the probes: nothing is cut for that."""

    seconds: float
    socket_options: Sequence[tuple[int, int, int]] = ()
    server_settings: Mapping[str, str] = field(default_factory=dict)

    def apply(self, connection: asyncpg.Connection) -> None:
        # asyncpg keeps its transport to itself; the attribute has been there since 0.10.
        transport = getattr(connection, "_transport", None)
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
            return  # a Unix socket: no network between, nothing to go dark
        for level, option, value in self.socket_options:
            sock.setsockopt(level, option, value)


def asyncpg_connect_args(database_url: str) -> dict[str, Any]:
    """asyncpg.connect's keyword arguments for the SQLAlchemy URL, as the pools' connections
    get them: read by the URL's dialect (its options as keyword arguments, a ``host`` in the
    query before the address's host). Not a DSN: asyncpg reads a DSN's options as libpq's and
    sends any other (``ssl``, ``command_timeout``) to PostgreSQL as a setting, which refuses
    the connection, so that the pools served while the listener never connected."""
    url = make_url(database_url).set(drivername="postgresql+asyncpg")
    _, options = url.get_dialect()().create_connect_args(url)
    return {k: v for k, v in options.items() if k not in ADAPTER_OPTIONS}


def asyncpg_dsn(database_url: str) -> str:
    """The SQLAlchemy URL as asyncpg's DSN, for the database its pools reach (a URL without
    options: asyncpg reads a DSN's as libpq's, see ``asyncpg_connect_args``). A ``host`` in
    the query (a socket's directory) goes before the address's host there, and asyncpg reads
    the address first: the address's host is left out, or this connection alone would take
    TCP."""
    url = make_url(database_url)
    if "host" not in url.query:
        return url.set(drivername="postgresql").render_as_string(hide_password=False)
    # Its port, which names the socket's file, then goes in the query too.
    query = {**({"port": str(url.port)} if url.port else {}), **url.query}
    dsn = URL.create("postgresql", url.username, url.password, database=url.database, query=query)
    return dsn.render_as_string(hide_password=False)


def notification(origin: str, announcements: dict[str, list[str]]) -> Read | None:
    """Every announcement of a transaction as one query, for its last write to carry
    (``write_rows(read=...)``): ids on each channel, delivered when the transaction commits.

    A NOTIFY goes out at the commit wherever the transaction sends it, so it need not be a
    round trip of its own.
    """
    channels: list[str] = []
    payloads: list[str] = []
    for channel, ids in announcements.items():
        for chunk in _chunks(ids, MAX_PAYLOAD - len(origin) - 1):
            channels.append(channel)
            payloads.append(f"{origin}:{','.join(chunk)}")
    if not channels:
        return None
    return Read(_notify_query(), {"notify_channels": channels, "notify_payloads": payloads})


@functools.cache
def _notify_query() -> Select[tuple[object]]:
    # Built once: it keys the compiled statement of the writes it rides.
    sent = (
        func.unnest(
            bindparam("notify_channels", type_=ARRAY(Text)),
            bindparam("notify_payloads", type_=ARRAY(Text)),
        )
        .table_valued("channel", "payload")
        .render_derived(name="sent")
    )
    return select(func.pg_notify(sent.c.channel, sent.c.payload)).select_from(sent)


def _chunks(ids: list[str], limit: int) -> list[list[str]]:
    chunks: list[list[str]] = [[]]
    size = 0
    for item in ids:
        if chunks[-1] and size + len(item) + 1 > limit:
            chunks.append([])
            size = 0
        chunks[-1].append(item)
        size += len(item) + 1
    return [c for c in chunks if c]


# What a connect, or a connection, gets from a host gone dark: nothing in time, or no route
# to it (the network down on the way).
UNHEARD_ERRNOS = frozenset({errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH})


def host_unheard(error: BaseException) -> bool:
    """Whether ``error`` says the database's host answered nothing (rather than refused)."""
    if isinstance(error, TimeoutError):
        return True
    return isinstance(error, OSError) and error.errno in UNHEARD_ERRNOS


class Listener:
    """One dedicated connection that LISTENs, reconnects by itself and says when it is up."""

    def __init__(
        self,
        database_url: str,
        origin: str,
        host_timeout: HostTimeout | None = None,
        lock_key: int | None = None,
    ) -> None:
        self._connect_args = asyncpg_connect_args(database_url)
        self._host_timeout = host_timeout
        self.lock_key = lock_key
        self._connect_timeout_s = CONNECT_TIMEOUT_S
        if host_timeout is not None:
            self._connect_timeout_s = min(CONNECT_TIMEOUT_S, host_timeout.seconds)
        self.origin = origin
        self._receivers: dict[str, Receiver] = {}
        self._on_reconnect: list[Reconnected] = []
        self._task: asyncio.Task[None] | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._up = asyncio.Event()
        # Set to drop the current connection: an announcement was missed, catch up anew.
        self._lost: asyncio.Event | None = None
        self._stopping = False
        self.errors = 0
        # Connections that came to listen so far; each, the first too, catches up.
        self.connections = 0
        # The pause before the next connection: doubled after each one that did not come up,
        # back to the first once one has (however it then ends).
        self._backoff = FIRST_BACKOFF_S

    def on(self, channel: str, receiver: Receiver) -> None:
        """Hand the ids other processes announce on ``channel`` to ``receiver``."""
        self._receivers[channel] = receiver

    def on_reconnect(self, callback: Reconnected) -> None:
        self._on_reconnect.append(callback)

    @property
    def connected(self) -> bool:
        return self._up.is_set()

    async def start(self) -> None:
        """Start listening; wait (a while) for the first connection, then go on regardless."""
        self._stopping = False
        self._launch()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._up.wait(), 10)

    async def stop(self) -> None:
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for handler in list(self._handlers):
            handler.cancel()

    def _launch(self) -> None:
        self._task = asyncio.create_task(self._run(), name="fanout-listener")
        self._task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        # ``_run`` never returns and catches every Exception: only something stranger ends it
        # (a stray cancellation, a BaseException). Without it this process would hear no other
        # process again while every probe said it was fine: say so, and start again.
        if self._stopping:
            return
        self._up.clear()
        self.errors += 1
        error = None if task.cancelled() else task.exception()
        log.error("fan-out listener ended unexpectedly; restarting it", exc_info=error)
        self._launch()

    async def _run(self) -> None:
        self._backoff = FIRST_BACKOFF_S
        while True:
            unheard = False
            try:
                await self._listen()
            except Exception as error:
                # Whatever failed (the connection, or the catch-up's reads in a callback:
                # SQLAlchemy's errors too), the cure is the same: connect again, catch up again.
                self.errors += 1
                unheard = self._probe_address is not None and host_unheard(error)
                if unheard:
                    log.warning(
                        "fan-out listener lost (%r); reconnecting once the database's host "
                        "answers (asked every %.1fs)",
                        error,
                        PROBE_EVERY_S,
                        exc_info=True,
                    )
                else:
                    log.warning(
                        "fan-out listener lost (%r); reconnecting in %.1fs",
                        error,
                        self._backoff,
                        exc_info=True,
                    )
            finally:
                self._up.clear()
            if unheard:
                await self._until_host_answers()
                continue
            await asyncio.sleep(self._backoff)
            self._backoff = min(self._backoff * 2, MAX_BACKOFF_S)

    @property
    def _probe_address(self) -> tuple[str, int] | None:
        """The database's TCP address, where the connection has one (not a Unix socket's
        directory, nor several hosts to choose from)."""
        host, port = self._connect_args.get("host"), self._connect_args.get("port")
        if not isinstance(host, str) or host.startswith("/") or isinstance(port, list):
            return None
        return host, int(port or 5432)

    async def _until_host_answers(self) -> None:
        """Wait until the database's port answers a connect (or refuses it: the host is back),
        a new one every PROBE_EVERY_S (``PROBE_EVERY_S``)."""
        address = self._probe_address
        assert address is not None
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                async with asyncio.timeout(PROBE_EVERY_S):
                    _, writer = await asyncio.open_connection(*address)
            except (TimeoutError, OSError) as error:
                if not host_unheard(error):
                    return  # an answer all the same (refused): try the connection itself
                await asyncio.sleep(max(0.0, started + PROBE_EVERY_S - loop.time()))
                continue
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            return

    async def _listen(self) -> None:
        host = self._host_timeout
        connection = await asyncpg.connect(
            **{
                **self._connect_args,
                "timeout": self._connect_timeout_s,
                "server_settings": {
                    **(host.server_settings if host is not None else {}),
                    "application_name": APPLICATION_NAME,
                },
            }
        )
        lost = asyncio.Event()
        self._lost = lost
        connection.add_termination_listener(lambda _: lost.set())
        try:
            if host is not None:
                host.apply(connection)
            async with asyncio.timeout(self._connect_timeout_s):
                locked = await self._lock(connection)
                for channel in self._receivers:
                    await connection.add_listener(channel, self._received)
            self.connections += 1
            # Whatever was announced while we were away is in the database: catch up. Until
            # that has worked this process is not up to date, and says so. The first
            # connection too: what the process holds (its villages, its duty book) was loaded
            # as it started, before it listened, and a change announced in between reached
            # nobody, so it judged by the old rows until some later change.
            async with asyncio.timeout(CATCH_UP_TIMEOUT_S):
                for callback in self._on_reconnect:
                    await callback()
            self._up.set()
            # Up (and caught up): a drop from here on is a new trouble, not one more failure in
            # a row, whether it ends the connection in an error or through its termination.
            self._backoff = FIRST_BACKOFF_S
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), KEEPALIVE_S)
                if not lost.is_set():
                    await connection.fetchval("SELECT 1", timeout=KEEPALIVE_S)
                if not (locked or lost.is_set()):
                    locked = await self._lock(connection)
        finally:
            with contextlib.suppress(Exception):
                await connection.close(timeout=2)

    async def _lock(self, connection: asyncpg.Connection) -> bool:
        """Take the lock (``lock_key``) on this connection; whether it is held. A session of
        this process that the server has not let go of yet (its connection lost on the way,
        not yet closed at PostgreSQL's end) may still hold it: tried again with each
        keep-alive until this connection holds it."""
        if self.lock_key is None:
            return True
        held = await connection.fetchval(
            "SELECT pg_try_advisory_lock($1)", self.lock_key, timeout=KEEPALIVE_S
        )
        if not held:
            log.warning("fan-out listener: lock %d held elsewhere; trying again", self.lock_key)
        return bool(held)

    def _received(self, _connection: Any, _pid: int, channel: str, payload: str) -> None:
        origin, _, ids = payload.partition(":")
        receiver = self._receivers.get(channel)
        if receiver is None or origin == self.origin:
            return
        for item in ids.split(","):
            task = asyncio.create_task(self._deliver(receiver, item))
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)

    async def _deliver(self, receiver: Receiver, item: str) -> None:
        for pause in (*RECEIVER_RETRIES_S, None):
            try:
                await receiver(item)
                return
            except Exception:
                self.errors += 1
                log.warning("fan-out receiver failed for %s", item, exc_info=True)
            if pause is not None:
                await asyncio.sleep(pause)
        # Still failing: this announcement is missed, as if the connection had dropped while
        # it was sent. Reconnecting runs the catch-up (the rows are all in the database), and
        # keeps running it, backing off, until it works.
        log.error("fan-out receiver kept failing for %s; catching up from the database", item)
        self._missed()

    def _missed(self) -> None:
        self._up.clear()
        if self._lost is not None:
            self._lost.set()
