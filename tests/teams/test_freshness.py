"""A team change made through one server process is honoured by the very next decision of
another sharing the database, before (or without) any NOTIFY reaching it."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from dispatch.audit import chain as event_chain
from dispatch.config import Settings
from dispatch.incidents import service as incidents
from dispatch.incidents.models import ChainTier, Dispatch, Incident, IncidentEvent
from dispatch.teams.coverage import Coverage
from dispatch.teams.models import Team
from tests.conftest import server_settings, two_servers_on
from tests.support import QINGXI, World, statements_sent
from tests.teams.test_teams import covering, point_at


@pytest.fixture
async def two_servers(settings: Settings) -> AsyncIterator[tuple[World, World]]:
    """Two servers on one database; the second hears no announcement of the first's.

    On PostgreSQL the second's fan-out listener is stopped: a NOTIFY it would have handled
    is never delivered. SQLite has no fan-out at all.
    """
    async with two_servers_on(settings) as (a, b):
        deaf = b.runtime.fanout
        if deaf is not None:
            await deaf.stop()
            assert not deaf.connected
        yield a, b


def dispatched(incident: dict[str, Any]) -> list[str]:
    return [d["team_id"] for d in incident["dispatches"]]


@pytest.mark.parametrize("keyed", [False, True], ids=["no key", "console key"])
async def test_a_team_moved_or_retired_through_one_process_is_honoured_by_the_next_report(
    two_servers: tuple[World, World], keyed: bool
) -> None:
    # ``keyed``: sent as the console sends it, with an Idempotency-Key; the incident is then
    # inserted first, and on PostgreSQL the teams' newest revision read by that statement.
    a, b = two_servers
    admin = await a.admin()
    operator = await a.operator()
    keys = itertools.count()

    async def report(lon: float, lat: float) -> list[str]:
        key = {"Idempotency-Key": f"console-{next(keys)}"} if keyed else None
        return dispatched(await b.report(operator, lon, lat, headers=key))

    old_site = QINGXI
    new_site = point_at(*QINGXI, 90.0, 3000.0)
    for _ in range(3):
        team = await a.team("fixed_post", *old_site)
        assert await report(*old_site) == [team["id"]]

        moved = await a.http.patch(
            f"/api/v1/teams/{team['id']}",
            json={"location": {"lon": new_site[0], "lat": new_site[1]}},
            headers=admin.headers,
        )
        assert moved.status_code == 200, moved.text
        assert await report(*old_site) == []
        assert await report(*new_site) == [team["id"]]
        assert [t["id"] for t in await covering(b, admin.headers, *new_site)] == [team["id"]]

        retired = await a.http.delete(f"/api/v1/teams/{team['id']}", headers=admin.headers)
        assert retired.status_code == 204
        assert await report(*new_site) == []
        assert await covering(b, admin.headers, *new_site) == []


@pytest.mark.parametrize("keyed", [False, True], ids=["no key", "console key"])
async def test_a_report_decided_before_a_team_change_was_heard_of_is_decided_again(
    two_servers: tuple[World, World], backend: str, keyed: bool
) -> None:
    # On PostgreSQL a report is decided on the index as the process holds it, and its rows
    # (with a key, its incident too) are written only if no team changed since: here one did,
    # so the first statement writes nothing, and the report is decided again on the teams as
    # they are now (with a key, once its incident's insert has read their newest revision).
    a, b = two_servers
    operator = await a.operator()
    key = {"Idempotency-Key": "console-1"} if keyed else None
    assert dispatched(await b.report(operator, *QINGXI)) == []
    team = await a.team("fixed_post", *QINGXI)
    # With a leader to alert: a team without one has a nobody_alerted event written too.
    await a.leader(team)

    with statements_sent(b.runtime) as sent:
        incident = await b.report(operator, *QINGXI, headers=key)

    assert dispatched(incident) == [team["id"]]
    inserts = [s for s in sent if "INSERT INTO incidents" in s]
    if backend == "postgresql":
        guarded, again = inserts
        assert "max(teams.revision)" in guarded
        # With a key the incident is inserted first again, reading the revision as it does.
        assert ("max(teams.revision)" in again) == keyed
    else:
        assert len(inserts) == 1
    async with b.runtime.sessionmaker() as session:
        written = {
            model.__tablename__: await session.scalar(
                select(func.count()).select_from(model).where(model.incident_id == incident["id"])
            )
            for model in (Dispatch, ChainTier, IncidentEvent)
        }
        assert written == {"dispatches": 1, "chain_tiers": 3, "incident_events": 2}
        assert await session.get(Incident, incident["id"]) is not None
    # The events sealed are the ones written, and they record the rows: the chain verifies.
    async with b.runtime.sessionmaker() as session:
        assert (await event_chain.verify(session)).broken is None


async def test_the_escalation_ring_of_another_process_counts_a_team_moved_into_it(
    two_servers: tuple[World, World],
) -> None:
    """No tier-1 zone covers the point: the report alerts the tier-1 teams within the ring
    at once, drawn from the teams as they are, not as the process last heard of them."""
    a, b = two_servers
    admin = await a.admin()
    operator = await a.operator()
    incident_site = point_at(*QINGXI, 0.0, 5000.0)
    team = await a.team("fixed_post", *QINGXI)
    assert dispatched(await b.report(operator, *incident_site)) == []
    near = point_at(*incident_site, 180.0, 400.0)
    moved = await a.http.patch(
        f"/api/v1/teams/{team['id']}",
        json={"location": {"lon": near[0], "lat": near[1]}},
        headers=admin.headers,
    )
    assert moved.status_code == 200, moved.text
    incident = await b.report(operator, *incident_site)
    assert [(d["team_id"], d["ring"]) for d in incident["dispatches"]] == [(team["id"], 1)]


async def test_the_escalation_step_of_another_process_counts_a_team_moved_into_the_ring(
    two_servers: tuple[World, World],
) -> None:
    """The step the timer runs when no tier-1 team accepted, run by the second process."""
    a, b = two_servers
    admin = await a.admin()
    operator = await a.operator()
    guard = await a.team("fixed_post", *QINGXI)
    elsewhere = await a.team("fixed_post", *point_at(*QINGXI, 0.0, 5000.0))
    incident = await b.report(operator, *QINGXI)
    assert dispatched(incident) == [guard["id"]]
    near = point_at(*QINGXI, 180.0, 400.0)
    moved = await a.http.patch(
        f"/api/v1/teams/{elsewhere['id']}",
        json={"location": {"lon": near[0], "lat": near[1]}},
        headers=admin.headers,
    )
    assert moved.status_code == 200, moved.text
    runtime = b.runtime
    now = runtime.clock.now()
    async with runtime.transaction() as session:
        outcome = await incidents.escalate_if_unaccepted(
            session, incident["id"], now, after_s=0, coverage=runtime.coverage, ring_m=1000.0
        )
    assert outcome == "escalated: 1 tier-1 teams within 1000 m"
    ringed = (await b.incident(operator, incident["id"]))["dispatches"]
    assert [(d["team_id"], d["ring"]) for d in ringed] == [(guard["id"], 0), (elsewhere["id"], 1)]


async def newest_revision(world: World) -> int:
    async with world.runtime.sessionmaker() as session:
        return await session.scalar(select(func.max(Team.revision))) or 0


async def test_each_team_change_takes_the_next_revision(world: World) -> None:
    admin = await world.admin()
    before = await newest_revision(world)
    team = await world.team("fixed_post")
    created = await newest_revision(world)
    reply = await world.http.patch(
        f"/api/v1/teams/{team['id']}", json={"radius_m": 200}, headers=admin.headers
    )
    assert reply.status_code == 200
    updated = await newest_revision(world)
    reply = await world.http.delete(f"/api/v1/teams/{team['id']}", headers=admin.headers)
    assert reply.status_code == 204
    retired = await newest_revision(world)
    assert [created, updated, retired] == [before + 1, before + 2, before + 3]
    # This process applied its own changes as they committed: nothing is left to catch up on.
    assert world.runtime.coverage.revision == retired


async def test_concurrent_changes_of_one_team_get_distinct_revisions_in_commit_order(
    world: World,
) -> None:
    admin = await world.admin()
    team = await world.team("fixed_post")
    replies = await asyncio.gather(
        *(
            world.http.patch(
                f"/api/v1/teams/{team['id']}", json={"radius_m": 100 + n}, headers=admin.headers
            )
            for n in range(8)
        )
    )
    assert all(r.status_code == 200 for r in replies)
    async with world.runtime.sessionmaker() as session:
        row = await session.get_one(Team, team["id"])
    # The last change to commit holds the newest revision, and the index holds that change.
    assert row.revision == await newest_revision(world)
    assert row.radius_m is not None
    inside = point_at(*QINGXI, 0.0, row.radius_m - 0.01)
    found = await covering(world, admin.headers, *inside)
    assert [(t["id"], t["radius_m"]) for t in found] == [(team["id"], row.radius_m)]
    assert await covering(world, admin.headers, *point_at(*QINGXI, 0.0, row.radius_m + 0.5)) == []


def _team(team_id: str, revision: int, lon: float, *, retired: bool = False) -> Team:
    now = datetime(2026, 3, 1, tzinfo=UTC)
    return Team(
        id=team_id,
        name=team_id,
        kind="fixed_post",
        tier=1,
        lon=lon,
        lat=QINGXI[1],
        radius_m=100.0,
        zone=None,
        created_at=now,
        updated_at=now,
        retired_at=now if retired else None,
        revision=revision,
    )


def test_a_change_applied_late_never_undoes_a_newer_one() -> None:
    """Two changes of one team heard in the wrong order: the older is ignored, and the
    index's revision moves on only over changes it has all applied."""
    coverage = Coverage()
    coverage.load([_team("t", 1, QINGXI[0])], 1)
    far_lon = point_at(*QINGXI, 90.0, 3000.0)[0]
    coverage.put(_team("t", 3, far_lon, retired=True))
    assert coverage.covering(far_lon, QINGXI[1]) == []
    # Revision 2 is not known to be applied: a catch-up would read from it on.
    assert coverage.revision == 1
    coverage.put(_team("t", 2, far_lon))
    assert coverage.covering(far_lon, QINGXI[1]) == []
    assert coverage.covering(*QINGXI) == []
    assert coverage.revision == 1


def test_a_catch_up_applies_its_changes_at_once_as_one_by_one() -> None:
    """Changes read together (moves, a team changed twice, a retirement, one already
    superseded) leave the index as applying them one at a time does."""
    east = [point_at(*QINGXI, 90.0, 1000.0 * i)[0] for i in range(5)]
    start = [_team("a", 1, east[0]), _team("b", 2, east[1]), _team("c", 3, east[2])]
    changes = [
        _team("a", 4, east[3]),
        _team("d", 5, east[4]),
        _team("b", 6, east[1], retired=True),
        _team("a", 7, east[4]),
        _team("c", 2, east[0]),  # older than what is held: ignored
    ]
    at_once, one_by_one = Coverage(), Coverage()
    for coverage in (at_once, one_by_one):
        coverage.load(start, 3)
    at_once.apply(changes)
    for team in changes:
        one_by_one.put(team)
    for coverage in (at_once, one_by_one):
        assert coverage.revision == 7
        assert len(coverage) == 3
        assert [c.team_id for c in coverage.covering(east[4], QINGXI[1])] == ["a", "d"]
        assert coverage.covering(east[1], QINGXI[1]) == []
        assert coverage.covering(east[3], QINGXI[1]) == []
        assert [c.team_id for c in coverage.covering(east[2], QINGXI[1])] == ["c"]
        assert coverage.name_of("b") == ""


async def test_the_listener_applies_two_quick_changes_in_order(
    postgres_only: str,
) -> None:
    """With the fan-out running, announcements of two quick changes of one team leave the
    other process's index at the second, however their handlers interleave."""
    async with two_servers_on(server_settings(postgres_only)) as (a, b):
        admin = await a.admin()
        for n in range(3):
            team = await a.team("fixed_post")
            # Each round's team along a bearing of its own, clear of the others.
            first, second = (point_at(*QINGXI, 90.0 * n, m) for m in (1000.0, 2000.0))
            for site in (first, second):
                reply = await a.http.patch(
                    f"/api/v1/teams/{team['id']}",
                    json={"location": {"lon": site[0], "lat": site[1]}},
                    headers=admin.headers,
                )
                assert reply.status_code == 200
            newest = await newest_revision(a)
            for _ in range(200):
                if b.runtime.coverage.revision >= newest:
                    break
                await asyncio.sleep(0.01)
            # Read straight from the index: no catch-up of a request's own.
            assert b.runtime.coverage.revision == newest
            assert [h.team_id for h in b.runtime.coverage.covering(*second)] == [team["id"]]
            assert b.runtime.coverage.covering(*first) == []


async def test_teams_formed_and_dissolved_for_months_leave_nothing_in_the_index(
    world: World,
) -> None:
    """Teams are dissolved and formed anew as a town's volunteers come and go: the index of a
    server running for months holds what it needs of the teams in service, and nothing of
    those retired (it held a revision of every team ever changed)."""
    admin = await world.admin()
    coverage = world.runtime.coverage
    staying = await world.team("fixed_post")
    before = len(coverage), len(coverage._applied)
    for _ in range(5):
        team = await world.team("fixed_post")
        reply = await world.http.patch(
            f"/api/v1/teams/{team['id']}", json={"radius_m": 200}, headers=admin.headers
        )
        assert reply.status_code == 200
        reply = await world.http.delete(f"/api/v1/teams/{team['id']}", headers=admin.headers)
        assert reply.status_code == 204
    async with world.runtime.reading() as session:
        await coverage.catch_up(session)
    assert (len(coverage), len(coverage._applied)) == before
    assert [t["id"] for t in await covering(world, admin.headers, *QINGXI)] == [staying["id"]]


def test_a_change_heard_late_stays_ignored_once_the_index_forgot_its_team() -> None:
    """The index keeps no revision of a team its own revision has reached: a change of that
    team heard after (this process's own, applied after its commit) is still not applied."""
    coverage = Coverage()
    coverage.load([_team("t", 1, QINGXI[0])], 1)
    coverage.put(_team("t", 2, QINGXI[0], retired=True))
    assert coverage.revision == 2
    coverage.put(_team("t", 1, QINGXI[0]))
    assert coverage.covering(*QINGXI) == []
    assert len(coverage) == 0
