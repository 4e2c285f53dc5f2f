"""A duty change made through one process is honoured by the next report of another, as team
changes are (docs/api.md, teams: "Team changes reach ... every server process at once"),
whether or not that process has heard the announcement: its duty book is set aside while its
listener is down, and reloaded once the listener is (back) up, its first connection too."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

from dispatch.clock import ManualClock
from dispatch.config import Settings
from dispatch.schemas import DISPLAY_TZ
from tests.conftest import RunningServer, clock_start, server_settings, two_servers_on
from tests.support import QINGXI, World


def hours_excluding_now(world: World) -> dict[str, Any]:
    """Duty hours that begin two hours from now and last one: now is off hours."""
    local = world.clock.now().astimezone(DISPLAY_TZ)
    start, end = local + timedelta(hours=2), local + timedelta(hours=3)
    return {
        "start": start.strftime("%H:%M"),
        "end": end.strftime("%H:%M"),
        "rotation_start": "2026-01-05",
        "units": [],
    }


async def until(predicate: Callable[[], bool]) -> None:
    for _ in range(300):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("never held")


async def test_a_mobile_team_made_a_fixed_post_is_alerted_by_a_process_that_did_not_hear_it(
    postgres_only: str,
) -> None:
    """A mobile team's kind change removes its duty schedule in the same change: the other
    process, its listener down, judged the team by the schedule that was gone and skipped it."""
    async with two_servers_on(server_settings(postgres_only)) as (a, b):
        admin = await a.admin()
        operator = await a.operator()
        team = await a.team("mobile")
        reply = await a.http.put(
            f"/api/v1/rosters/duty/{team['id']}", json=hours_excluding_now(a), headers=admin.headers
        )
        assert reply.status_code == 200, reply.text
        assert reply.json()["on_duty"] is False
        await until(lambda: team["id"] in (b.runtime.duty.current() or {}))
        # B's listener is down from here (as tests/teams/test_freshness.py models a NOTIFY
        # not yet delivered).
        assert b.runtime.fanout is not None
        await b.runtime.fanout.stop()

        changed = await a.http.patch(
            f"/api/v1/teams/{team['id']}", json={"kind": "fixed_post"}, headers=admin.headers
        )
        assert changed.status_code == 200, changed.text
        gone = await a.http.get(f"/api/v1/rosters/duty/{team['id']}", headers=admin.headers)
        assert gone.status_code == 404  # serves round the clock now

        via_a = await a.report(operator, *QINGXI)
        assert [d["team_id"] for d in via_a["dispatches"]] == [team["id"]]
        via_b = await b.report(operator, *QINGXI)
        assert via_b["skipped"] == []
        assert [d["team_id"] for d in via_b["dispatches"]] == [team["id"]]


async def test_a_team_given_duty_hours_is_not_alerted_off_hours_by_a_process_that_did_not_hear_it(
    postgres_only: str,
) -> None:
    async with two_servers_on(server_settings(postgres_only)) as (a, b):
        admin = await a.admin()
        operator = await a.operator()
        fixed = await a.team("fixed_post")
        team = await a.team("mobile")
        await until(lambda: b.runtime.duty.current() is not None)
        assert b.runtime.fanout is not None
        await b.runtime.fanout.stop()
        reply = await a.http.put(
            f"/api/v1/rosters/duty/{team['id']}", json=hours_excluding_now(a), headers=admin.headers
        )
        assert reply.status_code == 200 and reply.json()["on_duty"] is False
        via_b = await b.report(operator, *QINGXI)
        # Off duty: skipped, its leaders not woken.
        assert [d["team_id"] for d in via_b["dispatches"]] == [fixed["id"]]
        assert [s["team_id"] for s in via_b["skipped"]] == [team["id"]]

        # The listener back, the book is reloaded and trusted again, and says the same.
        await b.runtime.fanout.start()
        assert b.runtime.fanout.connected
        await until(lambda: team["id"] in (b.runtime.duty.current() or {}))
        again = await b.report(operator, *QINGXI)
        assert [s["team_id"] for s in again["skipped"]] == [team["id"]]


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[World]:
    """One server, for another to start beside (``starting_while``)."""
    server = RunningServer(settings, ManualClock(clock_start()))
    await server.start()
    world = World(server.app, f"http://127.0.0.1:{server.port}", server.clock)
    try:
        yield world
    finally:
        await world.close()
        await server.stop()


@asynccontextmanager
async def starting_while(
    first: World, settings: Settings, table: str, change: Callable[[], Awaitable[None]]
) -> AsyncIterator[World]:
    """A second server started beside ``first``, with ``change`` made through ``first`` right
    after the starting one read ``table`` for what it holds in memory, before it listens (a
    rolling restart while an admin edits)."""
    engines = {first.runtime.engine.sync_engine, first.runtime.read_engine.sync_engine}
    made: list[str] = []

    async def make() -> None:
        await change()
        made.append("changed")

    def after(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if made or conn.engine in engines or f"FROM {table}" not in statement:
            return
        made.append("read")
        conn.connection.dbapi_connection.run_async(lambda _: make())

    event.listen(Engine, "after_cursor_execute", after)
    second = RunningServer(settings, first.clock)
    try:
        await second.start()
    finally:
        event.remove(Engine, "after_cursor_execute", after)
    world = World(second.app, f"http://127.0.0.1:{second.port}", first.clock)
    try:
        assert made == ["read", "changed"]
        assert world.runtime.fanout is not None and world.runtime.fanout.connected
        await asyncio.sleep(1.0)  # whatever could still arrive has
        yield world
    finally:
        await world.close()
        await second.stop()


async def test_a_schedule_set_while_another_process_starts_is_honoured_by_it(
    postgres_only: str,
) -> None:
    """The process loaded its duty book as it started and listened only after: a schedule set
    in between was never heard of, and the process judged by a book without it until some
    later duty change."""
    settings = server_settings(postgres_only)
    async with serving(settings) as a:
        admin = await a.admin()
        operator = await a.operator()
        fixed = await a.team("fixed_post")
        team = await a.team("mobile")

        async def set_schedule() -> None:
            reply = await a.http.put(
                f"/api/v1/rosters/duty/{team['id']}",
                json=hours_excluding_now(a),
                headers=admin.headers,
            )
            assert reply.status_code == 200, reply.text

        async with starting_while(a, settings, "duty_schedules", set_schedule) as b:
            via_b = await b.report(operator, *QINGXI)
            assert [s["team_id"] for s in via_b["skipped"]] == [team["id"]]
            assert [d["team_id"] for d in via_b["dispatches"]] == [fixed["id"]]
