"""Everything the reports read of an incident is in its hash-chained events: its category,
description and village, each tier's target, where each team was when it arrived, the teams it
skipped. ``dispatch audit verify`` names any of them changed through SQL; of an incident recorded
before its events carried them, it counts them as unchecked rather than flag them."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Table, insert, select, update

from dispatch.audit import chain
from dispatch.audit.chain import GENESIS
from dispatch.audit.models import EventChainHead
from dispatch.db import create_engine, create_sessionmaker, table_of
from dispatch.rosters.models import IncidentSkip
from dispatch.schemas import DISPLAY_TZ
from dispatch.villages.models import Village
from tests.security.test_hash_chain import (
    DISPATCHES,
    EVENTS,
    INCIDENTS,
    TIERS,
    at,
    changed,
    events_of,
    row,
    verify,
)
from tests.support import QINGXI, Account, World, statements_sent
from tests.villages.test_villages import SHANGYUAN, XIAXIAN, collection, feature, square

SKIPS, VILLAGES = table_of(IncidentSkip), table_of(Village)
HEADS = table_of(EventChainHead)
DESCRIPTION = "桥头两人持棍打架，一人受伤"
# The keys events carry only since they carry every column the reports read: without them an
# event has the shape it had before.
ADDED_KEYS = {
    "reported": ("category", "description", "village_id", "village_name", "targets_s"),
    "arrived": ("arrival_lon", "arrival_lat", "arrival_accuracy_m"),
}


def unchecked(count: int, of: int) -> str:
    return f"unchecked: {count} of {of} incidents recorded before the events carried their "


@dataclass
class Town:
    operator: Account
    leader: Account
    incident: dict[str, Any]
    dispatch_id: str
    shangyuan: str
    xiaxian: str
    skipped: dict[str, Any]


async def import_villages(world: World, body: bytes) -> dict[str, Any]:
    admin = await world.admin()
    reply = await world.http.post(
        "/api/v1/villages/import",
        content=body,
        headers={**admin.headers, "content-type": "application/geo+json"},
    )
    assert reply.status_code == 200, reply.text
    answer: dict[str, Any] = reply.json()
    return answer


async def report(
    world: World, by: Account, description: str | None, lon: float = QINGXI[0]
) -> dict[str, Any]:
    body = {"location": {"lon": lon, "lat": QINGXI[1]}, "category": "fight"}
    if description is not None:
        body["description"] = description
    reply = await world.http.post("/api/v1/incidents", json=body, headers=by.headers)
    assert reply.status_code == 201, reply.text
    incident: dict[str, Any] = reply.json()
    return incident


async def off_duty(world: World, team: dict[str, Any]) -> None:
    """A duty schedule of an hour that starts two hours from now: the team is off duty."""
    admin = await world.admin()
    now = world.clock.now().astimezone(DISPLAY_TZ)
    start, end = (now.hour + 2) % 24, (now.hour + 3) % 24
    body = {"start": f"{start:02d}:00", "end": f"{end:02d}:00", "rotation_start": "2026-01-05"}
    reply = await world.http.put(
        f"/api/v1/rosters/duty/{team['id']}", json=body, headers=admin.headers
    )
    assert reply.status_code == 200, reply.text


async def a_town(world: World) -> Town:
    """Two villages; an incident in 上元村 with a description, a team skipped as off duty, and
    the post's leader on scene 20 m north (his GPS, 8 m accuracy); tier 3 still pending."""
    await import_villages(
        world, collection(feature("上元村", SHANGYUAN), feature("下仙社区", XIAXIAN))
    )
    admin = await world.admin()
    villages = (await world.http.get("/api/v1/villages", headers=admin.headers)).json()
    names = {v["name"]: v["id"] for v in villages}
    post = await world.team("fixed_post")
    mobile = await world.team("mobile", *at(300, 90))
    await off_duty(world, mobile)
    leader, operator = await world.leader(post), await world.operator()
    incident = await report(world, operator, DESCRIPTION)
    assert incident["village_id"] == names["上元村"]
    (skipped,) = incident["skipped"]
    assert skipped["team_id"] == mobile["id"]
    (dispatch_id,) = [d["id"] for d in incident["dispatches"] if d["team_id"] == post["id"]]
    world.clock.advance(20)
    fix = {"location": dict(zip(("lon", "lat"), at(20, 0), strict=True)), "accuracy_m": 8}
    reply = await world.http.post(
        f"/api/v1/dispatches/{dispatch_id}/arrive", json=fix, headers=leader.headers
    )
    assert reply.status_code == 200, reply.text
    return Town(
        operator,
        leader,
        incident,
        dispatch_id,
        names["上元村"],
        names["下仙社区"],
        skipped,
    )


async def test_the_events_carry_what_the_reports_read_and_the_report_reads_no_more(
    world: World,
) -> None:
    await import_villages(world, collection(feature("上元村", SHANGYUAN)))
    listed = await world.http.get("/api/v1/villages", headers=(await world.admin()).headers)
    (village,) = listed.json()
    leader = await world.leader(await world.team())
    operator = await world.operator()
    # The village's name comes from the index the report tags it from: no query is added.
    with statements_sent(world.runtime) as sent:
        incident = await report(world, operator, DESCRIPTION)
    assert not [s for s in sent if "villages" in s], sent
    dispatch_id = incident["dispatches"][0]["id"]
    lon, lat = at(20, 0)
    fix = {"location": {"lon": lon, "lat": lat}, "accuracy_m": 8}
    reply = await world.http.post(
        f"/api/v1/dispatches/{dispatch_id}/arrive", json=fix, headers=leader.headers
    )
    assert reply.status_code == 200, reply.text
    stored = (await world.incident(operator, incident["id"]))["dispatches"][0]

    by_type = {e.type: e.data for e in await events_of(world, incident["id"])}
    assert by_type["reported"] == {
        "lon": QINGXI[0],
        "lat": QINGXI[1],
        "category": "fight",
        "description": DESCRIPTION,
        "village_id": village["id"],
        "village_name": "上元村",
        "targets_s": [60, 180, 300],
    }
    arrived = by_type["arrived"]
    assert (arrived["arrival_lon"], arrived["arrival_lat"]) == (lon, lat)
    assert stored["arrival_location"] == {"lon": lon, "lat": lat}
    assert arrived["arrival_accuracy_m"] == stored["arrival_accuracy_m"] == 8
    assert arrived["source"] == "button"

    code, out = await asyncio.to_thread(verify, world.runtime.settings.database_url)
    assert code == 0, out
    events = len(await events_of(world, incident["id"]))
    assert out.splitlines()[0] == f"ok: {events} events in 1 incident chains"
    assert out.splitlines()[1].startswith(unchecked(0, 1)), out


async def test_each_column_the_events_now_carry_changed_through_sql_is_named(
    world: World,
) -> None:
    town = await a_town(world)
    url = world.runtime.settings.database_url
    clean = await verdict(world)
    assert (clean.broken, clean.unrecorded) == (None, 0), str(clean.broken)
    incident_id = town.incident["id"]
    reported = datetime.fromisoformat(town.incident["reported_at"])
    events = {e.type: e for e in await events_of(world, incident_id)}
    said = {
        kind: f"its {kind} event (incident_events row id={e.id}, seq {e.seq}: "
        for kind, e in events.items()
    }
    this = INCIDENTS.c.id == incident_id
    own = DISPATCHES.c.id == town.dispatch_id
    skip = (SKIPS.c.incident_id == incident_id) & (SKIPS.c.team_id == town.skipped["team_id"])
    lon, lat = at(20, 0)
    at_the_bridge = at(400, 135)
    tier3 = (TIERS.c.incident_id == incident_id) & (TIERS.c.tier == 3)
    cases: list[tuple[Table, Any, dict[str, Any] | None, str]] = [
        # Counted with the fires instead of the fights.
        (
            INCIDENTS,
            this,
            {"category": "fire"},
            f"incidents row {incident_id}: category fire differs from {said['reported']}fight)",
        ),
        (
            INCIDENTS,
            this,
            {"description": "口角"},
            f"incidents row {incident_id}: description 口角 differs from "
            f"{said['reported']}{DESCRIPTION})",
        ),
        (
            INCIDENTS,
            this,
            {"description": None},
            f"incidents row {incident_id}: description null differs from",
        ),
        # Counted in the other village.
        (
            INCIDENTS,
            this,
            {"village_id": town.xiaxian},
            f"incidents row {incident_id}: village_id {town.xiaxian} differs from "
            f"{said['reported']}{town.shangyuan})",
        ),
        (
            VILLAGES,
            VILLAGES.c.id == town.shangyuan,
            {"name": "上元新村"},
            f"villages row {town.shangyuan} (the village of incident {incident_id}): name "
            f"上元新村 differs from {said['reported']}上元村)",
        ),
        # A pending tier given more time, deadline and all: nothing else bounds it.
        (
            TIERS,
            tier3,
            {"target_s": 600.0, "deadline": reported + timedelta(seconds=600)},
            f"chain_tiers row (incident {incident_id}, tier 3): target_s 600.0 differs from "
            f"{said['reported']}300.0)",
        ),
        # Tier 1 met at 20 s, its target 60 s made 15 s (and its deadline with it).
        (
            TIERS,
            (TIERS.c.incident_id == incident_id) & (TIERS.c.tier == 1),
            {"target_s": 15.0, "deadline": reported + timedelta(seconds=15)},
            f"chain_tiers row (incident {incident_id}, tier 1): target_s 15.0 differs from "
            f"{said['reported']}60.0)",
        ),
        (
            DISPATCHES,
            own,
            {"arrival_lon": at_the_bridge[0]},
            f"dispatches row {town.dispatch_id} (incident {incident_id}): arrival_lon "
            f"{at_the_bridge[0]} differs from {said['arrived']}{lon})",
        ),
        (
            DISPATCHES,
            own,
            {"arrival_lat": at_the_bridge[1]},
            f"arrival_lat {at_the_bridge[1]} differs from {said['arrived']}{lat})",
        ),
        (
            DISPATCHES,
            own,
            {"arrival_accuracy_m": 3.0},
            f"arrival_accuracy_m 3.0 differs from {said['arrived']}8.0)",
        ),
        (
            SKIPS,
            skip,
            {"reason": "unit_empty"},
            f"incident_skips row (incident {incident_id}, team {town.skipped['team_id']}): "
            f"reason unit_empty differs from {said['skipped']}off_hours)",
        ),
        (
            SKIPS,
            skip,
            {"team_name": "另一队"},
            f"team_name 另一队 differs from {said['skipped']}{town.skipped['team_name']})",
        ),
        (
            SKIPS,
            skip,
            None,
            f"incident_skips (incident {incident_id}): no row for team "
            f"{town.skipped['team_id']}, which its skipped event records",
        ),
    ]
    # The review's two cases through the command line (exit 1), the others found the same
    # way in-process (a run of the command costs seconds).
    for n, (table, where, values, named) in enumerate(cases):
        async with changed(world, table, where, values):
            if n in (0, 5):
                code, out = await asyncio.to_thread(verify, url)
                assert code == 1 and out.startswith("BROKEN: ") and named in out, (named, out)
            else:
                found = (await verdict(world)).broken
                assert found is not None and named in str(found), (named, found)
    # A team skipped that the report never skipped.
    other = await world.team("fixed_post", *at(5000, 0))
    forged = {**(await row(world, SKIPS, skip))._mapping, "team_id": other["id"]}
    async with world.runtime.engine.begin() as connection:
        await connection.execute(insert(SKIPS), forged)
    assert str((await verdict(world)).broken) == (
        f"incident_skips row (incident {incident_id}, team {other['id']}): no skipped event "
        "records it"
    )
    async with world.runtime.engine.begin() as connection:
        await connection.execute(
            SKIPS.delete().where(
                (SKIPS.c.incident_id == incident_id) & (SKIPS.c.team_id == other["id"])
            )
        )
    # Every change put back: as the events record it again.
    assert (await verdict(world)).broken is None


async def test_a_village_imported_or_deleted_records_each_incident_it_tags_again(
    world: World,
) -> None:
    """Verify follows an incident's village through every change the server makes to it."""
    town = await a_town(world)
    admin = await world.admin()
    incident_id = town.incident["id"]
    east = await report(world, town.operator, None, lon=QINGXI[0] + 0.01)
    assert east["village_id"] == town.xiaxian

    # 上元村 shrinks to its western half: the town centre falls out of every village.
    west, south = SHANGYUAN["coordinates"][0][0]
    answer = await import_villages(world, collection(feature("上元村", square(west, south, 0.004))))
    assert answer["retagged"] == 1
    # 下仙社区 is deleted: its incident falls to none.
    reply = await world.http.delete(f"/api/v1/villages/{town.xiaxian}", headers=admin.headers)
    assert reply.status_code == 204, reply.text
    for moved in (incident_id, east["id"]):
        assert (await world.incident(town.operator, moved))["village_id"] is None
        (change,) = [e for e in await events_of(world, moved) if e.type == "village_changed"]
        assert change.data == {"village_id": None, "village_name": None}
        assert change.actor_id == admin.id
    clean = await verdict(world)
    assert (clean.broken, clean.unrecorded) == (None, 0), str(clean.broken)

    # Put back where it was reported: the change of village says otherwise.
    (change,) = [e for e in await events_of(world, incident_id) if e.type == "village_changed"]
    async with changed(
        world, INCIDENTS, INCIDENTS.c.id == incident_id, {"village_id": town.shangyuan}
    ):
        found = (await verdict(world)).broken
    assert str(found) == (
        f"incidents row {incident_id}: village_id {town.shangyuan} differs from its "
        f"village_changed event (incident_events row id={change.id}, seq {change.seq}: null)"
    )

    # Imported again whole, the village takes its incident back, under the same name.
    answer = await import_villages(world, collection(feature("上元村", SHANGYUAN)))
    assert answer["retagged"] == 1
    last = [e for e in await events_of(world, incident_id) if e.type == "village_changed"][-1]
    assert last.data == {"village_id": town.shangyuan, "village_name": "上元村"}
    assert (await verdict(world)).broken is None


async def verdict(world: World) -> chain.Verdict:
    """What ``dispatch audit verify`` finds, found in this process."""
    engine = create_engine(world.runtime.settings.database_url, read_only=True)
    try:
        async with create_sessionmaker(engine)() as session:
            return await chain.verify(session)
    finally:
        await engine.dispose()


async def as_recorded_before(world: World, incident_id: str) -> None:
    """The incident's events as the server wrote them before they carried every column the
    reports read (without ``ADDED_KEYS``), its chain sealed again as it was then sealed."""
    async with world.runtime.engine.begin() as connection:
        rows: Sequence[Any] = (
            await connection.execute(
                select(EVENTS).where(EVENTS.c.incident_id == incident_id).order_by(EVENTS.c.seq)
            )
        ).all()
        prev = GENESIS
        for e in rows:
            data = {k: v for k, v in e.data.items() if k not in ADDED_KEYS.get(e.type, ())}
            body = chain.canonical(incident_id, e.seq, e.at, e.type, e.actor_id, data)
            sealed = chain.link(prev, body)
            await connection.execute(
                update(EVENTS)
                .where(EVENTS.c.id == e.id)
                .values(data=data, prev_hash=prev, hash=sealed)
            )
            prev = sealed
        await connection.execute(
            update(HEADS).where(HEADS.c.incident_id == incident_id).values(hash=prev)
        )


async def test_an_incident_recorded_before_the_events_carried_it_is_counted_not_flagged(
    world: World,
) -> None:
    town = await a_town(world)
    url = world.runtime.settings.database_url
    old = town.incident["id"]
    await as_recorded_before(world, old)
    reported = next(e for e in await events_of(world, old) if e.type == "reported")
    assert set(reported.data) == {"lon", "lat"}
    new = await report(world, town.operator, DESCRIPTION)
    code, out = await asyncio.to_thread(verify, url)
    assert code == 0 and unchecked(1, 2) in out, out

    # What its events never said of it cannot be proven either way: not flagged.
    reported_at = datetime.fromisoformat(town.incident["reported_at"]).astimezone(UTC)
    for table, where, values in (
        (INCIDENTS, INCIDENTS.c.id == old, {"category": "fire", "description": None}),
        (INCIDENTS, INCIDENTS.c.id == old, {"village_id": town.xiaxian}),
        (
            TIERS,
            (TIERS.c.incident_id == old) & (TIERS.c.tier == 3),
            {"target_s": 600.0, "deadline": reported_at + timedelta(seconds=600)},
        ),
        (DISPATCHES, DISPATCHES.c.id == town.dispatch_id, {"arrival_lon": 114.0}),
    ):
        async with changed(world, table, where, values):
            found = await verdict(world)
        assert (found.broken, found.unrecorded) == (None, 1), (values, str(found.broken))
    # What they did say still is checked, and bounds what it did not: a met tier's deadline
    # is not before the arrival that met it (tier 1, met at 20 s), whatever its target.
    async with changed(
        world,
        TIERS,
        (TIERS.c.incident_id == old) & (TIERS.c.tier == 1),
        {"target_s": 15.0, "deadline": reported_at + timedelta(seconds=15)},
    ):
        found = await verdict(world)
    assert "tier 1): deadline" in str(found.broken), str(found.broken)
    assert "is before its met event (" in str(found.broken), str(found.broken)
    moved = reported_at + timedelta(seconds=5)
    async with changed(
        world, DISPATCHES, DISPATCHES.c.id == town.dispatch_id, {"arrived_at": moved}
    ):
        found = await verdict(world)
    assert found.broken is not None and "arrived_at" in str(found.broken)
    # The incident recorded since is checked whole.
    async with changed(world, INCIDENTS, INCIDENTS.c.id == new["id"], {"category": "fire"}):
        code, out = await asyncio.to_thread(verify, url)
    assert code == 1, out
    assert out.startswith(f"BROKEN: incidents row {new['id']}: category fire differs from"), out

    # Tagged again since, its village is checked from then on (the rest stays unchecked).
    west, south = SHANGYUAN["coordinates"][0][0]
    await import_villages(world, collection(feature("上元村", square(west, south, 0.004))))
    async with changed(world, INCIDENTS, INCIDENTS.c.id == old, {"village_id": town.xiaxian}):
        found = await verdict(world)
    named = f"incidents row {old}: village_id {town.xiaxian} differs from its village_changed"
    assert str(found.broken).startswith(named), str(found.broken)
    found = await verdict(world)
    assert (found.broken, found.unrecorded) == (None, 1), str(found.broken)
