"""GET /api/v1/audit/verification: what ``dispatch audit verify`` checks and says, for those who
read the reports, with the log's chain head; and whether a chain head a report states is still
in the log."""

from __future__ import annotations

import asyncio
import itertools
from datetime import timedelta
from typing import Any

from sqlalchemy import Row, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from dispatch.audit import chain
from dispatch.audit.chain import link
from dispatch.audit.models import EventChainHead
from dispatch.db import hold_snapshot, table_of
from dispatch.incidents.models import Dispatch, IncidentEvent
from dispatch.schemas import show_time
from tests.security.test_checkpoint import verify
from tests.security.test_verify_where import an_arrival, arrival_and_report, beijing
from tests.support import Account, World

EVENTS, HEADS = table_of(IncidentEvent), table_of(EventChainHead)
DISPATCHES = table_of(Dispatch)
URL = "/api/v1/audit/verification"


async def verification(world: World, by: Account, **params: Any) -> dict[str, Any]:
    reply = await world.http.get(URL, params=params, headers=by.headers)
    assert reply.status_code == 200, reply.text
    answer: dict[str, Any] = reply.json()
    return answer


async def test_an_intact_record_is_ok_with_the_rows_checked_and_the_logs_head(
    world: World,
) -> None:
    incident, _ = await an_arrival(world)
    async with world.runtime.engine.connect() as connection:
        rows = (await connection.execute(select(EVENTS).order_by(EVENTS.c.id))).all()
    last = rows[-1]
    for role in ("admin", "operator", "auditor"):
        answer = await verification(world, await world.account(role))
        assert answer["ok"] is True and answer["breaks"] == [], answer
        assert (answer["events"], answer["incidents"]) == (len(rows), 1)
        assert answer["head"] == {"event_id": last.id, "hash": last.hash, "at": show_time(last.at)}
        assert answer["head"]["at"].endswith("+08:00")
        assert answer["head_found"] is None and answer["asked_head"] is None
    leader = await world.leader({"id": incident["dispatches"][0]["team_id"]})
    refused = await world.http.get(URL, headers=leader.headers)
    assert refused.status_code == 403, refused.text


async def test_a_changed_event_is_named_in_the_words_of_the_command_line(world: World) -> None:
    incident, _ = await an_arrival(world)
    async with world.runtime.engine.begin() as connection:
        arrived, reported = await arrival_and_report(connection)
        earlier = arrived.at - timedelta(seconds=30)
        await connection.execute(update(EVENTS).where(EVENTS.c.id == arrived.id).values(at=earlier))

    answer = await verification(world, await world.admin())
    code, out, err = await verify(world)
    assert code == 1, out + err
    assert answer["ok"] is False
    (broken,) = answer["breaks"]
    assert [f"BROKEN: {broken['text']}", f"where: {broken['where']}"] == out.splitlines()
    assert (broken["incident_id"], broken["event_id"], broken["seq"]) == (
        incident["id"],
        arrived.id,
        arrived.seq,
    )
    assert broken["reason"] == "its hash does not match its content: the row was changed"
    assert broken["code"] == "hash_mismatch"
    assert broken["values"] == {"event_id": arrived.id, "seq": arrived.seq}
    assert broken["place"] == {
        "incident_id": incident["id"],
        "reported_at": beijing(reported.at),
        "source": "its reported event",
        "category": "theft",
        "village": None,
        "event_type": "arrived",
        "event_at": beijing(earlier),
    }


async def test_a_reports_chain_head_is_found_while_its_row_is_in_the_log(world: World) -> None:
    await an_arrival(world)
    admin = await world.admin()
    report = await world.http.get("/api/v1/reports/response-times", headers=admin.headers)
    head = report.json()["chain_head"]
    answer = await verification(world, admin, head=head["hash"])
    assert answer["head_found"] is True and answer["asked_head"] == head
    async with world.runtime.engine.begin() as connection:
        await connection.execute(
            update(EVENTS).where(EVENTS.c.id == head["event_id"]).values(hash="0" * 64)
        )
    answer = await verification(world, admin, head=head["hash"])
    assert answer["head_found"] is False and answer["asked_head"] is None
    assert answer["ok"] is False


async def test_a_head_that_is_no_hash_is_refused_naming_the_field(world: World) -> None:
    admin = await world.admin()
    for wrong in ("abc", "G" * 64, "A" * 64, "0" * 65):
        reply = await world.http.get(URL, params={"head": wrong}, headers=admin.headers)
        assert reply.status_code == 422, (wrong, reply.text)
        assert reply.json()["fields"][0]["field"] == "head", reply.text


async def test_a_second_verification_asked_while_one_runs_is_refused_until_it_ends(
    world: World,
) -> None:
    """Two people press 核验记录 at once: the second is told to come back (429, Retry-After)
    rather than holding a second connection and the CPU for the whole log again."""
    await an_arrival(world)
    admin = await world.admin()
    async with world.runtime.verifying:
        reply = await world.http.get(URL, headers=admin.headers)
        assert reply.status_code == 429, reply.text
        # Its own code, not rate_limited: nobody asked too often, and the page says so.
        assert reply.json()["error"] == "verification_running", reply.text
        assert "already running" in reply.json()["detail"]
        assert reply.headers["Retry-After"] == "10"
        assert reply.json()["retry_after_s"] == 10
    assert (await verification(world, admin))["ok"] is True


async def test_a_row_forged_past_the_head_is_said_to_be_added(world: World) -> None:
    incident, _ = await an_arrival(world)
    async with world.runtime.engine.begin() as connection:
        last = (
            await connection.execute(
                select(EVENTS)
                .where(EVENTS.c.incident_id == incident["id"])
                .order_by(EVENTS.c.seq.desc())
            )
        ).first()
        assert last is not None
        forged = {
            "incident_id": incident["id"],
            "at": last.at + timedelta(seconds=1),
            "type": "note",
            "actor_id": None,
            "data": {"text": "补记"},
            "seq": last.seq + 1,
            "prev_hash": last.hash,
            "hash": link(last.hash, b"whatever"),
        }
        await connection.execute(insert(EVENTS), forged)
        added = (
            await connection.execute(select(EVENTS.c.id).where(EVENTS.c.seq == last.seq + 1))
        ).scalar_one()

    code, out, err = await verify(world)
    assert code == 1, out + err
    assert out.splitlines()[0] == (
        f"BROKEN: incident_events row id={added} (incident {incident['id']}, seq {last.seq + 1}): "
        f"it comes after the chain's head (seq {last.seq}), which the server moves with every "
        "row it adds: the row was added"
    ), out
    (broken,) = (await verification(world, await world.admin()))["breaks"]
    assert broken["text"] == out.splitlines()[0].removeprefix("BROKEN: ")


async def test_the_server_runs_its_other_work_between_the_incidents_verified(
    world: World,
) -> None:
    """The server verifies on its event loop: an alert waits for one incident's check at most,
    not for a slice's (250 incidents, a tenth of a second and more of CPU)."""
    await world.team("fixed_post")
    operator = await world.operator()
    for _ in range(4):
        await world.report(operator)
    kept: list[str] = []
    seen: list[int] = []  # the incidents verified, each time the other work ran
    done = False

    async def other_work() -> None:
        while not done:
            seen.append(len(kept))
            await asyncio.sleep(0)

    running = asyncio.create_task(other_work())
    async with world.runtime.transaction(read=True) as session:
        await hold_snapshot(session)  # as the route's session is begun
        verdict = await chain.verify(session, keep=lambda i, _seq, _hash: kept.append(i))
    done = True
    await running
    assert verdict.broken is None and len(kept) == 4
    steps = [b - a for a, b in itertools.pairwise(seen)]
    assert max(steps) <= 1, seen


async def test_each_break_is_given_a_code_and_its_values_for_the_page_to_say(
    world: World,
) -> None:
    """Beside the command line's words, each break says what kind it is and what it names,
    for the page to say it in Chinese or English: an arrival moved in its dispatch (the column,
    the value stored and the one its event records), an event changed, one deleted, two
    swapped, the last one cut off."""
    incident, dispatch_id = await an_arrival(world)
    admin = await world.admin()
    async with world.runtime.engine.begin() as connection:
        arrived, _ = await arrival_and_report(connection)
        earlier = arrived.at - timedelta(seconds=30)
        await connection.execute(
            update(DISPATCHES).where(DISPATCHES.c.id == dispatch_id).values(arrived_at=earlier)
        )
    (broken,) = (await verification(world, admin))["breaks"]
    assert broken["code"] == "value_differs"
    assert broken["values"] == {
        "table": "dispatches",
        "dispatch_id": dispatch_id,
        "column": "arrived_at",
        "stored": beijing(earlier),
        "expected": beijing(arrived.at),
        "expected_from": "arrived event",
        "event_id": arrived.id,
        "seq": arrived.seq,
        "event_type": "arrived",
    }
    async with world.runtime.engine.begin() as connection:
        await connection.execute(
            update(DISPATCHES).where(DISPATCHES.c.id == dispatch_id).values(arrived_at=arrived.at)
        )
        chain_ = await events_of(connection, str(incident["id"]))
        changed = chain_[1]
        await connection.execute(
            update(EVENTS).where(EVENTS.c.id == changed.id).values(actor_id="someone")
        )
    (broken,) = (await verification(world, admin))["breaks"]
    assert (broken["code"], broken["values"]) == (
        "hash_mismatch",
        {"event_id": changed.id, "seq": changed.seq},
    )

    async with world.runtime.engine.begin() as connection:
        await connection.execute(
            update(EVENTS).where(EVENTS.c.id == changed.id).values(actor_id=changed.actor_id)
        )
        first, second = chain_[2], chain_[3]
        for row, seq in ((first, 10_000), (second, first.seq), (first, second.seq)):
            await connection.execute(update(EVENTS).where(EVENTS.c.id == row.id).values(seq=seq))
    (broken,) = (await verification(world, admin))["breaks"]
    assert (broken["code"], broken["values"]) == (
        "rows_reordered",
        {
            "event_id": first.id,
            "seq": second.seq,
            "expected_seq": first.seq,
            "later_event_id": second.id,
        },
    )

    async with world.runtime.engine.begin() as connection:
        for row, seq in ((first, 10_000), (second, second.seq), (first, first.seq)):
            await connection.execute(update(EVENTS).where(EVENTS.c.id == row.id).values(seq=seq))
    assert (await verification(world, admin))["ok"] is True
    async with world.runtime.engine.begin() as connection:
        last = chain_[-1]
        await connection.execute(delete(EVENTS).where(EVENTS.c.id == last.id))
    (broken,) = (await verification(world, admin))["breaks"]
    assert (broken["code"], broken["values"]) == (
        "rows_truncated",
        {"end_seq": last.seq - 1, "head_seq": last.seq},
    )
    assert (broken["event_id"], broken["seq"]) == (None, None)

    async with world.runtime.engine.begin() as connection:
        await connection.execute(delete(EVENTS).where(EVENTS.c.id == first.id))
    (broken,) = (await verification(world, admin))["breaks"]
    assert (broken["code"], broken["values"]) == (
        "row_missing",
        {"event_id": second.id, "seq": second.seq, "expected_seq": first.seq},
    )
    assert broken["text"].endswith(f"expected seq {first.seq}: a row is missing")


async def test_a_row_added_and_a_head_left_without_events_are_given_their_codes(
    world: World,
) -> None:
    incident, _ = await an_arrival(world)
    admin = await world.admin()
    async with world.runtime.engine.begin() as connection:
        last = (await events_of(connection, str(incident["id"])))[-1]
        forged = {
            "incident_id": incident["id"],
            "at": last.at + timedelta(seconds=1),
            "type": "closed",
            "actor_id": None,
            "data": {},
            "seq": last.seq + 1,
            "prev_hash": last.hash,
            "hash": link(last.hash, b"whatever"),
        }
        await connection.execute(insert(EVENTS), forged)
    (broken,) = (await verification(world, admin))["breaks"]
    assert broken["code"] == "row_added"
    assert broken["values"] == {
        "event_id": broken["event_id"],
        "seq": last.seq + 1,
        "head_seq": last.seq,
    }
    async with world.runtime.engine.begin() as connection:
        await connection.execute(delete(EVENTS).where(EVENTS.c.incident_id == incident["id"]))
    (broken,) = (await verification(world, admin))["breaks"]
    assert (broken["code"], broken["values"]) == ("head_without_events", {"head_seq": last.seq})
    assert broken["text"].endswith("its head names events that are gone")


async def events_of(connection: AsyncConnection, incident_id: str) -> list[Row[Any]]:
    query = select(EVENTS).where(EVENTS.c.incident_id == incident_id).order_by(EVENTS.c.seq)
    return list((await connection.execute(query)).all())
