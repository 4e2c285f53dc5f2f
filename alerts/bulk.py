"""Many rows written in few round trips: on PostgreSQL, one statement over rows sent as JSON.

A multi-row ``VALUES`` has a text of its own for every number of rows: compiled and prepared
again and again. ``INSERT ... SELECT FROM json_to_recordset(rows)`` and ``UPDATE ... FROM
json_to_recordset(rows)`` have one text whatever the count, compiled and prepared once, and
several of them go as data-modifying CTEs of one statement: one round trip where there was one
a table. Elsewhere (SQLite, in-process) each step is one executemany.

The rows go as one JSON parameter a table, not one array a column: asyncpg encodes an array
element by element, asking each element whether it is itself a nested array (two
``isinstance`` checks against abstract base classes) before encoding it, about 0.7 µs an
element here, where orjson writes the whole document in one call. A report's two statements
carried some 700 elements.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ARRAY,
    CTE,
    JSON,
    ColumnElement,
    Executable,
    Float,
    FromClause,
    Insert,
    Select,
    Table,
    Update,
    any_,
    bindparam,
    column,
    event,
    func,
    insert,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import QueryableAttribute, Session
from sqlalchemy.sql.selectable import TableValuedAlias
from sqlalchemy.types import TypeDecorator, TypeEngine

from alerts.driver import Convert, fetch_rows

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
class Precondition:
    """A condition under which every step of a ``write_rows`` statement writes, on PostgreSQL:
    where it does not hold (as the statement's snapshot sees the database), no step writes and
    the read still answers, so the read should say what the caller needs to know why. For a
    decision made on a copy of some rows kept in memory, checked in the round trip that writes
    it instead of one of its own before. ``holds`` is built once (it keys the compiled
    statement's cache) and takes its values from ``params``."""

    holds: ColumnElement[bool]
    params: dict[str, Any]
    # Writes of the caller's own (built once) that ``holds`` and the read may look at, ahead of
    # the steps: an insert made once per key, say, whose ``RETURNING`` says whether it wrote.
    ctes: tuple[CTE, ...] = ()


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
    only_if: Precondition | None = None,
) -> Sequence[Row]:
    """Every step, in the order given (parents first), in the caller's transaction; then
    ``read``, whose rows are returned (not where guarded writes are among the steps: then the
    read is still made, and its rows dropped). With a ``lead`` (PostgreSQL only), its writes
    come first, and its first write's rows are returned instead. With ``only_if`` (PostgreSQL
    only, neither guarded writes nor a lead), the steps write only where it holds.

    On PostgreSQL as one statement: foreign keys between its rows hold, as their checks run at
    the end of the statement, and its steps must not touch the same row twice. ``read`` must not
    look at what the steps write: on PostgreSQL it sees the tables as they were before the
    statement (as every part of one statement does), elsewhere as they are after it.
    """
    guards = tuple(step for step in steps if isinstance(step, Guarded))
    writes = tuple(step for step in steps if not isinstance(step, Guarded) and step.rows)
    if only_if is not None and (guards or lead is not None or not on_postgresql(session)):
        raise ValueError("a precondition holds the steps of one statement, on PostgreSQL")
    if only_if is not None and only_if.ctes and read is None:
        raise ValueError("a precondition's own writes need a read to tell what they wrote")
    if not writes and only_if is not None and not only_if.ctes:
        only_if = None
    if (
        lead is not None
        or only_if is not None
        or (on_postgresql(session) and (len(writes) > 1 or guards or (writes and read is not None)))
    ):
        return await _in_one_statement(session, writes, guards, read, lead, only_if)
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
    only_if: Precondition | None = None,
) -> Sequence[Row]:
    params: dict[str, Any] = {} if lead is None else dict(lead.params)
    for n, step in enumerate(writes):
        params.update(_rows_params(f"step_{n}", step))
    for guard in guards:
        params.update(guard.params)
    if read is not None:
        params.update(read.params)
    if only_if is not None:
        params.update(only_if.params)
    statement = _combined(
        tuple(step.shape() for step in writes),
        None if read is None else read.statement,
        tuple(guard.build for guard in guards),
        () if lead is None else lead.ctes,
        None if only_if is None else only_if.holds,
        () if only_if is None else only_if.ctes,
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


def _rows_params(prefix: str, step: Step) -> dict[str, Any]:
    if isinstance(step, Added):
        return {prefix: step.rows}
    return {prefix: step.rows, f"{prefix}_keys": [row[step.key] for row in step.rows]}


@functools.cache
def _combined(
    shapes: tuple[Shape, ...],
    read: Select[Any] | None = None,
    guards: tuple[Callable[[FromClause | None], Insert], ...] = (),
    lead: tuple[CTE, ...] = (),
    holds: ColumnElement[bool] | None = None,
    ahead: tuple[CTE, ...] = (),
) -> Executable:
    statements = [_unnested(f"step_{n}", shape, holds) for n, shape in enumerate(shapes)]
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
        return read.add_cte(*ahead, *ctes)
    return statements[-1].add_cte(*ahead, *ctes[:-1])


def _count(rows: Any) -> Any:
    return select(func.count()).select_from(rows).scalar_subquery()


def _unnested(prefix: str, shape: Shape, holds: ColumnElement[bool] | None) -> Insert | Update:
    """``INSERT INTO t (keys) SELECT ... FROM json_to_recordset(rows) AS prefix(keys)``, or
    ``UPDATE t SET ... FROM json_to_recordset(rows) AS prefix(keys) WHERE t.key = prefix.key``;
    either only where ``holds`` does."""
    kind, table, key, keys = shape
    columns = {k: table.c[k].type for k in keys}
    rows = recordset(prefix, columns)
    values = dict(zip(keys, recordset_values(rows), strict=True))
    if kind == "added":
        chosen = select(*values.values())
        if holds is not None:
            chosen = chosen.where(holds)
        return insert(table).from_select(list(keys), chosen)
    assert key is not None
    # The keys once more as a condition on the table itself (an array of them alone): the
    # planner then finds the rows by index, where a join with the rows alone read a small
    # table whole.
    keyed = bindparam(f"{prefix}_keys", type_=ARRAY(table.c[key].type))
    by_key = table.c[key] == any_(keyed)
    return (
        update(table)
        .where(by_key, table.c[key] == values[key], *(() if holds is None else (holds,)))
        .values({k: v for k, v in values.items() if k != key})
    )


def recordset(name: str, columns: Mapping[str, TypeEngine[Any]]) -> TableValuedAlias:
    """``json_to_recordset(:name) AS name(column type, ...)``: the rows given as the parameter
    ``name`` (dicts keyed by column, each value converted by its type as SQLAlchemy would bind
    it) as a table. Select its columns through ``recordset_values``."""
    carried = tuple(columns.items())
    rows = bindparam(name, type_=Rows(carried))
    return (
        func.json_to_recordset(rows)
        .table_valued(*(column(k, _carried_type(t)) for k, t in carried))
        .render_derived(name=name, with_types=True)
    )


def recordset_values(rows: TableValuedAlias) -> list[ColumnElement[Any]]:
    """The columns of a ``recordset``, in order, as the columns' own types: a JSON value comes
    as JSONB, and JSON's ``null`` comes as JSON's null, not as SQL's NULL (as SQLAlchemy binds
    ``None`` for a JSON column)."""
    return [
        func.coalesce(c, literal_column("'null'::jsonb")) if _is_json(c.type) else c for c in rows.c
    ]


class Rows(TypeDecorator[Sequence[Row]]):
    """Rows bound as one JSON document, for ``json_to_recordset``: each value converted by its
    column's type first (a time made UTC, a naive one refused), a JSON column's value kept as
    it is (it rides the document), and a float refused where it is not finite (JSON has no
    NaN: orjson would write null). The document is written by the engine's JSON serializer,
    as every JSON value is, so that serializer must write times (orjson does: the server's
    engine uses it)."""

    impl = JSON
    cache_ok = True

    def __init__(self, columns: tuple[tuple[str, TypeEngine[Any]], ...]) -> None:
        super().__init__()
        self.columns = columns

    def process_bind_param(self, value: Sequence[Row] | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        converts = _row_converts(self.columns, dialect)
        if not converts:
            return value
        return [_converted(row, converts) for row in value]


def _converted(row: Row, converts: tuple[tuple[str, Convert], ...]) -> Row:
    copy = dict(row)
    for key, convert in converts:
        copy[key] = convert(copy[key])
    return copy


@functools.cache
def _row_converts(
    columns: tuple[tuple[str, TypeEngine[Any]], ...], dialect: Dialect
) -> tuple[tuple[str, Convert], ...]:
    converts = []
    for key, type_ in columns:
        if _is_json(type_):
            continue
        convert: Convert | None = type_.dialect_impl(dialect).bind_processor(dialect)
        if isinstance(type_, Float):
            convert = _finite if convert is None else _then_finite(convert)
        if convert is not None:
            converts.append((key, convert))
    return tuple(converts)


def _finite(value: Any) -> Any:
    if value is not None and not math.isfinite(value):
        raise ValueError(f"{value} cannot be stored: numbers must be finite")
    return value


def _then_finite(convert: Convert) -> Convert:
    return lambda value: _finite(convert(value))


def _is_json(type_: TypeEngine[Any]) -> bool:
    return isinstance(type_, JSON)


def _carried_type(type_: TypeEngine[Any]) -> TypeEngine[Any]:
    return JSONB() if _is_json(type_) else type_


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
