"""Rate limits and login backoff, kept in the database.

The counts live in rows, not in process memory, so every server process behind the proxy sees
the same counts: with four processes, a limit of 30 a minute is 30 a minute, not 120. A row is
locked only for the length of one short transaction (``SELECT ... FOR UPDATE``), and several
rows are always locked in key order, so two limits checked together cannot deadlock.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any, NoReturn

from sqlalchemy import (
    ColumnElement,
    Float,
    FromClause,
    Insert,
    Integer,
    Select,
    Table,
    bindparam,
    cast,
    delete,
    extract,
    func,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from alerts.bulk import Guarded, after, on_postgresql, write_later
from dispatch.db import Base, dialect_name, table_of, upsert_insert
from dispatch.errors import RateLimited
from dispatch.security.models import Backoff, RateBucket


async def _ensure(session: AsyncSession, model: type[Base], rows: Sequence[dict[str, Any]]) -> None:
    """Insert the rows that do not exist yet; race-free on both backends."""
    insert = upsert_insert(dialect_name(session))
    for row in rows:
        await session.execute(insert(model).values(row).on_conflict_do_nothing())


# ---------------------------------------------------------------- token buckets


@dataclass(frozen=True)
class Rate:
    """Up to ``burst`` at once, refilled at ``per_minute``."""

    burst: int
    per_minute: float


async def take(session: AsyncSession, key: str, rate: Rate, now: datetime, what: str) -> None:
    """Spend one token of ``key``'s bucket, or refuse with 429 and when to try again.

    Call it inside the unit of work it guards, as its last writes: when the request fails, the
    token is not spent, and when the bucket is empty, nothing the request wrote is kept. The
    bucket is checked and spent with the transaction's last statement: no round trip of its
    own, and the row is locked for the commit alone.
    """
    params = {
        "bucket_key": key,
        "bucket_burst": float(rate.burst),
        "bucket_per_s": rate.per_minute / 60,
        "bucket_now": now,
    }
    refused = partial(_refuse, session, key, rate, now, what)
    spend = _spend_on_postgresql if on_postgresql(session) else _spend_on_sqlite
    write_later(session, Guarded(spend, params, refused))


async def _bucket(session: AsyncSession, key: str, rate: Rate, now: datetime) -> float:
    """The tokens in ``key``'s bucket at ``now`` (a new bucket is full)."""
    bucket = (await session.execute(_bucket_query(), {"bucket_key": key})).first()
    if bucket is None:
        return float(rate.burst)
    tokens, updated_at = bucket
    elapsed = max(0.0, (now - updated_at).total_seconds())
    return min(float(rate.burst), tokens + elapsed * rate.per_minute / 60)


async def _refuse(session: AsyncSession, key: str, rate: Rate, now: datetime, what: str) -> None:
    """The last statement found the bucket empty: say how long until it holds a token."""
    _refuse_with(await _bucket(session, key, rate, now), rate, what)


def _refuse_with(tokens: float, rate: Rate, what: str) -> NoReturn:
    wait = (1 - tokens) * 60 / rate.per_minute
    raise RateLimited(
        f"{what}: at most {rate.burst} at once and {rate.per_minute:g} a minute; "
        f"try again in {wait:.0f} s",
        retry_after_s=wait,
    )


@functools.cache
def _bucket_query() -> Select[float, datetime]:
    # Core columns, built once: an ORM statement built at every call was walked again for its
    # cache key and compiled through the ORM, a third of this round trip's CPU.
    buckets = table_of(RateBucket).c
    return select(buckets.tokens, buckets.updated_at).where(buckets.key == bindparam("bucket_key"))


@functools.cache
def _spend_on_postgresql(lead: FromClause | None) -> Insert:
    """Refill the bucket to ``bucket_now`` and spend a token where one is left (a new bucket
    starts full): the rule of ``_bucket`` in SQL, returning the key only when it spent. Not
    before the statement's ``lead`` is written (the mailboxes it locks come first)."""
    buckets = table_of(RateBucket).c
    now = bindparam("bucket_now", type_=buckets.updated_at.type)
    elapsed_s = func.greatest(0.0, cast(extract("epoch", now - buckets.updated_at), Float()))
    return _spend(postgresql.insert, func.least, elapsed_s, lead)


@functools.cache
def _spend_on_sqlite(lead: FromClause | None) -> Insert:
    """``_spend_on_postgresql`` on SQLite, a statement of its own among the last writes.

    SQLite keeps times as text, ``YYYY-MM-DD HH:MM:SS.ffffff`` in UTC: the seconds between two
    are their whole seconds' difference (``strftime('%s')``) plus their fractions'. Its own
    ``julianday`` keeps milliseconds, and its difference in days carries some 40 µs of
    rounding, enough to refuse a token that has just come due."""
    buckets = table_of(RateBucket).c
    now = bindparam("bucket_now", type_=buckets.updated_at.type)
    whole = cast(func.strftime("%s", now), Integer()) - cast(
        func.strftime("%s", buckets.updated_at), Integer()
    )
    fraction = cast(func.substr(now, 20), Float()) - cast(
        func.substr(buckets.updated_at, 20), Float()
    )
    return _spend(sqlite.insert, func.min, func.max(0.0, whole + fraction), lead)


def _spend(
    insert: Callable[[Table], postgresql.Insert | sqlite.Insert],
    least: Callable[..., ColumnElement[float]],
    elapsed_s: ColumnElement[float],
    lead: FromClause | None,
) -> Insert:
    table = table_of(RateBucket)
    buckets = table.c
    key = bindparam("bucket_key", type_=buckets.key.type)
    now = bindparam("bucket_now", type_=buckets.updated_at.type)
    burst = bindparam("bucket_burst", type_=Float())
    tokens = least(burst, buckets.tokens + elapsed_s * bindparam("bucket_per_s", type_=Float()))
    proposed = select(key, burst - 1, now)
    if (written := after(lead)) is not None:
        proposed = proposed.where(written)
    new = insert(table).from_select(["key", "tokens", "updated_at"], proposed)
    return new.on_conflict_do_update(
        index_elements=[buckets.key],
        set_={"tokens": tokens - 1, "updated_at": now},
        where=tokens >= 1,
    ).returning(buckets.key)


class FrameBudget:
    """A token bucket in memory, for one websocket: a socket lives in one process.

    Measured on the monotonic clock: it limits a rate, it stamps nothing on the record.
    """

    def __init__(self, burst: int, per_s: float) -> None:
        self.burst = burst
        self.per_s = per_s
        self.tokens = float(burst)
        self.at = time.monotonic()

    def spend(self) -> bool:
        now = time.monotonic()
        self.tokens = min(float(self.burst), self.tokens + (now - self.at) * self.per_s)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


# ---------------------------------------------------------------- backoff


@dataclass(frozen=True)
class BackoffPolicy:
    """``free`` failures cost nothing; each one after doubles the wait, up to ``max_s``.

    A key forgets its failures one at a time, one every ``forget_s / free`` seconds while it
    holds any (counted from when it last stood at zero): it never waits while no window of
    ``forget_s`` holds more than ``free`` of its failures, so a burst of ``free`` costs nothing
    and so does one failure every ``forget_s / free`` for ever (a control room's occasional
    typo), while guesses any faster add up. The wait is never permanent: it is at most
    ``max_s`` after the last failure, and the count goes no higher than the one that earns
    ``max_s`` (``most``), so a key is back at zero ``forgotten_s`` after its last failure.
    """

    free: int
    base_s: float
    max_s: float
    forget_s: float

    @property
    def every_s(self) -> float:
        """A key forgets one failure each time this passes, while it holds any."""
        return self.forget_s / self.free

    @property
    def most(self) -> int:
        """The count that earns the longest wait; a key counts no higher."""
        doublings = (
            math.ceil(math.log2(self.max_s / self.base_s)) if self.max_s > self.base_s else 0
        )
        return self.free + 1 + doublings

    @property
    def forgotten_s(self) -> float:
        """After this long without a failure, any key of this policy is back at zero."""
        return self.most * self.every_s

    def wait_after(self, failures: int) -> float:
        if failures <= self.free:
            return 0.0
        return min(self.max_s, self.base_s * 2.0 ** min(failures - self.free - 1, 40))

    def count(self, row: Backoff, now: datetime) -> None:
        """Count one more failure under ``row`` at ``now``, after forgetting those whose time
        has come, and set the wait it earns.

        ``row.last_at`` is when the key's next failure is forgotten from: it moves on by whole
        ``every_s`` as failures are forgotten, so no part of one is lost when another comes
        (forgetting from the last failure instead, two typos in a row every six minutes would
        add up without end)."""
        if row.failures > 0:
            due = max(0, math.floor((now - row.last_at).total_seconds() / self.every_s))
            if due >= row.failures:
                row.failures = 0
            else:
                row.failures -= due
                row.last_at += timedelta(seconds=due * self.every_s)
        if row.failures == 0:
            row.last_at = now
        row.failures = min(self.most, row.failures + 1)
        wait_s = self.wait_after(row.failures)
        row.blocked_until = now + timedelta(seconds=wait_s) if wait_s else None


def _waiting(rows: Sequence[Backoff], now: datetime) -> float | None:
    """The longest wait still to run among ``rows``, or None if none is waiting."""
    waits = [
        (row.blocked_until - now).total_seconds()
        for row in rows
        if row.blocked_until is not None and row.blocked_until > now
    ]
    return max(waits) if waits else None


def refuse_waiting(wait: float, what: str) -> NoReturn:
    """429: ``what`` waits ``wait`` seconds more for the failures before it."""
    raise RateLimited(
        f"{what}: too many failed attempts; try again in {wait:.0f} s", retry_after_s=wait
    )


async def _locked(
    session: AsyncSession, keys: Collection[str], *, shared: bool = False
) -> list[Backoff]:
    """The rows of ``keys`` that exist, locked in key order (``shared``: against changes only)."""
    found = await session.scalars(
        select(Backoff)
        .where(Backoff.key.in_(keys))
        .order_by(Backoff.key)
        .with_for_update(read=shared)
    )
    return list(found)


async def admit(
    session: AsyncSession,
    keys: dict[str, BackoffPolicy],
    now: datetime,
    what: str,
    *,
    count: Collection[str],
) -> None:
    """Refuse (429) while any key is waiting; otherwise count this attempt as a failure of the
    ``count`` keys already, before its outcome is known.

    Counting before the outcome means that a burst of parallel attempts under one such key
    cannot all slip in before the first failure is written; a success takes the count back
    (``succeeded``). The other keys count a failure only once it is one (``failed``). A
    refused attempt is not counted, so the wait ends when it says.
    """
    forgotten_s = max(p.forgotten_s for p in keys.values())
    await session.execute(
        delete(Backoff).where(Backoff.last_at < now - timedelta(seconds=forgotten_s))
    )
    rows = [{"key": k, "failures": 0, "last_at": now, "blocked_until": None} for k in sorted(count)]
    await _ensure(session, Backoff, rows)
    found = await _locked(session, keys)
    wait = _waiting(found, now)
    if wait is not None:
        refuse_waiting(wait, what)
    for row in found:
        if row.key in count:
            keys[row.key].count(row, now)
    await session.flush()


async def failed(
    session: AsyncSession, keys: dict[str, BackoffPolicy], now: datetime
) -> float | None:
    """An attempt ``admit`` let in failed: count it under ``keys``, unless one of them is
    waiting by now (other attempts failed meanwhile). Then nothing is counted, and the wait
    is returned: the attempt is to be refused as if it had come now."""
    rows = [{"key": k, "failures": 0, "last_at": now, "blocked_until": None} for k in sorted(keys)]
    await _ensure(session, Backoff, rows)
    found = await _locked(session, keys)
    wait = _waiting(found, now)
    if wait is not None:
        return wait
    for row in found:
        keys[row.key].count(row, now)
    await session.flush()
    return None


async def succeeded(
    session: AsyncSession, now: datetime, what: str, *, clear: Sequence[str], check: Sequence[str]
) -> None:
    """An attempt ``admit`` let in succeeded: refuse it (429) if one of the ``check`` keys is
    waiting by now (other attempts failed meanwhile), as if it had come now; otherwise forget
    the ``clear`` keys' failures."""
    # The cleared keys are locked first: callers keep them before the checked ones in key
    # order, the order in which ``admit`` locks them all.
    if clear:
        await session.execute(delete(Backoff).where(Backoff.key.in_(clear)))
    wait = _waiting(await _locked(session, check, shared=True), now)
    if wait is not None:
        refuse_waiting(wait, what)
