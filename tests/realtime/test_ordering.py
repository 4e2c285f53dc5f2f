"""Messages reach each user in order: numbered in commit order, never older news after newer."""

from __future__ import annotations

import asyncio

from pyproj import Geod
from sqlalchemy import select

from alerts import store as mailboxes
from alerts.models import Mailbox, Message
from tests.support import QINGXI, World

GEOD = Geod(ellps="WGS84")


async def test_concurrent_hops_reach_operators_in_the_order_they_happened(world: World) -> None:
    teams = []
    for n in range(8):
        lon, lat, _ = GEOD.fwd(*QINGXI, n * 45.0, 40.0)
        teams.append(await world.team("fixed_post", float(lon), float(lat)))
    leaders = [await world.leader(team) for team in teams]
    operator = await world.operator()
    console = await world.connect(operator)
    incident = await world.report(operator)
    by_team = {d["team_id"]: d["id"] for d in incident["dispatches"]}

    async def accept_and_arrive(n: int) -> None:
        dispatch_id = by_team[teams[n]["id"]]
        headers = leaders[n].headers
        await world.http.post(f"/api/v1/dispatches/{dispatch_id}/accept", headers=headers)
        await world.http.post(f"/api/v1/dispatches/{dispatch_id}/arrive", headers=headers)

    await asyncio.gather(*(accept_and_arrive(n) for n in range(len(teams))))
    progress = []
    while not progress or progress[-1] < 2 * len(teams):
        message = await console.next_of("incident.updated")
        hops = message["data"]["dispatches"]
        progress.append(
            sum(d["accepted_at"] is not None for d in hops)
            + sum(d["arrived_at"] is not None for d in hops)
        )
    assert progress == sorted(progress), progress
    await console.close()


async def test_concurrent_first_messages_make_each_missing_mailbox_once_and_number_it_in_order(
    world: World,
) -> None:
    # Users without a mailbox yet, each transaction writing to several of them, in overlapping
    # sets: every transaction must wait its turn (none fails making a mailbox another made, none
    # deadlocks), and each user's messages are numbered 1, 2, 3... in commit order.
    users = [f"new-{n}" for n in range(4)]

    async def send(k: int) -> None:
        recipients = [users[k % 4], users[(k + 1) % 4], "new-shared"]
        async with world.runtime.transaction() as session:
            outgoing = [mailboxes.Outgoing(u, "note", {"k": k}) for u in recipients]
            await mailboxes.enqueue(session, outgoing, now=world.clock.now())

    await asyncio.gather(*(send(k) for k in range(12)))
    async with world.runtime.sessionmaker() as session:
        rows = (await session.execute(select(Message.user_id, Message.seq))).all()
        last = dict((await session.execute(select(Mailbox.user_id, Mailbox.last_seq))).all())
    seqs: dict[str, list[int]] = {}
    for user, seq in rows:
        seqs.setdefault(user, []).append(seq)
    assert {u: sorted(s) for u, s in seqs.items()} == {
        **{u: [1, 2, 3, 4, 5, 6] for u in users},
        "new-shared": list(range(1, 13)),
    }
    assert {u: last[u] for u in seqs} == {**dict.fromkeys(users, 6), "new-shared": 12}


async def test_a_mailbox_is_moved_on_by_the_same_rule_on_both_backends(world: World) -> None:
    # One statement moves the mailboxes on (PostgreSQL's upsert, SQLite's): seqs kept per
    # message in order, a mailbox made where missing, and an acknowledged mark moved only
    # forward and never past the messages the mailbox had before.
    now = world.clock.now()

    async def enqueue(users: list[str], marks: dict[str, int]) -> list[tuple[str, int]]:
        async with world.runtime.transaction() as session:
            mailboxes.move_marks(session, marks)
            outgoing = [mailboxes.Outgoing(u, "note", {}) for u in users]
            sent = await mailboxes.enqueue(session, outgoing, now=now)
        return [(e.user_id, e.seq) for e in sent]

    async def boxes() -> dict[str, tuple[int, int]]:
        async with world.runtime.sessionmaker() as session:
            rows = await session.execute(
                select(Mailbox.user_id, Mailbox.last_seq, Mailbox.acked_seq)
            )
            return {user: (last, acked) for user, last, acked in rows}

    sent = await enqueue(["ann", "bob", "ann", "ann"], {})
    assert sent == [("ann", 1), ("bob", 1), ("ann", 2), ("ann", 3)]
    assert await boxes() == {"ann": (3, 0), "bob": (1, 0)}

    # ann's mark moves to 2; bob's 2 would pass his one message, so it stays; cid's 1 is the
    # seq of this very enqueue, not one cid had; dan's mailbox is made empty, as every one
    # the statement locks is.
    sent = await enqueue(["bob", "cid", "ann"], {"ann": 2, "bob": 2, "cid": 1, "dan": 4})
    assert sent == [("bob", 2), ("cid", 1), ("ann", 4)]
    assert await boxes() == {"ann": (4, 2), "bob": (2, 0), "cid": (1, 0), "dan": (0, 0)}

    # A mark back (ann: 1 after 2) stays where it was; bob's 2 is his now.
    assert await enqueue(["ann"], {"ann": 1, "bob": 2}) == [("ann", 5)]
    assert await boxes() == {"ann": (5, 2), "bob": (2, 2), "cid": (1, 0), "dan": (0, 0)}
