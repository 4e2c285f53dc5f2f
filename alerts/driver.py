"""The bulk statements, compiled once and sent as the driver's SQL.

A report's two statements and a flush's last one carry 50-60 array parameters each. Through
``AsyncSession.execute`` each execution looked its compiled form up again and ran SQLAlchemy's
array processors, which rebuild every list element by element even where there is nothing to
convert (text, numbers, booleans): about 0.4 ms of CPU a statement on this machine. Here the
statement is compiled once, each parameter keeps the conversion its type makes (JSON to text,
the UTC guard on datetimes) and nothing else, and the text goes out with
``exec_driver_sql``: in the same transaction, seen by the engine's events and its error
handling like any other statement.

The rows are the driver's, as asyncpg decodes them, which for the types used here is what
SQLAlchemy hands back (asyncpg's datetimes are aware UTC, its JSON is decoded by the codec
SQLAlchemy registers). Elsewhere (SQLite keeps datetimes as text, which only SQLAlchemy's types
turn back into datetimes), and for a statement with parameters expanded at execution, the
statement goes through ``AsyncSession.execute`` as before.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ARRAY, ClauseElement, Executable
from sqlalchemy.engine import CursorResult, Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import SessionTransaction
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.types import TypeEngine

Convert = Callable[[Any], Any]
Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class DriverStatement:
    """A statement compiled for asyncpg: its text, and for each of ``$1 .. $n`` the key of its
    parameter, the value it has of its own (a literal), and the conversion of its type."""

    sql: str
    keys: tuple[str, ...]
    values: tuple[Any, ...]
    converts: tuple[Convert | None, ...]

    def arguments(self, params: dict[str, Any]) -> list[Any]:
        found = [
            params[k] if v is REQUIRED else params.get(k, v)
            for k, v in zip(self.keys, self.values, strict=True)
        ]
        return [v if c is None else c(v) for v, c in zip(found, self.converts, strict=True)]


# The value of a parameter the caller must give (SQLAlchemy raises without it; so does this).
REQUIRED = object()


async def fetch_rows(
    session: AsyncSession, statement: Executable, params: dict[str, Any]
) -> Sequence[Row]:
    """Run ``statement`` (built once: it keys the cache) in the session's transaction; its
    rows as dicts by column name."""
    connection = await _connection(session)
    compiled = for_driver(statement, connection.dialect)
    if compiled is None:
        result = await session.execute(statement, params)
    else:
        result = await connection.exec_driver_sql(compiled.sql, tuple(compiled.arguments(params)))
    if isinstance(result, CursorResult) and not result.returns_rows:
        return []
    # The keys once for all rows: a row's mapping builds its key view again at every dict().
    keys = tuple(result.keys())
    return [dict(zip(keys, row, strict=True)) for row in result]


# The session's connection, kept with the transaction it is of.
_CONNECTION_KEY = "driver_connection"


async def _connection(session: AsyncSession) -> AsyncConnection:
    """The connection of the session's transaction, begun by its first statement.
    ``AsyncSession.connection()`` runs in a greenlet of its own even where the transaction
    has its connection already, as a report's and a flush's second statement finds it; kept
    in ``session.info`` beside its transaction, it is asked again only for another one."""
    transaction = session.sync_session.get_transaction()
    kept: tuple[SessionTransaction, AsyncConnection] | None = session.info.get(_CONNECTION_KEY)
    if kept is not None and kept[0] is transaction and transaction.is_active:
        return kept[1]
    connection = await session.connection()
    session.info[_CONNECTION_KEY] = (session.sync_session.get_transaction(), connection)
    return connection


@functools.cache
def for_driver(statement: Executable, dialect: Dialect) -> DriverStatement | None:
    """``statement`` compiled once for ``dialect``, or None where it goes through
    SQLAlchemy's execution: not PostgreSQL, or a parameter that cannot be bound as is
    (expanded at execution, or a nested array)."""
    if dialect.name != "postgresql":
        return None
    assert isinstance(statement, ClauseElement)
    compiled = statement.compile(dialect=dialect)
    assert isinstance(compiled, SQLCompiler)
    order = compiled.positiontup
    if order is None or compiled.literal_execute_params or compiled.post_compile_params:
        return None
    binds = [compiled.binds[name] for name in order]
    try:
        converts = [_convert(bind.type, dialect) for bind in binds]
    except _NotBindable:
        return None
    return DriverStatement(
        sql=str(compiled),
        keys=tuple(bind.key for bind in binds),
        values=tuple(REQUIRED if bind.required else bind.effective_value for bind in binds),
        converts=tuple(converts),
    )


class _NotBindable(Exception):
    """A parameter whose conversion here would not be SQLAlchemy's."""


def _convert(type_: TypeEngine[Any], dialect: Dialect) -> Convert | None:
    """What SQLAlchemy does to a value of this type before the driver sees it. For a
    one-dimensional array, the element type's conversion applied to each element (asyncpg
    takes the list itself)."""
    impl = type_.dialect_impl(dialect)
    if not isinstance(impl, ARRAY):
        return impl.bind_processor(dialect)
    if impl.dimensions not in (None, 1) or isinstance(impl.item_type, ARRAY):
        raise _NotBindable(type_)
    each = impl.item_type.dialect_impl(dialect).bind_processor(dialect)
    if each is None:
        return None
    convert_each = each

    def convert(values: Sequence[Any] | None) -> list[Any] | None:
        return None if values is None else [convert_each(v) for v in values]

    return convert
