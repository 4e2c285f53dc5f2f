"""Outbound notifiers against real local receivers: formats, signatures, retries, outcomes."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import io
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from dispatch.clock import ManualClock
from dispatch.config import Settings
from dispatch.jobs.models import Job, JobStatus
from dispatch.notifiers.channels import Notice
from dispatch.observability import logs
from tests.conftest import RunningServer, free_port
from tests.notifiers.receiver import Dribbler, HeldReceiver, Receiver
from tests.realtime.test_acks import marked
from tests.support import Account, SilentProxy, Socket, World, open_socket

PHONE = "13800138000"
WEBHOOK_SECRET = "webhook-secret-for-tests"
DINGTALK_SECRET = "SECdingtalk-secret-for-tests"

Start = Callable[..., Awaitable[World]]


@pytest.fixture
async def start(settings: Settings, clock: ManualClock) -> AsyncIterator[Start]:
    """Start the server with the given notifier settings (and receivers to stop afterwards)."""
    running: list[RunningServer] = []
    worlds: list[World] = []

    async def begin(**notifier_settings: Any) -> World:
        configured = Settings(**(settings.model_dump() | notifier_settings))
        server = RunningServer(configured, clock)
        await server.start()
        running.append(server)
        world = World(server.app, f"http://127.0.0.1:{server.port}", clock)
        worlds.append(world)
        return world

    yield begin
    for world in worlds:
        await world.close()
    for server in running:
        await server.stop()


@pytest.fixture
async def held() -> AsyncIterator[HeldReceiver]:
    """A gateway that answers 200 once its ``release`` is set."""
    gateway = HeldReceiver()
    await gateway.start()
    yield gateway
    await gateway.stop()


@pytest.fixture
async def receivers() -> AsyncIterator[Callable[..., Awaitable[Receiver]]]:
    started: list[Receiver] = []

    async def receiver(*answers: tuple[int, Any]) -> Receiver:
        r = Receiver(answers) if answers else Receiver()
        await r.start()
        started.append(r)
        return r

    yield receiver
    for r in started:
        await r.stop()


async def setup_incident(
    world: World, phone: str | None = PHONE, team: dict[str, Any] | None = None
) -> tuple[Account, Account, Any]:
    """A fixed-post team (or ``team``) whose leader has a phone number but no open page; an
    incident."""
    if team is None:
        team = await world.team("fixed_post", name="三中驻点队")
    leader = await world.leader(team)
    admin = await world.admin()
    if phone is not None:
        reply = await world.http.put(
            f"/api/v1/users/{leader.id}/phone", json={"phone": phone}, headers=admin.headers
        )
        assert reply.status_code == 200, reply.text
    operator = await world.operator()
    incident = await world.report(operator)
    return leader, operator, incident


async def events_of(world: World, by: Account, incident_id: str, *kinds: str) -> list[Any]:
    reply = await world.http.get(f"/api/v1/incidents/{incident_id}/events", headers=by.headers)
    assert reply.status_code == 200, reply.text
    return [e for e in reply.json() if e["type"] in kinds]


async def wait_events(
    world: World, by: Account, incident_id: str, kind: str, count: int
) -> list[Any]:
    for _ in range(250):
        found = await events_of(world, by, incident_id, kind)
        if len(found) >= count:
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(f"fewer than {count} {kind} events")


async def job_outcomes(world: World, kind: str) -> list[str]:
    async with world.runtime.sessionmaker() as session:
        rows = await session.scalars(select(Job).where(Job.kind == kind, Job.status == "done"))
        return [str(j.outcome) for j in rows]


async def timer_caught_up(world: World) -> None:
    """Wait until the timer has done every job due by the server's clock. Moved on, the clock
    makes a job due, but the timer gets to it whenever the event loop does: until it has,
    that nothing was sent shows nothing. Once it has, what those jobs did is on record (their
    outcomes: ``job_outcomes``), though a request one of them started may be on its way."""
    now = world.clock.now()
    for _ in range(500):
        async with world.runtime.sessionmaker() as session:
            due = await session.scalar(
                select(func.count())
                .select_from(Job)
                .where(Job.status == JobStatus.PENDING.value, Job.due_at <= now)
            )
        if not due:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the timer never did the jobs due")


async def notifications(world: World, by: Account, incident_id: str) -> list[Any]:
    reply = await world.http.get(
        f"/api/v1/incidents/{incident_id}/notifications", headers=by.headers
    )
    assert reply.status_code == 200, reply.text
    found: list[Any] = reply.json()
    return found


async def attempts_recorded(
    world: World, by: Account, incident_id: str, count: int, *, ok: bool | None = None
) -> list[Any]:
    """The incident's notifications once ``count`` attempts (those ``ok`` as given, if given)
    are on record. A receiver has the request before its answer is recorded, and a failed
    attempt's retry is due its backoff after the failure was recorded: a test moves the clock
    on once the record is there."""
    for _ in range(250):
        records = await notifications(world, by, incident_id)
        attempts = [a for r in records for a in r["attempts"] if ok is None or a["ok"] is ok]
        if len(attempts) >= count:
            return records
        await asyncio.sleep(0.02)
    raise AssertionError(f"fewer than {count} attempts recorded")


async def test_an_unacknowledged_alert_reaches_the_leader_over_every_channel(
    start: Start, receivers: Callable[..., Awaitable[Receiver]]
) -> None:
    webhook, wecom, dingtalk, sms = [await receivers() for _ in range(4)]
    world = await start(
        webhook_url=webhook.url,
        webhook_secret=WEBHOOK_SECRET,
        wecom_robot_url=wecom.url + "?key=robot-key",
        dingtalk_robot_url=dingtalk.url + "?access_token=robot-token",
        dingtalk_secret=DINGTALK_SECRET,
        sms_gateway_url=sms.url,
        sms_gateway_username="town",
        sms_gateway_password="gateway-password",
    )
    leader, operator, incident = await setup_incident(world)
    dispatch = incident["dispatches"][0]

    world.clock.advance(14)
    await timer_caught_up(world)
    assert await job_outcomes(world, "notify.check") == []
    assert not (webhook.requests or wecom.requests or dingtalk.requests or sms.requests)
    world.clock.advance(1)
    sent_at = world.clock.now()

    [hook] = await webhook.wait_for(1)
    expected = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), hook.body, hashlib.sha256).hexdigest()
    assert hook.headers["x-dispatch-signature"] == expected
    assert hook.headers["x-dispatch-event"] == "alert.unacknowledged"
    document = hook.json()
    assert hook.headers["x-dispatch-delivery"] == document["notification_id"]
    assert document["incident"]["id"] == incident["id"]
    assert document["dispatch"]["id"] == dispatch["id"]
    assert document["dispatch"]["team_name"] == "三中驻点队"
    assert document["leader"] == {"id": leader.id, "name": leader.name, "phone": PHONE}
    assert document["unacknowledged_for_s"] == 15
    assert document["attempt"] == 1

    [robot] = await wecom.wait_for(1)
    assert robot.query == {"key": "robot-key"}
    message = robot.json()
    assert message["msgtype"] == "text"
    assert "三中驻点队" in message["text"]["content"]
    assert "打架斗殴" in message["text"]["content"]
    assert message["text"]["mentioned_mobile_list"] == [PHONE]

    [ding] = await dingtalk.wait_for(1)
    assert ding.query["access_token"] == "robot-token"
    timestamp = int(ding.query["timestamp"])
    assert timestamp == int(sent_at.timestamp() * 1000)
    to_sign = f"{timestamp}\n{DINGTALK_SECRET}".encode()
    signature = hmac.new(DINGTALK_SECRET.encode(), to_sign, hashlib.sha256).digest()
    assert ding.query["sign"] == base64.b64encode(signature).decode()
    body = ding.json()
    assert body["msgtype"] == "text"
    assert body["at"] == {"atMobiles": [PHONE], "isAtAll": False}
    assert "三中驻点队" in body["text"]["content"]

    [text] = await sms.wait_for(1)
    credentials = base64.b64encode(b"town:gateway-password").decode()
    assert text.headers["authorization"] == f"Basic {credentials}"
    assert text.json()["to"] == PHONE
    assert "请立即打开派警页面接警" in text.json()["text"]

    notified = await wait_events(world, operator, incident["id"], "notified", 4)
    assert sorted(e["data"]["channel"] for e in notified) == ["dingtalk", "sms", "webhook", "wecom"]
    for event in notified:
        assert event["data"]["dispatch_id"] == dispatch["id"]
        assert event["data"]["user_id"] == leader.id
        assert event["data"]["attempts"] == 1
        assert datetime.fromisoformat(event["at"]) == sent_at
    records = await notifications(world, operator, incident["id"])
    assert {n["channel"]: n["status"] for n in records} == {
        "webhook": "notified",
        "wecom": "notified",
        "dingtalk": "notified",
        "sms": "notified",
    }
    for record in records:
        [attempt] = record["attempts"]
        assert attempt["attempt"] == 1
        assert attempt["ok"] is True
        assert attempt["status_code"] == 200
        assert attempt["error"] is None


def robbery_notice() -> Notice:
    """A robbery 123 m from the team, reported 08:30:05 Beijing time, unanswered for 15 s."""
    reported = datetime(2026, 5, 1, 0, 30, 5, tzinfo=UTC)
    return Notice(
        notification_id="n1",
        channel="sms",
        attempt=1,
        incident_id="0123456789abcdef",
        category="robbery",
        reported_at=reported,
        lon=114.16,
        lat=22.85,
        dispatch_id="d1",
        team_id="t1",
        team_name="三中驻点队",
        tier=1,
        distance_m=123.4,
        alerted_at=reported,
        leader_id="u1",
        leader_name="张三",
        phone=PHONE,
        unacknowledged_for_s=15,
    )


def test_the_alert_names_the_category_as_the_page_and_the_exports_do() -> None:
    assert "08:30:05 报抢劫抢夺警情" in robbery_notice().text()


def test_the_alert_says_the_distance_once() -> None:
    assert robbery_notice().text() == (
        "【警情派警】三中驻点队（应急联防队）队长张三：08:30:05 报抢劫抢夺警情，距离约123米，"
        "告警15秒未确认接收，请立即打开派警页面接警。警情编号 01234567"
    )


async def test_a_retry_says_how_long_the_alert_has_gone_unacknowledged(
    start: Start, receivers: Callable[..., Awaitable[Receiver]]
) -> None:
    webhook = await receivers((503, {"error": "busy"}), (200, {}))
    world = await start(
        webhook_url=webhook.url, webhook_secret=WEBHOOK_SECRET, notify_backoff_s=10.0
    )
    _, operator, incident = await setup_incident(world)
    world.clock.advance(15)
    await webhook.wait_for(1)
    await attempts_recorded(world, operator, incident["id"], 1)
    world.clock.advance(10)
    [first, second] = await webhook.wait_for(2)
    assert first.json()["unacknowledged_for_s"] == 15
    assert "告警15秒未确认接收" in first.json()["text"]
    assert second.json()["unacknowledged_for_s"] == 25
    assert "告警25秒未确认接收" in second.json()["text"]


async def test_a_leader_who_acknowledged_in_time_gets_no_notification(
    start: Start, receivers: Callable[..., Awaitable[Receiver]]
) -> None:
    webhook = await receivers()
    world = await start(webhook_url=webhook.url, webhook_secret=WEBHOOK_SECRET)
    team = await world.team("fixed_post")
    leader = await world.leader(team)
    operator = await world.operator()
    phone = await world.connect(leader)
    incident = await world.report(operator)
    alert = await phone.next_of("alert")
    world.clock.advance(3)
    await phone.ack(alert["seq"])
    await world.wait_for(operator, incident["id"], lambda i: i["dispatches"][0]["delivered_at"])

    world.clock.advance(20)
    for _ in range(250):
        if await job_outcomes(world, "notify.check"):
            break
        await asyncio.sleep(0.02)
    assert await job_outcomes(world, "notify.check") == ["not needed: acknowledged"]
    await timer_caught_up(world)
    assert await job_outcomes(world, "notify.send") == []
    assert webhook.requests == []
    assert await events_of(world, operator, incident["id"], "notified", "notify_failed") == []
    assert await notifications(world, operator, incident["id"]) == []
    await phone.close()


async def test_an_alert_a_resync_skipped_is_unacknowledged_though_the_mark_passed_it(
    start: Start, receivers: Callable[..., Awaitable[Receiver]]
) -> None:
    webhook = await receivers()
    world = await start(webhook_url=webhook.url, webhook_secret=WEBHOOK_SECRET)
    leader, _, incident = await setup_incident(world)
    # The phone comes back with a seq ahead of its mailbox (the database was restored from a
    # backup): told to resync, it reloads its state, and its ack passes the alert it was
    # never sent. Nothing says the leader has it: the fallback still reaches him.
    phone = await world.connect(leader, resume_from=10**6)
    resync = await phone.next()
    assert resync["type"] == "resync"
    await phone.ack(resync["seq"])
    await marked(world, leader.id, resync["seq"])

    world.clock.advance(15)
    [hook] = await webhook.wait_for(1)
    assert hook.json()["dispatch"]["id"] == incident["dispatches"][0]["id"]
    assert await job_outcomes(world, "notify.check") == ["unacknowledged: notifying over webhook"]
    await phone.close()


async def test_a_leader_a_resync_skipped_is_notified_though_his_partner_acknowledged(
    start: Start, receivers: Callable[..., Awaitable[Receiver]]
) -> None:
    """Two leaders of one team: the partner's phone acknowledged the alert, the leader's was
    never sent it (a resync passed it). The dispatch is delivered (the team's first delivery),
    but the leader's phone has not got it: his fallback still goes, the partner's does not."""
    webhook = await receivers()
    world = await start(webhook_url=webhook.url, webhook_secret=WEBHOOK_SECRET)
    team = await world.team("fixed_post")
    partner = await world.leader(team)
    leader, operator, incident = await setup_incident(world, team=team)
    phone = await world.connect(leader, resume_from=10**6)
    resync = await phone.next()
    assert resync["type"] == "resync"
    await phone.ack(resync["seq"])
    await marked(world, leader.id, resync["seq"])
    partners = await world.connect(partner)
    alert = await partners.next_of("alert")
    await partners.ack(alert["seq"])
    await world.wait_for(operator, incident["id"], lambda i: i["dispatches"][0]["delivered_at"])

    world.clock.advance(15)
    [hook] = await webhook.wait_for(1)
    assert hook.json()["dispatch"]["id"] == incident["dispatches"][0]["id"]
    assert hook.json()["leader"]["id"] == leader.id
    for _ in range(250):
        if len(await job_outcomes(world, "notify.check")) == 2:
            break
        await asyncio.sleep(0.02)
    assert sorted(await job_outcomes(world, "notify.check")) == [
        "not needed: acknowledged",
        "unacknowledged: notifying over webhook",
    ]
    await phone.close()
    await partners.close()


async def test_a_leader_who_acknowledged_the_alert_sent_again_after_a_resync_is_not_notified(
    start: Start, receivers: Callable[..., Awaitable[Receiver]]
) -> None:
    webhook = await receivers()
    world = await start(webhook_url=webhook.url, webhook_secret=WEBHOOK_SECRET)
    leader, operator, incident = await setup_incident(world)
    phone = await world.connect(leader, resume_from=10**6)
    resync = await phone.next()
    assert resync["type"] == "resync"
    phone.last_seq = resync["seq"]
    # Skipped by the resync, the alert comes again as a new message; his phone acknowledges it.
    again = await phone.next_of("alert")
    assert again["data"]["dispatch"]["id"] == incident["dispatches"][0]["id"]
    await phone.ack(again["seq"])
    await world.wait_for(operator, incident["id"], lambda i: i["dispatches"][0]["delivered_at"])

    world.clock.advance(15)
    for _ in range(250):
        if await job_outcomes(world, "notify.check"):
            break
        await asyncio.sleep(0.02)
    assert await job_outcomes(world, "notify.check") == ["not needed: acknowledged"]
    await timer_caught_up(world)
    assert await job_outcomes(world, "notify.send") == []
    assert webhook.requests == []
    await phone.close()


async def test_a_failing_receiver_is_retried_with_backoff_until_it_answers(
    start: Start, receivers: Callable[..., Awaitable[Receiver]]
) -> None:
    webhook = await receivers((503, {"error": "busy"}), (502, {"error": "bad gateway"}), (200, {}))
    world = await start(
        webhook_url=webhook.url, webhook_secret=WEBHOOK_SECRET, notify_backoff_s=1.0
    )
    _, operator, incident = await setup_incident(world)
    reported = datetime.fromisoformat(incident["reported_at"])

    world.clock.advance(15)
    await webhook.wait_for(1)
    await attempts_recorded(world, operator, incident["id"], 1)
    await timer_caught_up(world)
    assert await job_outcomes(world, "notify.send") == ["attempt 1 over webhook"]
    assert len(webhook.requests) == 1, "no retry before its backoff has passed"
    world.clock.advance(1)
    await webhook.wait_for(2)
    await attempts_recorded(world, operator, incident["id"], 2)
    await timer_caught_up(world)
    assert sorted(await job_outcomes(world, "notify.send")) == [
        "attempt 1 over webhook",
        "attempt 2 over webhook",
    ], "the second retry waits twice as long"
    assert len(webhook.requests) == 2
    world.clock.advance(2)
    await webhook.wait_for(3)

    [notified] = await wait_events(world, operator, incident["id"], "notified", 1)
    assert notified["data"]["attempts"] == 3
    [record] = await notifications(world, operator, incident["id"])
    assert record["status"] == "notified"
    attempts = record["attempts"]
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    assert [a["status_code"] for a in attempts] == [503, 502, 200]
    assert [a["ok"] for a in attempts] == [False, False, True]
    assert "busy" in attempts[0]["error"]
    offsets = [datetime.fromisoformat(a["at"]) - reported for a in attempts]
    assert offsets == [timedelta(seconds=15), timedelta(seconds=16), timedelta(seconds=18)]
    # The same delivery id each time: the receiver can tell a retry from a new notification.
    assert len({r.headers["x-dispatch-delivery"] for r in webhook.requests}) == 1
    assert [r.json()["attempt"] for r in webhook.requests] == [1, 2, 3]


async def test_a_slow_gateway_still_answering_is_not_sent_the_text_a_second_time(
    start: Start, held: HeldReceiver
) -> None:
    """With the defaults a request may take 5 s (DISPATCH_NOTIFY_TIMEOUT_S) and the first
    retry waits 2 s (DISPATCH_NOTIFY_BACKOFF_S): 2 s into a request the gateway is still
    working on, the leader is not sent the text again."""
    world = await start(sms_gateway_url=held.url)
    _, operator, incident = await setup_incident(world)
    world.clock.advance(15)
    await held.wait_for(1)
    world.clock.advance(4.9)
    await timer_caught_up(world)
    assert await job_outcomes(world, "notify.send") == ["attempt 1 over sms"], (
        "a retry went out while the first request was in flight"
    )
    assert len(held.requests) == 1
    held.release.set()
    [record] = await attempts_recorded(world, operator, incident["id"], 1)
    assert record["status"] == "notified"
    world.clock.advance(60)
    await timer_caught_up(world)
    assert sorted(await job_outcomes(world, "notify.send")) == [
        "attempt 1 over sms",
        "not needed: already notified",
    ]
    assert len(held.requests) == 1


async def test_a_refusal_that_took_long_is_retried_its_backoff_after_it_came(
    start: Start,
) -> None:
    gateway = HeldReceiver(((503, {"error": "busy"}), (200, {})))
    await gateway.start()
    try:
        world = await start(sms_gateway_url=gateway.url, notify_backoff_s=2.0)
        _, operator, incident = await setup_incident(world)
        reported = datetime.fromisoformat(incident["reported_at"])
        world.clock.advance(15)
        await gateway.wait_for(1)
        world.clock.advance(3)  # the gateway refuses 3 s into the request
        gateway.release.set()
        await attempts_recorded(world, operator, incident["id"], 1)
        world.clock.advance(1.9)
        await timer_caught_up(world)
        assert await job_outcomes(world, "notify.send") == ["attempt 1 over sms"], (
            "the retry came before its backoff after the refusal"
        )
        assert len(gateway.requests) == 1
        world.clock.advance(0.1)
        await gateway.wait_for(2)
        [notified] = await wait_events(world, operator, incident["id"], "notified", 1)
    finally:
        await gateway.stop()
    assert notified["data"]["attempts"] == 2
    [record] = await notifications(world, operator, incident["id"])
    offsets = [datetime.fromisoformat(a["at"]) - reported for a in record["attempts"]]
    assert offsets == [timedelta(seconds=15), timedelta(seconds=20)]


async def test_a_text_the_gateway_accepted_late_is_not_recorded_as_failed(
    start: Start, held: HeldReceiver
) -> None:
    """One attempt allowed: the notification is not given up while its request may still
    succeed, 4.9 s into its 5 s."""
    world = await start(sms_gateway_url=held.url, notify_max_attempts=1)
    _, operator, incident = await setup_incident(world)
    world.clock.advance(15)
    await held.wait_for(1)
    world.clock.advance(4.9)
    # Whatever the timer does 4.9 s into the request, it has done before the answer comes.
    await timer_caught_up(world)
    assert await job_outcomes(world, "notify.send") == ["attempt 1 over sms"]
    held.release.set()
    [record] = await attempts_recorded(world, operator, incident["id"], 1)
    assert [a["ok"] for a in record["attempts"]] == [True]
    assert record["status"] == "notified"
    assert await events_of(world, operator, incident["id"], "notify_failed") == []
    [notified] = await wait_events(world, operator, incident["id"], "notified", 1)
    assert notified["data"]["attempts"] == 1


async def test_a_success_recorded_after_the_notification_was_given_up_is_told_after_it(
    start: Start, held: HeldReceiver
) -> None:
    """The follow-up of the last attempt gives the notification up when that attempt's
    outcome has not come by its time limit and backoff (a process that stopped mid-request).
    A success recorded later still (held up, here by a clock moved on) is not dropped: the
    leader was reached. The timeline keeps the notify_failed and adds notified after it."""
    world = await start(sms_gateway_url=held.url, notify_max_attempts=1)
    _, operator, incident = await setup_incident(world)
    world.clock.advance(15)
    await held.wait_for(1)
    world.clock.advance(7)
    [failed] = await wait_events(world, operator, incident["id"], "notify_failed", 1)
    assert failed["data"]["error"] == "no success after 1 attempts"
    held.release.set()
    [record] = await attempts_recorded(world, operator, incident["id"], 1, ok=True)
    assert record["status"] == "notified"
    [notified] = await wait_events(world, operator, incident["id"], "notified", 1)
    timeline = await events_of(world, operator, incident["id"], "notified", "notify_failed")
    assert [e["type"] for e in timeline] == ["notify_failed", "notified"]
    assert notified["data"]["status_code"] == 200
    assert datetime.fromisoformat(notified["at"]) >= datetime.fromisoformat(failed["at"])


async def test_a_send_cut_by_a_restart_is_tried_again_once_its_time_limit_has_passed(
    settings: Settings, clock: ManualClock, held: HeldReceiver
) -> None:
    """The retry is on record before the request is made; the process that made it stopped
    mid-request, so nobody knows whether the gateway sent the text: the retry waits the
    request's time limit (5 s) and the backoff (2 s), as it would had the process stayed."""
    configured = Settings(**(settings.model_dump() | {"sms_gateway_url": held.url}))
    first = RunningServer(configured, clock)
    await first.start()
    world = World(first.app, f"http://127.0.0.1:{first.port}", clock)
    _, operator, incident = await setup_incident(world)
    clock.advance(15)
    await held.wait_for(1)
    await world.close()
    await first.stop()
    held.release.set()
    second = RunningServer(configured, clock)
    await second.start()
    world = World(second.app, f"http://127.0.0.1:{second.port}", clock)
    try:
        clock.advance(6.9)
        await timer_caught_up(world)
        assert await job_outcomes(world, "notify.send") == ["attempt 1 over sms"]
        assert len(held.requests) == 1
        clock.advance(0.1)
        await held.wait_for(2)
        [notified] = await wait_events(world, operator, incident["id"], "notified", 1)
        assert notified["data"]["attempts"] == 2
    finally:
        await world.close()
        await second.stop()


async def test_a_check_due_while_the_server_was_down_notifies_once_at_its_restart(
    settings: Settings, clock: ManualClock, receivers: Callable[..., Awaitable[Receiver]]
) -> None:
    """The server stopped 5 s after the alert and came back 40 s later: the check that fell
    due meanwhile texts the leader once as it starts, says how long the alert has waited, and
    the attempt is on record at the server's time of the restart; the consoles hear of it, and
    the leader's phone, back, is sent the alert it missed."""
    sms = await receivers()
    configured = Settings(**(settings.model_dump() | {"sms_gateway_url": sms.url}))
    first = RunningServer(configured, clock)
    await first.start()
    world = World(first.app, f"http://127.0.0.1:{first.port}", clock)
    leader, operator, incident = await setup_incident(world)
    clock.advance(5)
    await world.close()
    await first.stop()
    clock.advance(40)
    back = clock.now()
    second = RunningServer(configured, clock)
    await second.start()
    world = World(second.app, f"http://127.0.0.1:{second.port}", clock)
    try:
        board = await world.connect(operator)
        [texted] = await sms.wait_for(1)
        assert "告警45秒未确认接收" in texted.json()["text"]
        records = await attempts_recorded(world, operator, incident["id"], 1, ok=True)
        [record] = records
        assert record["status"] == "notified"
        assert datetime.fromisoformat(record["attempts"][0]["at"]) == back
        assert datetime.fromisoformat(record["created_at"]) == back
        news = (await news_until(board, "notified", "sms"))[-1]
        assert news["user_id"] == leader.id
        phone = await world.connect(leader)
        alert = await phone.next_of("alert")
        assert alert["data"]["incident"]["id"] == incident["id"]
        await timer_caught_up(world)
        assert await job_outcomes(world, "notify.check") == ["unacknowledged: notifying over sms"]
        assert len(sms.requests) == 1
    finally:
        await world.close()
        await second.stop()


async def test_a_phone_whose_line_died_without_a_word_is_texted_and_replayed_on_its_return(
    start: Start, receivers: Callable[..., Awaitable[Receiver]]
) -> None:
    """The leader's socket is open, but its line fell silent (no close) just before the alert:
    the server sent the alert into it and counts him connected, yet nothing acknowledged it,
    so he is texted 15 s later. His phone, back on a new connection resuming from its last seq,
    is sent the alert, and its ack is the delivery, at the server's time of the ack."""
    sms = await receivers()
    world = await start(sms_gateway_url=sms.url)
    team = await world.team("fixed_post", name="三中驻点队")
    leader = await world.leader(team)
    admin = await world.admin()
    reply = await world.http.put(
        f"/api/v1/users/{leader.id}/phone", json={"phone": PHONE}, headers=admin.headers
    )
    assert reply.status_code == 200, reply.text
    operator = await world.operator()
    line = SilentProxy(int(world.base_url.rsplit(":", 1)[1]))
    await line.start()
    try:
        phone = await open_socket(f"ws://127.0.0.1:{line.port}/ws", leader.token)
        last_seq = phone.last_seq
        line.fall_silent()
        incident = await world.report(operator)
        # Each process writes its sockets' presence within half a second of their opening.
        for _ in range(100):
            reach = await world.http.get(
                f"/api/v1/teams/{team['id']}/reachability", headers=operator.headers
            )
            if [m["connected"] for m in reach.json()["leaders"]] == [True]:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the leader never showed as connected")
        world.clock.advance(15)
        [texted] = await sms.wait_for(1)
        assert texted.json()["to"] == PHONE
        await wait_events(world, operator, incident["id"], "notified", 1)

        world.clock.advance(5)
        back = world.clock.now()
        again = await world.connect(leader, resume_from=last_seq)
        alert = await again.next_of("alert")
        assert alert["data"]["incident"]["id"] == incident["id"]
        await again.ack()
        [delivered] = await wait_events(world, operator, incident["id"], "delivered", 1)
        assert datetime.fromisoformat(delivered["at"]) == back
        assert len(sms.requests) == 1
        await again.close()
    finally:
        await line.close()


async def test_a_robot_that_keeps_refusing_ends_in_notify_failed(
    start: Start, receivers: Callable[..., Awaitable[Receiver]]
) -> None:
    dingtalk = await receivers((200, {"errcode": 310000, "errmsg": "sign not match"}))
    world = await start(
        dingtalk_robot_url=dingtalk.url,
        dingtalk_secret=DINGTALK_SECRET,
        notify_backoff_s=1.0,
        notify_max_attempts=2,
    )
    _, operator, incident = await setup_incident(world)
    world.clock.advance(15)
    await dingtalk.wait_for(1)
    await attempts_recorded(world, operator, incident["id"], 1)
    world.clock.advance(1)
    await dingtalk.wait_for(2)

    [failed] = await wait_events(world, operator, incident["id"], "notify_failed", 1)
    assert failed["data"]["channel"] == "dingtalk"
    assert failed["data"]["attempts"] == 2
    assert "sign not match" in failed["data"]["error"]
    assert await events_of(world, operator, incident["id"], "notified") == []
    [record] = await notifications(world, operator, incident["id"])
    assert record["status"] == "failed"
    assert [a["ok"] for a in record["attempts"]] == [False, False]
    world.clock.advance(10)
    await timer_caught_up(world)
    assert sorted(await job_outcomes(world, "notify.send")) == [
        "attempt 1 over dingtalk",
        "attempt 2 over dingtalk",
        "not needed: already failed",
    ], "nothing after the last attempt"
    assert len(dingtalk.requests) == 2


async def test_an_unreachable_receiver_is_recorded_as_a_connection_error(
    start: Start, receivers: Callable[..., Awaitable[Receiver]]
) -> None:
    gone = await receivers()
    await gone.stop()
    world = await start(webhook_url=gone.url, webhook_secret=WEBHOOK_SECRET, notify_max_attempts=1)
    _, operator, incident = await setup_incident(world)
    world.clock.advance(15)
    [failed] = await wait_events(world, operator, incident["id"], "notify_failed", 1)
    assert "ConnectError" in failed["data"]["error"]
    [record] = await notifications(world, operator, incident["id"])
    [attempt] = record["attempts"]
    assert attempt["status_code"] is None
    assert "ConnectError" in attempt["error"]


async def test_notify_timeout_limits_the_whole_request(start: Start) -> None:
    """The HTTP client's own timeout bounds each read: a receiver that dribbles its answer a
    byte at a time would hold the request as long as it liked."""
    dribbler = Dribbler(free_port(), seconds=10.0)
    await dribbler.start()
    try:
        world = await start(
            webhook_url=f"http://127.0.0.1:{dribbler.port}/hook",
            webhook_secret=WEBHOOK_SECRET,
            notify_timeout_s=1.0,
            notify_max_attempts=1,
        )
        _, operator, incident = await setup_incident(world)
        world.clock.advance(15)
        [failed] = await wait_events(world, operator, incident["id"], "notify_failed", 1)
        # The server hung up on the receiver before its answer was through.
        assert await dribbler.ended() == "hung up"
    finally:
        await dribbler.stop()
    assert failed["data"]["error"] == "TimeoutError: no answer within 1 s"
    [record] = await notifications(world, operator, incident["id"])
    [attempt] = record["attempts"]
    assert attempt["status_code"] is None
    assert attempt["duration_ms"] >= 1000


async def test_a_receiver_answering_a_binary_body_is_recorded_with_its_bytes_escaped(
    start: Start, receivers: Callable[..., Awaitable[Receiver]]
) -> None:
    # PostgreSQL keeps NUL in neither text nor jsonb: the attempt and its outcome were lost.
    webhook = await receivers((500, b"\x00\x01\x1b[31m\x7f\xc2\x85 gone\r\n"))
    world = await start(
        webhook_url=webhook.url, webhook_secret=WEBHOOK_SECRET, notify_max_attempts=1
    )
    _, operator, incident = await setup_incident(world)
    world.clock.advance(15)
    await webhook.wait_for(1)
    [failed] = await wait_events(world, operator, incident["id"], "notify_failed", 1)
    shown = "HTTP 500: \\x00\\x01\\x1b[31m\\x7f\\x85 gone\\r\\n"
    assert failed["data"]["error"] == shown
    [record] = await notifications(world, operator, incident["id"])
    [attempt] = record["attempts"]
    assert (attempt["status_code"], attempt["error"]) == (500, shown)


async def test_a_gateways_answer_shows_operators_the_leaders_number_masked(
    start: Start, receivers: Callable[..., Awaitable[Receiver]]
) -> None:
    """docs/security.md: a leader's phone is shown in full only to admins. A gateway that
    echoes the number in its refusal would put it in the attempt and in the notify_failed
    event every operator and auditor reads."""
    sms = await receivers((400, {"error": "recipient 13800138000 is not reachable"}))
    world = await start(sms_gateway_url=sms.url, notify_max_attempts=1)
    _, operator, incident = await setup_incident(world)
    world.clock.advance(15)
    [failed] = await wait_events(world, operator, incident["id"], "notify_failed", 1)
    [record] = await notifications(world, operator, incident["id"])
    shown = 'HTTP 400: {"error":"recipient 138****8000 is not reachable"}'
    assert failed["data"]["error"] == shown
    assert record["attempts"][0]["error"] == shown


async def news_until(board: Socket, status: str, channel: str) -> list[dict[str, Any]]:
    """The board's ``notification.updated`` messages up to the one saying ``channel`` ended
    ``status``, checking each against the record as it comes: what it says is on record."""
    heard: list[dict[str, Any]] = []
    while True:
        news = (await board.next_of("notification.updated"))["data"]
        heard.append(news)
        if (news["channel"], news["status"]) == (channel, status):
            return heard


async def test_the_board_is_told_each_outcome_once_it_is_on_record(
    start: Start, receivers: Callable[..., Awaitable[Receiver]]
) -> None:
    """The operators' consoles hear of a notification sent, one that failed after its
    attempts and one stopped by the leader's accept, each once it has committed, with the
    leader's name; his own mailbox carries none of it."""
    webhook = await receivers()
    sms = await receivers((500, {"error": "gateway down"}))
    world = await start(
        webhook_url=webhook.url,
        webhook_secret=WEBHOOK_SECRET,
        sms_gateway_url=sms.url,
        notify_backoff_s=1.0,
        notify_max_attempts=2,
    )
    leader, operator, incident = await setup_incident(world)
    dispatch_id = incident["dispatches"][0]["id"]
    board = await world.connect(operator)

    world.clock.advance(15)
    # Before it, that each channel was begun (pending): no other outcome.
    [sent] = [n for n in await news_until(board, "notified", "webhook") if n["status"] != "pending"]
    # Published after the commit that recorded it: the record says so by the time it comes.
    records = {n["channel"]: n for n in await notifications(world, operator, incident["id"])}
    assert records["webhook"]["status"] == "notified"
    assert records["webhook"]["leader_name"] == leader.name
    assert sent == {
        "notification_id": records["webhook"]["id"],
        "incident_id": incident["id"],
        "dispatch_id": dispatch_id,
        "user_id": leader.id,
        "leader_name": leader.name,
        "channel": "webhook",
        "status": "notified",
        "attempts": 1,
        "at": records["webhook"]["finished_at"],
        "error": None,
        "held": None,
        "held_until": None,
    }
    await attempts_recorded(world, operator, incident["id"], 1, ok=False)
    world.clock.advance(1)
    [failed] = [n for n in await news_until(board, "failed", "sms") if n["status"] != "pending"]
    [record] = [
        n for n in await notifications(world, operator, incident["id"]) if n["channel"] == "sms"
    ]
    assert record["status"] == "failed"
    assert (failed["attempts"], failed["leader_name"]) == (2, leader.name)
    assert "gateway down" in failed["error"]

    # Accepted between two tries: the next one stops it, and the board hears so.
    second = await world.report(operator)
    world.clock.advance(15)
    await news_until(board, "notified", "webhook")
    await attempts_recorded(world, operator, second["id"], 1, ok=False)
    accept = f"/api/v1/dispatches/{second['dispatches'][0]['id']}/accept"
    reply = await world.http.post(accept, headers=leader.headers)
    assert reply.status_code == 200, reply.text
    world.clock.advance(1)
    heard = await news_until(board, "stopped", "sms")
    stopped = heard[-1]
    assert (stopped["incident_id"], stopped["attempts"], stopped["error"]) == (
        second["id"],
        1,
        None,
    )
    [record] = [
        n for n in await notifications(world, operator, second["id"]) if n["channel"] == "sms"
    ]
    assert record["status"] == "stopped"

    # The leader's mailbox holds his alerts and their news, never the board's.
    phone = await world.connect(leader)
    with contextlib.suppress(TimeoutError):
        while True:
            await phone.next(0.5)
    kinds = {m["type"] for m in phone.received}
    assert "alert" in kinds and "notification.updated" not in kinds, kinds


async def test_the_board_hears_at_once_whom_the_phone_did_not_reach_and_how_he_is_sought(
    start: Start, held: HeldReceiver, receivers: Callable[..., Awaitable[Receiver]]
) -> None:
    """At the check, before any gateway has answered, the consoles hear that the leader's
    phone did not acknowledge the alert and over which channels he is being sought; each try
    that failed before the last is told with its count and error. A failing gateway's last
    retry would tell them only after the tier's minute."""
    sms = await receivers((500, {"error": "gateway down"}))
    world = await start(
        webhook_url=held.url,
        webhook_secret=WEBHOOK_SECRET,
        sms_gateway_url=sms.url,
        notify_backoff_s=1.0,
        notify_max_attempts=3,
    )
    leader, operator, incident = await setup_incident(world)
    board = await world.connect(operator)

    world.clock.advance(15)
    begun = [(await board.next_of("notification.updated"))["data"] for _ in range(2)]
    records = {n["channel"]: n for n in await notifications(world, operator, incident["id"])}
    assert [(n["channel"], n["status"], n["attempts"], n["error"]) for n in begun] == [
        ("webhook", "pending", 0, None),
        ("sms", "pending", 0, None),
    ]
    for news in begun:
        assert news["notification_id"] == records[news["channel"]]["id"]
        assert (news["incident_id"], news["dispatch_id"]) == (
            incident["id"],
            incident["dispatches"][0]["id"],
        )
        assert (news["user_id"], news["leader_name"]) == (leader.id, leader.name)

    retrying = (await board.next_of("notification.updated"))["data"]
    assert (retrying["channel"], retrying["status"], retrying["attempts"]) == ("sms", "pending", 1)
    assert "gateway down" in retrying["error"]
    [record] = [
        n for n in await notifications(world, operator, incident["id"]) if n["channel"] == "sms"
    ]
    assert retrying["at"] == record["attempts"][0]["at"]
    # The webhook's receiver has the request and has not answered: nothing was said of it.
    assert len(held.requests) == 1
    held.release.set()
    sent = (await news_until(board, "notified", "webhook"))[-1]
    assert sent["attempts"] == 1
    world.clock.advance(1)
    second = (await board.next_of("notification.updated"))["data"]
    assert (second["channel"], second["status"], second["attempts"]) == ("sms", "pending", 2)
    world.clock.advance(2)
    failed = (await board.next_of("notification.updated"))["data"]
    assert (failed["channel"], failed["status"], failed["attempts"]) == ("sms", "failed", 3)


async def test_a_leader_without_a_phone_number_cannot_be_texted(
    start: Start, receivers: Callable[..., Awaitable[Receiver]]
) -> None:
    sms, wecom = await receivers(), await receivers()
    world = await start(sms_gateway_url=sms.url, wecom_robot_url=wecom.url)
    _, operator, incident = await setup_incident(world, phone=None)
    board = await world.connect(operator)
    world.clock.advance(15)
    untried = (await news_until(board, "failed", "sms"))[-1]
    assert (untried["attempts"], untried["error"]) == (0, "no phone number on file")
    [robot] = await wecom.wait_for(1)
    assert "mentioned_mobile_list" not in robot.json()["text"]
    [failed] = await wait_events(world, operator, incident["id"], "notify_failed", 1)
    assert failed["data"]["channel"] == "sms"
    assert failed["data"]["error"] == "no phone number on file"
    await wait_events(world, operator, incident["id"], "notified", 1)
    assert sms.requests == []


async def test_an_accepted_dispatch_or_a_closed_incident_needs_no_notification(
    start: Start, receivers: Callable[..., Awaitable[Receiver]]
) -> None:
    """Nor does a team on scene whose arrival an operator recorded (by radio: no accept)."""
    webhook = await receivers()
    world = await start(webhook_url=webhook.url, webhook_secret=WEBHOOK_SECRET)
    leader, operator, accepted = await setup_incident(world)
    reply = await world.http.post(
        f"/api/v1/dispatches/{accepted['dispatches'][0]['id']}/accept", headers=leader.headers
    )
    assert reply.status_code == 200
    arrived = await world.report(operator)
    reply = await world.http.post(
        f"/api/v1/dispatches/{arrived['dispatches'][0]['id']}/arrive", headers=operator.headers
    )
    assert reply.status_code == 200
    closed = await world.report(operator)
    reply = await world.http.post(
        f"/api/v1/incidents/{closed['id']}/close", headers=operator.headers
    )
    assert reply.status_code == 200
    world.clock.advance(15)
    for _ in range(250):
        if len(await job_outcomes(world, "notify.check")) == 3:
            break
        await asyncio.sleep(0.02)
    assert sorted(await job_outcomes(world, "notify.check")) == [
        "not needed: the dispatch was accepted",
        "not needed: the incident is closed",
        "not needed: the team arrived",
    ]
    assert webhook.requests == []


@pytest.mark.parametrize("answer", ["accept", "close"])
async def test_retries_stop_once_the_leader_accepts_or_the_incident_closes(
    start: Start, receivers: Callable[..., Awaitable[Receiver]], answer: str
) -> None:
    webhook = await receivers((503, {"error": "busy"}))
    world = await start(
        webhook_url=webhook.url, webhook_secret=WEBHOOK_SECRET, notify_backoff_s=1.0
    )
    leader, operator, incident = await setup_incident(world)
    world.clock.advance(15)
    await webhook.wait_for(1)
    await attempts_recorded(world, operator, incident["id"], 1)
    if answer == "accept":
        url, by = f"/api/v1/dispatches/{incident['dispatches'][0]['id']}/accept", leader
    else:
        url, by = f"/api/v1/incidents/{incident['id']}/close", operator
    reply = await world.http.post(url, headers=by.headers)
    assert reply.status_code == 200, reply.text
    world.clock.advance(1)
    for _ in range(250):
        if any(o.startswith("stopped") for o in await job_outcomes(world, "notify.send")):
            break
        await asyncio.sleep(0.02)
    world.clock.advance(30)
    await timer_caught_up(world)

    assert not [o for o in await job_outcomes(world, "notify.send") if "attempt 2" in o]
    assert len(webhook.requests) == 1, "no retry after the answer"
    reason = "the dispatch was accepted" if answer == "accept" else "the incident is closed"
    assert f"stopped: {reason}" in await job_outcomes(world, "notify.send")
    [record] = await notifications(world, operator, incident["id"])
    assert record["status"] == "stopped"
    assert [a["ok"] for a in record["attempts"]] == [False]
    assert record["finished_at"] is not None
    assert await events_of(world, operator, incident["id"], "notified", "notify_failed") == []


async def test_a_channel_switched_off_by_a_restart_stops_its_notification_tried_once(
    settings: Settings, clock: ManualClock, receivers: Callable[..., Awaitable[Receiver]]
) -> None:
    """The webhook fails once, and the server restarts without it: its retry is not counted
    as an attempt it never makes, until "no success after 5 attempts" for one tried once."""
    webhook, wecom = await receivers((503, {"error": "busy"})), await receivers()
    with_webhook = {"webhook_url": webhook.url, "webhook_secret": WEBHOOK_SECRET}
    first = RunningServer(Settings(**(settings.model_dump() | with_webhook)), clock)
    await first.start()
    world = World(first.app, f"http://127.0.0.1:{first.port}", clock)
    _, operator, incident = await setup_incident(world)
    clock.advance(15)
    await webhook.wait_for(1)
    await attempts_recorded(world, operator, incident["id"], 1)
    await world.close()
    await first.stop()

    without = Settings(**(settings.model_dump() | {"wecom_robot_url": wecom.url}))
    second = RunningServer(without, clock)
    await second.start()
    world = World(second.app, f"http://127.0.0.1:{second.port}", clock)
    try:
        clock.advance(2)
        for _ in range(250):
            if any(o.startswith("stopped") for o in await job_outcomes(world, "notify.send")):
                break
            await asyncio.sleep(0.02)
        clock.advance(600)
        await timer_caught_up(world)
        [record] = await notifications(world, operator, incident["id"])
        assert record["status"] == "stopped"
        assert record["finished_at"] is not None
        assert [a["ok"] for a in record["attempts"]] == [False]
        assert "stopped: webhook is no longer configured" in await job_outcomes(
            world, "notify.send"
        )
        assert await events_of(world, operator, incident["id"], "notify_failed") == []
        assert wecom.requests == [] and len(webhook.requests) == 1
    finally:
        await world.close()
        await second.stop()


async def test_a_leader_disabled_before_the_check_is_not_notified(
    start: Start, receivers: Callable[..., Awaitable[Receiver]]
) -> None:
    webhook = await receivers()
    world = await start(webhook_url=webhook.url, webhook_secret=WEBHOOK_SECRET)
    leader, _, _ = await setup_incident(world)
    await disable(world, leader)
    world.clock.advance(15)
    for _ in range(250):
        if await job_outcomes(world, "notify.check"):
            break
        await asyncio.sleep(0.02)
    assert await job_outcomes(world, "notify.check") == [
        "not needed: no longer an enabled leader of the team"
    ]
    await timer_caught_up(world)
    assert await job_outcomes(world, "notify.send") == []
    assert webhook.requests == []


async def test_retries_stop_once_the_leader_is_disabled(
    start: Start, receivers: Callable[..., Awaitable[Receiver]]
) -> None:
    """A dismissed guard's account is disabled: his phone is no longer texted about the
    team's alerts."""
    sms = await receivers((503, {"error": "busy"}))
    world = await start(sms_gateway_url=sms.url, notify_backoff_s=1.0)
    leader, operator, incident = await setup_incident(world)
    world.clock.advance(15)
    await sms.wait_for(1)
    await attempts_recorded(world, operator, incident["id"], 1)
    await disable(world, leader)
    world.clock.advance(1)
    for _ in range(250):
        if any(o.startswith("stopped") for o in await job_outcomes(world, "notify.send")):
            break
        await asyncio.sleep(0.02)
    world.clock.advance(60)
    await timer_caught_up(world)
    assert not [o for o in await job_outcomes(world, "notify.send") if "attempt 2" in o]
    assert len(sms.requests) == 1, "the disabled leader was texted again"
    assert "stopped: no longer an enabled leader of the team" in await job_outcomes(
        world, "notify.send"
    )
    [record] = await notifications(world, operator, incident["id"])
    assert record["status"] == "stopped"
    assert await events_of(world, operator, incident["id"], "notified", "notify_failed") == []


async def disable(world: World, user: Account) -> None:
    admin = await world.admin()
    reply = await world.http.patch(
        f"/api/v1/users/{user.id}", json={"disabled": True}, headers=admin.headers
    )
    assert reply.status_code == 200, reply.text


async def test_setting_a_phone_number_is_validated_and_for_leaders_only(start: Start) -> None:
    world = await start()
    team = await world.team("fixed_post")
    leader = await world.leader(team)
    operator = await world.operator()
    admin = await world.admin()
    url = f"/api/v1/users/{leader.id}/phone"
    bad = await world.http.put(url, json={"phone": "call me"}, headers=admin.headers)
    assert bad.status_code == 422
    assert bad.json()["fields"][0]["field"] == "phone"
    refused = await world.http.put(
        f"/api/v1/users/{operator.id}/phone", json={"phone": PHONE}, headers=admin.headers
    )
    assert refused.status_code == 422
    assert refused.json()["field"] == "phone"
    forbidden = await world.http.put(url, json={"phone": PHONE}, headers=operator.headers)
    assert forbidden.status_code == 403
    ok = await world.http.put(url, json={"phone": "+8613800138000"}, headers=admin.headers)
    assert ok.json() == {"user_id": leader.id, "phone": "+8613800138000"}
    cleared = await world.http.put(url, json={"phone": None}, headers=admin.headers)
    assert cleared.json()["phone"] is None


async def test_notifier_logs_name_the_incident_and_never_the_phone_number(
    start: Start, receivers: Callable[..., Awaitable[Receiver]]
) -> None:
    stream = io.StringIO()
    handler = logs.handler(stream)
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        webhook = await receivers((500, {}), (200, {}))
        world = await start(
            webhook_url=webhook.url, webhook_secret=WEBHOOK_SECRET, notify_backoff_s=1.0
        )
        _, operator, incident = await setup_incident(world)
        world.clock.advance(15)
        await webhook.wait_for(1)
        await attempts_recorded(world, operator, incident["id"], 1)
        world.clock.advance(1)
        await wait_events(world, operator, incident["id"], "notified", 1)
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    about = [
        line
        for line in lines
        if line["logger"].startswith("dispatch.notifiers") and "notifiers on" not in line["message"]
    ]
    assert len(about) >= 3, about  # not acknowledged, attempt 1 failed, attempt 2 notified
    for line in about:
        assert line["incident_id"] == incident["id"]
        assert {"time", "level", "message"} <= set(line)
    assert any("138****8000" in line["message"] for line in about)
    assert PHONE not in stream.getvalue()


async def test_a_team_added_by_hand_whose_leader_does_not_acknowledge_is_texted(
    start: Start, receivers: Callable[..., Awaitable[Receiver]]
) -> None:
    """加派: the alert of a team an operator added is watched as any other alert."""
    sms = await receivers()
    world = await start(
        sms_gateway_url=sms.url, sms_gateway_username="town", sms_gateway_password="pw"
    )
    await world.team("fixed_post")
    far = await world.team("patrol", 114.2, 22.9, radius_m=1000, name="三号巡逻车")
    leader, operator, incident = await setup_incident(world, team=far)
    assert far["id"] not in {d["team_id"] for d in incident["dispatches"]}
    reply = await world.http.post(
        f"/api/v1/incidents/{incident['id']}/dispatches",
        json={"team_id": far["id"]},
        headers=operator.headers,
    )
    assert reply.status_code == 201, reply.text
    added = next(d for d in reply.json()["dispatches"] if d["team_id"] == far["id"])

    world.clock.advance(15)
    [text] = await sms.wait_for(1)
    assert text.json()["to"] == PHONE
    assert "三号巡逻车" in text.json()["text"]
    [notified] = await wait_events(world, operator, incident["id"], "notified", 1)
    assert notified["data"]["dispatch_id"] == added["id"]
    assert notified["data"]["user_id"] == leader.id
