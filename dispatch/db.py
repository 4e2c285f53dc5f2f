"""Storage plumbing: the declarative base, column types, engine and the unit of work."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, ClassVar, cast

import asyncpg
import orjson
from sqlalchemy import MetaData, Table, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.sqlite.aiosqlite import AsyncAdapt_aiosqlite_connection
from sqlalchemy.engine import AdaptedConnection, Connection, Dialect
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DisconnectionError, IntegrityError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import ConnectionPoolEntry, PoolResetState

from alerts.fanout import HostTimeout
from alerts.models import NAMING, JSONType, UTCDateTime


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime,
        dict[str, Any]: JSONType,
    }


def table_of(model: type[Base]) -> Table:
    """A mapped class's table, for bulk inserts past the unit of work."""
    return Base.metadata.tables[model.__tablename__]


def row_values(row: Base, *, leave_out: frozenset[str] = frozenset()) -> dict[str, Any]:
    """A mapped object's column values, for a bulk insert of objects kept out of the session
    (``leave_out``: columns the database fills, such as an autoincrement id)."""
    return {c.key: getattr(row, c.key) for c in row.__table__.columns if c.key not in leave_out}


def new_id() -> str:
    """A random UUID (version 4) as 32 hex digits, what ``uuid.uuid4().hex`` gives, from the
    same 16 random bytes but without the ``UUID`` object: a third of its time, for the dozens
    of ids a report makes."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # RFC 4122 variant
    return raw.hex()


def _json_dumps(value: Any) -> str:
    return json_text(value).decode()


def json_text(value: Any) -> bytes:
    """``value`` as JSON, a key that is not text written as text (``OPT_NON_STR_KEYS``).
    orjson with that option takes its slow path through every dict, wanted or not (23 of the
    53 µs a report's messages took, as one document of 31 KB); without it, it refuses any key
    that is not exactly a ``str``. So it is tried without first, and only a refused value is
    written again with the option: the same bytes either way."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


# Every alert stores the incident as JSON once per recipient: the fast encoder keeps that cheap.
JSON_CODEC: dict[str, Any] = {"json_serializer": _json_dumps, "json_deserializer": orjson.loads}

# A database error names its statement without the values sent with it: the error is logged
# with its traceback, kept as a failed job's outcome and shown by /readyz, and the values are
# names, phone and ID numbers.
WITHOUT_VALUES: dict[str, Any] = {"hide_parameters": True}


# Prepared statements kept per PostgreSQL connection (SQLAlchemy's and asyncpg's own caches).
# A list of n values or n rows is its own statement for each n (5-25 recipients, users acked
# together), so the default of 100 kept evicting and re-preparing them: a round trip and a
# server-side parse each time, a tenth of the server's CPU on the alert path.
STATEMENT_CACHES: dict[str, Any] = {
    "prepared_statement_cache_size": 2000,
    "statement_cache_size": 2000,
}

# The rows a report and a delivery touch are few and always in memory, where a random read
# costs about what a sequential one does. With PostgreSQL's default (4, for spinning disks)
# the planner read all of a 1k-leader town's mailboxes and users, twice a report, rather
# than look up its dozen rows by index: a fifth of the database's CPU per report.
SESSION_SETTINGS: dict[str, str] = {"random_page_cost": "1.1"}


def create_engine(
    database_url: str,
    pool_size: int = 10,
    max_overflow: int = 10,
    pool_timeout: float = 30.0,
    *,
    read_only: bool = False,
    isolation_level: str | None = None,
    idle_in_transaction_s: float | None = None,
    host_timeout_s: float | None = None,
) -> AsyncEngine:
    """``pool_size`` and ``max_overflow``: the connections, waited for up to ``pool_timeout``
    seconds; a SQLite engine that writes has one. ``read_only``: for readers and for checks of
    a database (a backup among them), which must leave it exactly as it was: no write, no
    journal mode set. ``isolation_level``: its transactions' (PostgreSQL; the server's
    default, READ COMMITTED, if None). ``idle_in_transaction_s``: how long PostgreSQL lets a
    session sit idle inside a transaction before ending it (its own default, for ever, if
    None). ``host_timeout_s``: how long a connection's other end may go unheard, its host
    gone dark, before either end gives the connection up (``give_up_after``; TCP's
    defaults, hours, if None)."""
    if database_url.startswith("sqlite"):
        # One connection that writes: SQLite has one writer, and queuing inside the process
        # beats "database is locked" errors under concurrent requests.
        engine = create_async_engine(
            database_url,
            pool_size=pool_size if read_only else 1,
            max_overflow=max_overflow if read_only else 0,
            pool_timeout=pool_timeout,
            pool_reset_on_return=None,
            **WITHOUT_VALUES,
            **JSON_CODEC,
        )
        pragmas = _sqlite_read_only_pragmas if read_only else _sqlite_pragmas
        event.listen(engine.sync_engine, "connect", pragmas)
        event.listen(engine.sync_engine.pool, "reset", _roll_back_if_open)
        return engine
    settings = SESSION_SETTINGS | ({"default_transaction_read_only": "on"} if read_only else {})
    if idle_in_transaction_s is not None:
        settings["idle_in_transaction_session_timeout"] = str(round(idle_in_transaction_s * 1000))
    connect_args: dict[str, Any] = {**STATEMENT_CACHES, "server_settings": settings}
    if host_timeout_s is not None:
        settings |= server_keepalives(host_timeout_s)
        # A connect to a host that answers nothing waits no longer (asyncpg's own: 60 s).
        connect_args["timeout"] = host_timeout_s
    isolation = {"isolation_level": isolation_level} if isolation_level else {}
    engine = create_async_engine(
        database_url,
        **isolation,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=pool_timeout,
        connect_args=connect_args,
        **WITHOUT_VALUES,
        **JSON_CODEC,
    )
    event.listen(engine.sync_engine, "do_connect", _connect_or_unreachable)
    pool = engine.sync_engine.pool
    if host_timeout_s is not None:
        event.listen(pool, "connect", give_up_after(host_timeout_s))
    event.listen(pool, "connect", _note_checkin)
    event.listen(pool, "checkin", _note_checkin)
    event.listen(pool, "checkout", _check)
    return engine


async def create_read_engine(
    writer: AsyncEngine,
    database_url: str,
    pool_size: int,
    pool_timeout: float,
    host_timeout_s: float | None = None,
) -> AsyncEngine:
    """The readers' pool beside ``writer``, the writers': ``pool_size`` connections, doubling
    under load.

    Each transaction of the readers sees the database as it was at its first statement, so
    what a request reads in several statements (an incident and its teams' dispatches, a
    report's groupings and its totals) is of one moment, whatever is written meanwhile.

    On PostgreSQL their transactions are REPEATABLE READ. It costs nothing a transaction (the
    same one BEGIN) and, as they write nothing, never fails them.

    On SQLite, connections of their own that can only read. In WAL mode a reader neither waits
    for the writer nor holds it up, so a report over a year of incidents, seconds of SQLite's
    work, no longer queues every report of an incident behind it on the one connection (nor
    answers it 503 once the wait passes ``pool_timeout``). The driver begins a transaction only
    before a write, so each read would be of its own moment: the readers begin theirs (a turn
    through the driver's thread a transaction), unless asked for each statement alone
    (``EACH_STATEMENT_ALONE``). A file not in WAL mode (its journal could not be switched)
    keeps the one connection for both: there a reader would lock the writer out, and only
    what calls ``hold_snapshot`` reads one moment."""
    if not database_url.startswith("sqlite"):
        return create_engine(
            database_url,
            pool_size,
            pool_size,
            pool_timeout,
            isolation_level="REPEATABLE READ",
            host_timeout_s=host_timeout_s,
        )
    async with writer.connect() as connection:
        mode = (await connection.exec_driver_sql("PRAGMA journal_mode")).scalar()
    if str(mode).lower() != "wal":
        return writer
    engine = create_engine(database_url, pool_size, pool_size, pool_timeout, read_only=True)
    event.listen(engine.sync_engine, "begin", _begin_unless_each_statement_alone)
    return engine


# An execution option of SQLite's readers' engine: each statement its own transaction, as the
# driver has it (``Runtime.reading``), where a transaction would only add a turn.
EACH_STATEMENT_ALONE = "dispatch_each_statement_alone"


def _begin_unless_each_statement_alone(connection: Connection) -> None:
    if connection.get_execution_options().get(EACH_STATEMENT_ALONE):
        return
    begin_sqlite_transaction(connection)


def begin_sqlite_transaction(connection: Connection) -> None:
    """A ``begin`` listener for a SQLite engine whose transactions must be real ones.

    SQLAlchemy's recipe for SQLite's transactions (it emits no BEGIN; the driver would emit
    one only before a write, so reads and DDL ran each on its own), sent in one turn through
    the driver's thread where ``exec_driver_sql`` takes three (a cursor made, used and
    closed): 3.84 M instructions for GET /api/v1/auth/me took 4.31 M with those. Deferred,
    the transaction takes its snapshot at its first read."""
    adapted = cast(AdaptedConnection, connection.connection.dbapi_connection)
    adapted.run_async(lambda driver: driver.execute_fetchall("BEGIN"))


def _connect_or_unreachable(
    dialect: Dialect, _record: ConnectionPoolEntry, cargs: list[Any], cparams: dict[str, Any]
) -> DBAPIConnection:
    """The driver's connection; or, where the database's host could not be reached, the
    driver's own error for an unusable database, caused by the network's.

    asyncpg raises what the network said as it is: a host name that does not resolve
    (``socket.gaierror``, compose's ``postgres`` while its container restarts), a connect
    that timed out (``TimeoutError``), a host that cannot be reached (``OSError``,
    EHOSTUNREACH). SQLAlchemy wraps, and runs its error handlers for, only the driver's own
    errors: these went past what answers an outage 503, counts it and holds ``/readyz``
    until a write succeeds, and were answered 500 as a bug. As the driver's error raised
    while connecting they are a connection failure, as a refused connection is. Only the
    connect is taken so: an ``OSError`` raised anywhere else says nothing of the database."""
    try:
        return dialect.connect(*cargs, **cparams)
    except OSError as error:
        timed_out = "timed out connecting" if isinstance(error, TimeoutError) else None
        reason = str(error) or timed_out or type(error).__name__
        raise dialect.loaded_dbapi.OperationalError(reason, error) from error


def _keepalive_steps(timeout_s: float) -> tuple[int, int, int]:
    """TCP keepalive's idle time, interval and count (whole seconds, at least 1) that give a
    silent other end up after about ``timeout_s``: half of it idle, then three probes."""
    idle = max(1, int(timeout_s / 2))
    interval = max(1, int(timeout_s / 6))
    return idle, interval, 3


def server_keepalives(timeout_s: float) -> dict[str, str]:
    """The same for PostgreSQL's end of the session: a client whose host went dark in the
    middle of a statement (not idle in a transaction, which
    ``idle_in_transaction_session_timeout`` ends) had its session, its transaction and its
    row locks kept until TCP's defaults gave it up, hours later. Ignored over a Unix socket."""
    idle, interval, count = _keepalive_steps(timeout_s)
    return {
        "tcp_keepalives_idle": str(idle),
        "tcp_keepalives_interval": str(interval),
        "tcp_keepalives_count": str(count),
        "tcp_user_timeout": str(round(timeout_s * 1000)),
    }


def host_socket_options(timeout_s: float) -> list[tuple[int, int, int]]:
    """``setsockopt``'s (level, option, value) that have a TCP socket give its other end up
    once it has heard nothing from it for about ``timeout_s`` (``give_up_after``)."""
    idle, interval, count = _keepalive_steps(timeout_s)
    options = [
        (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
        (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle),
        (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval),
        (socket.IPPROTO_TCP, socket.TCP_KEEPCNT, count),
    ]
    user_timeout = getattr(socket, "TCP_USER_TIMEOUT", None)  # Linux's
    if user_timeout is not None:
        options.append((socket.IPPROTO_TCP, user_timeout, round(timeout_s * 1000)))
    return options


def give_up_after(
    timeout_s: float,
) -> Callable[[AdaptedConnection, ConnectionPoolEntry], None]:
    """A pool ``connect`` listener: the new connection's socket gives the database's host up
    once it has heard nothing from it for about ``timeout_s``.

    asyncpg sets no keepalive, and its connect takes none. A connection whose host went dark
    (power lost, the network cut: packets dropped, nothing sent back) in the middle of a
    statement waited for its answer until TCP gave up, hours later, and the request with it;
    the pool kept handing out such connections while the host was away. With keepalive
    probes (the answer awaited, nothing in flight) and TCP_USER_TIMEOUT (what was sent left
    unacknowledged) the kernel closes the socket: the statement fails as a lost connection
    (503), the pool drops the connection, and a new one is made once the host is back. A
    live but slow statement (a long report) is not cut: the host acknowledges the probes."""
    host = host_timeout(timeout_s)

    def give_up(dbapi_connection: AdaptedConnection, _record: ConnectionPoolEntry) -> None:
        host.apply(dbapi_connection.driver_connection)

    return give_up


def host_timeout(timeout_s: float) -> HostTimeout:
    """Both ends' settings that give a database host up once unheard for about ``timeout_s``:
    the pools' connections (``give_up_after``) and the fan-out listener's take the same."""
    return HostTimeout(timeout_s, host_socket_options(timeout_s), server_keepalives(timeout_s))


# A connection back in the pool for longer than this is checked with a query before it is
# handed out again. The same rule as pgbouncer's server_check_delay (30 s by default there).
CHECK_IDLE_S = 10.0
# When the connection came back to the pool, in its pool entry's info.
CHECKED_IN_KEY = "dispatch.checked_in"


def _note_checkin(dbapi_connection: AdaptedConnection, record: ConnectionPoolEntry) -> None:
    record.info[CHECKED_IN_KEY] = time.monotonic()


def _check(dbapi_connection: AdaptedConnection, record: ConnectionPoolEntry, _proxy: Any) -> None:
    """Make sure a pooled connection still works before it is handed out (the database may
    have restarted since it was last used); a dead one is replaced by a new connection.

    A restart, or a session ended on the server, closes the socket, and the connection knows
    it is closed without asking. A query is needed only where the connection could have been
    cut without a word (a network drop, a firewall forgetting an idle flow): after it has
    been idle for ``CHECK_IDLE_S``. Under load that saves a round trip a transaction.

    The query in one round trip: ``pool_pre_ping`` takes three with asyncpg (BEGIN, a query,
    ROLLBACK, for pgbouncer's transaction mode, where a prepared statement outside a
    transaction may land on another server connection). A simple query without parameters
    prepares nothing.
    """
    if dbapi_connection.driver_connection.is_closed():
        raise DisconnectionError("pooled connection is closed")
    idle_s = time.monotonic() - record.info.get(CHECKED_IN_KEY, float("-inf"))
    if idle_s <= CHECK_IDLE_S:
        return
    try:
        dbapi_connection.run_async(lambda connection: connection.execute("SELECT 1"))
    except (OSError, asyncpg.InterfaceError, asyncpg.PostgresError) as error:
        # The pool discards the connection and tries again with a new one.
        raise DisconnectionError(f"pooled connection is gone: {error!r}") from error


def _roll_back_if_open(
    dbapi_connection: AsyncAdapt_aiosqlite_connection,
    _record: ConnectionPoolEntry,
    state: PoolResetState,
) -> None:
    """The pool's reset of the SQLite connection it takes back, in place of its own: a
    transaction left open is rolled back, as ever, and nothing is sent when none is open.

    SQLAlchemy ends every unit of work before the connection goes back, and the pool's own
    reset then rolled back nothing, which on aiosqlite is a turn through the driver's thread
    and back to the event loop: one of the some 38 turns a report on SQLite takes. SQLite
    says itself whether a transaction is open (``in_transaction``, read without a turn)."""
    if not state.asyncio_safe:
        return  # not on the event loop (a connection collected as garbage): it is closed
    try:
        open_transaction = dbapi_connection.driver_connection.in_transaction
    except ValueError:
        return  # aiosqlite's connection is closed, where the adapter's rollback does nothing
    if open_transaction:
        dbapi_connection.rollback()  # the adapter's, as the pool's own reset calls it


# The write-ahead log is checkpointed every 1000 pages (4 MiB) and begun again from its start,
# but not past the oldest snapshot a reader holds: while a report over a large period reads,
# every commit's pages are added to it (250-500 KiB an incident reported, measured over 100k
# and 1M incidents). SQLite keeps the file at the size it reached unless told a limit, down to
# which it cuts it when it next begins again.
WAL_SIZE_LIMIT = 16 * 1024 * 1024


def _sqlite_pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _sqlite_read_only_pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # Not journal_mode=WAL: setting it rewrites the file's header.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA query_only=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


async def hold_snapshot(session: AsyncSession) -> None:
    """From here to the end of its transaction, the session reads the database as it was at
    its next read, however many statements it takes and whatever is written meanwhile.

    For what must be of one moment on any connection: a report's counts and the ranks picked
    from them by a later statement could disagree otherwise (and a rank counted would be
    missing). The readers' transactions are of one moment already (``create_read_engine``);
    this matters on SQLite's one connection of a file not in WAL mode, where the driver begins
    a transaction only before a write. A transaction begun explicitly holds the first read's
    snapshot (WAL mode) or its shared lock to the end. A writer's transaction on PostgreSQL is
    left as it is, as its isolation cannot change once it has read."""
    if dialect_name(session) != "sqlite":
        return
    connection = await session.connection()
    driver = (await connection.get_raw_connection()).driver_connection
    assert driver is not None  # a connection checked out of the pool
    if not driver.in_transaction:
        await connection.exec_driver_sql("BEGIN")


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


AfterCommit = Callable[[], None]


AFTER_COMMIT_KEY = "after_commit"
REFRESH_KEY = "refresh_after_commit"


def after_commit(session: AsyncSession, action: AfterCommit, *, refresh: bool = False) -> None:
    """Run ``action`` once this session's transaction has committed (never on rollback).

    ``refresh``: the action brings this process back to what the tables hold (forgets cached
    tokens, has sockets judged again, reloads a book) rather than applying what the
    transaction wrote. Right whether it committed or not, it runs also when the COMMIT's
    outcome is unknown (the connection lost with its answer, ``Runtime.transaction``): a
    logout lost that way left its token accepted here for as long as it stayed cached."""
    session.info.setdefault(AFTER_COMMIT_KEY, []).append(action)
    if refresh:
        session.info.setdefault(REFRESH_KEY, []).append(action)


def if_commit_unknown(session: AsyncSession, action: AfterCommit) -> None:
    """Run ``action`` if this session's COMMIT fails with its outcome unknown (the connection
    lost with its answer, ``Runtime.transaction``), at once and again a little later, as a
    ``refresh`` of ``after_commit`` runs then: for what brings this process back to what the
    tables hold where an after-commit action would have applied what the transaction wrote
    (the villages' index it built)."""
    session.info.setdefault(REFRESH_KEY, []).append(action)


BEFORE_COMMIT_KEY = "before_commit"
BeforeCommit = Callable[[], Awaitable[None]]


def before_commit(session: AsyncSession, action: BeforeCommit) -> None:
    """Run ``action`` as the last statements of this transaction, just before it commits.

    For rows that many transactions lock (a user's rate bucket): locked last, they are held
    for the commit alone, not for the whole unit of work. An error it raises rolls back all.
    """
    session.info.setdefault(BEFORE_COMMIT_KEY, []).append(action)


FALLS_DUE_KEY = "falls_due"


def falls_due(session: AsyncSession, when: datetime) -> None:
    """This transaction stores something that falls due at ``when``: once it commits, the
    timer is woken if that is earlier than what it sleeps towards."""
    earliest: datetime | None = session.info.get(FALLS_DUE_KEY)
    if earliest is None or when < earliest:
        session.info[FALLS_DUE_KEY] = when


def announce(session: AsyncSession, channel: str, item_id: str) -> None:
    """Tell the other server processes, when this transaction commits, that ``item_id`` changed."""
    session.info.setdefault("announce", {}).setdefault(channel, []).append(item_id)


def dialect_name(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


def upsert_insert(dialect: str) -> Callable[[Any], postgresql.Insert | sqlite.Insert]:
    """The dialect's ``insert``, the one with ``on_conflict_do_*`` (PostgreSQL's or SQLite's)."""
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def violates_unique(error: IntegrityError, index: str, table: str, *columns: str) -> bool:
    """Whether ``error`` is the unique ``index`` of ``table`` refusing a row: PostgreSQL names
    the index, SQLite the columns."""
    text = str(error.orig)
    named = ", ".join(f"{table}.{c}" for c in columns)
    return f'"{index}"' in text or text.endswith(f"UNIQUE constraint failed: {named}")
