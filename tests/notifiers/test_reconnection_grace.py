"""After a restart, leaders whose phones were connected are given a moment to reconnect before
an alert they have not acknowledged is taken as undelivered; the others are reached at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest

from dispatch.clock import ManualClock
from dispatch.config import Settings
from dispatch.schemas import show_time
from tests.conftest import RunningServer, server_settings
from tests.notifiers.receiver import Receiver
from tests.notifiers.test_notifiers import (
    PHONE,
    attempts_recorded,
    events_of,
    job_outcomes,
    timer_caught_up,
    wait_events,
)
from tests.support import Account, Socket, World

GRACE_S = 10.0
OTHER_PHONE = "13900139000"


@pytest.fixture
async def sms() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    await receiver.start()
    yield receiver
    await receiver.stop()


@dataclass
class Served:
    server: RunningServer
    world: World

    async def stop(self) -> None:
        """Stopped as a deploy stops it (SIGTERM): every socket is told 1012 and closed."""
        await self.world.close()
        await self.server.stop()


Serve = Callable[[], Awaitable[Served]]


def configured(settings: Settings, sms: Receiver) -> Settings:
    given = {"sms_gateway_url": sms.url, "notify_reconnect_grace_s": GRACE_S}
    return Settings(**(settings.model_dump() | given))


@pytest.fixture
async def serve(settings: Settings, clock: ManualClock, sms: Receiver) -> AsyncIterator[Serve]:
    """Start a server process (a new one each call) on the test's database and clock."""
    running: list[Served] = []

    async def begin() -> Served:
        server = RunningServer(configured(settings, sms), clock)
        await server.start()
        served = Served(server, World(server.app, f"http://127.0.0.1:{server.port}", clock))
        running.append(served)
        return served

    yield begin
    for served in running:
        if served.server.task is not None and not served.server.task.done():
            await served.stop()


async def leader_with_phone(world: World, team: dict[str, Any], phone: str = PHONE) -> Account:
    leader = await world.leader(team)
    admin = await world.admin()
    reply = await world.http.put(
        f"/api/v1/users/{leader.id}/phone", json={"phone": phone}, headers=admin.headers
    )
    assert reply.status_code == 200, reply.text
    return leader


async def shown_connected(world: World, by: Account, team: dict[str, Any], count: int) -> None:
    """Each process writes its sockets' presence within half a second of their opening."""
    for _ in range(200):
        reply = await world.http.get(f"/api/v1/teams/{team['id']}/reachability", headers=by.headers)
        if sum(m["connected"] for m in reply.json()["leaders"]) == count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{count} leaders never showed as connected")


async def alerted(phone: Socket, incident_id: str) -> int:
    """The phone has the alert, and (its acknowledgement lost with the server) has not
    acknowledged it: the seq it last saw before it."""
    before = phone.last_seq
    alert = await phone.next_of("alert")
    assert alert["data"]["incident"]["id"] == incident_id
    return before


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def test_a_phone_connected_before_a_restart_reconnects_in_its_grace_and_is_not_texted(
    serve: Serve, clock: ManualClock, sms: Receiver
) -> None:
    """The phone had the alert but its acknowledgement died with the server, stopped for a
    deploy 5 s after the alert and back 20 s later, past the alert's 15 s. Before, the check
    that fell due meanwhile texted the leader as the server started, a second before his
    phone reconnected and acknowledged the alert. His phone was connected when the server
    stopped: the check waits for it, and finds the alert acknowledged."""
    first = await serve()
    world = first.world
    team = await world.team("fixed_post", name="三中驻点队")
    leader = await leader_with_phone(world, team)
    operator = await world.operator()
    phone = await world.connect(leader)
    await shown_connected(world, operator, team, 1)
    incident = await world.report(operator)
    before = await alerted(phone, incident["id"])
    clock.advance(5)
    await first.stop()
    clock.advance(20)
    second = await serve()
    world = second.world
    await timer_caught_up(world)
    clock.advance(2)
    back = clock.now()
    again = await world.connect(leader, resume_from=before)
    await again.next_of("alert")
    await again.ack()
    [delivered] = await wait_events(world, operator, incident["id"], "delivered", 1)
    assert at(delivered["at"]) == back
    clock.advance(GRACE_S)
    await timer_caught_up(world)
    [held, rechecked] = await job_outcomes(world, "notify.check")
    assert held.startswith("held until"), held
    assert rechecked == "not needed: acknowledged"
    assert sms.requests == []
    assert await events_of(world, operator, incident["id"], "notified", "notify_failed") == []
    await again.close()


async def test_a_leader_not_connected_before_is_texted_at_once_one_who_was_once_his_grace_ends(
    serve: Serve, clock: ManualClock, sms: Receiver
) -> None:
    """Two leaders of one team: one's phone was connected when the server stopped, the
    other's page was not open. Back after the alert's 15 s, the server texts the second at
    once, as before; the first's phone does not come back within its grace, and he is texted
    then, the notification saying why it waited."""
    first = await serve()
    world = first.world
    team = await world.team("fixed_post", name="三中驻点队")
    connected = await leader_with_phone(world, team)
    away = await leader_with_phone(world, team, phone=OTHER_PHONE)
    operator = await world.operator()
    phone = await world.connect(connected)
    await shown_connected(world, operator, team, 1)
    incident = await world.report(operator)
    await alerted(phone, incident["id"])
    clock.advance(5)
    await first.stop()
    stopped = clock.now()
    clock.advance(20)
    second = await serve()
    world = second.world
    restarted = clock.now()
    console = await world.connect(operator)
    [texted] = await sms.wait_for(1)
    assert texted.json()["to"] == OTHER_PHONE
    await timer_caught_up(world)
    assert len(sms.requests) == 1
    clock.advance(GRACE_S)
    texts = await sms.wait_for(2)
    assert texts[1].json()["to"] == PHONE
    records = await attempts_recorded(world, operator, incident["id"], 2, ok=True)
    by_leader = {r["user_id"]: r for r in records}
    assert at(by_leader[away.id]["created_at"]) == restarted
    assert by_leader[away.id]["held"] is None
    assert by_leader[away.id]["held_until"] is None
    late = by_leader[connected.id]
    grace_ended = restarted + timedelta(seconds=GRACE_S)
    assert at(late["created_at"]) == grace_ended
    # Until when, as a time: the end of his grace by the server's clock, in Beijing time.
    assert late["held_until"] == show_time(grace_ended)
    assert late["held_until"].endswith("+08:00")
    assert late["held"] == (
        f"held until {show_time(restarted + timedelta(seconds=GRACE_S))}: the leader's phone "
        f"was connected to a server process that went away at {show_time(stopped)}, and was "
        f"given {GRACE_S:g} s to reconnect once the server was back"
    )
    notified = await wait_events(world, operator, incident["id"], "notified", 2)
    assert {e["data"]["user_id"]: e["data"].get("held") for e in notified} == {
        away.id: None,
        connected.id: late["held"],
    }
    assert {e["data"]["user_id"]: e["data"].get("held_until") for e in notified} == {
        away.id: None,
        connected.id: late["held_until"],
    }
    assert len(sms.requests) == 2
    # The consoles hear it too, as each notification is begun and ends.
    heard: dict[tuple[str, str], tuple[str | None, str | None]] = {}
    while (connected.id, "notified") not in heard:
        news = (await console.next_of("notification.updated"))["data"]
        heard[(news["user_id"], news["status"])] = (news["held"], news["held_until"])
    told = (late["held"], late["held_until"])
    assert heard[(connected.id, "pending")] == heard[(connected.id, "notified")] == told
    assert heard[(away.id, "notified")] == (None, None)
    await console.close()


async def test_a_worker_gives_the_leaders_of_a_stopped_worker_their_grace_and_no_one_else(
    postgres_only: str, clock: ManualClock, sms: Receiver
) -> None:
    """Two workers on PostgreSQL. One leader's phone is on worker A, another's on worker B;
    neither phone acknowledges the alert. A stops 12 s after it; at 15 s the check falls due
    on B. The leader whose phone was on A is given his grace from A's stop, and his phone,
    back on B a second later, acknowledges the alert; the one whose phone is on B, up all
    along, is texted at once."""
    settings = configured(server_settings(postgres_only), sms)
    a, b = RunningServer(settings, clock), RunningServer(settings, clock)
    await a.start()
    await b.start()
    on_a = World(a.app, f"http://127.0.0.1:{a.port}", clock)
    on_b = World(b.app, f"http://127.0.0.1:{b.port}", clock)
    try:
        team = await on_a.team("fixed_post", name="三中驻点队")
        was_on_a = await leader_with_phone(on_a, team)
        on_b_all_along = await leader_with_phone(on_a, team, phone=OTHER_PHONE)
        operator = await on_a.operator()
        phone_a = await on_a.connect(was_on_a)
        phone_b = await on_b.connect(on_b_all_along)
        await shown_connected(on_b, operator, team, 2)
        incident = await on_b.report(operator)
        before = await alerted(phone_a, incident["id"])
        await alerted(phone_b, incident["id"])
        clock.advance(12)
        await on_a.close()
        await a.stop()
        clock.advance(3)
        [texted] = await sms.wait_for(1)
        assert texted.json()["to"] == OTHER_PHONE
        clock.advance(1)
        again = await on_b.connect(was_on_a, resume_from=before)
        await again.next_of("alert")
        await again.ack()
        await wait_events(on_b, operator, incident["id"], "delivered", 1)
        clock.advance(GRACE_S)
        await timer_caught_up(on_b)
        outcomes = sorted(await job_outcomes(on_b, "notify.check"))
        assert outcomes[0].startswith("held until"), outcomes
        assert outcomes[1:] == ["not needed: acknowledged", "unacknowledged: notifying over sms"]
        assert len(sms.requests) == 1
        await again.close()
        await phone_b.close()
    finally:
        await on_b.close()
        await b.stop()
        if a.task is not None and not a.task.done():
            await a.stop()
