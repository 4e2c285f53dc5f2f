"""Presence of users' sockets across processes, test alerts and their round trips."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Insert, case, delete, func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from alerts import store as mailboxes
from alerts.store import Outgoing
from dispatch.auth import service as auth
from dispatch.auth.models import User
from dispatch.db import dialect_name, new_id, upsert_insert
from dispatch.errors import Conflict
from dispatch.reachability.models import Presence, PresenceBeat, TestAlert
from dispatch.schemas import show_time
from dispatch.teams import service as teams
from dispatch.teams.models import Team

TEST_ALERT = "test_alert"


# ---------------------------------------------------------------- presence


@dataclass(frozen=True)
class Change:
    user_id: str
    connected: bool
    at: datetime


async def record_presence(session: AsyncSession, instance: str, changes: Sequence[Change]) -> None:
    """Write sockets opened and closed in this process, at the times they happened: one
    statement, prepared once, for however many (after a restart, every phone of the town
    reconnects at once)."""
    if not changes:
        return
    rows = [
        {
            "user_id": change.user_id,
            "instance": instance,
            "connected": change.connected,
            "since": change.at,
            "seen_at": change.at,
        }
        for change in sorted(changes, key=lambda c: c.user_id)
    ]
    await session.execute(_presence_upsert(dialect_name(session)), rows)


@functools.cache
def _presence_upsert(dialect: str) -> Insert:
    insert = upsert_insert(dialect)
    statement = insert(Presence)
    new = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=["user_id", "instance"],
        set_={
            "connected": new.connected,
            "seen_at": new.seen_at,
            # Connected since the socket that opened; a close keeps when that was.
            "since": case((new.connected, new.since), else_=Presence.since),
        },
    )


async def heartbeat(session: AsyncSession, instance: str, now: datetime) -> None:
    """This process is alive, and so are its connected rows: one row, whatever their number."""
    insert = upsert_insert(dialect_name(session))
    statement = insert(PresenceBeat).values(instance=instance, seen_at=now)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["instance"], set_={"seen_at": statement.excluded.seen_at}
        )
    )


async def stopped(session: AsyncSession, instance: str, now: datetime) -> None:
    """This process stops: its last beat, and when it stopped."""
    insert = upsert_insert(dialect_name(session))
    statement = insert(PresenceBeat).values(instance=instance, seen_at=now, stopped_at=now)
    new = statement.excluded
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["instance"], set_={"seen_at": new.seen_at, "stopped_at": new.stopped_at}
        )
    )


async def connected_when_gone(
    session: AsyncSession,
    user_id: str,
    *,
    instance: str,
    now: datetime,
    stale_after_s: float,
    alone: bool = False,
) -> datetime | None:
    """When the last server process that went away with a socket of ``user_id`` open went
    away, or None: one that stopped (its sockets still open then are written closed at its
    stop) or died (his row still open, its beat stale; on SQLite, ``alone``, where no other
    process can be running, its beat however fresh: a crash restarted at once; on PostgreSQL,
    its lock free however fresh its beat: ``live_instances``). This process's own rows, and
    those of processes still running, say nothing of a restart."""
    rows = (
        await session.execute(
            select(
                Presence.instance,
                Presence.connected,
                Presence.seen_at,
                PresenceBeat.seen_at,
                PresenceBeat.stopped_at,
            )
            .join(PresenceBeat, PresenceBeat.instance == Presence.instance)
            .where(Presence.user_id == user_id, Presence.instance != instance)
        )
    ).all()
    fresh = now - timedelta(seconds=stale_after_s)
    # Processes whose beat alone says they run, and that held his socket.
    beating = {
        name
        for name, connected, _, beat, stopped_at in rows
        if connected and stopped_at is None and not alone and beat >= fresh
    }
    live = beating
    if beating and dialect_name(session) == "postgresql":
        live = beating & await live_instances(session, beating)
    latest: datetime | None = None
    for row_instance, connected, seen_at, beat, stopped_at in rows:
        if stopped_at is not None:
            gone = stopped_at if connected or seen_at >= stopped_at else None
        elif row_instance not in live:
            gone = beat if connected else None
        else:
            gone = None
        if gone is not None and (latest is None or gone > latest):
            latest = gone
    return latest


def instance_lock_key(instance: str) -> int:
    """The key of the session-level advisory lock a server process holds on PostgreSQL for as
    long as it runs (on its fan-out listener's connection, ``dispatch.fanout``): a positive
    bigint from its presence rows' name."""
    digest = hashlib.blake2b(f"presence:{instance}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


async def live_instances(session: AsyncSession, instances: set[str]) -> set[str]:
    """Of ``instances``, those whose process holds its lock (``instance_lock_key``), on
    PostgreSQL. A process killed (``kill -9``, the OOM killer) has its connection closed by
    the kernel and PostgreSQL frees its lock at once, where its heartbeat looks fresh for
    three beats more. Read from pg_locks, which takes no lock itself.

    A live process without its lock for a while (its listener reconnecting after the database
    restarted or the network dropped, a process of a release that took none) looks dead here
    meanwhile: an unacknowledged alert of a leader connected to it waits the reconnection
    grace (10 s by default) before he is texted, and reachability shows him not connected
    (``presence_of``) until the lock is back. Not worth more."""
    held = await session.execute(
        text(
            "SELECT classid::bigint, objid::bigint FROM pg_locks "
            "WHERE locktype = 'advisory' AND granted AND objsubid = 1 "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
    )
    keys = {(high << 32) | low for high, low in held}
    return {name for name in instances if instance_lock_key(name) in keys}


async def forget_before(session: AsyncSession, cutoff: datetime) -> None:
    """Drop what says nothing since ``cutoff``: sockets closed before it, sockets of processes
    that stopped beating before it, and those processes' beats. A socket open for longer on a
    live process stays."""
    live = select(PresenceBeat.instance).where(PresenceBeat.seen_at >= cutoff)
    await session.execute(
        delete(Presence).where(
            Presence.seen_at < cutoff,
            or_(Presence.connected.is_(False), Presence.instance.not_in(live)),
        )
    )
    await session.execute(delete(PresenceBeat).where(PresenceBeat.seen_at < cutoff))


@dataclass(frozen=True)
class Seen:
    connected: bool
    last_seen_at: datetime | None


async def presence_of(
    session: AsyncSession,
    user_ids: Sequence[str],
    *,
    now: datetime,
    stale_after_s: float,
    local: set[str],
    local_seen: dict[str, datetime],
    instance: str | None = None,
) -> dict[str, Seen]:
    """Connected if a socket is open in this process (``local``) or a fresh row says so;
    last seen from this process's own memory and every process's rows, the latest wins.

    On PostgreSQL a row of another process whose lock is free (``live_instances``: killed by
    ``kill -9`` or the OOM killer, its heartbeat fresh for three beats more) is not connected,
    its socket gone with the process, and last seen at its last beat: a process is dead by the
    same rule as in ``connected_when_gone``. One read of pg_locks for all the rows, none when
    no other process's row says connected; this process (``instance``) is alive. SQLite serves
    from one process and goes by the heartbeat alone."""
    if not user_ids:
        return {}
    fresh = now - timedelta(seconds=stale_after_s)
    seen = {u: Seen(u in local, now if u in local else local_seen.get(u)) for u in user_ids}
    rows = (
        await session.scalars(select(Presence).where(Presence.user_id.in_(list(user_ids))))
    ).all()
    beats = await _beats(session, {row.instance for row in rows})

    def last_there(row: Presence) -> datetime:
        # An open socket was there until its process's last beat (or its own opening, later).
        if row.connected:
            return max(row.seen_at, beats.get(row.instance, row.seen_at))
        return row.seen_at

    # Other processes whose beat alone says a socket of theirs is open.
    beating = {
        row.instance
        for row in rows
        if row.connected and row.instance != instance and last_there(row) >= fresh
    }
    dead: set[str] = set()
    if beating and dialect_name(session) == "postgresql":
        dead = beating - await live_instances(session, beating)
    for row in rows:
        current = seen[row.user_id]
        at = last_there(row)
        live = row.connected and at >= fresh and row.instance not in dead
        last = now if current.connected or live else at
        if current.last_seen_at is not None:
            last = max(last, current.last_seen_at)
        seen[row.user_id] = Seen(current.connected or live, last)
    return seen


async def _beats(session: AsyncSession, instances: set[str]) -> dict[str, datetime]:
    if not instances:
        return {}
    found = await session.execute(
        select(PresenceBeat.instance, PresenceBeat.seen_at).where(
            PresenceBeat.instance.in_(sorted(instances))
        )
    )
    return {instance: seen_at for instance, seen_at in found}


# ---------------------------------------------------------------- test alerts


async def send_test_alert(
    session: AsyncSession, team_id: str, *, requested_by: str, now: datetime
) -> tuple[Team, list[TestAlert]]:
    team = await teams.get_team(session, team_id)
    leaders = (await auth.leaders_by_team(session, [team.id])).get(team.id, [])
    if not leaders:
        raise Conflict(f"team {team.name!r} has no leader account to test", field="team_id")
    sent = [
        TestAlert(
            id=new_id(),
            team_id=team.id,
            user_id=leader,
            requested_by=requested_by,
            seq=0,
            sent_at=now,
            acked_at=None,
            round_trip_ms=None,
        )
        for leader in sorted(leaders)
    ]
    body = {"team_id": team.id, "team_name": team.name, "sent_at": show_time(now)}
    outgoing = [
        Outgoing(t.user_id, TEST_ALERT, {"test_alert_id": t.id, **body}, ref=t.id) for t in sent
    ]
    envelopes = await mailboxes.enqueue(session, outgoing, now=now)
    for test, envelope in zip(sent, envelopes, strict=True):
        test.seq = envelope.seq
    session.add_all(sent)
    await session.flush()
    return team, sent


async def record_test_acks(
    session: AsyncSession, user_id: str, test_alert_ids: Sequence[str], now: datetime
) -> None:
    """The phone acknowledged test alerts: their round trip is now known."""
    if not test_alert_ids:
        return
    rows = await session.scalars(
        select(TestAlert).where(
            TestAlert.id.in_(list(test_alert_ids)),
            TestAlert.user_id == user_id,
            TestAlert.acked_at.is_(None),
        )
    )
    for test in rows:
        test.acked_at = now
        test.round_trip_ms = round((now - test.sent_at).total_seconds() * 1000, 3)
    await session.flush()


async def latest_tests(session: AsyncSession, user_ids: Sequence[str]) -> dict[str, TestAlert]:
    if not user_ids:
        return {}
    newest = (
        select(TestAlert.user_id, func.max(TestAlert.sent_at).label("sent_at"))
        .where(TestAlert.user_id.in_(list(user_ids)))
        .group_by(TestAlert.user_id)
        .subquery()
    )
    rows = await session.scalars(
        select(TestAlert).join(
            newest,
            (TestAlert.user_id == newest.c.user_id) & (TestAlert.sent_at == newest.c.sent_at),
        )
    )
    return {t.user_id: t for t in rows}


async def get_test_alert(session: AsyncSession, team_id: str, test_id: str) -> TestAlert | None:
    return await session.scalar(
        select(TestAlert).where(TestAlert.id == test_id, TestAlert.team_id == team_id)
    )


async def leaders_of(session: AsyncSession, team_ids: Sequence[str]) -> dict[str, list[User]]:
    if not team_ids:
        return {}
    rows = await session.scalars(
        select(User)
        .where(
            User.role == "leader",
            User.team_id.in_(list(team_ids)),
            User.disabled.is_(False),
        )
        .order_by(User.name)
    )
    found: dict[str, list[User]] = {t: [] for t in team_ids}
    for user in rows:
        if user.team_id is not None:
            found[user.team_id].append(user)
    return found
