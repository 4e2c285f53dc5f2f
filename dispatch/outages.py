"""A database that is away (refusing connections, full, locked, read-only) told apart from a
database that refused what it was given (a constraint, a bad statement: bugs).

The first is an outage: asking again later may work, so a request is answered 503 with
Retry-After and ``/readyz`` reports the server not ready until a write succeeds again. The
second stays a 500 with its traceback in the log.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator

import asyncpg
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, ProgrammingError

# SQLite's primary result codes for a database that cannot be used now, by the kind of outage:
# busy and locked (after the busy timeout) and a lock protocol error, out of memory and full,
# read-only, an I/O error, cannot open. Constraint failures (19), SQL errors (1) and the like
# are not among them.
SQLITE_OUTAGES = {
    5: "locked",
    6: "locked",
    15: "locked",
    7: "resources",
    13: "resources",
    8: "read_only",
    10: "io",
    14: "connection",
}
SQLITE_OUTAGE_WORDS = {
    "database or disk is full": "resources",
    "disk i/o error": "io",
    "unable to open database": "connection",
    "database is locked": "locked",
    "readonly database": "read_only",
}
# PostgreSQL's SQLSTATEs of an unusable database: connection exceptions (class 08),
# insufficient resources (53: disk full, out of memory, too many connections), the server
# shutting down or not accepting connections yet (57P01-57P05), system errors (58), and a
# read-only transaction (a standby after a failover).
POSTGRES_OUTAGES = {
    "08": "connection",
    "53": "resources",
    "57P": "shutdown",
    "58": "io",
    "25006": "read_only",
}
# What a database refused for what it was given, by SQLite result code and SQLSTATE class:
# a constraint, a value, a statement; and PostgreSQL's serialization failures and deadlocks.
SQLITE_REFUSALS = {19: "constraint", 20: "data", 25: "data", 1: "statement"}
POSTGRES_REFUSALS = {"23": "constraint", "22": "data", "42": "statement", "40": "conflict"}


def database_unavailable(error: BaseException) -> bool:
    """Whether ``error`` says the database is away or cannot take writes now, rather than that
    it refused what it was asked (a bug, or bad data: asking again gives the same answer)."""
    return outage_kind(error) is not None


def outage_kind(error: BaseException) -> str | None:
    """The kind of outage ``error`` says the database is in (``connection``, ``locked``,
    ``read_only``, ``resources``, ``shutdown``, ``io``), or None for a refusal."""
    if isinstance(error, DBAPIError):
        if error.connection_invalidated:
            return "connection"
        # A constraint (also one checked at commit), a value or a statement: refused for what
        # it was given, however it was raised.
        if isinstance(error, IntegrityError | DataError | ProgrammingError):
            return None
        # Else no statement: raised while connecting (or committing), the database away.
        kind = _driver_outage(error.orig)
        return "connection" if kind is None and error.statement is None else kind
    return _driver_outage(error)


# Set on an error raised by a transaction's COMMIT itself (``Runtime.transaction``): the
# database may have committed it all the same (the connection dropped after the COMMIT went
# out, before its reply came back), or not.
_COMMIT_UNKNOWN = "_dispatch_commit_outcome_unknown"


def mark_commit_unknown(error: BaseException) -> None:
    """``error`` was raised by the COMMIT: whether the transaction committed is unknown."""
    setattr(error, _COMMIT_UNKNOWN, True)


def commit_unknown(error: BaseException) -> bool:
    """Whether ``error`` was raised by a COMMIT, which may have committed (``mark_commit_unknown``),
    rather than before it (the transaction rolled back)."""
    return bool(getattr(error, _COMMIT_UNKNOWN, False))


def error_kind(error: BaseException) -> str:
    """What a database error was, in a word the same on SQLite and PostgreSQL: an outage's
    kind, or what the database refused (``constraint``, ``data``, ``statement``,
    ``conflict``), else ``other``."""
    kind = outage_kind(error)
    if kind is not None:
        return kind
    if isinstance(error, IntegrityError):
        return "constraint"
    if isinstance(error, DataError):
        return "data"
    if isinstance(error, ProgrammingError):
        return "statement"
    for cause in _causes(error.orig if isinstance(error, DBAPIError) else error):
        code = getattr(cause, "sqlite_errorcode", None)
        if isinstance(cause, sqlite3.Error) and isinstance(code, int):
            return SQLITE_REFUSALS.get(code & 0xFF, "other")
        sqlstate = getattr(cause, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate:
            return POSTGRES_REFUSALS.get(sqlstate[:2], "other")
    return "other"


def _causes(error: BaseException | None) -> Iterator[BaseException]:
    """``error`` and what caused it, each once."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def _driver_outage(error: BaseException | None) -> str | None:
    for cause in _causes(error):
        if isinstance(cause, sqlite3.Error):
            code = getattr(cause, "sqlite_errorcode", None)
            if isinstance(code, int):
                return SQLITE_OUTAGES.get(code & 0xFF)
            message = str(cause).lower()
            return next((k for w, k in SQLITE_OUTAGE_WORDS.items() if w in message), None)
        # asyncpg's errors, and SQLAlchemy's adaptation of them, carry the SQLSTATE.
        sqlstate = getattr(cause, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate:
            return next(
                (kind for prefix, kind in POSTGRES_OUTAGES.items() if sqlstate.startswith(prefix)),
                None,
            )
        if isinstance(cause, asyncpg.exceptions.ConnectionDoesNotExistError | ConnectionError):
            return "connection"
    return None


class WriteHealth:
    """Whether the database takes this process's writes: failing from an outage seen by a unit
    of work until a write succeeds again (``/readyz`` tries one while failing)."""

    def __init__(self) -> None:
        self.failing_since: float | None = None
        self.last_error: str | None = None
        # The last error's kind (``error_kind``): what /readyz tells anyone who asks.
        self.last_kind: str | None = None

    @property
    def failing(self) -> bool:
        return self.failing_since is not None

    def failed(self, error: BaseException) -> None:
        if self.failing_since is None:
            self.failing_since = time.monotonic()
        self.last_error = describe(error)
        self.last_kind = error_kind(error)

    def succeeded(self) -> None:
        self.failing_since = None
        self.last_error = None
        self.last_kind = None


def describe(error: BaseException) -> str:
    """The driver's first line of the error, without SQLAlchemy's statement and parameters."""
    cause: BaseException = error
    if isinstance(error, DBAPIError) and error.orig is not None:
        cause = error.orig
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    return lines[0] if lines else type(cause).__name__
