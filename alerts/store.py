"""Writing and reading mailboxes inside the caller's transaction.

Messages are enqueued in the same transaction as the facts they announce, so a committed fact
always has its messages and a rolled-back one never does. The caller publishes them after commit.
"""

from __future__ import annotations

import functools
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import orjson
from sqlalchemy import (
    ARRAY,
    CTE,
    Insert,
    Integer,
    Select,
    String,
    and_,
    bindparam,
    case,
    delete,
    event,
    func,
    insert,
    literal_column,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import Grouping

from alerts.bulk import (
    Added,
    Guarded,
    Lead,
    Read,
    Step,
    any_of,
    on_postgresql,
    recordset,
    recordset_values,
    take_later,
    write_rows,
)
from alerts.models import AlertsBase, Mailbox, Message

OUTBOX_KEY = "alerts.outbox"
STAGED_KEY = "alerts.staged"
MARKS_KEY = "alerts.marks"

# The tables themselves, for the writes every alert makes: Core statements skip the ORM's
# bulk-by-primary-key bookkeeping, which cost more than the round trips.
MAILBOXES = AlertsBase.metadata.tables["mailboxes"]
MESSAGES = AlertsBase.metadata.tables["messages"]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message to be enqueued for one user."""

    user_id: str
    type: str
    data: dict[str, Any]
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Envelope:
    """A stored message with its place in the user's sequence."""

    user_id: str
    seq: int
    type: str
    data: dict[str, Any]
    ref: str | None = None
    batch: str = ""

    def encode(self) -> str:
        # orjson: an alert carries the whole incident and goes to every recipient, and the
        # standard library's encoder was a tenth of the server's CPU on the alert path.
        message = {"type": self.type, "seq": self.seq, "data": self.data}
        try:
            # Without OPT_NON_STR_KEYS, whose slow path through every dict took twice the time;
            # a key that is not exactly a str is refused, and written again with it: the same
            # bytes either way.
            return orjson.dumps(message).decode()
        except orjson.JSONEncodeError:
            return orjson.dumps(message, option=orjson.OPT_NON_STR_KEYS).decode()


async def open_mailbox(session: AsyncSession, user_id: str) -> None:
    if await session.get(Mailbox, user_id) is None:
        session.add(Mailbox(user_id=user_id, last_seq=0, acked_seq=0))
        await session.flush()


Enqueued = Callable[[list[Envelope]], None]


@dataclass
class _Staged:
    """Messages to enqueue when the transaction ends, under one batch id known beforehand."""

    batch: str = field(default_factory=lambda: uuid.uuid4().hex)
    groups: list[tuple[list[Outgoing], datetime, Enqueued | None]] = field(default_factory=list)


def stage(
    session: AsyncSession,
    outgoing: Sequence[Outgoing],
    *,
    now: datetime,
    then: Enqueued | None = None,
) -> None:
    """Enqueue these messages as the transaction's last writes (``write_staged``), then call
    ``then`` with their envelopes.

    For messages about facts no other transaction can change before this one commits: a new
    incident's, which nothing else can see yet, or rows this transaction has locked. Their
    content cannot race with another transaction's, and the mailboxes, which every report
    locks (operators'), are held for the commit alone instead of the rest of the transaction.
    """
    if outgoing:
        staged: _Staged = session.info.setdefault(STAGED_KEY, _Staged())
        staged.groups.append((list(outgoing), now, then))


async def write_staged(session: AsyncSession, *, read: Read | None = None) -> bool:
    """Enqueue everything staged in this transaction, in one lock of its mailboxes; its last
    statement also carries the rows kept for later (``write_later``) and ``read``, whose rows
    are dropped. False when nothing was staged (and nothing written)."""
    staged: _Staged | None = session.info.pop(STAGED_KEY, None)
    if staged is None:
        return False
    outgoing = [o for group, _, _ in staged.groups for o in group]
    envelopes = await enqueue(
        session,
        outgoing,
        now=staged.groups[0][1],
        batch=staged.batch,
        also=take_later(session),
        read=read,
    )
    start = 0
    for group, _, then in staged.groups:
        if then is not None:
            then(envelopes[start : start + len(group)])
        start += len(group)
    return True


@event.listens_for(Session, "before_commit")
def _nothing_left_staged(session: Session) -> None:
    # Staged messages are written by whoever owns the transaction (write_staged) before it
    # commits; committing without them would lose alerts.
    if session.info.get(STAGED_KEY) is not None:
        raise RuntimeError("messages were staged but never written before the commit")


@dataclass(frozen=True, slots=True)
class _Enqueuing:
    """One ``enqueue``: its messages, how many each user gets, the marks to move, and what
    rides its last statement."""

    outgoing: Sequence[Outgoing]
    counts: Counter[str]
    marks: dict[str, int]
    now: datetime
    batch: str
    also: Sequence[Step | Guarded]
    read: Read | None


async def enqueue(
    session: AsyncSession,
    outgoing: Sequence[Outgoing],
    *,
    now: datetime,
    batch: str | None = None,
    also: Sequence[Step | Guarded] = (),
    read: Read | None = None,
) -> list[Envelope]:
    """Give each message the next seq of its user's mailbox and store it; the rows of
    ``also`` and the query ``read`` (its rows dropped) ride the last statement.

    Mailboxes are locked in user-id order so concurrent transactions never deadlock, and a seq
    becomes visible only when its transaction commits, after every smaller seq of that user.
    """
    if not outgoing:
        await write_rows(session, *also, read=read)
        return []
    marks: dict[str, int] = session.info.pop(MARKS_KEY, {})
    counts = Counter(o.user_id for o in outgoing)
    batch = batch or uuid.uuid4().hex
    enqueuing = _Enqueuing(outgoing, counts, marks, now, batch, also, read)
    if on_postgresql(session):
        envelopes = await _enqueue_in_one_statement(session, enqueuing)
    else:
        envelopes = await _enqueue_elsewhere(session, enqueuing)
    session.info.setdefault(OUTBOX_KEY, []).extend(envelopes)
    return envelopes


async def _enqueue_in_one_statement(session: AsyncSession, e: _Enqueuing) -> list[Envelope]:
    """PostgreSQL: the mailboxes' upsert leads the last statement and the messages are
    numbered from what it returns, in the statement itself, so the mailboxes (the board's,
    which every report and every flush writes) are held for that statement and the commit
    alone. Each message is its user's ``k``-th of ``n`` here, numbered last seq - n + k."""
    users = sorted({*e.counts, *e.marks})
    ordinal: Counter[str] = Counter()
    nth = []
    for o in e.outgoing:
        ordinal[o.user_id] += 1
        nth.append(ordinal[o.user_id])
    params = {
        "reserve_users": users,
        "reserve_counts": [e.counts[u] for u in users],
        "reserve_marks": [e.marks.get(u, 0) for u in users],
        "numbered": [
            {
                "user_id": o.user_id,
                "k": k,
                "n": e.counts[o.user_id],
                "type": o.type,
                "data": o.data,
                "ref": o.ref,
            }
            for o, k in zip(e.outgoing, nth, strict=True)
        ],
        "numbered_batch": e.batch,
        "numbered_created_at": e.now,
    }
    lead = Lead(_numbered_on_postgresql(), params)
    reserved = await write_rows(session, *e.also, read=e.read, lead=lead)
    before = {row["user_id"]: row["last_seq"] - e.counts[row["user_id"]] for row in reserved}
    return [
        Envelope(o.user_id, before[o.user_id] + k, o.type, o.data, o.ref, e.batch)
        for o, k in zip(e.outgoing, nth, strict=True)
    ]


async def _enqueue_elsewhere(session: AsyncSession, e: _Enqueuing) -> list[Envelope]:
    """SQLite (one writer, no row locks): the mailboxes moved on by one upsert that returns
    their last seqs, then the messages numbered from them and written with the last writes."""
    last = await _reserve_on_sqlite(session, e.counts, e.marks)
    envelopes: list[Envelope] = []
    for o in e.outgoing:
        last[o.user_id] += 1
        envelopes.append(Envelope(o.user_id, last[o.user_id], o.type, o.data, o.ref, e.batch))
    stored = [
        {
            "user_id": n.user_id,
            "seq": n.seq,
            "type": n.type,
            "data": n.data,
            "ref": n.ref,
            "batch": e.batch,
            "created_at": e.now,
        }
        for n in envelopes
    ]
    await write_rows(session, *e.also, Added(MESSAGES, stored), read=e.read)
    return envelopes


async def _reserve_on_sqlite(
    session: AsyncSession, counts: Counter[str], marks: dict[str, int]
) -> dict[str, int]:
    """Keep ``counts[user]`` seqs in each user's mailbox (made where missing) and move the
    marks, in one statement (``_upsert_on_sqlite``); each counted user's seq before the first
    one kept."""
    users = sorted({*counts, *marks})
    wanted = orjson.dumps([[u, counts.get(u, 0), marks.get(u, 0)] for u in users]).decode()
    rows = await session.execute(_upsert_on_sqlite(), {"reserve_rows": wanted})
    last = {row.user_id: row.last_seq for row in rows}
    return {user: last[user] - n for user, n in counts.items()}


@functools.cache
def _upsert_on_sqlite() -> Insert:
    """``INSERT ... SELECT FROM json_each(rows) LEFT JOIN mailboxes ... ON CONFLICT DO
    UPDATE``, the rows ``[user_id, count, mark]``: each mailbox's last seq moved on by its
    count, its acknowledged mark moved to ``mark`` where that is forward and not past the
    messages it had (``_reserve_on_postgresql``'s rule), returning the new last seq of every
    mailbox it changed. SQLite has one writer, so the mailboxes the statement reads are the
    ones it writes."""
    mailboxes = MAILBOXES.c
    wanted = func.json_each(bindparam("reserve_rows", type_=String())).table_valued(
        "value", name="wanted"
    )
    user_id, n, mark = (func.json_extract(wanted.c.value, f"$[{i}]") for i in range(3))
    last = func.coalesce(mailboxes.last_seq, 0)
    acked = func.coalesce(mailboxes.acked_seq, 0)
    moves = and_(mark > acked, mark <= last)
    proposed = (
        select(user_id, last + n, case((moves, mark), else_=acked))
        .select_from(wanted.outerjoin(MAILBOXES, mailboxes.user_id == user_id))
        # A WHERE tells SQLite's parser the upsert's ON CONFLICT from the join's ON.
        .where(true())
    )
    new = sqlite.insert(MAILBOXES).from_select(["user_id", "last_seq", "acked_seq"], proposed)
    return new.on_conflict_do_update(
        index_elements=[mailboxes.user_id],
        set_={"last_seq": new.excluded.last_seq, "acked_seq": new.excluded.acked_seq},
        where=or_(
            new.excluded.last_seq != mailboxes.last_seq,
            new.excluded.acked_seq != mailboxes.acked_seq,
        ),
    ).returning(mailboxes.user_id, mailboxes.last_seq)


@functools.cache
def _reserve_on_postgresql() -> Insert:
    """``INSERT ... SELECT FROM unnest(users, counts) ORDER BY user_id ON CONFLICT DO UPDATE``:
    each mailbox's last seq moved on by its count and its mark applied (forward only, never
    past the messages it had before), returning the new last seq of every mailbox it changed.
    A mailbox with nothing to change is locked all the same (PostgreSQL locks every conflicting
    row), but not written."""
    mailboxes = MAILBOXES.c
    users = bindparam("reserve_users", type_=ARRAY(mailboxes.user_id.type))
    wanted = (
        func.unnest(users, bindparam("reserve_counts", type_=ARRAY(Integer)))
        .table_valued("user_id", "n")
        .render_derived(name="wanted")
    )
    proposed = select(wanted.c.user_id, wanted.c.n, literal_column("0")).order_by(wanted.c.user_id)
    new = postgresql.insert(MAILBOXES).from_select(["user_id", "last_seq", "acked_seq"], proposed)
    marks = bindparam("reserve_marks", type_=ARRAY(Integer))
    # In brackets: asyncpg's dialect casts parameters (``$3::INTEGER[]``), and a subscript
    # right after the cast would be read as the type's dimensions, the whole array.
    mark = Grouping(marks)[func.array_position(users, new.excluded.user_id)]
    moves = and_(mark > mailboxes.acked_seq, mark <= mailboxes.last_seq)
    return new.on_conflict_do_update(
        index_elements=[mailboxes.user_id],
        set_={
            "last_seq": mailboxes.last_seq + new.excluded.last_seq,
            "acked_seq": case((moves, mark), else_=mailboxes.acked_seq),
        },
        where=or_(new.excluded.last_seq > 0, moves),
    ).returning(mailboxes.user_id, mailboxes.last_seq)


@functools.cache
def _numbered_on_postgresql() -> tuple[CTE, CTE]:
    """The mailboxes' upsert (``_reserve_on_postgresql``) as a CTE, and the messages' insert
    that numbers them from the last seqs it returns."""
    reserved = _reserve_on_postgresql().cte("reserved")
    messages = MESSAGES.c
    columns = {
        "user_id": messages.user_id.type,
        "k": Integer(),
        "n": Integer(),
        "type": messages.type.type,
        "data": messages.data.type,
        "ref": messages.ref.type,
    }
    rows = recordset("numbered", columns)
    user_id, k, n, type_, data, ref = recordset_values(rows)
    numbered = select(
        user_id,
        reserved.c.last_seq - n + k,
        type_,
        data,
        ref,
        bindparam("numbered_batch", type_=messages.batch.type),
        bindparam("numbered_created_at", type_=messages.created_at.type),
    ).join(reserved, reserved.c.user_id == user_id)
    stored = insert(MESSAGES).from_select(
        ["user_id", "seq", "type", "data", "ref", "batch", "created_at"], numbered
    )
    return reserved, stored.cte("numbered_messages")


def move_marks(session: AsyncSession, marks: dict[str, int]) -> None:
    """Move these users' acknowledged marks (``mark_acked``) in this transaction: with the
    next ``enqueue``, which locks their mailboxes in the same user-id order as its own and
    moves them (on PostgreSQL in that lock's statement, elsewhere in its last), or else at
    ``write_marks``."""
    pending: dict[str, int] = session.info.setdefault(MARKS_KEY, {})
    for user, seq in marks.items():
        pending[user] = max(seq, pending.get(user, 0))


async def write_marks(session: AsyncSession) -> None:
    """The marks of ``move_marks`` that no ``enqueue`` took, nor will: messages staged in the
    transaction are enqueued at its end (``write_staged``), and that enqueue takes them."""
    if session.info.get(STAGED_KEY) is not None:
        return
    marks: dict[str, int] | None = session.info.pop(MARKS_KEY, None)
    if marks:
        await mark_acked(session, marks)


async def mark_acked(session: AsyncSession, marks: dict[str, int]) -> None:
    """Move each user's acknowledged mark forward (never back, never past their last
    message), in user-id order."""
    if not marks:
        return
    mailboxes = MAILBOXES.c
    # Core, not ORM: one statement executed for many users.
    await session.execute(
        update(MAILBOXES)
        .where(
            mailboxes.user_id == bindparam("uid"),
            mailboxes.acked_seq < bindparam("seq"),
            mailboxes.last_seq >= bindparam("seq"),
        )
        .values(acked_seq=bindparam("seq")),
        [{"uid": user, "seq": marks[user]} for user in sorted(marks)],
    )


async def mark_skipped(session: AsyncSession, skipped: Sequence[tuple[str, int]]) -> None:
    """Mark these messages (user id, seq) as passed unsent by their mailbox's acknowledged
    mark: a resync had the socket skip them (``alerts.acks``). ``received`` does not count
    them, whatever the mark says."""
    if not skipped:
        return
    messages = MESSAGES.c
    await session.execute(
        update(MESSAGES)
        .where(
            messages.user_id == bindparam("skipped_user"),
            messages.seq == bindparam("skipped_seq"),
        )
        .values(skipped=True),
        [{"skipped_user": user, "skipped_seq": seq} for user, seq in sorted(set(skipped))],
    )


async def received(session: AsyncSession, user_id: str, ref: str, since_seq: int = 0) -> bool:
    """Whether ``user_id`` is known to have a message with ``ref`` (of seq ``since_seq`` or
    later: the first one and the copies sent again after it): one its acknowledged mark
    passed after a socket was sent it (an ack, or a hello resuming past it), not one a resync
    passed unsent (``mark_skipped``). Per user: another reader's ack of their own copy of the
    same reference says nothing of this one's."""
    mailboxes, messages = MAILBOXES.c, MESSAGES.c
    found = await session.scalar(
        select(messages.seq)
        .join(MAILBOXES, mailboxes.user_id == messages.user_id)
        .where(
            messages.user_id == user_id,
            messages.seq >= since_seq,
            messages.seq <= mailboxes.acked_seq,
            messages.ref == ref,
            messages.skipped.is_(False),
        )
        .limit(1)
    )
    return found is not None


async def later_copy(session: AsyncSession, user_id: str, ref: str, after_seq: int) -> int | None:
    """The seq of a message to ``user_id`` with ``ref`` after ``after_seq`` that no resync
    passed unsent (a copy sent again, received or on its way), or None."""
    messages = MESSAGES.c
    found: int | None = await session.scalar(
        select(messages.seq)
        .where(
            messages.user_id == user_id,
            messages.seq > after_seq,
            messages.ref == ref,
            messages.skipped.is_(False),
        )
        .order_by(messages.seq)
        .limit(1)
    )
    return found


async def lock(session: AsyncSession, user_ids: Sequence[str]) -> None:
    """Lock these users' mailboxes (in user-id order, so transactions never deadlock; a
    missing one is made in its place) until the transaction ends."""
    if on_postgresql(session):
        users = sorted(set(user_ids))
        nothing = [0] * len(users)
        params = {"reserve_users": users, "reserve_counts": nothing, "reserve_marks": nothing}
        await session.execute(_reserve_on_postgresql(), params)
    else:
        await _read_mailboxes(session, user_ids)


async def _read_mailboxes(
    session: AsyncSession, user_ids: Sequence[str]
) -> dict[str, tuple[int, int]]:
    """SQLite (one writer, no row locks): each existing mailbox's last and acknowledged seq."""
    rows = await session.execute(_mailboxes_query(), {"read_users": sorted(set(user_ids))})
    return {row.user_id: (row.last_seq, row.acked_seq) for row in rows}


@functools.cache
def _mailboxes_query() -> Select[tuple[str, int, int]]:
    # Built once; PostgreSQL locks and reads its mailboxes with _reserve_on_postgresql.
    mailboxes = MAILBOXES.c
    return (
        select(mailboxes.user_id, mailboxes.last_seq, mailboxes.acked_seq)
        .where(any_of(mailboxes.user_id, "read_users", postgresql=False))
        .order_by(mailboxes.user_id)
    )


def pending_batches(session: AsyncSession) -> list[str]:
    """The batches this transaction enqueued so far (to announce to other processes)."""
    envelopes: list[Envelope] = session.info.get(OUTBOX_KEY, [])
    batches = {e.batch for e in envelopes}
    staged: _Staged | None = session.info.get(STAGED_KEY)
    if staged is not None:
        batches.add(staged.batch)
    return sorted(batches)


def take_outbox(session: AsyncSession) -> list[Envelope]:
    """The messages this transaction enqueued, handed over once for publishing after commit."""
    envelopes: list[Envelope] = session.info.pop(OUTBOX_KEY, [])
    return envelopes


class Span(NamedTuple):
    # The latest seq (0 before the first message), the oldest one still kept (None when none
    # is) and the acknowledged mark.
    latest: int
    oldest: int | None
    acked: int


async def mailbox_span(session: AsyncSession, user_id: str) -> Span:
    """The mailbox's span, in one round trip: every hello asks all of it."""
    found = (await session.execute(_span_query(), {"span_user": user_id})).one()
    return Span(found[0] or 0, found[1], found[2] or 0)


# The reads of a hello, a replay and the fan-out are built once, of the tables' columns: a
# statement built at each call cost more of our CPU than sending it (its construction, the
# ORM's compile step and its cache key, each time), and a reconnecting town sends thousands.
@functools.cache
def _span_query() -> Select[int | None, int | None, int | None]:
    user = bindparam("span_user", type_=MAILBOXES.c.user_id.type)
    mailboxes, messages = MAILBOXES.c, MESSAGES.c
    return select(
        select(mailboxes.last_seq).where(mailboxes.user_id == user).scalar_subquery(),
        select(func.min(messages.seq)).where(messages.user_id == user).scalar_subquery(),
        select(mailboxes.acked_seq).where(mailboxes.user_id == user).scalar_subquery(),
    )


# A stored message's columns in ``Envelope``'s order: replays and the fan-out read them as
# rows, not mapped objects (a storm of reconnecting phones replays thousands).
ENVELOPE_COLUMNS = tuple(
    MESSAGES.c[name] for name in ("user_id", "seq", "type", "data", "ref", "batch")
)


async def messages_after(
    session: AsyncSession,
    user_id: str,
    after_seq: int,
    *,
    upto: int | None = None,
    limit: int = 500,
) -> list[Envelope]:
    bounds = {"after_user": user_id, "after_seq": after_seq, "after_limit": limit}
    if upto is not None:
        bounds["after_upto"] = upto
    rows = await session.execute(_after_query(upto is not None), bounds)
    return [Envelope(*row) for row in rows]


@functools.cache
def _after_query(bounded: bool) -> Select[Any]:
    messages = MESSAGES.c
    query = select(*ENVELOPE_COLUMNS).where(
        messages.user_id == bindparam("after_user", type_=messages.user_id.type),
        messages.seq > bindparam("after_seq", type_=messages.seq.type),
    )
    if bounded:
        query = query.where(messages.seq <= bindparam("after_upto", type_=messages.seq.type))
    return query.order_by(messages.seq).limit(bindparam("after_limit", type_=Integer()))


async def batch_messages(session: AsyncSession, batch: str) -> list[Envelope]:
    rows = await session.execute(_batch_query(), {"batch": batch})
    return [Envelope(*row) for row in rows]


@functools.cache
def _batch_query() -> Select[Any]:
    messages = MESSAGES.c
    return (
        select(*ENVELOPE_COLUMNS)
        .where(messages.batch == bindparam("batch", type_=messages.batch.type))
        .order_by(messages.user_id, messages.seq)
    )


async def purge_before(session: AsyncSession, cutoff: datetime) -> int:
    result = await session.execute(delete(Message).where(Message.created_at < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)
