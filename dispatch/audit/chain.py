"""The incident event log as hash chains: one chain per incident.

Each event row carries its place in its incident's chain (``seq`` 1, 2, ...), the previous
row's hash (``prev_hash``; 64 zeros for the first) and its own ``hash``: SHA-256 over the
previous hash and a canonical serialisation of the row. Changing, inserting or deleting a row
through SQL breaks the chain at that row; ``verify`` finds the first break.

The newest link of each chain is kept in ``incident_event_heads`` and locked (FOR UPDATE) while
a transaction appends to that incident, so two transactions never fork a chain. The lock is
taken when the events are flushed, after the transaction's dispatch and chain-tier locks and
before it enqueues messages (mailboxes), heads in incident-id order: the order every other
transaction takes them, so it cannot deadlock.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import math
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
from sqlalchemy import (
    Boolean,
    ColumnElement,
    Integer,
    Row,
    Select,
    String,
    Table,
    Text,
    and_,
    case,
    cast,
    event,
    func,
    inspect,
    literal,
    not_,
    select,
    text,
    type_coerce,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, UOWTransaction

from alerts.bulk import Added, Changed, Step, any_of, on_postgresql
from alerts.models import UTCDateTime
from dispatch.audit import records
from dispatch.audit.models import EventChainHead
from dispatch.db import table_of
from dispatch.incidents.models import (
    AnyDispatch,
    AnyEvent,
    ChainTier,
    Dispatch,
    EventRecord,
    Incident,
    IncidentEvent,
)
from dispatch.rosters.models import IncidentSkip
from dispatch.schemas import show_instant
from dispatch.villages.models import Village

GENESIS = "0" * 64
# Events written as bulk inserts, past the unit of work, for those who count events on commit:
# (type, data, at, the dispatch it is about or None).
WRITTEN_KEY = "audit.written_events"
Written = tuple[str, dict[str, Any], datetime, AnyDispatch | None]

HEADS = table_of(EventChainHead)
EVENTS = table_of(IncidentEvent)


# orjson writes what ``json.dumps`` writes (sorted keys, no spaces, text unescaped but for
# quotes, backslashes and control characters) for every value here but two kinds, measured
# over every code point and a million floats: a float below 1e-4 or from 1e16 on (``1e-05``
# becomes ``0.00001``), and an integer outside 64 bits, which it refuses. Rows holding either
# are written by ``json.dumps``, so every row keeps the bytes its hash was made of.
_EXACT_FLOATS = (1e-4, 1e16)
_EXACT_INTS = (-(2**63), 2**64)


def _normal(value: Any, inexact: list[Any]) -> Any:
    """The value as any JSON store hands it back: integral floats as integers (PostgreSQL's
    jsonb keeps numbers as decimals), keys as strings, tuples as lists; times are refused.
    Numbers orjson would not write as ``json.dumps`` does are added to ``inexact``."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        if not _EXACT_INTS[0] <= value < _EXACT_INTS[1]:
            inexact.append(value)
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("event data must be finite numbers")
        if value.is_integer():
            return _normal(int(value), inexact)
        if not _EXACT_FLOATS[0] <= abs(value) < _EXACT_FLOATS[1]:
            inexact.append(value)
        return value
    if isinstance(value, datetime):
        # JSON keeps no time: the store would write it as text of its own, which the hash
        # would not match (orjson rounds an offset to the minute: +08:06 for the +08:05:43
        # of Shanghai's mean time before 1901, which isoformat keeps), and verify would call
        # the row changed. Events carry times as the text they are stored and hashed as.
        raise TypeError("event data holds a datetime: record it as text, its isoformat()")
    if isinstance(value, dict):
        return {str(k): _normal(v, inexact) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normal(v, inexact) for v in value]
    raise TypeError(f"event data holds a {type(value).__name__}, which JSON cannot keep")


def canonical(
    incident_id: str, seq: int, at: datetime, kind: str, actor_id: str | None, data: Any
) -> bytes:
    """The row as hashed: JSON with sorted keys, no spaces, the time in UTC to the microsecond.
    The same bytes on SQLite and PostgreSQL, before storing and after reading back."""
    inexact: list[Any] = []
    row = {
        "incident_id": incident_id,
        "seq": seq,
        "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
        "type": kind,
        "actor_id": actor_id,
        "data": _normal(data, inexact),
    }
    if not inexact:
        try:
            # Half the time of json.dumps, which builds an encoder at every call.
            return orjson.dumps(row, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:
            pass  # text that is not Unicode (a lone surrogate): refused below, as ever
    text = json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode()


def link(prev_hash: str, body: bytes) -> str:
    return hashlib.sha256(prev_hash.encode() + b"\n" + body).hexdigest()


def event_hash(e: AnyEvent, prev_hash: str) -> str:
    return link(prev_hash, canonical(e.incident_id, e.seq, e.at, e.type, e.actor_id, e.data))


@event.listens_for(Session, "before_flush")
def _seal_new_events(session: Session, _context: UOWTransaction, _instances: object) -> None:
    """Give every new event its place and hash, whoever added it, just before it is written."""
    pending = sorted(
        (o for o in session.new if isinstance(o, IncidentEvent) and o.hash is None),
        key=lambda o: inspect(o).insert_order,
    )
    if not pending:
        return
    by_incident = _by_incident(pending)
    with session.no_autoflush:
        # One statement locks every head this flush appends to, in incident-id order.
        heads = {
            h.incident_id: h
            for h in session.scalars(
                select(EventChainHead)
                .where(EventChainHead.incident_id.in_(sorted(by_incident)))
                .order_by(EventChainHead.incident_id)
                .with_for_update()
                # This session may hold the rows from an earlier transaction: read afresh.
                .execution_options(populate_existing=True)
            )
        }
        for incident_id in sorted(by_incident):
            head = heads.get(incident_id)
            if head is None:
                head = EventChainHead(incident_id=incident_id, seq=0, hash=GENESIS)
                session.add(head)
            head.seq, head.hash = _seal(by_incident[incident_id], head.seq, head.hash)


def new_chain_rows(events: Sequence[EventRecord]) -> list[Step]:
    """The first events of an incident inserted in this transaction, sealed from genesis, and
    their head: the rows for the caller to write with the incident's others (there is no head
    to read or lock yet). The events stay out of the session (they are not flushed again):
    once written, the caller notes them (``note_written``)."""
    if not events:
        return []
    incident_id = events[0].incident_id
    assert all(e.incident_id == incident_id for e in events), "one incident's chain at a time"
    seq, prev = _seal(events, 0, GENESIS)
    head = {"incident_id": incident_id, "seq": seq, "hash": prev}
    return [Added(EVENTS, _event_rows(events)), Added(HEADS, [head])]


async def appended_rows(
    session: AsyncSession, events: Sequence[EventRecord], dispatches: Sequence[AnyDispatch] = ()
) -> list[Step]:
    """Events appended to their incidents' chains past the unit of work: the heads they extend
    locked now in one statement, in incident-id order (as the flush-time sealing takes them),
    the events sealed here; the rows (events, moved and new heads) for the caller to write
    with its others. For many events at once (a batch of deliveries) the unit of work's
    bookkeeping cost more than the statements. ``dispatches`` as for ``new_chain_rows``.
    """
    if not events:
        return []
    by_incident = _by_incident(events)
    locked = await session.execute(
        _heads_locked(on_postgresql(session)), {"head_incidents": sorted(by_incident)}
    )
    heads = {incident_id: (seq, hash_) for incident_id, seq, hash_ in locked.all()}
    moved: list[dict[str, Any]] = []
    started: list[dict[str, Any]] = []
    for incident_id in sorted(by_incident):
        seq, prev = _seal(by_incident[incident_id], *heads.get(incident_id, (0, GENESIS)))
        link = {"incident_id": incident_id, "seq": seq, "hash": prev}
        (moved if incident_id in heads else started).append(link)
    note_written(session, events, dispatches)
    return [
        Added(EVENTS, _event_rows(events)),
        Changed(HEADS, "incident_id", moved),
        Added(HEADS, started),
    ]


@functools.cache
def _heads_locked(postgresql: bool) -> Select[str, int, str]:
    # Built once: built at every flush of deliveries, it was walked again for its cache key.
    return (
        select(HEADS.c.incident_id, HEADS.c.seq, HEADS.c.hash)
        .where(any_of(HEADS.c.incident_id, "head_incidents", postgresql))
        .order_by(HEADS.c.incident_id)
        .with_for_update()
    )


Event = TypeVar("Event", IncidentEvent, EventRecord)


def _by_incident(events: Sequence[Event]) -> dict[str, list[Event]]:
    by_incident: dict[str, list[Event]] = {}
    for e in events:
        by_incident.setdefault(e.incident_id, []).append(e)
    return by_incident


def _seal(events: Sequence[AnyEvent], seq: int, prev: str) -> tuple[int, str]:
    """Chain ``events`` (of one incident) after the link ``seq``/``prev``; return the last."""
    for e in events:
        seq += 1
        e.seq, e.prev_hash = seq, prev
        e.hash = prev = event_hash(e, prev)
    return seq, prev


def _event_rows(events: Sequence[EventRecord]) -> list[dict[str, Any]]:
    return [e.values() for e in events]


def note_written(
    session: AsyncSession, events: Sequence[EventRecord], dispatches: Sequence[AnyDispatch]
) -> None:
    """Note sealed events written past the unit of work, for the counters read on commit;
    ``dispatches`` are the ones they may name."""
    by_id = {d.id: d for d in dispatches}
    written: list[Written] = session.info.setdefault(WRITTEN_KEY, [])
    for e in events:
        dispatch_id = e.data.get("dispatch_id")
        dispatch = by_id.get(dispatch_id) if isinstance(dispatch_id, str) else None
        written.append((e.type, dict(e.data), e.at, dispatch))


# ---------------------------------------------------------------- verification

# Incidents read at a time, with every row of theirs: a bounded slice of the database in
# memory, a handful of statements for each slice, none for each incident.
CHUNK = 250
INCIDENTS = table_of(Incident)
TIER_ROWS = table_of(ChainTier)
DISPATCHES = table_of(Dispatch)
SKIPS = table_of(IncidentSkip)
VILLAGES = table_of(Village)


@dataclass(frozen=True)
class Break:
    """The first row where a chain does not hold, or where a row the reports judge from
    disagrees with the events (``row`` names it then)."""

    event_id: int | None
    incident_id: str
    seq: int | None
    reason: str
    row: str | None = None
    # The kind of break, and what it names, for the pages to say in their own words
    # (``docs/security.md`` lists the codes): ``reason`` is the command line's.
    code: str = ""
    values: Mapping[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        if self.row is not None:
            return f"{self.row}: {self.reason}"
        row = f"incident_events row id={self.event_id}" if self.event_id else "incident"
        at = (
            f" (incident {self.incident_id}, seq {self.seq})"
            if self.seq
            else f" {self.incident_id}"
        )
        return f"{row}{at}: {self.reason}"


@dataclass(frozen=True)
class Verdict:
    events: int
    incidents: int
    broken: Break | None
    # Incidents some of whose columns their events were written too early to record (before
    # they carried everything the reports read): those columns are not checked.
    unrecorded: int = 0
    # Where the break is in the office's terms (``_place``), when its rows could be read.
    where: str | None = None
    # The same, as values (``Place``): for the pages, which show them in their own words.
    place: Place | None = None


@dataclass(frozen=True)
class Place:
    """A broken incident as the office knows it: when it was reported, its category and
    village (None: in no village), from ``source``; and the event row named, if any."""

    incident_id: str
    reported_at: datetime
    source: str
    category: str | None
    village: str | None
    event_type: str | None = None
    event_at: datetime | None = None

    def __str__(self) -> str:
        place = self.village or "in no village"
        where = (
            f"incident {self.incident_id}, reported {show_instant(self.reported_at)} "
            f"({self.source}), {self.category}, {place}"
        )
        if self.event_type is not None and self.event_at is not None:
            where += f"; the event: {self.event_type} at {show_instant(self.event_at)} as stored"
        return where


@dataclass(frozen=True)
class Head:
    """The newest row of the event log: its id, hash and time."""

    event_id: int
    hash: str
    at: datetime


async def head_at(session: AsyncSession, moment: datetime) -> Head | None:
    """The log's row written last (the greatest id) of those at or before ``moment``: what a
    report computed then was computed against. None when there is none."""
    query = (
        select(EVENTS.c.id, EVENTS.c.hash, EVENTS.c.at)
        .where(EVENTS.c.at <= moment)
        .order_by(EVENTS.c.id.desc())
        .limit(1)
    )
    row = (await session.execute(query)).first()
    return None if row is None else Head(row.id, row.hash, row.at)


async def event_with_hash(session: AsyncSession, hash_: str) -> Head | None:
    """The row of the log whose hash is ``hash_``, if it is still there."""
    query = select(EVENTS.c.id, EVENTS.c.hash, EVENTS.c.at).where(EVENTS.c.hash == hash_)
    row = (await session.execute(query.order_by(EVENTS.c.id).limit(1))).first()
    return None if row is None else Head(row.id, row.hash, row.at)


@dataclass
class _Slice:
    """Every row of the incidents whose ids fall in one range, by incident; or, where one of
    those rows holds a value that cannot be read, that row (``unreadable``)."""

    incidents: dict[str, Row[Any]] = field(default_factory=dict)
    heads: dict[str, Row[Any]] = field(default_factory=dict)
    events: dict[str, list[Row[Any]]] = field(default_factory=dict)
    tiers: dict[str, list[Row[Any]]] = field(default_factory=dict)
    dispatches: dict[str, list[Row[Any]]] = field(default_factory=dict)
    skips: dict[str, list[Row[Any]]] = field(default_factory=dict)
    unreadable: Break | None = None

    def incident_ids(self) -> list[str]:
        return sorted(
            set(self.incidents) | set(self.heads) | set(self.events)
            | set(self.tiers) | set(self.dispatches) | set(self.skips)
        )  # fmt: skip


def _within(column: ColumnElement[str], after: str | None, upto: str | None) -> list[Any]:
    """``after < column <= upto``, either end open when None. The slices' ranges meet end to
    end, so every row falls in one, its incident's row or not; the database orders and
    compares the ids alike, whatever its collation."""
    conditions: list[Any] = []
    if after is not None:
        conditions.append(column > after)
    if upto is not None:
        conditions.append(column <= upto)
    return conditions


# The one form the server writes a time in on SQLite (SQLAlchemy's, of the UTC time): fixed
# width, so that comparing the text, as the reports do, compares the instants. The driver
# reads any ISO 8601 text back, an offset included, as the same instant.
SQLITE_TIME = "YYYY-MM-DD HH:MM:SS.ffffff"
_SQLITE_TIME_GLOB = (
    "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] [0-9][0-9]:[0-9][0-9]:[0-9][0-9]"
    ".[0-9][0-9][0-9][0-9][0-9][0-9]"
)
# On SQLite, each row read with the first of its times and flags not stored in the server's
# form: that column's name, a space and the value as stored (SQLite's ``quote``); else null.
ODD_FORM = "verify_odd_form"


def _in_server_form(column: Any) -> ColumnElement[bool] | None:
    """Whether a time or a flag holds what the server writes on SQLite (None: any column
    else). The driver reads a flag stored as ``'false'`` as true, SQL as false."""
    if isinstance(column.type, UTCDateTime):
        as_text = type_coerce(column, String())
        return and_(func.typeof(column) == "text", as_text.op("GLOB")(_SQLITE_TIME_GLOB))
    if isinstance(column.type, Boolean):
        as_integer = type_coerce(column, Integer())
        return and_(func.typeof(column) == "integer", as_integer.in_([0, 1]))
    return None


@functools.cache
def _odd_form(table: Table) -> ColumnElement[str] | None:
    whens = []
    for column in table.columns:
        held = _in_server_form(column)
        if held is not None:
            stored = func.quote(type_coerce(column, String()))
            whens.append(
                (and_(column.is_not(None), not_(held)), literal(f"{column.name} ") + stored)
            )
    if not whens:
        return None
    return case(*whens, else_=None).label(ODD_FORM)


def _with_stored_forms(session: AsyncSession, table: Table) -> list[Any]:
    """The columns to read of ``table``: all, and on SQLite which of its times or flags, if
    any, is not in the server's form (``ODD_FORM``). Read with the rows, in the statement
    that reads them."""
    odd = None if on_postgresql(session) else _odd_form(table)
    return [table] if odd is None else [table, odd]


async def _incidents_after(session: AsyncSession, after: str | None) -> list[Row[Any]]:
    """The next slice's incidents, each with its village's name (``village_name``), which the
    reports show it under."""
    query = (
        select(*_with_stored_forms(session, INCIDENTS), VILLAGES.c.name.label("village_name"))
        .outerjoin(VILLAGES, VILLAGES.c.id == INCIDENTS.c.village_id)
        .where(*_within(INCIDENTS.c.id, after, None))
    )
    return list(await session.execute(query.order_by(INCIDENTS.c.id).limit(CHUNK)))


async def _read_range(session: AsyncSession, after: str | None, upto: str | None) -> _Slice:
    """The heads, events (in order of insertion), tiers, dispatches and skipped teams of the
    incidents whose ids are in ``(after, upto]``."""
    found = _Slice()

    def rows_of(table: Table) -> Select[Any]:
        column = table.c.incident_id
        columns = _with_stored_forms(session, table)
        return select(*columns).where(*_within(column, after, upto)).order_by(column)

    for head in await session.execute(rows_of(HEADS)):
        found.heads[head.incident_id] = head
    # Events in order of insertion: a chain is walked as its rows were written.
    for table, into, then in (
        (EVENTS, found.events, EVENTS.c.id),
        (TIER_ROWS, found.tiers, TIER_ROWS.c.tier),
        (DISPATCHES, found.dispatches, DISPATCHES.c.id),
        (SKIPS, found.skips, SKIPS.c.team_id),
    ):
        for row in await session.execute(rows_of(table).order_by(then)):
            into.setdefault(row.incident_id, []).append(row)
    return found


async def _slices(session: AsyncSession) -> AsyncIterator[_Slice]:
    after: str | None = None
    while True:
        try:
            incidents = await _incidents_after(session, after)
            # The last slice reaches past the last incident: rows naming no incident are in it.
            upto = incidents[-1].id if len(incidents) == CHUNK else None
            found = await _read_range(session, after, upto)
        except _UNREADABLE as error:
            if isinstance(error, DBAPIError) and error.connection_invalidated:
                # The connection was lost (its host gone dark, the server restarted): no row
                # can be looked for on it, and the driver's error says what failed. Asked,
                # the session refused as its transaction was gone, a traceback.
                raise
            try:
                unreadable = await _unreadable(session, after)
            except _UNREADABLE:
                unreadable = None  # what failed was the database: its own error says so
            if unreadable is None:
                raise error from None
            yield _Slice(unreadable=unreadable)
            return
        found.incidents = {i.id: i for i in incidents}
        yield found
        if upto is None:
            return
        after = upto


# What reading a value the server never wrote raises: a time no datetime holds (SQLite's
# ``someday``, PostgreSQL's year 20000), JSON Python does not load (``NaN``, 1e400), text that
# is not UTF-8 (the driver's error, on SQLite). A value that cannot be read is a row changed.
_UNREADABLE = (ValueError, OverflowError, TypeError, DBAPIError)


@dataclass(frozen=True)
class _Kind:
    """A table verify reads, and how it names one of its rows (by ``names``, its columns
    read to name it)."""

    table: Table
    names: tuple[str, ...]
    name: Callable[[Any], str]

    def where(self, after: str | None, upto: str | None) -> list[Any]:
        if self.table is VILLAGES:
            # The villages the slice's incidents are in: the reports read their names.
            ids = select(INCIDENTS.c.village_id).where(*_within(INCIDENTS.c.id, after, upto))
            return [VILLAGES.c.id.in_(ids)]
        column = INCIDENTS.c.id if self.table is INCIDENTS else self.table.c.incident_id
        return _within(column, after, upto)


_KINDS = (
    _Kind(INCIDENTS, ("id",), lambda r: f"incidents row {r.id}"),
    _Kind(VILLAGES, ("id",), lambda r: f"villages row {r.id}"),
    _Kind(
        HEADS, ("incident_id",), lambda r: f"incident_event_heads row (incident {r.incident_id})"
    ),
    _Kind(
        EVENTS,
        ("id", "incident_id", "seq"),
        lambda r: f"incident_events row id={r.id} (incident {r.incident_id}, seq {r.seq})",
    ),
    _Kind(
        TIER_ROWS,
        ("incident_id", "tier"),
        lambda r: f"chain_tiers row (incident {r.incident_id}, tier {r.tier})",
    ),
    _Kind(
        DISPATCHES,
        ("id", "incident_id"),
        lambda r: f"dispatches row {r.id} (incident {r.incident_id})",
    ),
    _Kind(
        SKIPS,
        ("incident_id", "team_id"),
        lambda r: f"incident_skips row (incident {r.incident_id}, team {r.team_id})",
    ),
)
_KIND_OF = {kind.table.name: kind for kind in _KINDS}


async def _unreadable(session: AsyncSession, after: str | None) -> Break | None:
    """The first row of the slice after ``after`` holding a value that cannot be read, as
    a break naming the row and the column; None when every value reads (what failed was not
    a value). Found a table, then a row, then a column at a time: only where a slice failed.
    A value is found unreadable only where its row's key still reads after it: a database
    gone away fails that too, and is its own error."""
    ids = select(INCIDENTS.c.id).where(*_within(INCIDENTS.c.id, after, None))
    last = list(await session.scalars(ids.order_by(INCIDENTS.c.id).limit(CHUNK)))
    upto = last[-1] if len(last) == CHUNK else None
    for kind in _KINDS:
        table, where = kind.table, kind.where(after, upto)
        try:
            list(await session.execute(select(table).where(*where)))
            continue
        except _UNREADABLE:
            pass
        keys = list(table.primary_key.columns)
        names = select(*(table.c[n] for n in kind.names)).where(*where).order_by(*keys)
        for named in list(await session.execute(names)):
            this = [key == named._mapping[key.name] for key in keys]
            try:
                list(await session.execute(select(table).where(*this)))
                continue
            except _UNREADABLE:
                pass
            for column in table.columns:
                try:
                    list(await session.execute(select(column).where(*this)))
                except _UNREADABLE as error:
                    list(await session.execute(select(*keys).where(*this)))
                    return _unreadable_value(
                        kind, named, column.name, error, await _as_stored(session, column, this)
                    )
    return None


async def _as_stored(session: AsyncSession, column: Any, this: list[Any]) -> str | None:
    """The value as the database writes it as text (None: not even that reads)."""
    try:
        value = await session.scalar(select(cast(column, Text())).where(*this))
    except _UNREADABLE:
        return None
    return None if value is None else records.show_text(value)


def _unreadable_value(
    kind: _Kind, named: Row[Any], column: str, error: BaseException, stored: str | None
) -> Break:
    cause = error.orig if isinstance(error, DBAPIError) and error.orig is not None else error
    held = f" ({stored} as stored)" if stored is not None else ""
    reason = f"its {column}{held} cannot be read: {cause}: the row was changed"
    incident_id = named.id if kind.table is INCIDENTS else named._mapping.get("incident_id", "")
    values = {"table": kind.table.name, "column": column, "stored": stored, "error": str(cause)}
    return Break(None, incident_id, None, reason, kind.name(named), "value_unreadable", values)


def _odd_stored_form(incident_id: str, found: _Slice) -> Break | None:
    """On SQLite, the first of the incident's rows with a time or a flag not stored in the
    form the server writes (``ODD_FORM``): the driver reads it as the value it stands for,
    and verify with it, while SQL, and so the reports, compare and test what is stored."""
    incident = found.incidents.get(incident_id)
    for table, rows in (
        (INCIDENTS, [] if incident is None else [incident]),
        (EVENTS, found.events.get(incident_id, [])),
        (TIER_ROWS, found.tiers.get(incident_id, [])),
        (DISPATCHES, found.dispatches.get(incident_id, [])),
        (SKIPS, found.skips.get(incident_id, [])),
    ):
        for row in rows:
            odd: str | None = row._mapping.get(ODD_FORM)
            if odd is None:
                continue
            column, _, stored = odd.partition(" ")
            called = "stored_form_time"
            if isinstance(table.c[column].type, Boolean):
                called = "stored_form_flag"
                form = "as the server writes a flag: the integer 0 or 1, which SQL tests as stored"
            else:
                form = (
                    f"in the one form the server writes a time: UTC as '{SQLITE_TIME}', which "
                    "SQL compares as text, so the same instant written otherwise is judged "
                    "otherwise"
                )
            reason = f"{column} is stored as {stored}, not {form}"
            name = _KIND_OF[table.name].name(row)
            values = {"table": table.name, "column": column, "stored": stored}
            return Break(None, incident_id, None, reason, name, called, values)
    return None


def _chain_break(incident_id: str, events: list[Row[Any]], head: Row[Any] | None) -> Break | None:
    """Where one incident's chain does not hold: a row missing, reordered or changed, rows
    gone from its end, events without a head or a head without events."""
    if not events:
        if head is not None:
            reason = "its head names events that are gone"
            values = {"head_seq": head.seq}
            return Break(None, incident_id, None, reason, None, "head_without_events", values)
        return None
    prev_hash, seq = GENESIS, 0
    for e in events:
        seq += 1
        at = {"event_id": e.id, "seq": e.seq}
        if e.seq != seq:
            later = next((other for other in events if other.seq == seq), None)
            if later is not None:
                # Read in the order they were written: the seqs of rows moved about.
                reason = (
                    f"expected seq {seq}, which the later row id={later.id} holds: "
                    "the rows were reordered"
                )
                values = {**at, "expected_seq": seq, "later_event_id": later.id}
                return Break(e.id, incident_id, e.seq, reason, None, "rows_reordered", values)
            reason = f"expected seq {seq}: a row is missing"
            values = {**at, "expected_seq": seq}
            return Break(e.id, incident_id, e.seq, reason, None, "row_missing", values)
        if head is not None and seq == head.seq + 1 and prev_hash == head.hash:
            # The chain holds up to its head, which the server moves with every row it adds:
            # a row past it was not added by the server, whatever its hash.
            reason = (
                f"it comes after the chain's head (seq {head.seq}), which the server moves with "
                "every row it adds: the row was added"
            )
            values = {**at, "head_seq": head.seq}
            return Break(e.id, incident_id, e.seq, reason, None, "row_added", values)
        if e.prev_hash != prev_hash:
            reason = "its prev_hash is not the previous row's hash"
            return Break(e.id, incident_id, e.seq, reason, None, "prev_hash_mismatch", at)
        try:
            body = canonical(incident_id, e.seq, e.at, e.type, e.actor_id, e.data)
        except (TypeError, ValueError) as error:
            # Nothing the server writes fails to hash (a type or actor stored as bytes does).
            reason = f"its content cannot be hashed: {error}: the row was changed"
            values = {**at, "error": str(error)}
            return Break(e.id, incident_id, e.seq, reason, None, "content_unhashable", values)
        if e.hash != link(prev_hash, body):
            reason = "its hash does not match its content: the row was changed"
            return Break(e.id, incident_id, e.seq, reason, None, "hash_mismatch", at)
        prev_hash = e.hash
    if head is None:
        reason = "its events have no chain head"
        return Break(None, incident_id, None, reason, None, "head_missing", {"end_seq": seq})
    if (head.seq, head.hash) != (seq, prev_hash):
        reason = f"the chain ends at seq {seq} but its head says seq {head.seq}: rows are missing"
        values = {"end_seq": seq, "head_seq": head.seq}
        return Break(None, incident_id, None, reason, None, "rows_truncated", values)
    return None


async def _one_snapshot(session: AsyncSession) -> None:
    """Begin the session's transaction as one snapshot of the database, for every statement
    it runs. Verification reads the heads, then the events: read at two moments of a live
    database, a chain that grew in between ends past the head read first, which looked like
    rows deleted from its head. On PostgreSQL a REPEATABLE READ transaction (READ COMMITTED
    gives each statement its own snapshot); on SQLite a read transaction begun by hand (the
    driver begins one only before a write, so each SELECT saw the database anew).

    A session whose transaction has already begun is read as it is: its caller chose."""
    if session.in_transaction():
        return
    if on_postgresql(session):
        options = {"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
        await session.connection(execution_options=options)
    else:
        await session.execute(text("BEGIN"))


# Each incident's chain head as a checkpoint noted it: (seq, hash).
Heads = Mapping[str, tuple[int, str]]
# Given each incident that holds, with its head's seq and hash: the checkpoint to write.
Keep = Callable[[str, int, str], None]


async def verify(
    session: AsyncSession, *, against: Heads | None = None, keep: Keep | None = None
) -> Verdict:
    """Walk every incident, a slice of them at a time; stop at the first break. Each chain
    must hold from its first row to its head; with a checkpoint taken earlier (``against``),
    it must pass through the head noted then; and the incident's rows that the reports judge
    from (``incidents`` with its village's name, ``chain_tiers``, ``dispatches``,
    ``incident_skips``) must be what its events record (``dispatch.audit.records``). Every
    incident that holds is given to ``keep``; the verdict counts those whose events were
    written before they carried every column the reports read (``Verdict.unrecorded``).

    Given a session that has not begun its transaction (as ``dispatch audit verify`` does),
    every slice is read in one snapshot: what is written meanwhile is not seen, and what was
    seen agrees with itself."""
    await _one_snapshot(session)
    events = incidents = unrecorded = 0
    seen: set[str] = set()
    async for found in _slices(session):
        if found.unreadable is not None:
            return Verdict(events, incidents, found.unreadable, unrecorded)
        for incident_id in found.incident_ids():
            # The server runs this on its event loop (GET /api/v1/audit/verification): a turn
            # of the loop between incidents, so that an alert waits for one incident's check,
            # not for a slice's.
            await asyncio.sleep(0)
            chain = found.events.get(incident_id, [])
            head = found.heads.get(incident_id)
            events += len(chain)
            incidents += head is not None
            broken = _chain_break(incident_id, chain, head)
            if broken is None and against is not None and incident_id in against:
                seen.add(incident_id)
                broken = _rewritten(incident_id, chain, *against[incident_id])
            if broken is None:
                broken = _odd_stored_form(incident_id, found)
            if broken is None:
                checked = records.check(
                    incident_id,
                    chain,
                    found.incidents.get(incident_id),
                    found.tiers.get(incident_id, []),
                    found.dispatches.get(incident_id, []),
                    found.skips.get(incident_id, []),
                )
                different = checked.mismatch
                if different is not None:
                    broken = Break(
                        None,
                        incident_id,
                        None,
                        different.reason,
                        different.row,
                        different.code,
                        different.values,
                    )
                if checked.unrecorded and head is not None:
                    unrecorded += 1
            if broken is not None:
                place = _place(incident_id, found, broken)
                where = None if place is None else str(place)
                return Verdict(events, incidents, broken, unrecorded, where, place)
            if keep is not None and head is not None:
                keep(incident_id, head.seq, head.hash)
    if against is not None and len(seen) < len(against):
        gone = set(against) - seen
        incident_id = min(gone)
        seq, _ = against[incident_id]
        reason = f"removed since the checkpoint, which names its chain up to seq {seq}"
        if len(gone) > 1:
            # An older backup restored lacks every incident reported after it: not one
            # incident deleted, which the office would look for otherwise.
            reason += (
                f" (and {len(gone) - 1} more of its {len(against)} incidents are gone: "
                f"deleted, or {OLDER})"
            )
        values = {"checkpoint_seq": seq, "gone": len(gone), "checkpoint_incidents": len(against)}
        called = "checkpoint_incidents_gone"
        broken = Break(None, incident_id, None, reason, _whose(incident_id), called, values)
        return Verdict(events, incidents, broken, unrecorded)
    return Verdict(events, incidents, None, unrecorded)


def _place(incident_id: str, found: _Slice, broken: Break) -> Place | None:
    """The broken incident as the office knows it, to find it in its reports and pages: when
    it was reported (Beijing time), its category and village, as its ``reported`` event
    records them (else as its row holds them); and the event row named, by its type and
    time as stored. None when neither is left to read."""
    chain = found.events.get(incident_id, [])
    reported = next((e for e in chain if e.type == "reported"), None)
    incident = found.incidents.get(incident_id)
    if reported is not None:
        data = reported.data if isinstance(reported.data, dict) else {}
        when, source = reported.at, "its reported event"
        category, village = data.get("category"), data.get("village_name")
        if "category" not in data and incident is not None:
            # Recorded before the event carried them: the row's.
            category, village = incident.category, incident.village_name
    elif incident is not None:
        when, source = incident.reported_at, "its incidents row"
        category, village = incident.category, incident.village_name
    else:
        return None
    event = next(
        (e for e in chain if broken.event_id is not None and e.id == broken.event_id), None
    )
    return Place(
        incident_id,
        when,
        source,
        None if category is None else str(category),
        village if isinstance(village, str) and village else None,
        None if event is None else event.type,
        None if event is None else event.at,
    )


def _whose(incident_id: str) -> str:
    return f"incident {incident_id}"


# What a checkpoint's incidents, or events, missing may also mean: a backup restored.
OLDER = "this database is older than the checkpoint (a backup from before it, restored)"


def _rewritten(incident_id: str, chain: list[Row[Any]], seq: int, hash_: str) -> Break | None:
    """Where a chain (that holds) no longer passes through the head a checkpoint noted."""
    since = "rewritten since the checkpoint"
    if len(chain) < seq:
        reason = (
            f"{since}: its chain ends at seq {len(chain)}, the checkpoint's head is at seq {seq}: "
            f"its later events were removed, or {OLDER}"
        )
        ends = {"end_seq": len(chain), "checkpoint_seq": seq}
        called = "checkpoint_truncated"
        return Break(None, incident_id, None, reason, _whose(incident_id), called, ends)
    e = chain[seq - 1]
    if e.hash != hash_:
        reason = (
            f"{since}: its event at seq {seq} (incident_events row id={e.id}) has the hash "
            f"{e.hash}, the checkpoint's head there {hash_}"
        )
        values = {"event_id": e.id, "seq": seq, "hash": e.hash, "checkpoint_hash": hash_}
        called = "checkpoint_rewritten"
        return Break(e.id, incident_id, seq, reason, _whose(incident_id), called, values)
    return None
