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
