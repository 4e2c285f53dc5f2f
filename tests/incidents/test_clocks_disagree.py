"""Processes whose clocks disagree write one record: two hosts on one PostgreSQL database, and
one server restarted after its host's clock, which had run fast, was set back.

Each process's time is its host's at its start (``dispatch.clock``). A hop handled by a process
whose clock is behind the one that wrote what the hop follows (the report, the alert, an
earlier hop) is recorded at that later time: nothing on record comes before what it follows,
no duration is negative and the tiers are judged at the time on record. Its event keeps how far
the process's own reading was behind, and the process says so in a WARNING.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dispatch.clock import ManualClock
from dispatch.incidents import service
from tests.conftest import RunningServer, clock_start, server_settings
from tests.incidents.test_hops import towards_incident
from tests.support import Account, World

BEHIND_S = 5.0


class ClockBehind:
    """Another host's time: the test's clock less ``BEHIND_S``, moved with it."""

    def __init__(self, base: ManualClock, behind_s: float) -> None:
        self.base, self.behind = base, timedelta(seconds=behind_s)

    def now(self) -> datetime:
        return self.base.now() - self.behind

    def offset_s(self) -> float:
        return 0.0

    async def sleep_until(self, when: datetime, wake: asyncio.Event) -> None:
        await self.base.sleep_until(when + self.behind, wake)


@pytest.fixture(autouse=True)
def warned_afresh(monkeypatch: pytest.MonkeyPatch) -> None:
    # The warning is rate-limited for the process, which runs every test's servers.
    monkeypatch.setattr(service, "_CLOCK_BEHIND", service._ClockBehind())


@pytest.fixture
async def ahead_and_behind(postgres_only: str) -> AsyncIterator[tuple[World, World]]:
    """A server and, on the same database, one whose clock is ``BEHIND_S`` behind it."""
    settings = server_settings(postgres_only)
    clock = ManualClock(clock_start())
    ahead = RunningServer(settings, clock)
    behind = RunningServer(settings, clock, server_clock=ClockBehind(clock, BEHIND_S))
    for server in (ahead, behind):
        await server.start()
    worlds = [World(s.app, f"http://127.0.0.1:{s.port}", clock) for s in (ahead, behind)]
    try:
        yield worlds[0], worlds[1]
    finally:
        for world in worlds:
            await world.close()
        for server in (ahead, behind):
            await server.stop()


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def events_of(world: World, incident_id: str) -> list[dict[str, Any]]:
    reply = await world.http.get(
        f"/api/v1/incidents/{incident_id}/events", headers=(await world.operator()).headers
    )
    assert reply.status_code == 200, reply.text
    events: list[dict[str, Any]] = reply.json()
    return events


def hop_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == service.__name__ and r.levelno == logging.WARNING and "behind" in r.msg
    ]


async def post(world: World, path: str, by: Account, body: dict[str, Any] | None = None) -> Any:
    reply = await world.http.post(path, json=body or {}, headers=by.headers)
    assert reply.status_code == 200, reply.text
    return reply.json()


async def test_hops_on_a_process_whose_clock_is_behind_are_not_recorded_before_the_report(
    ahead_and_behind: tuple[World, World], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = ahead_and_behind
    team = await a.team("mobile")
    leader = await a.leader(team)
    operator = await a.operator()
    incident = await a.report(operator)  # on A, at A's time
    [d] = incident["dispatches"]
    reported = at(incident["reported_at"])

    # The phone is connected to B: its ack is stamped by B's clock, 3 s before the report.
    a.clock.advance(2)
    phone = await b.connect(leader)
    alert = await phone.next_of("alert")
    await phone.ack(alert["seq"])
    await b.wait_for(leader, incident["id"], lambda i: i["dispatches"][0]["delivered_at"])
    await phone.close()
    a.clock.advance(1)
    await post(b, f"/api/v1/dispatches/{d['id']}/shown", leader)
    await post(b, f"/api/v1/dispatches/{d['id']}/accept", leader)
    a.clock.advance(1)
    view = await post(b, f"/api/v1/dispatches/{d['id']}/arrive", leader)

    [dd] = view["dispatches"]
    hops = [dd[k] for k in ("alerted_at", "delivered_at", "shown_at", "accepted_at", "arrived_at")]
    # Each at the latest time it follows, which is the report's: B's readings came before it.
    assert [at(t) for t in hops] == [reported] * 5
    tier1 = view["chain"][0]
    assert (tier1["status"], tier1["elapsed_s"]) == ("met", 0.0)
    # The record keeps B's readings: 3 s behind at the ack, 2 s at the shown and the accept,
    # 1 s at the arrival.
    events = await events_of(a, incident["id"])
    behind = {e["type"]: e["data"].get("clock_behind_s") for e in events}
    assert behind == {
        "reported": None,
        "dispatched": None,
        "delivered": 3.0,
        "shown": 2.0,
        "accepted": 2.0,
        "arrived": 1.0,
        "met": None,
    }
    assert [at(e["at"]) for e in events] == [reported] * len(events)
    # Told once, rate-limited: four hops floored by a second or more.
    [warning] = hop_warnings(caplog)
    assert warning.__dict__["clock_behind_s"] == 3.0

    # The office's report measures nothing negative.
    reply = await a.http.get("/api/v1/reports/response-times", headers=(await a.admin()).headers)
    assert reply.status_code == 200, reply.text
    tier1_totals = reply.json()["totals"][0]
    assert tier1_totals["met"] == 1
    for measure in (
        "time_to_arrival",
        "alert_to_delivery",
        "delivery_to_acceptance",
        "acceptance_to_arrival",
    ):
        assert tier1_totals[measure]["p50_s"] == 0.0, measure


async def test_an_arrival_by_geofence_or_by_an_operator_on_a_process_behind_is_floored(
    ahead_and_behind: tuple[World, World],
) -> None:
    a, b = ahead_and_behind
    team = await a.team("mobile")
    leader = await a.leader(team)
    operator = await a.operator()

    # Accepted on A at 2 s; the fix on scene reaches B at 4 s, by B's clock -1 s.
    first = await a.report(operator)
    [d] = first["dispatches"]
    a.clock.advance(2)
    accepted = (await post(a, f"/api/v1/dispatches/{d['id']}/accept", leader))["dispatches"][0]
    a.clock.advance(2)
    fix = {"location": towards_incident(10.0), "accuracy_m": 5}
    body = await post(b, f"/api/v1/dispatches/{d['id']}/position", leader, fix)
    assert body["arrived"] is True
    [dd] = body["incident"]["dispatches"]
    assert dd["arrival_source"] == "geofence"
    assert dd["arrived_at"] == accepted["accepted_at"]
    assert body["incident"]["chain"][0]["elapsed_s"] == 2.0
    [arrived] = [e for e in await events_of(a, first["id"]) if e["type"] == "arrived"]
    assert arrived["data"]["clock_behind_s"] == 3.0

    # A radio arrival an operator records on B, 1 s after the report by A's clock.
    second = await a.report(operator)
    [d] = second["dispatches"]
    a.clock.advance(1)
    view = await post(b, f"/api/v1/dispatches/{d['id']}/arrive", operator)
    [dd] = view["dispatches"]
    assert dd["arrival_source"] == "operator"
    assert at(dd["arrived_at"]) == at(second["reported_at"])
    assert (view["chain"][0]["status"], view["chain"][0]["elapsed_s"]) == ("met", 0.0)
    [arrived] = [e for e in await events_of(a, second["id"]) if e["type"] == "arrived"]
    assert arrived["data"]["clock_behind_s"] == 4.0


async def test_a_restart_on_a_clock_set_back_is_told_and_records_nothing_before_the_report(
    settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The host ran 60 s fast while the server took a report; set right, the server is
    restarted (as docs/deploy.md says), and the team arrives 10 s after the report."""
    fast = ManualClock(clock_start())
    first = RunningServer(settings, fast)
    await first.start()
    world = World(first.app, f"http://127.0.0.1:{first.port}", fast)
    team = await world.team("mobile")
    leader = await world.leader(team)
    incident = await world.report(await world.operator())
    [d] = incident["dispatches"]
    await world.close()
    await first.stop()
    assert [r for r in caplog.records if "newest time on record" in r.getMessage()] == []

    fast.advance(10)
    right = ManualClock(fast.now() - timedelta(seconds=60))
    second = RunningServer(settings, right)
    await second.start()
    world = World(second.app, f"http://127.0.0.1:{second.port}", right)
    try:
        [told] = [r for r in caplog.records if "newest time on record" in r.getMessage()]
        assert told.levelno == logging.WARNING
        assert told.__dict__["clock_behind_record_s"] == 50.0
        message = told.getMessage()
        assert right.now().isoformat() in message and "50.000 s" in message
        assert at(incident["reported_at"]).astimezone(UTC).isoformat() in message

        view = await post(world, f"/api/v1/dispatches/{d['id']}/arrive", leader)
        tier1 = view["chain"][0]
        assert at(tier1["arrived_at"]) == at(incident["reported_at"])
        assert (tier1["status"], tier1["elapsed_s"]) == ("met", 0.0)
        [arrived] = [e for e in await events_of(world, incident["id"]) if e["type"] == "arrived"]
        assert arrived["data"]["clock_behind_s"] == 50.0
    finally:
        await world.close()
        await second.stop()
