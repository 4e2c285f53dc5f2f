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

import functools
import hashlib
import json
import math
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Select, event, inspect, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, UOWTransaction

from alerts.bulk import Added, Changed, Step, any_of, on_postgresql
from dispatch.audit.models import EventChainHead
from dispatch.db import table_of
from dispatch.incidents.models import AnyDispatch, AnyEvent, EventRecord, IncidentEvent

GENESIS = "0" * 64
# Events written as bulk inserts, past the unit of work, for those who count events on commit:
# (type, data, at, the dispatch it is about or None).
WRITTEN_KEY = "audit.written_events"
Written = tuple[str, dict[str, Any], datetime, AnyDispatch | None]

HEADS = table_of(EventChainHead)
EVENTS = table_of(IncidentEvent)


def _normal(value: Any) -> Any:
    """The value as any JSON store hands it back: integral floats as integers (PostgreSQL's
    jsonb keeps numbers as decimals), keys as strings, tuples as lists, times as ISO text."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("event data must be finite numbers")
        return int(value) if value.is_integer() else value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _normal(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_normal(v) for v in value]
    raise TypeError(f"event data holds a {type(value).__name__}, which JSON cannot keep")


def canonical(
    incident_id: str, seq: int, at: datetime, kind: str, actor_id: str | None, data: Any
) -> bytes:
    """The row as hashed: JSON with sorted keys, no spaces, the time in UTC to the microsecond.
    The same bytes on SQLite and PostgreSQL, before storing and after reading back."""
    row = {
        "incident_id": incident_id,
        "seq": seq,
        "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
        "type": kind,
        "actor_id": actor_id,
        "data": _normal(data),
    }
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


def new_chain_rows(
    session: AsyncSession, events: Sequence[EventRecord], dispatches: Sequence[AnyDispatch] = ()
) -> list[Step]:
    """The first events of an incident inserted in this transaction, sealed from genesis, and
    their head: the rows for the caller to write with the incident's others (there is no head
    to read or lock yet).

    The events stay out of the session (they are not flushed again); ``dispatches`` are the
    ones they may name, for the counters read on commit."""
    if not events:
        return []
    incident_id = events[0].incident_id
    assert all(e.incident_id == incident_id for e in events), "one incident's chain at a time"
    seq, prev = _seal(events, 0, GENESIS)
    _note_written(session, events, dispatches)
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
    _note_written(session, events, dispatches)
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


def _note_written(
    session: AsyncSession, events: Sequence[EventRecord], dispatches: Sequence[AnyDispatch]
) -> None:
    """Note sealed events written past the unit of work, for the counters read on commit."""
    by_id = {d.id: d for d in dispatches}
    written: list[Written] = session.info.setdefault(WRITTEN_KEY, [])
    for e in events:
        dispatch_id = e.data.get("dispatch_id")
        dispatch = by_id.get(dispatch_id) if isinstance(dispatch_id, str) else None
        written.append((e.type, dict(e.data), e.at, dispatch))


# ---------------------------------------------------------------- verification


@dataclass(frozen=True)
class Break:
    """The first row where a chain does not hold."""

    event_id: int | None
    incident_id: str
    seq: int | None
    reason: str

    def __str__(self) -> str:
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
    # SHA-256 over every head: note it somewhere else, and a later rewrite of whole chains,
    # or an incident removed with all its events, shows as a different seal.
    seal: str
    broken: Break | None


async def _stream(session: AsyncSession) -> AsyncIterator[IncidentEvent]:
    query = select(IncidentEvent).order_by(IncidentEvent.incident_id, IncidentEvent.id)
    result = await session.stream_scalars(query.execution_options(yield_per=1000))
    async for row in result:
        yield row


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


async def verify(session: AsyncSession) -> Verdict:
    """Walk every chain in order of insertion; stop at the first row that breaks. Given a
    session that has not begun its transaction (as ``dispatch audit verify`` does), the heads
    and the events are read in one snapshot: events written meanwhile are not seen, and what
    was seen agrees with itself."""
    await _one_snapshot(session)
    heads = {h.incident_id: h for h in await session.scalars(select(EventChainHead))}
    seal = hashlib.sha256()
    for incident_id in sorted(heads):
        seal.update(f"{incident_id}:{heads[incident_id].seq}:{heads[incident_id].hash}\n".encode())
    events = 0
    seen: set[str] = set()
    current: str | None = None
    prev_hash, seq = GENESIS, 0
    broken: Break | None = None

    def close_chain(incident_id: str) -> Break | None:
        head = heads.get(incident_id)
        if head is None:
            return Break(None, incident_id, None, "its events have no chain head")
        if (head.seq, head.hash) != (seq, prev_hash):
            return Break(
                None,
                incident_id,
                None,
                f"the chain ends at seq {seq} but its head says seq {head.seq}: rows are missing",
            )
        return None

    async for e in _stream(session):
        events += 1
        if e.incident_id != current:
            if current is not None and (broken := close_chain(current)):
                break
            current, prev_hash, seq = e.incident_id, GENESIS, 0
            seen.add(current)
        seq += 1
        if e.seq != seq:
            broken = Break(e.id, e.incident_id, e.seq, f"expected seq {seq}: a row is missing")
            break
        if e.prev_hash != prev_hash:
            reason = "its prev_hash is not the previous row's hash"
            broken = Break(e.id, e.incident_id, e.seq, reason)
            break
        if e.hash != event_hash(e, prev_hash):
            reason = "its hash does not match its content: the row was changed"
            broken = Break(e.id, e.incident_id, e.seq, reason)
            break
        prev_hash = e.hash
    else:
        if current is not None:
            broken = close_chain(current)
    if broken is None:
        for incident_id in sorted(set(heads) - seen):
            broken = Break(None, incident_id, None, "its head names events that are gone")
            break
    return Verdict(events, len(heads), seal.hexdigest(), broken)
