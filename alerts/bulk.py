"""Many rows written in few round trips: on PostgreSQL, one statement over column arrays.

A multi-row ``VALUES`` has a text of its own for every number of rows: compiled and prepared
again and again. ``INSERT ... SELECT FROM unnest(arrays)`` and ``UPDATE ... FROM unnest(arrays)``
have one text whatever the count, compiled and prepared once, and several of them go as
data-modifying CTEs of one statement: one round trip where there was one a table. Elsewhere
(SQLite, in-process) each step is one executemany.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ARRAY,
    CTE,
    ColumnElement,
    Executable,
    FromClause,
    Insert,
    Select,
    Table,
    Update,
    any_,
    bindparam,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import QueryableAttribute, Session

from alerts.driver import fetch_rows

Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Added:
    """New rows of ``table``, every one with the same keys."""

    table: Table
    rows: Sequence[Row]

    def shape(self) -> tuple[str, Table, str | None, tuple[str, ...]]:
        return ("added", self.table, None, tuple(self.rows[0]))


@dataclass(frozen=True, slots=True)
class Changed:
    """New values for rows of ``table`` found by their ``key`` column: each row holds the key
    and the columns to set, every one the same columns."""

    table: Table
    key: str
    rows: Sequence[Row]

    def shape(self) -> tuple[str, Table, str | None, tuple[str, ...]]:
        return ("changed", self.table, self.key, tuple(self.rows[0]))


Step = Added | Changed
Shape = tuple[str, Table, str | None, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class Guarded:
    """A write that may be refused: the statement ``build`` makes (built once, taking
    ``params``) returns a row when it wrote, none when its condition refused it (an upsert whose
    update holds only under a ``WHERE``). ``write_rows`` then awaits ``refused``, which raises:
    the caller's error rolls the transaction back, and with it what the same statement wrote.

    ``build`` is given the statement's lead (``Lead``), or None: the write must not start
    before every row of the lead is written (``after``).

    For a counter many transactions spend (a rate bucket): checked and spent in the last
    statement, it is locked for the commit alone, and costs no round trip of its own."""

    build: Callable[[FromClause | None], Insert]
    params: dict[str, Any]
    refused: Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Lead:
    """The writes a statement starts with, on PostgreSQL: ``ctes`` (built once, taking
    ``params``) in order, the first returning the rows ``write_rows`` returns, the others
    free to read them. A guarded write of the same statement waits until every row of the
    first is written, so the rows it locks are always locked before the guard's: one lock
    order for every transaction, whichever order PostgreSQL runs the parts of a statement in."""

    ctes: tuple[CTE, ...]
    params: dict[str, Any]


def after(lead: FromClause | None) -> ColumnElement[bool] | None:
    """A condition true once every row of ``lead`` is written: a query whose ``WHERE`` holds it
    yields nothing before (PostgreSQL evaluates the uncorrelated count first, to its end)."""
    return None if lead is None else _count(lead) >= 0


def on_postgresql(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def any_of(
    column: ColumnElement[Any] | QueryableAttribute[Any], name: str, postgresql: bool
) -> ColumnElement[bool]:
    """``column`` (a table's or a mapped class's) among the values of the parameter ``name``,
    for a statement built once: one array on PostgreSQL (one text whatever the count), an
    expanding list elsewhere."""
    if postgresql:
        return column == any_(bindparam(name, type_=ARRAY(column.type)))
    return column.in_(bindparam(name, expanding=True))


@dataclass(frozen=True, slots=True)
class Read:
    """A query to run with the steps of ``write_rows``: on PostgreSQL the statement they ride
    as CTEs, so the writes and the read are one round trip. ``statement`` is built once (it
    keys the compiled statement's cache) and takes its values from ``params``."""

    statement: Select[Any]
    params: dict[str, Any]


async def write_rows(
    session: AsyncSession,
    *steps: Step | Guarded,
    read: Read | None = None,
    lead: Lead | None = None,
) -> Sequence[Row]:
    """Every step, in the order given (parents first), in the caller's transaction; then
    ``read``, whose rows are returned (not where guarded writes are among the steps: then the
    read is still made, and its rows dropped). With a ``lead`` (PostgreSQL only), its writes
    come first, and its first write's rows are returned instead.

    On PostgreSQL as one statement: foreign keys between its rows hold, as their checks run at
    the end of the statement, and its steps must not touch the same row twice. ``read`` must not
    look at what the steps write: on PostgreSQL it sees the tables as they were before the
    statement (as every part of one statement does), elsewhere as they are after it.
    """
    guards = tuple(step for step in steps if isinstance(step, Guarded))
    writes = tuple(step for step in steps if not isinstance(step, Guarded) and step.rows)
    if lead is not None or (
        on_postgresql(session) and (len(writes) > 1 or guards or (writes and read is not None))
    ):
        return await _in_one_statement(session, writes, guards, read, lead)
    for step in writes:
        if isinstance(step, Added):
            await session.execute(insert(step.table), list(step.rows))
        else:
            statement, params = _by_key(step.table, step.key, tuple(step.rows[0]))
            await session.execute(statement, [params(row) for row in step.rows])
    for guard in guards:
        if (await session.execute(guard.build(None), guard.params)).first() is None:
            await guard.refused()
    if read is None:
        return []
    found = await fetch_rows(session, read.statement, read.params)
    return [] if guards else found


async def _in_one_statement(
    session: AsyncSession,
    writes: Sequence[Step],
    guards: Sequence[Guarded],
    read: Read | None,
    lead: Lead | None,
) -> Sequence[Row]:
    params: dict[str, Any] = {} if lead is None else dict(lead.params)
    for n, step in enumerate(writes):
        params.update(_arrays(f"step_{n}", step.rows))
    for guard in guards:
        params.update(guard.params)
    if read is not None:
        params.update(read.params)
    statement = _combined(
        tuple(step.shape() for step in writes),
        None if read is None else read.statement,
        tuple(guard.build for guard in guards),
        () if lead is None else lead.ctes,
    )
    found = await fetch_rows(session, statement, params)
    if lead is None and not guards:
        return [] if read is None else found
    if guards and not found:
        # The counts come with the lead's rows: a lead that wrote none cannot say.
        raise RuntimeError("guarded writes rode a lead that wrote no row")
    for n, guard in enumerate(guards):
        if not found[0][f"guard_{n}"]:
            await guard.refused()
    return found if lead is not None else []


LATER_KEY = "alerts.bulk.later"


def write_later(session: AsyncSession, step: Step | Guarded) -> None:
    """Write ``step`` with the transaction's last statement, just before it commits (the
    owner of the transaction calls ``take_later``): one round trip fewer for rows nothing in
    the transaction reads back, such as an audit row or a counter already locked."""
    session.info.setdefault(LATER_KEY, []).append(step)


def take_later(session: AsyncSession) -> list[Step | Guarded]:
    steps: list[Step | Guarded] = session.info.pop(LATER_KEY, [])
    return steps


@event.listens_for(Session, "before_commit")
def _nothing_left_for_later(session: Session) -> None:
    # Committing without the steps kept for the last statement would lose them.
    if session.info.get(LATER_KEY):
        raise RuntimeError("rows were kept for the last statement but never written")


def _arrays(prefix: str, rows: Sequence[Row]) -> dict[str, list[Any]]:
    return {f"{prefix}_{key}": [row[key] for row in rows] for key in rows[0]}


@functools.cache
def _combined(
    shapes: tuple[Shape, ...],
    read: Select[Any] | None = None,
    guards: tuple[Callable[[FromClause | None], Insert], ...] = (),
    lead: tuple[CTE, ...] = (),
) -> Executable:
    statements = [_unnested(f"step_{n}", shape) for n, shape in enumerate(shapes)]
    ctes = [statement.cte(f"step_{n}") for n, statement in enumerate(statements)]
    if guards or lead:
        # For each guarded write, how many rows it wrote (0: refused). The read is counted, so
        # that it runs (its rows are not wanted here: an announcement's).
        first = lead[0] if lead else None
        guarded = [build(first).cte(f"guard_{n}") for n, build in enumerate(guards)]
        columns = [_count(cte).label(f"guard_{n}") for n, cte in enumerate(guarded)]
        if read is not None:
            columns.append(_count(read.subquery("read")).label("read"))
        if first is None:
            return select(*columns).add_cte(*ctes, *guarded)
        # The lead's rows, each with the counts.
        return select(*first.c, *columns).add_cte(*lead, *ctes, *guarded)
    if read is not None:
        return read.add_cte(*ctes)
    return statements[-1].add_cte(*ctes[:-1])


def _count(rows: Any) -> Any:
    return select(func.count()).select_from(rows).scalar_subquery()


def _unnested(prefix: str, shape: Shape) -> Insert | Update:
    """``INSERT INTO t (keys) SELECT ... FROM unnest(one array a key) AS prefix(keys)``, or
    ``UPDATE t SET ... FROM unnest(...) AS prefix(keys) WHERE t.key = prefix.key``."""
    kind, table, key, keys = shape
    arrays = [bindparam(f"{prefix}_{k}", type_=ARRAY(table.c[k].type)) for k in keys]
    rows = func.unnest(*arrays).table_valued(*keys).render_derived(name=prefix)
    if kind == "added":
        return insert(table).from_select(list(keys), select(*(rows.c[k] for k in keys)))
    assert key is not None
    values = {k: rows.c[k] for k in keys if k != key}
    # The keys once more as a condition on the table itself (the same array parameter): the
    # planner then finds the rows by index, where a join with the unnested rows alone read a
    # small table whole.
    by_key = table.c[key] == any_(arrays[keys.index(key)])
    return update(table).where(by_key, table.c[key] == rows.c[key]).values(values)


@functools.cache
def _by_key(table: Table, key: str, keys: tuple[str, ...]) -> tuple[Update, Callable[[Row], Row]]:
    """One row's update by its key, for executemany, and the row's parameters for it (a bound
    parameter may not share its name with a column the statement sets)."""
    statement = (
        update(table)
        .where(table.c[key] == bindparam(f"match_{key}"))
        .values({k: bindparam(f"set_{k}") for k in keys if k != key})
    )

    def params(row: Row) -> Row:
        return {(f"match_{k}" if k == key else f"set_{k}"): row[k] for k in keys}

    return statement, params
