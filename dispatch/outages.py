"""A database that is away (refusing connections, full, locked, read-only) told apart from a
database that refused what it was given (a constraint, a bad statement: bugs).

The first is an outage: asking again later may work, so a request is answered 503 with
Retry-After and ``/readyz`` reports the server not ready until a write succeeds again. The
second stays a 500 with its traceback in the log.
"""

from __future__ import annotations

import sqlite3
import time

import asyncpg
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, ProgrammingError

# SQLite's primary result codes for a database that cannot be used now: busy and locked (after
# the busy timeout), out of memory, read-only, an I/O error, full, cannot open, a lock protocol
# error. Constraint failures (19), SQL errors (1) and the like are not among them.
SQLITE_OUTAGES = frozenset({5, 6, 7, 8, 10, 13, 14, 15})
SQLITE_OUTAGE_WORDS = (
    "database or disk is full",
    "disk i/o error",
    "unable to open database",
    "database is locked",
    "readonly database",
)
# PostgreSQL's SQLSTATEs of an unusable database: connection exceptions (class 08),
# insufficient resources (53: disk full, out of memory, too many connections), the server
# shutting down or not accepting connections yet (57P01-57P05), system errors (58), and a
# read-only transaction (a standby after a failover).
POSTGRES_OUTAGE_CLASSES = ("08", "53", "57P", "58")
POSTGRES_OUTAGE_CODES = frozenset({"25006"})


def database_unavailable(error: BaseException) -> bool:
    """Whether ``error`` says the database is away or cannot take writes now, rather than that
    it refused what it was asked (a bug, or bad data: asking again gives the same answer)."""
    if isinstance(error, DBAPIError):
        if error.connection_invalidated:
            return True
        # A constraint (also one checked at commit), a value or a statement: refused for what
        # it was given, however it was raised.
        if isinstance(error, IntegrityError | DataError | ProgrammingError):
            return False
        # Else no statement: raised while connecting (or committing), the database away.
        return _driver_outage(error.orig) or error.statement is None
    return _driver_outage(error)


def _driver_outage(error: BaseException | None) -> bool:
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, sqlite3.Error):
            code = getattr(error, "sqlite_errorcode", None)
            if isinstance(code, int):
                return code & 0xFF in SQLITE_OUTAGES
            return any(word in str(error).lower() for word in SQLITE_OUTAGE_WORDS)
        # asyncpg's errors, and SQLAlchemy's adaptation of them, carry the SQLSTATE.
        sqlstate = getattr(error, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate:
            return sqlstate in POSTGRES_OUTAGE_CODES or sqlstate.startswith(POSTGRES_OUTAGE_CLASSES)
        if isinstance(error, asyncpg.exceptions.ConnectionDoesNotExistError | ConnectionError):
            return True
        error = error.__cause__ or error.__context__
    return False


class WriteHealth:
    """Whether the database takes this process's writes: failing from an outage seen by a unit
    of work until a write succeeds again (``/readyz`` tries one while failing)."""

    def __init__(self) -> None:
        self.failing_since: float | None = None
        self.last_error: str | None = None

    @property
    def failing(self) -> bool:
        return self.failing_since is not None

    def failed(self, error: BaseException) -> None:
        if self.failing_since is None:
            self.failing_since = time.monotonic()
        self.last_error = describe(error)

    def succeeded(self) -> None:
        self.failing_since = None
        self.last_error = None


def describe(error: BaseException) -> str:
    """The driver's first line of the error, without SQLAlchemy's statement and parameters."""
    cause: BaseException = error
    if isinstance(error, DBAPIError) and error.orig is not None:
        cause = error.orig
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    return lines[0] if lines else type(cause).__name__
