"""Every hop on record: shown on screen, positions on the way, arrival by geofence or button."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import partial
from typing import Any

from pyproj import Geod

from alerts.acks import AckRecorder
from dispatch.realtime import record_acknowledged
from tests.support import QINGXI, Account, World

GEOD = Geod(ellps="WGS84")


def towards_incident(metres: float) -> dict[str, float]:
    lon, lat, _ = GEOD.fwd(*QINGXI, 120.0, metres)
    return {"lon": float(lon), "lat": float(lat)}


async def setup(world: World) -> tuple[Account, dict[str, Any], str]:
    team = await world.team("mobile")
    leader = await world.leader(team)
    incident = await world.report(await world.operator())
    return leader, incident, incident["dispatches"][0]["id"]


async def test_shown_is_recorded_once_with_server_time(world: World) -> None:
    leader, incident, dispatch_id = await setup(world)
    world.clock.advance(3)
    body = {"device_time": "2020-01-01T08:00:00+08:00"}
    reply = await world.http.post(
        f"/api/v1/dispatches/{dispatch_id}/shown", json=body, headers=leader.headers
    )
    assert reply.status_code == 200
    shown = reply.json()["dispatches"][0]["shown_at"]
    reported = datetime.fromisoformat(incident["reported_at"])
    assert datetime.fromisoformat(shown) - reported == timedelta(seconds=3)
    world.clock.advance(3)
    again = await world.http.post(f"/api/v1/dispatches/{dispatch_id}/shown", headers=leader.headers)
    assert again.json()["dispatches"][0]["shown_at"] == shown


async def test_an_acceptance_is_recorded_at_server_time_keeping_the_tap_time(
    world: World,
) -> None:
    """A tap kept on the phone through an outage arrives late: recorded when it arrives, with
    the phone's clock at the tap beside it."""
    leader, incident, dispatch_id = await setup(world)
    tapped = world.clock.now() + timedelta(seconds=5)
    world.clock.advance(40)
    body = {"device_time": tapped.isoformat()}
    reply = await world.http.post(
        f"/api/v1/dispatches/{dispatch_id}/accept", json=body, headers=leader.headers
    )
    assert reply.status_code == 200, reply.text
    accepted = reply.json()["dispatches"][0]["accepted_at"]
    reported = datetime.fromisoformat(incident["reported_at"])
    assert datetime.fromisoformat(accepted) - reported == timedelta(seconds=40)
    events = (
        await world.http.get(f"/api/v1/incidents/{incident['id']}/events", headers=leader.headers)
    ).json()
    (event,) = [e for e in events if e["type"] == "accepted"]
    assert datetime.fromisoformat(event["data"]["device_time"]) == tapped
    assert event["data"]["device_time"].endswith("+08:00")

    bad = await world.http.post(
        f"/api/v1/dispatches/{dispatch_id}/accept",
        json={"device_time": "yesterday"},
        headers=leader.headers,
    )
    assert bad.status_code == 422 and "device_time" in bad.text


async def test_a_close_accurate_fix_records_arrival_by_geofence(world: World) -> None:
    leader, _, dispatch_id = await setup(world)
    url = f"/api/v1/dispatches/{dispatch_id}/position"
    far = {"location": towards_incident(49.0), "accuracy_m": 10}
    # Not accepted yet: positions are not taken as arrival.
    reply = await world.http.post(url, json=far, headers=leader.headers)
    assert reply.status_code == 200 and reply.json()["arrived"] is False
    await world.http.post(f"/api/v1/dispatches/{dispatch_id}/accept", headers=leader.headers)
    world.clock.advance(20)
    for fix in (
        {"location": towards_incident(80.0), "accuracy_m": 5},
        {"location": towards_incident(20.0), "accuracy_m": 45},
    ):
        reply = await world.http.post(url, json=fix, headers=leader.headers)
        assert reply.json()["arrived"] is False, fix
        # Recording nothing, a fix answers with its distance alone and leaves no audit row.
        assert reply.json()["incident"] is None
    assert await positions_on_the_audit_trail(world) == []
    device_time = (world.clock.now() + timedelta(seconds=7)).isoformat()
    fix = {"location": towards_incident(49.0), "accuracy_m": 30, "device_time": device_time}
    reply = await world.http.post(url, json=fix, headers=leader.headers)
    body = reply.json()
    assert body["arrived"] is True
    assert abs(body["distance_m"] - 49.0) < 0.01
    d = body["incident"]["dispatches"][0]
    assert d["arrival_source"] == "geofence"
    assert d["arrival_accuracy_m"] == 30
    assert d["arrival_clock_skew_s"] == 7.0
    assert body["incident"]["chain"][0]["status"] == "met"
    assert await positions_on_the_audit_trail(world) == [dispatch_id]
    # After the arrival a fix records nothing more.
    reply = await world.http.post(url, json=fix, headers=leader.headers)
    assert (reply.json()["arrived"], reply.json()["incident"]) == (False, None)
    assert await positions_on_the_audit_trail(world) == [dispatch_id]


async def positions_on_the_audit_trail(world: World) -> list[str]:
    reply = await world.http.get(
        "/api/v1/audit",
        params={"action": "record_position"},
        headers=(await world.admin()).headers,
    )
    assert reply.status_code == 200, reply.text
    return [row["target_id"] for row in reply.json()["items"]]


async def test_only_the_leaders_phone_sends_positions(world: World) -> None:
    leader, incident, dispatch_id = await setup(world)
    operator, admin = await world.operator(), await world.admin()
    on_scene = {"location": towards_incident(5.0), "accuracy_m": 5}
    url = f"/api/v1/dispatches/{dispatch_id}/position"
    for office in (operator, admin):
        await world.http.post(f"/api/v1/dispatches/{dispatch_id}/accept", headers=office.headers)
        # A fix an operator sends is no GPS of the team's on scene: it would be recorded as one.
        reply = await world.http.post(url, json=on_scene, headers=office.headers)
        assert reply.status_code == 403, reply.text
        assert "leader's phone" in reply.json()["detail"]
    d = (await world.incident(operator, incident["id"]))["dispatches"][0]
    assert d["arrived_at"] is None
    # On the team's behalf the operator records the arrival as their own.
    reply = await world.http.post(
        f"/api/v1/dispatches/{dispatch_id}/arrive", json=on_scene, headers=operator.headers
    )
    assert reply.json()["dispatches"][0]["arrival_source"] == "operator"
    reply = await world.http.post(url, json=on_scene, headers=leader.headers)
    assert reply.status_code == 200 and reply.json()["arrived"] is False


async def test_the_geofence_decides_on_the_distance_not_on_its_rounding(world: World) -> None:
    leader, _, dispatch_id = await setup(world)
    url = f"/api/v1/dispatches/{dispatch_id}/position"
    await world.http.post(f"/api/v1/dispatches/{dispatch_id}/accept", headers=leader.headers)
    # Both are shown as 50.0 m (to the millimetre); only the one inside the 50 m fence arrives.
    outside = {"location": towards_incident(50.0004), "accuracy_m": 5}
    reply = await world.http.post(url, json=outside, headers=leader.headers)
    assert (reply.json()["distance_m"], reply.json()["arrived"]) == (50.0, False)
    inside = {"location": towards_incident(49.9996), "accuracy_m": 5}
    reply = await world.http.post(url, json=inside, headers=leader.headers)
    assert (reply.json()["distance_m"], reply.json()["arrived"]) == (50.0, True)


async def test_arrive_button_carries_both_clocks(world: World) -> None:
    leader, _, dispatch_id = await setup(world)
    device_time = (world.clock.now() - timedelta(seconds=90)).isoformat()
    body = {"location": towards_incident(10.0), "accuracy_m": 8, "device_time": device_time}
    reply = await world.http.post(
        f"/api/v1/dispatches/{dispatch_id}/arrive", json=body, headers=leader.headers
    )
    d = reply.json()["dispatches"][0]
    assert d["arrival_source"] == "button"
    assert d["arrival_clock_skew_s"] == -90.0
    assert abs(d["arrival_distance_m"] - 10.0) < 0.01


async def test_fixes_are_validated(world: World) -> None:
    leader, _, dispatch_id = await setup(world)
    url = f"/api/v1/dispatches/{dispatch_id}/position"
    for fix, field in [
        ({"location": {"lon": 114.1, "lat": 22.8}}, "accuracy_m"),
        ({"location": {"lon": 114.1, "lat": 122.8}, "accuracy_m": 5}, "location.lat"),
        (
            {
                "location": towards_incident(1),
                "accuracy_m": 5,
                "device_time": "2026-01-01T00:00:00",
            },
            "device_time",
        ),
        ({"location": {"lon": True, "lat": 22.8}, "accuracy_m": 5}, "location.lon"),
        ({"location": towards_incident(1), "accuracy_m": True}, "accuracy_m"),
        ({"location": towards_incident(1), "accuracy_m": "5"}, "accuracy_m"),
    ]:
        reply = await world.http.post(url, json=fix, headers=leader.headers)
        assert reply.status_code == 422, fix
        assert field in reply.json()["detail"]


# Seconds since 1970 and instants that leave the calendar once in UTC: a phone's broken clock.
BAD_DEVICE_TIMES = [12345, "12345", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"]


async def test_a_device_time_off_the_calendar_is_refused_and_the_arrival_waits_for_a_good_one(
    world: World,
) -> None:
    leader, incident, dispatch_id = await setup(world)
    for path, extra in [("position", {"accuracy_m": 5}), ("arrive", {}), ("shown", None)]:
        for device_time in BAD_DEVICE_TIMES:
            body = {"device_time": device_time}
            if extra is not None:
                body |= {"location": towards_incident(1), **extra}
            reply = await world.http.post(
                f"/api/v1/dispatches/{dispatch_id}/{path}", json=body, headers=leader.headers
            )
            assert reply.status_code == 422, (path, device_time, reply.text)
            assert reply.json()["fields"][0]["field"] == "device_time"
    d = (await world.incident(leader, incident["id"]))["dispatches"][0]
    assert d["shown_at"] is None and d["accepted_at"] is None and d["arrived_at"] is None
    # The calendar's first instant in UTC is a time like any other: kept, with its skew.
    body = {"location": towards_incident(1), "device_time": "0001-01-01T00:00:00+00:00"}
    reply = await world.http.post(
        f"/api/v1/dispatches/{dispatch_id}/arrive", json=body, headers=leader.headers
    )
    assert reply.status_code == 200, reply.text
    d = reply.json()["dispatches"][0]
    assert d["arrived_at"] is not None
    assert d["arrival_device_time"].startswith("0001-01-01T08:")
    assert d["arrival_clock_skew_s"] < -6e10


async def test_an_alert_on_screen_was_delivered_even_before_its_ack_is_written(
    world: World,
) -> None:
    leader, incident, dispatch_id = await setup(world)
    world.clock.advance(2)
    reply = await world.http.post(
        f"/api/v1/dispatches/{dispatch_id}/shown", json={}, headers=leader.headers
    )
    d = reply.json()["dispatches"][0]
    assert d["delivered_at"] == d["shown_at"]
    events = (
        await world.http.get(f"/api/v1/incidents/{incident['id']}/events", headers=leader.headers)
    ).json()
    hops = [e["type"] for e in events if e["data"].get("dispatch_id") == dispatch_id]
    assert hops == ["dispatched", "delivered", "shown"]
    # The phone's ack, gathered meanwhile, finds the delivery on record and adds nothing.
    world.clock.advance(1)
    acks = AckRecorder(world.runtime.transaction, partial(record_acknowledged, world.runtime))
    acks.submit(leader.id, 1, world.clock.now())
    assert await acks.flush()
    again = await world.incident(leader, incident["id"])
    assert again["dispatches"][0]["delivered_at"] == d["delivered_at"]
    events = (
        await world.http.get(f"/api/v1/incidents/{incident['id']}/events", headers=leader.headers)
    ).json()
    assert [e["type"] for e in events].count("delivered") == 1


async def test_a_hop_whose_request_began_before_the_ack_was_written_is_not_recorded_before_it(
    world: World,
) -> None:
    leader, incident, dispatch_id = await setup(world)
    world.clock.advance(2)
    # The ack arrived 30 ms after the /shown request began and its group commit won the row
    # lock: the request, stamped at its start, must not record shown before delivered.
    acks = AckRecorder(world.runtime.transaction, partial(record_acknowledged, world.runtime))
    acks.submit(leader.id, 1, world.clock.now() + timedelta(milliseconds=30))
    assert await acks.flush()
    reply = await world.http.post(
        f"/api/v1/dispatches/{dispatch_id}/shown", json={}, headers=leader.headers
    )
    d = reply.json()["dispatches"][0]
    assert d["shown_at"] == d["delivered_at"]
    world.clock.advance(-0.01)
    reply = await world.http.post(
        f"/api/v1/dispatches/{dispatch_id}/accept", json={}, headers=leader.headers
    )
    d = reply.json()["dispatches"][0]
    assert d["delivered_at"] == d["shown_at"] == d["accepted_at"]
    events = (
        await world.http.get(f"/api/v1/incidents/{incident['id']}/events", headers=leader.headers)
    ).json()
    hops = [e for e in events if e["data"].get("dispatch_id") == dispatch_id]
    assert [e["type"] for e in hops] == ["dispatched", "delivered", "shown", "accepted"]
    assert [e["at"] for e in hops] == sorted(e["at"] for e in hops)


async def hop_events(world: World, incident_id: str, dispatch_id: str) -> list[dict[str, Any]]:
    operator = await world.operator()
    reply = await world.http.get(
        f"/api/v1/incidents/{incident_id}/events", headers=operator.headers
    )
    return [e for e in reply.json() if e["data"].get("dispatch_id") == dispatch_id]


def since(incident: dict[str, Any], at: str) -> float:
    return (datetime.fromisoformat(at) - datetime.fromisoformat(incident["reported_at"])).seconds


async def test_an_arrival_recorded_by_an_operator_records_nothing_for_the_phone(
    world: World,
) -> None:
    """A team whose phone never answered arrives, as it says by radio: the operator's record is
    the arrival alone. Neither a delivery nor an accept is made up for the phone; its ack, when
    the phone comes back, is the delivery, and a tap on accept after the arrival changes
    nothing (it would put the accept after the arrival)."""
    leader, incident, dispatch_id = await setup(world)
    operator = await world.operator()
    world.clock.advance(121)
    reply = await world.http.post(
        f"/api/v1/dispatches/{dispatch_id}/arrive", json={}, headers=operator.headers
    )
    assert reply.status_code == 200, reply.text
    d = reply.json()["dispatches"][0]
    assert (d["arrival_source"], since(incident, d["arrived_at"])) == ("operator", 121)
    assert d["delivered_at"] is None and d["accepted_at"] is None
    assert d["delivered_implied"] is False and d["accepted_implied"] is False
    events = await hop_events(world, incident["id"], dispatch_id)
    assert [(e["type"], e["actor_id"]) for e in events] == [
        ("dispatched", None),
        ("arrived", operator.id),
    ]

    world.clock.advance(30)
    phone = await world.connect(leader)
    alert = await phone.next_of("alert")
    await phone.ack(alert["seq"])
    d = (
        await world.wait_for(leader, incident["id"], lambda i: i["dispatches"][0]["delivered_at"])
    )["dispatches"][0]
    assert since(incident, d["delivered_at"]) == 151 and d["delivered_implied"] is False
    world.clock.advance(5)
    reply = await world.http.post(
        f"/api/v1/dispatches/{dispatch_id}/accept", headers=leader.headers
    )
    assert reply.status_code == 200 and reply.json()["dispatches"][0]["accepted_at"] is None
    events = await hop_events(world, incident["id"], dispatch_id)
    assert [e["type"] for e in events] == ["dispatched", "arrived", "delivered"]
    await phone.close()


async def test_an_arrival_without_an_accept_implies_it_and_marks_it_so(world: World) -> None:
    """The leader taps "arrived" at 181 s without accepting, his phone's ack never came: the
    arrival stands for the accept and the delivery, on record at its time and marked implied
    on the dispatch and in the events, so that no segment is measured from them."""
    leader, incident, dispatch_id = await setup(world)
    world.clock.advance(181)
    reply = await world.http.post(
        f"/api/v1/dispatches/{dispatch_id}/arrive", json={}, headers=leader.headers
    )
    d = reply.json()["dispatches"][0]
    assert d["arrival_source"] == "button"
    assert d["delivered_at"] == d["accepted_at"] == d["arrived_at"]
    assert d["delivered_implied"] is True and d["accepted_implied"] is True
    events = await hop_events(world, incident["id"], dispatch_id)
    assert [(e["type"], e["data"].get("implied")) for e in events] == [
        ("dispatched", None),
        ("delivered", True),
        ("accepted", True),
        ("arrived", None),
    ]
    assert {e["actor_id"] for e in events[1:]} == {leader.id}


async def test_an_accept_observed_before_the_arrival_is_not_implied(world: World) -> None:
    """Shown, then arrived without accepting: only the accept is implied."""
    leader, incident, dispatch_id = await setup(world)
    world.clock.advance(4)
    await world.http.post(f"/api/v1/dispatches/{dispatch_id}/shown", headers=leader.headers)
    world.clock.advance(50)
    reply = await world.http.post(
        f"/api/v1/dispatches/{dispatch_id}/arrive", headers=leader.headers
    )
    d = reply.json()["dispatches"][0]
    assert since(incident, d["delivered_at"]) == 4 and d["delivered_implied"] is False
    assert d["accepted_at"] == d["arrived_at"] and d["accepted_implied"] is True


async def test_the_phones_ack_after_an_implied_delivery_replaces_it_once(world: World) -> None:
    """A phone comes back after its leader's arrival, is sent the alert again and acks it:
    that ack is the delivery observed (at the ack's time, after the arrival), replacing the
    implied one on the dispatch, which the operators' board is told; the timeline keeps both,
    the later saying so. The other leader's ack, later still, changes nothing."""
    team = await world.team("mobile")
    leader, other = await world.leader(team), await world.leader(team)
    incident = await world.report(await world.operator())
    dispatch_id = incident["dispatches"][0]["id"]
    board = await world.connect(await world.operator(), resume_from=0)
    world.clock.advance(181)
    await world.http.post(f"/api/v1/dispatches/{dispatch_id}/arrive", headers=leader.headers)
    world.clock.advance(60)
    phone = await world.connect(leader)
    alert = await phone.next_of("alert")
    await phone.ack(alert["seq"])
    news = await board.next_of("dispatches.updated")
    (told,) = news["data"]["dispatches"]
    assert since(incident, told["delivered_at"]) == 241 and told["delivered_implied"] is False
    assert told["accepted_implied"] is True
    d = (await world.incident(leader, incident["id"]))["dispatches"][0]
    assert d["delivered_at"] == told["delivered_at"] and d["delivered_implied"] is False

    world.clock.advance(3)
    acks = AckRecorder(world.runtime.transaction, partial(record_acknowledged, world.runtime))
    acks.submit(other.id, 1, world.clock.now())
    assert await acks.flush()
    assert (await world.incident(leader, incident["id"]))["dispatches"][0] == d
    events = await hop_events(world, incident["id"], dispatch_id)
    delivered = [(since(incident, e["at"]), e["data"]) for e in events if e["type"] == "delivered"]
    assert delivered == [
        (181, {"dispatch_id": dispatch_id, "implied": True}),
        (241, {"dispatch_id": dispatch_id, "replaces_implied": True}),
    ]
    await phone.close()
    await board.close()


async def test_an_ack_gathered_while_the_arrival_waited_is_the_delivery(world: World) -> None:
    """The ack came in 30 ms before the arrival but was written after it: the delivery is the
    ack's, before the arrival, and the accept alone stays implied."""
    leader, incident, dispatch_id = await setup(world)
    world.clock.advance(20)
    acked_at = world.clock.now() - timedelta(milliseconds=30)
    await world.http.post(f"/api/v1/dispatches/{dispatch_id}/arrive", headers=leader.headers)
    acks = AckRecorder(world.runtime.transaction, partial(record_acknowledged, world.runtime))
    acks.submit(leader.id, 1, acked_at)
    assert await acks.flush()
    d = (await world.incident(leader, incident["id"]))["dispatches"][0]
    assert datetime.fromisoformat(d["delivered_at"]) == acked_at
    assert d["delivered_implied"] is False and d["accepted_implied"] is True
    assert d["delivered_at"] < d["accepted_at"] == d["arrived_at"]


async def test_an_ack_that_came_after_the_close_records_no_delivery(world: World) -> None:
    team = await world.team("mobile")
    late, early = await world.leader(team), await world.leader(team)
    operator = await world.operator()
    incident = await world.report(operator)
    world.clock.advance(2)
    before_close = world.clock.now()
    world.clock.advance(1)
    closing = f"/api/v1/incidents/{incident['id']}/close"
    assert (await world.http.post(closing, json={}, headers=operator.headers)).is_success
    world.clock.advance(1)
    acks = AckRecorder(world.runtime.transaction, partial(record_acknowledged, world.runtime))

    # The close ended the chain of hops: an acknowledgement that came after it is none.
    acks.submit(late.id, 1, world.clock.now())
    assert await acks.flush()
    assert (await world.incident(operator, incident["id"]))["dispatches"][0]["delivered_at"] is None

    # One that came before the close, written by its group commit a moment after, is one.
    acks.submit(early.id, 1, before_close)
    assert await acks.flush()
    d = (await world.incident(operator, incident["id"]))["dispatches"][0]
    assert datetime.fromisoformat(d["delivered_at"]) == before_close
    events = (
        await world.http.get(f"/api/v1/incidents/{incident['id']}/events", headers=operator.headers)
    ).json()
    delivered = [e for e in events if e["type"] == "delivered"]
    assert [(e["actor_id"], e["at"]) for e in delivered] == [(early.id, d["delivered_at"])]
