"""Acknowledgements, recorded in group commits.

Every delivered message is acknowledged by its recipient, so at city scale acknowledgements are
the most frequent write of all: a report covered by fifteen leaders brings fifteen of them
within a second. Recording each in its own transactions made them queue behind each other and
in front of new reports. Here a socket only hands its acknowledgement over (``submit``); one
task per process records whatever has gathered in one transaction, and while that runs
the next acknowledgements gather. A quiet server records each at once; a busy one records many
per commit. The time of each acknowledgement is taken when it arrives, not when it is written.

A batch that cannot be written (the database briefly away) is kept and tried again: the
acknowledged marks move in the same transaction as what the acknowledged messages referred to,
and recording is idempotent, so a crash loses nothing either. A batch the database refuses for
what it holds (a value its columns cannot take) is written again one user at a time, and only
the acknowledgements it still refuses are dropped: kept, they would be refused forever and take
every later acknowledgement down with them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import Select, select
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from alerts.bulk import any_of, on_postgresql
from alerts.store import MAILBOXES, MESSAGES, mark_skipped, move_marks, write_marks

log = logging.getLogger(__name__)

RETRY_AFTER_S = 1.0
# At shutdown, the first wait before trying a refused flush again, doubled up to the longest.
DRAIN_FIRST_WAIT_S = 0.1
DRAIN_LONGEST_WAIT_S = 2.0
# Users per statement when reading the acknowledged messages: keeps each IN list short.
CHUNK = 200


@dataclass(frozen=True, slots=True)
class Acked:
    """A referenced message its recipient acknowledged, and when the acknowledgement came."""

    user_id: str
    type: str
    ref: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Skipped:
    """A referenced message its recipient's acknowledged mark passed without its being sent:
    a resync had the socket skip it (``Ack.skipped``), so nothing says the recipient has it."""

    user_id: str
    seq: int
    type: str
    ref: str


class Ack(NamedTuple):
    """One acknowledgement as it came: every message up to ``seq``, at ``at``. Only those after
    ``skipped`` were sent to the socket it came from; a resync had that socket skip the others
    (its client reloaded its state instead), so it proves none of them received."""

    seq: int
    at: datetime
    skipped: int = 0

    def proves(self, seq: int) -> bool:
        return self.skipped < seq <= self.seq


RecordAcked = Callable[[AsyncSession, Sequence[Acked]], Awaitable[None]]
RecordSkipped = Callable[[AsyncSession, Sequence[Skipped]], Awaitable[None]]
Transaction = Callable[[], AbstractAsyncContextManager[AsyncSession]]
# user id -> the acknowledgements in the order they came.
Pending = dict[str, list[Ack]]


class AckRecorder:
    """Gathers acknowledgements and records them, many per commit.

    ``record`` is the application's part (what an acknowledged reference means). It runs in
    the same transaction as the move of the acknowledged marks, so a mark never passes what is
    not recorded. Lock order stays that of every other writer: what ``record`` locks first,
    mailbox rows last and all together in user-id order (``alerts.store.move_marks``).

    A referenced message a resync had its socket skip is marked so (``alerts.store``'s
    ``mark_skipped``: the mark passing it proves nothing) in the same transaction, and handed
    to ``skipped``, the application's part too (what to do for a recipient who never got it:
    send it again, say), which must lock nothing another writer takes before what ``record``
    locks.
    """

    def __init__(
        self,
        transaction: Transaction,
        record: RecordAcked,
        *,
        gather_s: float = 0.0,
        skipped: RecordSkipped | None = None,
    ) -> None:
        self._transaction = transaction
        self._record = record
        self._skipped = skipped
        # A write costs about the same for one acknowledgement as for fifty: waiting a few
        # milliseconds for the others of the same alert writes them all at once.
        self._gather_s = gather_s
        self._pending: Pending = {}
        self._gathered = asyncio.Event()

    def submit(self, user_id: str, seq: int, at: datetime, skipped: int = 0) -> None:
        """``user_id`` acknowledged every message up to ``seq`` at ``at``; ``skipped``: the
        ones up to it were never sent to the socket (``Ack``): its mark passes them, and
        nothing they refer to is recorded."""
        self._pending.setdefault(user_id, []).append(Ack(seq, at, skipped))
        self._gathered.set()

    async def record_now(self, user_id: str, seq: int, at: datetime, skipped: int = 0) -> None:
        """``submit``, written before this returns, with the user's acknowledgements gathered
        before it (in the order they came); raises if it could not be written, and then
        keeps those gathered before it for the next flush."""
        earlier = self._pending.pop(user_id, [])
        try:
            await self._write({user_id: [*earlier, Ack(seq, at, skipped)]})
        except BaseException:
            if earlier:
                self._keep({user_id: earlier})
            raise

    async def run(self) -> None:
        while True:
            await self._gathered.wait()
            if self._gather_s > 0:
                await asyncio.sleep(self._gather_s)
            self._gathered.clear()
            if not await self.flush():
                await asyncio.sleep(RETRY_AFTER_S)

    async def flush(self) -> bool:
        """Record everything gathered so far; on failure keep it for the next try, except what
        the database refuses for its data."""
        batch, self._pending = self._pending, {}
        if not batch:
            return True
        try:
            await self._write(batch)
        except asyncio.CancelledError:
            # Cancelled mid-write (the server stopping): whether it committed is unknown, and
            # recording is idempotent, so the last flush writes it again rather than lose it.
            self._keep(batch)
            raise
        except Exception as error:
            if refused_for_its_data(error):
                return await self._write_each(batch)
            log.exception("could not record acknowledgements of %d users; retrying", len(batch))
            self._keep(batch)
            return False
        return True

    async def drain(self, within_s: float) -> bool:
        """Record everything gathered, for the server stopping: a refused flush is tried again
        with backoff for up to ``within_s`` seconds. What is still not recorded then is logged
        as an error, user by user; it is recorded when those phones resume (below)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        wait = DRAIN_FIRST_WAIT_S
        while True:
            try:
                # An attempt under way at the deadline gets a little longer, not forever.
                async with asyncio.timeout_at(max(deadline, loop.time() + DRAIN_LONGEST_WAIT_S)):
                    if await self.flush():
                        return True
            except TimeoutError:
                # An attempt that outlasted the time left: its batch was kept (``flush``).
                pass
            left = deadline - loop.time()
            if left <= 0:
                break
            await asyncio.sleep(min(wait, left))
            wait = min(wait * 2, DRAIN_LONGEST_WAIT_S)
        self._log_unrecorded(within_s)
        return False

    def _log_unrecorded(self, within_s: float) -> None:
        users = {user: len(acks) for user, acks in sorted(self._pending.items())}
        log.error(
            "%d acknowledgements of %d users were not recorded: the database refused them for "
            "%.1f s while the server stopped (user: acknowledgements: %s). They are recorded "
            "when those phones resume: a phone resumes from the last seq it holds, which "
            "acknowledges every message up to it, with the time of the resume",
            sum(users.values()),
            len(users),
            within_s,
            ", ".join(f"{user}: {count}" for user, count in users.items()),
        )

    async def _write_each(self, batch: Pending) -> bool:
        """The batch one user at a time, after the database refused it whole: one user's bad
        acknowledgement is dropped, the others are written (or kept, if it goes away)."""
        users = list(batch)
        for done, user_id in enumerate(users):
            try:
                await self._write({user_id: batch[user_id]})
            except asyncio.CancelledError:
                self._keep({u: batch[u] for u in users[done:]})
                raise
            except Exception as error:
                if not refused_for_its_data(error):
                    log.exception("could not record acknowledgements; retrying")
                    self._keep({u: batch[u] for u in users[done:]})
                    return False
                seqs = sorted({ack.seq for ack in batch[user_id]})
                log.error(
                    "dropped acknowledgements of user %s (seqs %s): the database refuses them",
                    user_id,
                    seqs,
                    exc_info=error,
                )
        return True

    def _keep(self, batch: Pending) -> None:
        for user_id, acks in batch.items():
            self._pending[user_id] = acks + self._pending.get(user_id, [])
        self._gathered.set()

    async def _write(self, batch: Pending) -> None:
        async with self._transaction() as session:
            acked, skipped = await acknowledged_refs(session, batch)
            # The marks move in the same transaction as what they prove: with the mailboxes
            # ``record`` writes to when it does (one lock in user-id order, one last write).
            move_marks(session, {user: max(a.seq for a in acks) for user, acks in batch.items()})
            if acked:
                await self._record(session, acked)
            if skipped:
                # Rare (a resync past referenced messages): the messages' rows, which no other
                # writer locks but the retention purge, holding nothing else.
                await mark_skipped(session, [(s.user_id, s.seq) for s in skipped])
                if self._skipped is not None:
                    await self._skipped(session, skipped)
            await write_marks(session)


def refused_for_its_data(error: BaseException) -> bool:
    """Whether the database refused what it was given (asking again gives the same answer),
    rather than could not be asked (away, restarting, out of connections: asking again later
    may work). Unknown failures count as the latter: kept, they are at worst retried."""
    if isinstance(error, DataError | IntegrityError):
        return True
    if isinstance(error, DBAPIError):
        if error.connection_invalidated or isinstance(error, OperationalError):
            return False
        # PostgreSQL's classes 22 (data exception) and 23 (integrity constraint violation).
        sqlstate = getattr(error.orig, "sqlstate", None)
        if isinstance(sqlstate, str):
            return sqlstate[:2] in ("22", "23")
    # A value the driver cannot bind at all (asyncpg's int4 range, SQLite's 64 bits) is
    # refused before the database sees it: a ValueError or OverflowError, perhaps wrapped.
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, ValueError | OverflowError):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


async def acknowledged_refs(
    session: AsyncSession, batch: Pending
) -> tuple[list[Acked], list[Skipped]]:
    """Every referenced message the batch acknowledges for the first time, with its ack time:
    an acknowledgement of seq n covers every message up to n not acknowledged before, but
    those a resync skipped (``Ack.skipped``) it passes without proving them received: they
    are the second list.

    One statement for the whole batch: the referenced messages past each user's acknowledged
    mark (a handful: the ones just delivered), the ones past this batch's acks dropped here.
    """
    upto = {user: max(a.seq for a in acks) for user, acks in batch.items()}
    acked: list[Acked] = []
    skipped: list[Skipped] = []
    users = sorted(upto)
    unacknowledged = _unacknowledged_refs(on_postgresql(session))
    for start in range(0, len(users), CHUNK):
        chunk = {"ack_users": users[start : start + CHUNK]}
        rows = await session.execute(unacknowledged, chunk)
        for user_id, seq, kind, ref in rows.all():
            if ref is None or seq > upto[user_id]:
                continue
            at = _first_proving(batch[user_id], seq)
            if at is not None:
                acked.append(Acked(user_id, kind, ref, at))
            else:
                skipped.append(Skipped(user_id, seq, kind, ref))
    return acked, skipped


@functools.cache
def _unacknowledged_refs(postgresql: bool) -> Select[str, int, str, str | None]:
    # Built once: built at every flush, SQLAlchemy walked it again for its cache key.
    mailboxes, messages = MAILBOXES.c, MESSAGES.c
    return (
        select(messages.user_id, messages.seq, messages.type, messages.ref)
        .join(MAILBOXES, mailboxes.user_id == messages.user_id)
        .where(
            # The users' mailboxes, then the messages past each mark, both by their keys.
            # Named on the messages instead, the users had PostgreSQL read every message they
            # hold (a week's, kept for replay) and, at a few messages a user, hash every
            # mailbox of the town, at each flush: it carries an equality across a join, not a
            # list. Named on both, it still read the users' every message by the list.
            any_of(mailboxes.user_id, "ack_users", postgresql),
            messages.seq > mailboxes.acked_seq,
            messages.ref.is_not(None),
        )
        .order_by(messages.user_id, messages.seq)
    )


def _first_proving(acks: list[Ack], seq: int) -> datetime | None:
    """When the message ``seq`` was first acknowledged: by the earliest ack of seq or later
    from a socket that was sent it; None when every ack covering it came from one a resync
    had skip it."""
    times = [a.at for a in acks if a.proves(seq)]
    return min(times) if times else None
