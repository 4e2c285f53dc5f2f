"""Reachability: is a team's leader connected now (on any server process), when was he last
seen, and does a test alert make the round trip to his phone."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from alerts.hub import Hub
from dispatch.auth.models import User
from dispatch.db import dialect_name
from dispatch.reachability import service
from dispatch.reachability.models import Presence, PresenceBeat
from dispatch.reachability.routes import REACHABILITY_PAGE, REACHABILITY_PAGE_MAX, TEST_ALERTS
from tests.conftest import RunningServer, clock_start, free_port
from tests.pages.test_console_city import city_teams
from tests.support import Account, World, statements_sent


async def reachability(world: World, by: Account, team_id: str) -> dict[str, Any]:
    reply = await world.http.get(f"/api/v1/teams/{team_id}/reachability", headers=by.headers)
    assert reply.status_code == 200, reply.text
    found: dict[str, Any] = reply.json()
    return found


async def until(
    world: World, by: Account, team_id: str, holds: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    for _ in range(300):
        view = await reachability(world, by, team_id)
        if holds(view):
            return view
        await asyncio.sleep(0.02)
    raise AssertionError(f"never held: {view}")


async def test_a_connected_leader_is_reachable_and_a_gone_one_shows_when_last_seen(
    world: World,
) -> None:
    team = await world.team("fixed_post")
    leader = await world.leader(team)
    operator = await world.operator()
    never = await reachability(world, operator, team["id"])
    assert never["reachable"] is False
    assert never["leaders"] == [
        {
            "user_id": leader.id,
            "name": leader.name,
            "connected": False,
            "last_seen_at": None,
            "phone_on_file": False,
            "last_test": None,
        }
    ]

    phone = await world.connect(leader)
    live = await reachability(world, operator, team["id"])
    assert live["reachable"] is True
    assert live["leaders"][0]["connected"] is True
    assert datetime.fromisoformat(live["leaders"][0]["last_seen_at"]) == world.clock.now()

    world.clock.advance(5)
    left_at = world.clock.now()
    await phone.close()
    gone = await until(world, operator, team["id"], lambda v: not v["reachable"])
    world.clock.advance(600)
    later = await reachability(world, operator, team["id"])
    assert later == gone
    assert later["leaders"][0]["connected"] is False
    assert datetime.fromisoformat(later["leaders"][0]["last_seen_at"]) == left_at

    everyone = await world.http.get("/api/v1/reachability", headers=operator.headers)
    assert [t["team_id"] for t in everyone.json()] == [team["id"]]
    refused = await world.http.get("/api/v1/reachability", headers=leader.headers)
    assert refused.status_code == 403


async def every_page(world: World, by: Account, limit: int) -> list[dict[str, Any]]:
    """GET /api/v1/reachability a page at a time, as its readers read it, to the last one."""
    found: list[dict[str, Any]] = []
    while True:
        reply = await world.http.get(
            "/api/v1/reachability",
            params={"limit": limit, "offset": len(found)},
            headers=by.headers,
        )
        assert reply.status_code == 200, reply.text
        page: list[dict[str, Any]] = reply.json()
        assert len(page) <= limit
        found += page
        if len(page) < limit:
            return found


async def test_a_citys_reachability_is_listed_a_page_at_a_time(world: World) -> None:
    """Every team of a city in one answer was megabytes, built while the loop served nothing
    else: the list comes a page at a time, in the teams' order, each page's leaders its own."""
    made = [await world.team("fixed_post", name=f"驻点队{i}") for i in range(5)]
    leaders = {team["id"]: await world.leader(team) for team in made[:3]}
    operator = await world.operator()
    phone = await world.connect(leaders[made[1]["id"]])
    teams = await world.http.get("/api/v1/teams", headers=operator.headers)
    order = [t["id"] for t in teams.json()]

    pages = [
        (
            await world.http.get(
                "/api/v1/reachability",
                params={"limit": 2, "offset": offset},
                headers=operator.headers,
            )
        ).json()
        for offset in (0, 2, 4, 6)
    ]
    assert [len(page) for page in pages] == [2, 2, 1, 0]
    listed = [view for page in pages for view in page]
    assert [view["team_id"] for view in listed] == order
    for view in listed:
        leader = leaders.get(view["team_id"])
        assert [p["user_id"] for p in view["leaders"]] == ([leader.id] if leader else [])
        assert view["reachable"] is (view["team_id"] == made[1]["id"])
    assert await every_page(world, operator, 2) == listed
    assert await every_page(world, operator, 1000) == listed
    await phone.close()


async def test_reachability_pages_after_a_cursor_skip_no_team_retired_between_them(
    world: World,
) -> None:
    """Read by offset, two teams retired between pages moved the rest back past the next
    page's start: a team's reachability was never shown. after=<id of the page's last team>
    starts the next page after it, whatever became of it."""
    admin = await world.admin()
    operator = await world.operator()
    for i in range(10):
        await world.team("fixed_post", name=f"驻点队{i}")
    teams = await world.http.get("/api/v1/teams", headers=operator.headers)
    order = [t["id"] for t in teams.json()]
    found: list[str] = []
    params: dict[str, Any] = {"limit": 3}
    while True:
        reply = await world.http.get(
            "/api/v1/reachability", params=params, headers=operator.headers
        )
        assert reply.status_code == 200, reply.text
        page = [view["team_id"] for view in reply.json()]
        found += page
        if len(page) < 3:
            break
        for team_id in (page[0], page[-1]):
            gone = await world.http.delete(f"/api/v1/teams/{team_id}", headers=admin.headers)
            assert gone.status_code == 204, gone.text
        params["after"] = page[-1]
    assert found == order


async def test_reachability_pages_out_of_bounds_are_named(world: World) -> None:
    operator = await world.operator()
    for params, field in (
        ({"limit": REACHABILITY_PAGE_MAX + 1}, "limit"),
        ({"limit": 0}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"offset": -1}, "offset"),
        ({"offset": 1_000_001}, "offset"),
        ({"offset": "1.5"}, "offset"),
    ):
        reply = await world.http.get(
            "/api/v1/reachability", params=params, headers=operator.headers
        )
        assert reply.status_code == 422, (params, reply.text)
        assert [f["field"] for f in reply.json()["fields"]] == [field], reply.text


async def test_without_a_limit_reachability_is_one_bounded_page(world: World) -> None:
    """A reader that asks without a limit gets the first REACHABILITY_PAGE teams, never the
    whole city at once; it reads on with offset while a page comes full."""
    operator = await world.operator()
    await city_teams(world, REACHABILITY_PAGE + 1)
    first = await world.http.get("/api/v1/reachability", headers=operator.headers)
    assert first.status_code == 200
    assert len(first.json()) == REACHABILITY_PAGE
    everyone = await every_page(world, operator, REACHABILITY_PAGE)
    assert len({view["team_id"] for view in everyone}) == REACHABILITY_PAGE + 1
    assert everyone[:REACHABILITY_PAGE] == first.json()


async def test_a_test_alert_round_trip_is_recorded(world: World) -> None:
    team = await world.team("fixed_post")
    leader = await world.leader(team)
    operator = await world.operator()
    phone = await world.connect(leader)

    reply = await world.http.post(
        f"/api/v1/teams/{team['id']}/test-alert", headers=operator.headers
    )
    assert reply.status_code == 202, reply.text
    [sent] = reply.json()["sent"]
    assert sent["user_id"] == leader.id
    assert sent["acked_at"] is None
    message = await phone.next_of("test_alert")
    assert message["data"]["test_alert_id"] == sent["id"]
    assert message["data"]["team_name"] == team["name"]

    world.clock.advance(0.4)
    await phone.ack(message["seq"])
    url = f"/api/v1/teams/{team['id']}/test-alerts/{sent['id']}"
    for _ in range(250):
        test = (await world.http.get(url, headers=operator.headers)).json()
        if test["acked_at"] is not None:
            break
        await asyncio.sleep(0.02)
    assert test["round_trip_ms"] == 400
    assert datetime.fromisoformat(test["acked_at"]) - datetime.fromisoformat(
        test["sent_at"]
    ) == timedelta(milliseconds=400)
    view = await reachability(world, operator, team["id"])
    assert view["leaders"][0]["last_test"] == test
    metrics = (await world.http.get("/metrics")).text
    assert "dispatch_test_alerts_total 1.0" in metrics
    assert "dispatch_test_alert_round_trip_seconds_count 1.0" in metrics
    await phone.close()


async def test_a_test_alert_to_an_offline_leader_waits_for_his_phone(world: World) -> None:
    team = await world.team("fixed_post")
    leader = await world.leader(team)
    operator = await world.operator()
    reply = await world.http.post(
        f"/api/v1/teams/{team['id']}/test-alert", headers=operator.headers
    )
    [sent] = reply.json()["sent"]
    world.clock.advance(90)
    view = await reachability(world, operator, team["id"])
    assert view["leaders"][0]["last_test"]["acked_at"] is None
    phone = await world.connect(leader)
    message = await phone.next_of("test_alert")
    await phone.ack(message["seq"])
    url = f"/api/v1/teams/{team['id']}/test-alerts/{sent['id']}"
    for _ in range(250):
        test = (await world.http.get(url, headers=operator.headers)).json()
        if test["acked_at"] is not None:
            break
        await asyncio.sleep(0.02)
    # An unreachable leader shows as a long round trip, not as a lost test.
    assert test["round_trip_ms"] == 90_000
    await phone.close()


async def test_one_operator_cannot_send_test_alerts_at_machine_speed(world: World) -> None:
    team = await world.team("fixed_post")
    await world.leader(team)
    operator, colleague = await world.operator(), await world.operator()
    url = f"/api/v1/teams/{team['id']}/test-alert"
    burst = TEST_ALERTS.burst
    for _ in range(burst):
        assert (await world.http.post(url, headers=operator.headers)).status_code == 202
    refused = await world.http.post(url, headers=operator.headers)
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"] == "rate_limited"
    assert refused.headers["retry-after"] == str(round(60 / TEST_ALERTS.per_minute))
    # The refused one wrote nothing; a colleague's bucket is his own.
    metrics = (await world.http.get("/metrics")).text
    assert f"dispatch_test_alerts_total {burst}.0" in metrics
    assert (await world.http.post(url, headers=colleague.headers)).status_code == 202
    world.clock.advance(60 / TEST_ALERTS.per_minute)
    assert (await world.http.post(url, headers=operator.headers)).status_code == 202


async def test_test_alerts_need_an_operator_and_a_team_with_a_leader(world: World) -> None:
    team = await world.team("fixed_post")
    operator = await world.operator()
    url = f"/api/v1/teams/{team['id']}/test-alert"
    no_leader = await world.http.post(url, headers=operator.headers)
    assert no_leader.status_code == 409
    assert no_leader.json()["field"] == "team_id"
    leader = await world.leader(team)
    by_leader = await world.http.post(url, headers=leader.headers)
    assert by_leader.status_code == 403
    missing = await world.http.post("/api/v1/teams/nope/test-alert", headers=operator.headers)
    assert missing.status_code == 404
    unknown = await world.http.get(
        f"/api/v1/teams/{team['id']}/test-alerts/nope", headers=operator.headers
    )
    assert unknown.status_code == 404 and unknown.json()["field"] == "test_alert_id"


async def test_a_test_alert_of_an_unknown_team_names_the_team(world: World) -> None:
    team = await world.team("fixed_post")
    await world.leader(team)
    operator = await world.operator()
    sent = await world.http.post(f"/api/v1/teams/{team['id']}/test-alert", headers=operator.headers)
    test_id = sent.json()["sent"][0]["id"]
    for test in (test_id, "nope"):
        reply = await world.http.get(
            f"/api/v1/teams/nope/test-alerts/{test}", headers=operator.headers
        )
        assert reply.status_code == 404
        assert reply.json()["field"] == "team_id", reply.text
    # A retired team's test alerts are read still, as they were.
    admin = await world.admin()
    assert (
        await world.http.delete(f"/api/v1/teams/{team['id']}", headers=admin.headers)
    ).is_success
    reply = await world.http.get(
        f"/api/v1/teams/{team['id']}/test-alerts/{test_id}", headers=operator.headers
    )
    assert reply.status_code == 200, reply.text


async def test_a_leader_connected_to_another_server_process_is_reachable(
    server: RunningServer, world: World
) -> None:
    team = await world.team("fixed_post")
    leader = await world.leader(team)
    operator = await world.operator()
    other = RunningServer(server.settings, server.clock)
    await other.start()
    try:
        elsewhere = World(other.app, f"http://127.0.0.1:{other.port}", server.clock)
        phone = await elsewhere.connect(leader)
        seen = await until(world, operator, team["id"], lambda v: v["reachable"])
        assert seen["leaders"][0]["connected"] is True
        await phone.close()
        await until(world, operator, team["id"], lambda v: not v["reachable"])

        await elsewhere.close()
    finally:
        await other.stop()


async def test_a_process_whose_first_presence_write_failed_still_shows_its_leaders(
    server: RunningServer, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process starting while the database is away a moment (locked, restarting, out of
    connections as several workers start) writes its sockets' presence once it is back:
    otherwise the leaders connected to it show as unreachable everywhere while it runs."""
    team = await world.team("fixed_post")
    leader = await world.leader(team)
    operator = await world.operator()
    forget_before = service.forget_before
    failed: list[str] = []

    async def database_away_once(session: AsyncSession, cutoff: datetime) -> None:
        if not failed:
            failed.append("database is locked")
            raise OperationalError("DELETE FROM presence", {}, Exception("database is locked"))
        await forget_before(session, cutoff)

    monkeypatch.setattr(service, "forget_before", database_away_once)
    other = RunningServer(server.settings, server.clock)
    await other.start()
    try:
        for _ in range(100):
            if failed:
                break
            await asyncio.sleep(0.02)
        assert failed, "the other process's first presence write met the outage"
        elsewhere = World(other.app, f"http://127.0.0.1:{other.port}", server.clock)
        phone = await elsewhere.connect(leader)
        seen = await until(world, operator, team["id"], lambda v: v["reachable"])
        assert seen["leaders"][0]["connected"] is True
        await phone.close()
        await elsewhere.close()
    finally:
        await other.stop()
    assert len(failed) == 1


@asynccontextmanager
async def a_worker_process(
    server: RunningServer,
) -> AsyncIterator[tuple[subprocess.Popen[bytes], str]]:
    """Another server process on the test server's database, as a worker of a real deployment
    (its own heartbeat, on the host's clock; on PostgreSQL its own lock), and its URL; killed
    at the end if it still runs."""
    port = free_port()
    env = {
        **os.environ,
        "DISPATCH_DATABASE_URL": server.settings.database_url,
        "DISPATCH_SECRET_KEY": str(server.settings.secret_key),
        "DISPATCH_LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "dispatch", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base) as client:
            for _ in range(300):
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/readyz")).status_code == 200:
                        break
                assert process.poll() is None
                await asyncio.sleep(0.05)
        yield process, base
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


async def last_alive_on_record(world: World, leader: Account) -> tuple[datetime, datetime]:
    """The last heartbeat of the process the leader's socket was open on, and its opening."""
    async with world.runtime.sessionmaker() as session:
        beat = await session.scalar(
            select(func.max(PresenceBeat.seen_at))
            .join(Presence, Presence.instance == PresenceBeat.instance)
            .where(Presence.user_id == leader.id)
        )
        opened = await session.scalar(
            select(func.max(Presence.seen_at)).where(Presence.user_id == leader.id)
        )
    assert beat is not None and opened is not None
    return beat, opened


@asynccontextmanager
async def a_leader_on_a_killed_worker(
    server: RunningServer, world: World
) -> AsyncIterator[tuple[Account, dict[str, Any], Account]]:
    """A team's leader connected to a worker process, seen reachable, then the worker killed
    (``kill -9``) under his socket: the operator, the team and the leader."""
    team = await world.team("fixed_post")
    leader = await world.leader(team)
    operator = await world.operator()
    async with a_worker_process(server) as (process, base):
        elsewhere = World(server.app, base, world.clock)
        phone = await elsewhere.connect(leader)
        await until(world, operator, team["id"], lambda v: v["reachable"])
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        with contextlib.suppress(Exception):
            await phone.close()
        yield operator, team, leader
        await elsewhere.close()


async def test_a_leader_on_a_killed_process_stops_counting_after_three_heartbeats(
    server: RunningServer, world: World
) -> None:
    """On SQLite, a process killed says nothing: its leaders count until three heartbeats are
    missed. (On PostgreSQL its lock says it at once: the test below.)"""
    if clock_start() is not None:
        pytest.skip("the second process beats on the host's time, not the test clock's start")
    if not server.settings.is_sqlite:
        pytest.skip("on PostgreSQL a killed process is known dead by its lock, at once")
    async with a_leader_on_a_killed_worker(server, world) as (operator, team, leader):
        # No process said goodbye: the row stays fresh until three heartbeats are missed,
        # counted from its last heartbeat (written with that process's own clock).
        beat, opened = await last_alive_on_record(world, leader)
        stale_at = max(beat, opened) + timedelta(seconds=3 * server.settings.presence_heartbeat_s)
        world.clock.advance((stale_at - world.clock.now()).total_seconds() - 1)
        assert (await reachability(world, operator, team["id"]))["reachable"] is True
        world.clock.advance(2)
        gone = await reachability(world, operator, team["id"])
        assert gone["reachable"] is False
        assert gone["leaders"][0]["last_seen_at"] is not None


async def test_a_leader_on_a_process_killed_on_postgresql_is_not_connected_at_once(
    server: RunningServer, world: World
) -> None:
    """kill -9 of a worker (the OOM killer does the same): its leaders' sockets are gone with
    it, and the operators read so at once, not once three heartbeats are missed (30 s, when its
    leaders looked connected though nothing could reach them). PostgreSQL frees the process's
    lock as the kernel closes its connection; its leaders are last seen at its last beat."""
    if clock_start() is not None:
        pytest.skip("the second process beats on the host's time, not the test clock's start")
    if server.settings.is_sqlite:
        pytest.skip("SQLite serves from one process: the test above")
    async with a_leader_on_a_killed_worker(server, world) as (operator, team, leader):
        # The test's clock stands still: by the heartbeat alone the leader would stay
        # connected for good.
        beat, opened = await last_alive_on_record(world, leader)
        stale_at = max(beat, opened) + timedelta(seconds=3 * server.settings.presence_heartbeat_s)
        assert world.clock.now() < stale_at
        gone = await until(world, operator, team["id"], lambda v: not v["reachable"])
        assert world.clock.now() < stale_at
        assert gone["leaders"][0]["connected"] is False
        assert datetime.fromisoformat(gone["leaders"][0]["last_seen_at"]) == max(beat, opened)
        # The whole list says the same.
        listed = await world.http.get("/api/v1/reachability", headers=operator.headers)
        assert [t["reachable"] for t in listed.json() if t["team_id"] == team["id"]] == [False]


async def test_presence_looks_only_at_who_came_or_went_since_its_last_look() -> None:
    # Twice a second the presence rows are brought up to date; with thousands of idle sockets
    # connected, comparing every one of them each time cost more than the changes.
    hub = Hub(clock=lambda: datetime(2026, 11, 29, 8, 0, tzinfo=UTC))
    first, second = hub.subscribe("leader-1"), hub.subscribe("leader-2")
    assert hub.take_changed() == {"leader-1", "leader-2"}
    assert hub.take_changed() == set()
    hub.unsubscribe(first)
    again = hub.subscribe("leader-2")
    assert hub.take_changed() == {"leader-1", "leader-2"}
    # A look that could not be recorded hands its users back to the next one.
    hub.mark_changed({"leader-1"})
    hub.unsubscribe(again)
    assert hub.take_changed() == {"leader-1", "leader-2"}
    assert hub.connected_users() == {"leader-2"} and second.user_id == "leader-2"


async def presence_elsewhere(
    world: World, users: list[str], now: datetime, *, alive: Sequence[str] = ("elsewhere",)
) -> dict[str, Any]:
    """What other processes' rows say of ``users``, with no socket of this process's own; on
    PostgreSQL the processes ``alive`` hold their locks meanwhile (those of the others are
    free: killed)."""
    async with world.runtime.transaction(read=True) as session:
        await hold_locks(session, alive)
        return await service.presence_of(
            session, users, now=now, stale_after_s=30, local=set(), local_seen={}
        )


async def hold_locks(session: AsyncSession, instances: Sequence[str]) -> None:
    """On PostgreSQL, hold the locks of the processes ``instances`` until the transaction ends,
    as they would while running."""
    if dialect_name(session) != "postgresql":
        return
    for instance in instances:
        key = service.instance_lock_key(instance)
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


async def test_on_postgresql_a_process_whose_lock_is_free_has_no_leader_connected(
    world: World,
) -> None:
    """A process killed leaves its rows open and its heartbeat fresh for three beats; on
    PostgreSQL its lock is free at once, and its leaders are not connected, last seen at its
    last beat, read with one look at pg_locks however many processes there are. This process's
    own rows need no lock (its listener may be reconnecting). SQLite goes by the heartbeat."""
    leaders = [(await world.leader(await world.team())).id for _ in range(5)]
    instances = ["live-1", "live-2", "killed-1", "killed-2", "here"]
    beat = world.clock.now()
    opened = beat - timedelta(seconds=5)
    async with world.runtime.transaction() as session:
        for leader, instance in zip(leaders, instances, strict=True):
            changes = [service.Change(leader, True, opened)]
            await service.record_presence(session, instance, changes)
            await service.heartbeat(session, instance, beat)
    now = beat + timedelta(seconds=1)
    with statements_sent(world.runtime) as sent:
        async with world.runtime.transaction(read=True) as session:
            await hold_locks(session, ["live-1", "live-2"])
            seen = await service.presence_of(
                session,
                leaders,
                now=now,
                stale_after_s=30,
                local=set(),
                local_seen={},
                instance="here",
            )
    shown = [(seen[u].connected, seen[u].last_seen_at) for u in leaders]
    if world.runtime.settings.is_sqlite:
        assert shown == [(True, now)] * 5
        assert [s for s in sent if "pg_locks" in s] == []
        return
    assert shown == [(True, now), (True, now), (False, beat), (False, beat), (True, now)]
    assert len([s for s in sent if "pg_locks" in s]) == 1
    # Nobody connected elsewhere: no look at all.
    with statements_sent(world.runtime) as sent:
        async with world.runtime.transaction(read=True) as session:
            await service.presence_of(
                session,
                leaders[4:],
                now=now,
                stale_after_s=30,
                local=set(),
                local_seen={},
                instance="here",
            )
    assert [s for s in sent if "pg_locks" in s] == []


async def test_a_heartbeat_is_one_row_a_process_and_keeps_all_its_open_sockets_live(
    world: World,
) -> None:
    users = [(await world.leader(await world.team())).id for _ in range(3)]
    opened = world.clock.now()
    beat = opened + timedelta(seconds=25)
    async with world.runtime.transaction() as session:
        changes = [service.Change(u, True, opened) for u in users]
        await service.record_presence(session, "elsewhere", changes)
    with statements_sent(world.runtime) as sent:
        async with world.runtime.transaction() as session:
            await service.heartbeat(session, "elsewhere", beat)
    assert [s for s in sent if "presence" in s] == [
        s for s in sent if s.startswith("INSERT INTO presence_beats")
    ]
    async with world.runtime.transaction(read=True) as session:
        rows = await session.execute(
            select(Presence.user_id, Presence.seen_at).where(Presence.instance == "elsewhere")
        )
        assert set(rows) == {(u, opened) for u in users}

    # Live until three beats (30 s) after the last one, then last seen at that beat.
    live = await presence_elsewhere(world, users, beat + timedelta(seconds=29))
    assert all(s.connected for s in live.values())
    gone = await presence_elsewhere(world, users, beat + timedelta(seconds=31))
    assert {(s.connected, s.last_seen_at) for s in gone.values()} == {(False, beat)}


async def test_a_socket_opened_after_the_last_beat_counts_from_its_opening(world: World) -> None:
    leader = (await world.leader(await world.team())).id
    beat = world.clock.now()
    opened = beat + timedelta(seconds=8)
    async with world.runtime.transaction() as session:
        await service.heartbeat(session, "elsewhere", beat)
        await service.record_presence(session, "elsewhere", [service.Change(leader, True, opened)])
    live = await presence_elsewhere(world, [leader], opened + timedelta(seconds=29))
    assert live[leader].connected
    gone = await presence_elsewhere(world, [leader], opened + timedelta(seconds=31))
    assert (gone[leader].connected, gone[leader].last_seen_at) == (False, opened)


async def test_presence_forgets_closed_and_dead_sockets_but_not_one_long_open(
    world: World,
) -> None:
    closed, open_long, on_dead = [(await world.leader(await world.team())).id for _ in range(3)]
    old = world.clock.now() - timedelta(days=40)
    cutoff = world.clock.now() - timedelta(days=30)
    async with world.runtime.transaction() as session:
        changes = [service.Change(closed, False, old), service.Change(open_long, True, old)]
        await service.record_presence(session, "live", changes)
        await service.record_presence(session, "dead", [service.Change(on_dead, True, old)])
        await service.heartbeat(session, "live", world.clock.now())
        await service.heartbeat(session, "dead", old)
    async with world.runtime.transaction() as session:
        await service.forget_before(session, cutoff)
    async with world.runtime.transaction(read=True) as session:
        rows = await session.execute(
            select(Presence.user_id, Presence.instance).where(
                Presence.user_id.in_([closed, open_long, on_dead])
            )
        )
        assert set(rows) == {(open_long, "live")}
        beats = await session.scalars(
            select(PresenceBeat.instance).where(PresenceBeat.instance.in_(["live", "dead"]))
        )
        assert set(beats) == {"live"}


async def test_a_town_reconnecting_at_once_is_written_in_one_statement(world: World) -> None:
    # After a restart every phone of the town reconnects within seconds; one statement a
    # socket kept the presence rows seconds behind.
    now = world.clock.now()
    users = [f"phone-{n:04d}" for n in range(1001)]
    async with world.runtime.transaction() as session:
        session.add_all(
            User(id=u, name=u, password_hash="-", role="leader", disabled=False, created_at=now)
            for u in users
        )
    with statements_sent(world.runtime) as sent:
        async with world.runtime.transaction() as session:
            changes = [service.Change(u, True, now) for u in users]
            await service.record_presence(session, "elsewhere", changes)
    assert len([s for s in sent if s.startswith("INSERT INTO presence (")]) == 1
    live = await presence_elsewhere(world, users, now)
    assert all(s.connected for s in live.values())
    # Closing keeps when each socket opened; reopening moves it.
    later = now + timedelta(seconds=5)
    async with world.runtime.transaction() as session:
        changes = [service.Change(users[0], False, later), service.Change(users[1], True, later)]
        await service.record_presence(session, "elsewhere", changes)
    async with world.runtime.transaction(read=True) as session:
        rows = await session.execute(
            select(Presence.user_id, Presence.connected, Presence.since, Presence.seen_at).where(
                Presence.user_id.in_(users[:2])
            )
        )
        assert set(rows) == {
            (users[0], False, now, later),
            (users[1], True, later, later),
        }


async def test_leaders_who_came_and_went_are_forgotten_here_and_still_shown_when_last_seen(
    world: World,
) -> None:
    """A server runs for months while a town's leaders come and go. Once a leader's last socket
    here has closed and his presence row says so, the process keeps nothing of him (it kept
    when it last saw every leader ever connected), and the console still shows when he was
    last seen, from the row; a leader connected all along is kept, and shown connected."""
    team = await world.team("fixed_post")
    operator = await world.operator()
    hub = world.runtime.hub
    tracker = world.app.state.presence
    staying = await world.leader(team)
    kept = await world.connect(staying)
    await eventually(lambda: staying.id in tracker.written)
    before = set(hub.last_seen), set(tracker.written)

    left_at: dict[str, datetime] = {}
    for _ in range(5):
        leader = await world.leader(team)
        phone = await world.connect(leader)
        world.clock.advance(1)
        await phone.close()
        await eventually(partial(lambda user: not hub.is_connected(user), leader.id))
        left_at[leader.id] = world.clock.now()
        world.clock.advance(1)
    await eventually(lambda: (set(hub.last_seen), set(tracker.written)) == before)
    assert (set(hub.last_seen), set(tracker.written)) == before

    view = await reachability(world, operator, team["id"])
    shown = {
        p["user_id"]: (p["connected"], datetime.fromisoformat(p["last_seen_at"]))
        for p in view["leaders"]
    }
    assert shown.pop(staying.id) == (True, world.clock.now())
    assert shown == {u: (False, at) for u, at in left_at.items()}
    await kept.close()


async def eventually(holds: Callable[[], bool]) -> None:
    """Wait for ``holds`` (the presence task looks twice a second); give up after 6 s."""
    for _ in range(300):
        if holds():
            return
        await asyncio.sleep(0.02)
