"""Acknowledgements recorded in group commits: each keeps its own time, none is lost."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from pyproj import Geod
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from alerts import store as mailboxes
from alerts.acks import Acked, AckRecorder
from alerts.models import Mailbox, Message
from alerts.store import Outgoing
from dispatch.audit import chain
from dispatch.audit.models import EventChainHead
from dispatch.auth.service import BOARD_MAILBOX
from dispatch.incidents.models import IncidentEvent
from dispatch.jobs.models import Job
from dispatch.realtime import record_acknowledged
from tests.support import QINGXI, Account, Socket, World, statements_sent

GEOD = Geod(ellps="WGS84")


async def covered_by_three(world: World) -> tuple[list[Account], dict[str, Any]]:
    leaders = []
    for n in range(3):
        lon, lat, _ = GEOD.fwd(*QINGXI, n * 120.0, 30.0)
        leaders.append(await world.leader(await world.team("fixed_post", float(lon), float(lat))))
    incident = await world.report(await world.operator())
    return leaders, incident


def recorder(world: World) -> AckRecorder:
    """A recorder of the server's own kind, flushed by the test instead of its task."""
    runtime = world.runtime
    return AckRecorder(runtime.transaction, partial(record_acknowledged, runtime))


class Counted:
    """The server's unit of work, counting the transactions it opens."""

    def __init__(self, world: World) -> None:
        self.runtime = world.runtime
        self.count = 0

    def __call__(self) -> AbstractAsyncContextManager[AsyncSession]:
        self.count += 1
        return self.runtime.transaction()


async def delivered(world: World, incident_id: str) -> dict[str, datetime | None]:
    by = await world.operator()
    found = await world.incident(by, incident_id)
    return {
        d["team_id"]: datetime.fromisoformat(d["delivered_at"]) if d["delivered_at"] else None
        for d in found["dispatches"]
    }


async def acked_marks(world: World, users: Sequence[str]) -> dict[str, int]:
    async with world.runtime.sessionmaker() as session:
        rows = await session.execute(
            select(Mailbox.user_id, Mailbox.acked_seq).where(Mailbox.user_id.in_(users))
        )
        return {user: seq for user, seq in rows.all()}


async def test_acks_gathered_together_are_written_in_one_commit_each_with_its_own_time(
    world: World,
) -> None:
    leaders, incident = await covered_by_three(world)
    transactions = Counted(world)
    acks = AckRecorder(transactions, partial(record_acknowledged, world.runtime))
    arrived = {}
    for leader in leaders:
        world.clock.advance(0.4)
        arrived[leader.team_id] = world.clock.now()
        acks.submit(leader.id, 1, world.clock.now())
    assert await acks.flush()

    assert transactions.count == 1, "the deliveries and the acknowledged marks in one"
    assert await delivered(world, incident["id"]) == arrived
    assert await acked_marks(world, [a.id for a in leaders]) == {a.id: 1 for a in leaders}


async def test_an_ack_covers_earlier_alerts_with_the_time_of_the_first_ack_that_covered_them(
    world: World,
) -> None:
    leaders, first = await covered_by_three(world)
    operator = await world.operator()
    second = await world.report(operator, category="theft")
    third = await world.report(operator, category="fire")
    leader = leaders[0]
    acks = recorder(world)
    world.clock.advance(1)
    early = world.clock.now()
    acks.submit(leader.id, 1, early)
    world.clock.advance(1)
    late = world.clock.now()
    # Seq 3 acknowledges the third alert and, with it, the unacknowledged second.
    acks.submit(leader.id, 3, late)
    assert await acks.flush()

    assert (await delivered(world, first["id"]))[leader.team_id] == early
    assert (await delivered(world, second["id"]))[leader.team_id] == late
    assert (await delivered(world, third["id"]))[leader.team_id] == late
    assert (await acked_marks(world, [leader.id]))[leader.id] == 3
    # Acknowledging again changes nothing on the record.
    world.clock.advance(1)
    acks.submit(leader.id, 3, world.clock.now())
    assert await acks.flush()
    assert (await delivered(world, first["id"]))[leader.team_id] == early


async def test_a_batch_that_cannot_be_written_is_kept_and_written_on_the_next_try(
    world: World,
) -> None:
    leaders, incident = await covered_by_three(world)
    runtime = world.runtime
    failures = 1

    async def database_away_once(session: AsyncSession, acked: Sequence[Acked]) -> None:
        nonlocal failures
        if failures:
            failures -= 1
            raise OperationalError("INSERT", {}, ConnectionError("database restarting"))
        await record_acknowledged(runtime, session, acked)

    acks = AckRecorder(runtime.transaction, database_away_once)
    at = world.clock.now()
    acks.submit(leaders[0].id, 1, at)
    assert not await acks.flush()
    assert (await delivered(world, incident["id"]))[leaders[0].team_id] is None
    assert (await acked_marks(world, [leaders[0].id]))[leaders[0].id] == 0
    # Meanwhile another leader acknowledged; the next try writes both, the first with its time.
    world.clock.advance(2)
    acks.submit(leaders[1].id, 1, world.clock.now())
    assert await acks.flush()
    times = await delivered(world, incident["id"])
    assert times[leaders[0].team_id] == at
    assert times[leaders[1].team_id] == world.clock.now()
    assert await acked_marks(world, [a.id for a in leaders[:2]]) == {
        leaders[0].id: 1,
        leaders[1].id: 1,
    }


async def test_acks_that_come_within_the_gathering_window_are_written_as_one_batch(
    world: World,
) -> None:
    leaders, incident = await covered_by_three(world)
    transactions = Counted(world)
    # A window far longer than the acks take to come, however loaded the box: they are one
    # batch because they came within it, not because the box was quick.
    acks = AckRecorder(transactions, partial(record_acknowledged, world.runtime), gather_s=5.0)
    running = asyncio.create_task(acks.run())
    arrived = {}
    try:
        # Three phones answer a few milliseconds apart, as they do after one alert.
        for leader in leaders:
            world.clock.advance(0.005)
            arrived[leader.team_id] = world.clock.now()
            acks.submit(leader.id, 1, world.clock.now())
            await asyncio.sleep(0.01)
        for _ in range(1000):
            if await acked_marks(world, [a.id for a in leaders]) == {a.id: 1 for a in leaders}:
                break
            await asyncio.sleep(0.02)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running

    assert transactions.count == 1, "one batch: the deliveries with the acknowledged marks"
    assert await delivered(world, incident["id"]) == arrived


async def test_deliveries_of_several_incidents_in_one_batch_extend_each_event_chain(
    world: World,
) -> None:
    leaders, first = await covered_by_three(world)
    second = await world.report(await world.operator(), category="theft")
    acks = recorder(world)
    for leader in leaders:
        world.clock.advance(0.2)
        acks.submit(leader.id, 2, world.clock.now())
    assert await acks.flush()

    async with world.runtime.sessionmaker() as session:
        for incident in (first, second):
            events = list(
                await session.scalars(
                    select(IncidentEvent)
                    .where(IncidentEvent.incident_id == incident["id"])
                    .order_by(IncidentEvent.seq)
                )
            )
            assert [e.seq for e in events] == list(range(1, len(events) + 1))
            assert [e.type for e in events].count("delivered") == 3
            assert {e.actor_id for e in events if e.type == "delivered"} == {a.id for a in leaders}
            head = await session.get(EventChainHead, incident["id"])
            assert head is not None and (head.seq, head.hash) == (events[-1].seq, events[-1].hash)
        verdict = await chain.verify(session)
    assert verdict.broken is None and verdict.events > 0


async def test_a_mark_moves_only_forward_and_never_past_the_last_message_on_both_paths(
    world: World,
) -> None:
    leaders, _ = await covered_by_three(world)
    first, second, third = leaders
    acks = recorder(world)
    # The alerts (seq 1) delivered: the marks ride the board's write. An ack of seq 5 covers
    # the alert but cannot move the mark past the last message there is.
    acks.submit(first.id, 1, world.clock.now())
    acks.submit(second.id, 5, world.clock.now())
    assert await acks.flush()
    assert await acked_marks(world, [first.id, second.id]) == {first.id: 1, second.id: 0}

    # Nothing left to record (seq 1 is delivered already): the marks move on their own.
    acks.submit(first.id, 0, world.clock.now())
    acks.submit(third.id, 1, world.clock.now())
    assert await acks.flush()
    assert await acked_marks(world, [first.id, third.id]) == {first.id: 1, third.id: 1}


async def test_a_flush_writes_its_deliveries_with_the_boards_news_in_its_last_statement(
    world: World, backend: str
) -> None:
    leaders, incident = await covered_by_three(world)
    acks = recorder(world)
    for leader in leaders:
        acks.submit(leader.id, 1, world.clock.now())
    with statements_sent(world.runtime) as sent:
        assert await acks.flush()

    if backend == "postgresql":
        # One last statement locks the mailboxes, the board's and the leaders', moves the
        # marks, and carries the deliveries, the board's news and the announcement to other
        # processes.
        (last,) = [s for s in sent if "INSERT INTO messages" in s]
        assert sent[-1] == last
        for part in ("INSERT INTO mailboxes", "UPDATE dispatches", "INSERT INTO incident_events"):
            assert part in last
        assert [s for s in sent if "INSERT INTO mailboxes" in s] == [last]
        assert [s for s in sent if "pg_notify" in s] == [last]
    assert set((await delivered(world, incident["id"])).values()) == {world.clock.now()}


async def test_the_deliveries_of_one_flush_reach_the_board_as_one_message(world: World) -> None:
    leaders, incident = await covered_by_three(world)
    acks = recorder(world)
    for leader in leaders:
        acks.submit(leader.id, 1, world.clock.now())
    assert await acks.flush()

    async with world.runtime.sessionmaker() as session:
        board = await session.execute(
            select(Message.type, Message.data)
            .where(Message.user_id == BOARD_MAILBOX)
            .order_by(Message.seq)
        )
        (_, reported), (kind, news) = board.all()
    assert kind == "dispatches.updated"
    assert sorted(d["id"] for d in news["dispatches"]) == sorted(
        d["id"] for d in incident["dispatches"]
    )
    assert reported["id"] == incident["id"]
    assert all(d["delivered_at"] is not None for d in news["dispatches"])


async def test_resuming_after_an_alert_acknowledges_it_when_its_own_ack_was_lost(
    world: World,
) -> None:
    team = await world.team("fixed_post")
    leader = await world.leader(team)
    operator = await world.operator()
    phone = await world.connect(leader)
    incident = await world.report(operator)
    alert = await phone.next_of("alert")
    # The phone's ack died with the server process before its group commit: on record, the
    # alert was never delivered, and the phone, which has it, will not ack it again.
    await phone.close()
    assert (await delivered(world, incident["id"]))[team["id"]] is None
    world.clock.advance(3)
    resumed_at = world.clock.now()
    again = await world.connect(leader, resume_from=alert["seq"])
    after = await world.wait_for(
        operator, incident["id"], lambda i: i["dispatches"][0]["delivered_at"] is not None
    )
    assert datetime.fromisoformat(after["dispatches"][0]["delivered_at"]) == resumed_at
    assert (await acked_marks(world, [leader.id]))[leader.id] == alert["seq"]
    await again.close()


async def test_resuming_from_a_seq_ahead_of_the_mailbox_acknowledges_nothing(
    world: World,
) -> None:
    team = await world.team("fixed_post")
    leader = await world.leader(team)
    operator = await world.operator()
    incident = await world.report(operator)
    phone = await world.connect(leader, resume_from=10**6)
    resync = await phone.next()
    assert resync["type"] == "resync"
    phone.last_seq = resync["seq"]
    # The alert the resync skipped is sent again, after it: not delivered until acknowledged.
    again = await phone.next()
    assert (again["type"], again["seq"]) == ("alert", resync["seq"] + 1)
    assert again["data"]["incident"]["id"] == incident["id"]
    assert await phone.silent(0.3)
    assert (await delivered(world, incident["id"]))[team["id"]] is None
    await phone.close()


async def marked(world: World, user_id: str, seq: int) -> None:
    """Wait until the user's acknowledged mark reached ``seq``: what the acknowledgements up to
    it record is on record by then (the mark moves in the same transaction)."""
    for _ in range(250):
        if (await acked_marks(world, [user_id]))[user_id] >= seq:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"the mark of {user_id} never reached {seq}")


async def delivered_events(world: World, incident_id: str) -> list[IncidentEvent]:
    async with world.runtime.sessionmaker() as session:
        return list(
            await session.scalars(
                select(IncidentEvent).where(
                    IncidentEvent.incident_id == incident_id, IncidentEvent.type == "delivered"
                )
            )
        )


async def resynced(world: World, account: Account) -> tuple[Socket, int]:
    """A phone whose stored seq is ahead of its mailbox (the database was restored from a
    backup): told to resync, it carries on from the seq the resync names."""
    phone = await world.connect(account, resume_from=10**6)
    resync = await phone.next()
    assert resync["type"] == "resync", resync
    phone.last_seq = resync["seq"]
    return phone, resync["seq"]


async def test_an_ack_after_a_resync_does_not_deliver_a_closed_incidents_alert_never_sent(
    world: World,
) -> None:
    team = await world.team("fixed_post")
    leader = await world.leader(team)
    operator = await world.operator()
    # The leader is offline: the alert waits in the mailbox, and the incident is closed.
    incident = await world.report(operator)
    closing = f"/api/v1/incidents/{incident['id']}/close"
    assert (await world.http.post(closing, json={}, headers=operator.headers)).is_success
    world.clock.advance(2)

    phone, resync_seq = await resynced(world, leader)
    # What a client acknowledges next: the seq it now holds.
    await phone.ack(resync_seq)
    await marked(world, leader.id, resync_seq)

    assert (await delivered(world, incident["id"]))[team["id"]] is None
    assert await delivered_events(world, incident["id"]) == []
    await phone.close()


async def test_an_open_incidents_alert_a_resync_skipped_is_delivered_by_its_copy_alone(
    world: World,
) -> None:
    team = await world.team("fixed_post")
    leader = await world.leader(team)
    operator = await world.operator()
    skipped = await world.report(operator)
    world.clock.advance(2)
    phone, resync_seq = await resynced(world, leader)
    # What a client acknowledges first: the seq the resync gave it. That proves nothing.
    await phone.ack(resync_seq)
    await marked(world, leader.id, resync_seq)
    assert (await delivered(world, skipped["id"]))[team["id"]] is None
    assert await delivered_events(world, skipped["id"]) == []

    # The alert comes again, after the resync: the socket is sent it, so its ack proves it.
    again = await phone.next_of("alert")
    assert again["seq"] > resync_seq
    assert again["data"]["incident"]["id"] == skipped["id"]
    world.clock.advance(1)
    await phone.ack(again["seq"])
    await marked(world, leader.id, again["seq"])
    assert (await delivered(world, skipped["id"]))[team["id"]] == world.clock.now()
    assert [e.actor_id for e in await delivered_events(world, skipped["id"])] == [leader.id]
    await phone.close()


async def received_by(world: World, user_id: str, dispatch_id: str) -> bool:
    async with world.runtime.sessionmaker() as session:
        return await mailboxes.received(session, user_id, dispatch_id)


async def test_an_alert_a_resync_skipped_is_sent_again_on_the_next_connection_whoever_acked(
    world: World,
) -> None:
    """Two leaders of one team: one's copy a resync skipped, the other acknowledged his. The
    first is still owed the alert: it is replayed to him, and until his phone acknowledges it
    he has not got it, whatever the dispatch's delivery (the team's first) says."""
    team = await world.team("fixed_post")
    skipped_leader, partner = await world.leader(team), await world.leader(team)
    operator = await world.operator()
    incident = await world.report(operator)
    dispatch_id = incident["dispatches"][0]["id"]
    phone, resync_seq = await resynced(world, skipped_leader)
    # Gone before anything came to acknowledge; the phone keeps the resync's seq. The resync
    # moved the mark past what it skipped, proving none of it received.
    await phone.close()
    await marked(world, skipped_leader.id, resync_seq)

    world.clock.advance(2)
    partners = await world.connect(partner)
    alert = await partners.next_of("alert")
    assert "again" not in alert["data"], "the alert itself is no copy"
    await partners.ack(alert["seq"])
    await marked(world, partner.id, alert["seq"])
    partner_acked_at = world.clock.now()
    assert (await delivered(world, incident["id"]))[team["id"]] == partner_acked_at
    assert await received_by(world, partner.id, dispatch_id)
    assert not await received_by(world, skipped_leader.id, dispatch_id)

    world.clock.advance(3)
    again = await world.connect(skipped_leader, resume_from=resync_seq)
    copy = await again.next_of("alert")
    assert copy["seq"] > resync_seq
    assert copy["data"]["dispatch"]["id"] == dispatch_id
    assert copy["data"]["incident"]["id"] == incident["id"]
    # Marked as a copy: a device of his that rang for the alert does not ring again.
    assert copy["data"]["again"] is True
    assert not await received_by(world, skipped_leader.id, dispatch_id)
    await again.ack(copy["seq"])
    await marked(world, skipped_leader.id, copy["seq"])
    assert await received_by(world, skipped_leader.id, dispatch_id)
    # The dispatch's delivery stays the team's first: the partner's, one event.
    assert (await delivered(world, incident["id"]))[team["id"]] == partner_acked_at
    assert [e.actor_id for e in await delivered_events(world, incident["id"])] == [partner.id]
    assert await again.silent(0.3), "sent again once"
    await again.close()
    await partners.close()


async def test_a_phone_back_at_once_after_a_resync_has_not_got_what_the_resync_skipped(
    world: World,
) -> None:
    """The resync's seq is where the phone resumes from next, which says it holds everything
    up to it: the mark is there before the phone hears of it, so the resume proves nothing,
    however soon it comes (within the acknowledgements' gathering window, say)."""
    team = await world.team("fixed_post")
    leader = await world.leader(team)
    incident = await world.report(await world.operator())
    dispatch_id = incident["dispatches"][0]["id"]
    phone = await world.connect(leader, resume_from=10**6)
    resync = await phone.next()
    assert resync["type"] == "resync"
    assert (await acked_marks(world, [leader.id]))[leader.id] == resync["seq"]
    await phone.close()

    again = await world.connect(leader, resume_from=resync["seq"])
    copy = await again.next_of("alert")
    assert copy["seq"] > resync["seq"] and copy["data"]["again"] is True
    assert not await received_by(world, leader.id, dispatch_id)
    assert (await delivered(world, incident["id"]))[team["id"]] is None
    await again.close()


async def test_an_alert_the_team_answered_is_not_sent_again(world: World) -> None:
    team = await world.team("fixed_post")
    leader, partner = await world.leader(team), await world.leader(team)
    operator = await world.operator()
    incident = await world.report(operator)
    reply = await world.http.post(
        f"/api/v1/dispatches/{incident['dispatches'][0]['id']}/accept", headers=partner.headers
    )
    assert reply.status_code == 200, reply.text
    phone, resync_seq = await resynced(world, leader)
    await phone.ack(resync_seq)
    await marked(world, leader.id, resync_seq)
    # His phone reloads the incident, accepted: there is nothing to ring for.
    for _ in range(250):
        async with world.runtime.sessionmaker() as session:
            outcome = await session.scalar(
                select(Job.outcome).where(Job.kind == "alert.send_again", Job.status == "done")
            )
        if outcome is not None:
            break
        await asyncio.sleep(0.02)
    assert outcome == "not needed: the team answered"
    assert await phone.silent(0.3)
    await phone.close()


async def test_an_ack_after_a_retention_resync_does_not_deliver_what_it_skipped(
    world: World,
) -> None:
    team = await world.team("fixed_post")
    leader = await world.leader(team)
    operator = await world.operator()
    async with world.runtime.transaction() as session:
        old = [Outgoing(leader.id, "incident.updated", {"n": n}) for n in range(2)]
        await mailboxes.enqueue(session, old, now=world.clock.now())
    world.clock.advance(timedelta(days=8).total_seconds())
    operator, leader = await world.relogin(operator), await world.relogin(leader)
    skipped = await world.report(operator)
    async with world.runtime.transaction() as session:
        await mailboxes.purge_before(session, world.clock.now() - timedelta(days=7))

    # The phone had seq 1; seq 2 is past the retention window, so it is told to resync to
    # the alert's seq rather than being sent the alert.
    phone = await world.connect(leader, resume_from=1)
    resync = await phone.next()
    assert (resync["type"], resync["seq"]) == ("resync", 3)
    await phone.ack(resync["seq"])
    await marked(world, leader.id, resync["seq"])

    assert (await delivered(world, skipped["id"]))[team["id"]] is None
    await phone.close()
