"""Many new rows in few round trips: on PostgreSQL, one statement that unnests column arrays.

A multi-row ``VALUES`` has a text of its own for every number of rows: compiled and prepared
again and again. An ``INSERT ... SELECT FROM unnest(arrays)`` has one text whatever the count,
compiled and prepared once, and several of them go as data-modifying CTEs of one statement.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ARRAY, Insert, Table, Update, bindparam, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

# New rows of one table, every row with the same keys.
NewRows = tuple[Table, Sequence[dict[str, Any]]]


def on_postgresql(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


async def insert_rows(session: AsyncSession, *writes: NewRows) -> None:
    """New rows of several tables, past the unit of work, parents first.

    On PostgreSQL they go as one statement, one round trip instead of one a table. Foreign keys
    between them hold: their checks run at the end of the statement. Elsewhere, one executemany
    a table, in the order given.
    """
    writes = tuple((table, rows) for table, rows in writes if rows)
    if not writes:
        return
    if len(writes) == 1 or not on_postgresql(session):
        for table, rows in writes:
            await session.execute(insert(table), list(rows))
        return
    shape = tuple((table, tuple(rows[0])) for table, rows in writes)
    arrays: dict[str, list[Any]] = {}
    for n, (_, rows) in enumerate(writes):
        arrays.update(column_arrays(f"new_{n}", rows))
    await session.execute(_combined_insert(shape), arrays)


def column_arrays(prefix: str, rows: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    """The parameters of ``unnested_insert(prefix, ...)``: one list a column."""
    return {f"{prefix}_{key}": [row[key] for row in rows] for key in rows[0]}


@functools.cache
def unnested_insert(prefix: str, table: Table, keys: tuple[str, ...]) -> Insert:
    """INSERT INTO table (keys) SELECT * FROM unnest(one array a key) AS prefix(keys);
    its parameters are ``column_arrays(prefix, rows)``."""
    arrays = [bindparam(f"{prefix}_{key}", type_=ARRAY(table.c[key].type)) for key in keys]
    rows = func.unnest(*arrays).table_valued(*keys).render_derived(name=prefix)
    return insert(table).from_select(list(keys), select(*(rows.c[key] for key in keys)))


def with_statements(last: Insert, *before: Insert | Update) -> Insert:
    """``last`` carrying ``before`` as data-modifying CTEs: all of them in one statement."""
    return last.add_cte(*(statement.cte(f"step_{n}") for n, statement in enumerate(before)))


@functools.cache
def _combined_insert(shape: tuple[tuple[Table, tuple[str, ...]], ...]) -> Insert:
    *first, last = [unnested_insert(f"new_{n}", t, keys) for n, (t, keys) in enumerate(shape)]
    return with_statements(last, *first)
