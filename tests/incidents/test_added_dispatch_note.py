"""加派 with a note: the operator's note (调度员附言: which gate, which floor) reaches the added
team's leader — on his alert, in every later copy of the incident he is sent, in the messages
a reconnecting phone is replayed, and in his reads of the incident after a reload — where
before only the incident's timeline kept it. A 加派 without a note says nothing more."""

from __future__ import annotations

from typing import Any

from tests.incidents.test_added_dispatch import add, at
from tests.support import Account, World

NOTE = "从北门进，报警人在二楼\n<b>电梯坏了</b>"


def mine(incident: dict[str, Any], team: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = next(d for d in incident["dispatches"] if d["team_id"] == team["id"])
    return found


async def added_with(
    world: World, note: str | None
) -> tuple[Account, Account, dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A covering post, a patrol outside every zone that covers the place and its leader, an
    incident, and the patrol added to it by an operator with ``note``: (operator, leader,
    patrol, incident, the add's answer)."""
    await world.team("fixed_post")
    patrol = await world.team("patrol", *at(3000, 90), radius_m=1000)
    leader = await world.leader(patrol)
    operator = await world.operator()
    incident = await world.report(operator)
    reply = await add(world, operator, incident["id"], patrol["id"], note)
    assert reply.status_code == 201, reply.text
    return operator, leader, patrol, incident, reply.json()


async def test_the_leader_is_alerted_with_the_operators_note_and_reads_it_after_a_reload(
    world: World,
) -> None:
    await world.team("fixed_post")
    patrol = await world.team("patrol", *at(3000, 90), radius_m=1000)
    leader = await world.leader(patrol)
    operator = await world.operator()
    incident = await world.report(operator)
    assert all(d["note"] is None for d in incident["dispatches"])
    console = await world.connect(operator)
    phone = await world.connect(leader)

    reply = await add(world, operator, incident["id"], patrol["id"], NOTE)
    assert reply.status_code == 201, reply.text
    added = mine(reply.json(), patrol)
    assert added["note"] == NOTE
    covering = next(d for d in reply.json()["dispatches"] if d["team_id"] != patrol["id"])
    assert covering["note"] is None, "a team its zone sent has no note"

    alert = await phone.next_of("alert")
    assert alert["data"]["dispatch"]["note"] == NOTE
    # His copy of the incident (his team's dispatch alone) carries it too, as he stores it.
    [own] = alert["data"]["incident"]["dispatches"]
    assert (own["id"], own["note"]) == (added["id"], NOTE)
    board = await console.next_of("incident.updated")
    assert mine(board["data"], patrol)["note"] == NOTE

    # The board's news of his phone's delivery says the dispatch as it is, note and all.
    await phone.ack()
    hops = await console.next_of("dispatches.updated")
    assert [d["note"] for d in hops["data"]["dispatches"]] == [NOTE]
    # Every later copy he is sent keeps it: the accept's incident.updated.
    reply = await world.http.post(
        f"/api/v1/dispatches/{added['id']}/accept", headers=leader.headers
    )
    assert reply.status_code == 200, reply.text
    assert mine(reply.json(), patrol)["note"] == NOTE
    updated = await phone.next_of("incident.updated")
    assert mine(updated["data"], patrol)["note"] == NOTE

    # A phone reloaded reads the incident from the record: the note is derived from the
    # team_added event, in the incident and in his list of incidents.
    assert mine(await world.incident(leader, incident["id"]), patrol)["note"] == NOTE
    listed = await world.read("/api/v1/incidents", leader, status="open")
    assert mine(next(i for i in listed if i["id"] == incident["id"]), patrol)["note"] == NOTE
    assert mine(await world.incident(operator, incident["id"]), patrol)["note"] == NOTE
    await console.close()
    await phone.close()


async def test_a_phone_that_missed_the_alert_is_replayed_it_with_the_note(world: World) -> None:
    """Offline when the team was added: the phone's hello replays the stored alert, note and
    all; reconnecting after it (resume_from its last seq before the alert) does the same."""
    await world.team("fixed_post")
    patrol = await world.team("patrol", *at(3000, 90), radius_m=1000)
    leader = await world.leader(patrol)
    operator = await world.operator()
    first = await world.report(operator)
    second = await world.report(operator)
    reply = await add(world, operator, first["id"], patrol["id"], "第一起：走东侧楼梯")
    assert reply.status_code == 201, reply.text

    phone = await world.connect(leader)
    alert = await phone.next_of("alert")
    assert alert["data"]["dispatch"]["note"] == "第一起：走东侧楼梯"
    seen = phone.last_seq
    await phone.close()

    reply = await add(world, operator, second["id"], patrol["id"], NOTE)
    assert reply.status_code == 201, reply.text
    phone = await world.connect(leader, resume_from=seen)
    alert = await phone.next_of("alert")
    assert alert["data"]["incident"]["id"] == second["id"]
    assert alert["data"]["dispatch"]["note"] == NOTE
    assert alert["data"]["incident"]["dispatches"][0]["note"] == NOTE
    await phone.close()


async def test_a_dispatch_added_without_a_note_has_none(world: World) -> None:
    _, leader, patrol, incident, answer = await added_with(world, None)
    assert mine(answer, patrol)["note"] is None
    phone = await world.connect(leader)
    alert = await phone.next_of("alert")
    assert alert["data"]["dispatch"]["note"] is None
    assert mine(await world.incident(leader, incident["id"]), patrol)["note"] is None
    await phone.close()


async def test_a_note_of_blanks_alone_is_no_note(world: World) -> None:
    operator, leader, patrol, incident, answer = await added_with(world, " \n\t ")
    assert mine(answer, patrol)["note"] is None
    assert mine(await world.incident(leader, incident["id"]), patrol)["note"] is None
    # The timeline keeps what was sent.
    timeline = await world.read(f"/api/v1/incidents/{incident['id']}/events", operator)
    assert [e["data"]["note"] for e in timeline if e["type"] == "team_added"] == [" \n\t "]


async def test_a_note_too_long_or_with_a_control_character_is_refused_naming_note(
    world: World,
) -> None:
    await world.team("fixed_post")
    patrol = await world.team("patrol", *at(3000, 90), radius_m=1000)
    operator = await world.operator()
    incident = await world.report(operator)
    for note in ("x" * 501, "北门\x07"):
        reply = await add(world, operator, incident["id"], patrol["id"], note)
        assert reply.status_code == 422, reply.text
        assert [f["field"] for f in reply.json()["fields"]] == ["note"], reply.text
    after = await world.incident(operator, incident["id"])
    assert patrol["id"] not in [d["team_id"] for d in after["dispatches"]]
    # 500 characters are taken, and said whole.
    reply = await add(world, operator, incident["id"], patrol["id"], "门" * 500)
    assert reply.status_code == 201, reply.text
    assert mine(reply.json(), patrol)["note"] == "门" * 500
