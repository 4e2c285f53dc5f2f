"""Prometheus metrics scraped over HTTP as Prometheus would, moving as the chain runs."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from dispatch.incidents.models import IncidentEvent
from tests.processes import ServerProcess, cli, server_env
from tests.support import QINGXI, World, get_token, open_socket

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(world: World) -> Samples:
    reply = await world.http.get("/metrics")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(reply.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def until(world: World, name: str, target: float, **labels: str) -> Samples:
    for _ in range(250):
        samples = await scrape(world)
        if value(samples, name, **labels) >= target:
            return samples
        await asyncio.sleep(0.02)
    raise AssertionError(f"{name}{labels} never reached {target}")


async def test_a_report_moves_each_series_by_all_it_did(world: World) -> None:
    # Two tier-1 teams of two leaders each, a tier-2 team of one: the series of a tier moves by
    # the report's dispatches and alerts of that tier, not by one.
    posts = [await world.team("fixed_post", lon=QINGXI[0] + i * 0.0002) for i in range(2)]
    patrol = await world.team("patrol", radius_m=3000)
    for team in (*posts, *posts, patrol):
        await world.leader(team)
    operator = await world.operator()
    before = await scrape(world)

    incident = await world.report(operator)
    after = await scrape(world)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert sorted(d["tier"] for d in incident["dispatches"]) == [1, 1, 2]
    assert moved("dispatch_incidents_reported_total") == 1
    assert moved("dispatch_dispatches_total", tier="1", ring="0") == 2
    assert moved("dispatch_dispatches_total", tier="2", ring="0") == 1
    assert moved("dispatch_alerts_sent_total", tier="1") == 4
    assert moved("dispatch_alerts_sent_total", tier="2") == 1

    await world.report(operator)
    again = await scrape(world)
    assert (
        value(again, "dispatch_alerts_sent_total", tier="1")
        - value(after, "dispatch_alerts_sent_total", tier="1")
        == 4
    )


async def test_the_chain_moves_the_metrics_as_it_happens(world: World) -> None:
    team = await world.team("fixed_post")
    await world.team("patrol", radius_m=3000)
    leader = await world.leader(team)
    operator = await world.operator()
    console = await world.connect(operator)
    phone = await world.connect(leader)
    before = await scrape(world)
    assert value(before, "dispatch_websocket_connections", role="leader") == 1
    assert value(before, "dispatch_websocket_connections", role="operator") == 1

    incident = await world.report(operator)
    after_report = await scrape(world)

    def moved(name: str, **labels: str) -> float:
        return value(after_report, name, **labels) - value(before, name, **labels)

    assert moved("dispatch_incidents_reported_total") == 1
    assert moved("dispatch_dispatches_total", tier="1", ring="0") == 1
    assert moved("dispatch_dispatches_total", tier="2", ring="0") == 1
    assert moved("dispatch_alerts_sent_total", tier="1") == 1
    assert moved("dispatch_alerts_delivered_total", tier="1") == 0

    alert = await phone.next_of("alert")
    world.clock.advance(0.75)
    await phone.ack(alert["seq"])
    delivered = await until(world, "dispatch_alerts_delivered_total", 1, tier="1")
    assert value(delivered, "dispatch_report_to_delivery_seconds_count", tier="1") == 1
    assert value(delivered, "dispatch_report_to_delivery_seconds_sum", tier="1") == 0.75
    assert value(delivered, "dispatch_report_to_delivery_seconds_bucket", tier="1", le="0.5") == 0
    assert value(delivered, "dispatch_report_to_delivery_seconds_bucket", tier="1", le="1.0") == 1

    [tier1] = [d["id"] for d in incident["dispatches"] if d["tier"] == 1]
    world.clock.advance(10)
    reply = await world.http.post(f"/api/v1/dispatches/{tier1}/accept", headers=leader.headers)
    assert reply.status_code == 200
    world.clock.advance(30)
    reply = await world.http.post(f"/api/v1/dispatches/{tier1}/arrive", headers=leader.headers)
    assert reply.status_code == 200
    arrived = await scrape(world)
    assert value(arrived, "dispatch_alerts_acknowledged_total", tier="1") == 1
    assert value(arrived, "dispatch_time_to_arrival_seconds_count", tier="1") == 1
    assert value(arrived, "dispatch_time_to_arrival_seconds_sum", tier="1") == 40.75
    assert value(arrived, "dispatch_time_to_arrival_seconds_bucket", tier="1", le="45.0") == 1
    assert value(arrived, "dispatch_chain_met_total", tier="1") == 1
    assert value(arrived, "dispatch_chain_breaches_total", tier="2") == 0

    world.clock.advance(180)
    breached = await until(world, "dispatch_chain_breaches_total", 1, tier="2")
    assert value(breached, "dispatch_chain_breaches_total", tier="1") == 0
    await console.close()
    await phone.close()
    for _ in range(250):
        gone = await scrape(world)
        if value(gone, "dispatch_websocket_connections", role="leader") == 0:
            break
        await asyncio.sleep(0.02)
    assert value(gone, "dispatch_websocket_connections", role="operator") == 0


async def test_the_time_to_arrival_is_the_tiers_first_team_once_a_tier(world: World) -> None:
    """Two fixed posts cover the incident, on scene at 30 s and at 90 s: tier 1 was reached
    at 30 s, once. Each team's time in the histogram made a tier reached in 30 s look like
    one of 60 s at the median, and a tier of two teams count as two."""
    posts = [await world.team("fixed_post", lon=QINGXI[0] + i * 0.0002) for i in range(2)]
    leaders = [await world.leader(post) for post in posts]
    operator = await world.operator()
    before = await scrape(world)
    incident = await world.report(operator)
    world.clock.advance(30)
    assert await world.arrive(incident, posts[0], leaders[0]) == 200
    world.clock.advance(60)
    assert await world.arrive(incident, posts[1], leaders[1]) == 200
    after = await scrape(world)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, tier="1", **labels) - value(before, name, tier="1", **labels)

    assert moved("dispatch_time_to_arrival_seconds_count") == 1
    assert moved("dispatch_time_to_arrival_seconds_sum") == 30
    assert moved("dispatch_time_to_arrival_seconds_bucket", le="30.0") == 1


async def test_a_breach_an_arrival_by_the_deadline_withdrew_is_counted_as_withdrawn(
    world: World,
) -> None:
    """The timer breaches tier 1 while an arrival that came in by the deadline waits: the
    record says met, and only met. The breach stays counted (a counter only goes up), and
    so does its withdrawal: breaches minus withdrawals is what the record says."""
    team = await world.team("fixed_post")
    leader = await world.leader(team)
    operator = await world.operator()
    console = await world.connect(operator)
    before = await scrape(world)
    incident = await world.report(operator)
    [d] = [x for x in incident["dispatches"] if x["team_id"] == team["id"]]
    world.clock.advance(61)
    await console.next_of("chain.breached")
    world.clock.advance(-1.5)  # the arrival's call came in at 59.5 s
    reply = await world.http.post(f"/api/v1/dispatches/{d['id']}/arrive", headers=leader.headers)
    assert reply.json()["chain"][0]["status"] == "met"
    after = await scrape(world)
    await console.close()

    def moved(name: str) -> float:
        return value(after, name, tier="1") - value(before, name, tier="1")

    assert moved("dispatch_chain_met_total") == 1
    assert moved("dispatch_chain_breaches_total") == 1
    assert moved("dispatch_chain_breach_withdrawals_total") == 1


async def test_a_breach_a_close_by_the_deadline_withdrew_is_counted_as_withdrawn(
    world: World,
) -> None:
    await world.team("fixed_post")
    operator = await world.operator()
    console = await world.connect(operator)
    before = await scrape(world)
    incident = await world.report(operator)
    world.clock.advance(61)
    await console.next_of("chain.breached")
    world.clock.advance(-2)  # the close's call came in at 59 s
    reply = await world.http.post(
        f"/api/v1/incidents/{incident['id']}/close", headers=operator.headers
    )
    assert [c["status"] for c in reply.json()["chain"]] == ["cancelled"] * 3
    after = await scrape(world)
    await console.close()

    def moved(name: str, tier: str) -> float:
        return value(after, name, tier=tier) - value(before, name, tier=tier)

    assert [moved("dispatch_chain_breaches_total", t) for t in "123"] == [1, 0, 0]
    assert [moved("dispatch_chain_breach_withdrawals_total", t) for t in "123"] == [1, 0, 0]
    assert [moved("dispatch_chain_met_total", t) for t in "123"] == [0, 0, 0]


async def test_every_tier_has_its_chain_series_before_anything_happens(world: World) -> None:
    """A series that first appears at 1 has no increase over a window to Prometheus: the
    first breach of a tier would never show on the dashboard."""
    samples = await scrape(world)
    for name in (
        "dispatch_chain_met_total",
        "dispatch_chain_breaches_total",
        "dispatch_chain_breach_withdrawals_total",
    ):
        tiers = {dict(labels)["tier"] for n, labels in samples if n == name}
        assert tiers == {"1", "2", "3"}, name


async def test_hops_an_arrival_implied_are_neither_a_receipt_nor_an_accept(world: World) -> None:
    team = await world.team("patrol", radius_m=3000)
    leader = await world.leader(team)
    incident = await world.report(await world.operator())
    before = await scrape(world)
    world.clock.advance(100)
    dispatch_id = incident["dispatches"][0]["id"]
    reply = await world.http.post(
        f"/api/v1/dispatches/{dispatch_id}/arrive", headers=leader.headers
    )
    assert reply.json()["dispatches"][0]["accepted_implied"] is True
    after = await scrape(world)
    for name in (
        "dispatch_alerts_delivered_total",
        "dispatch_alerts_acknowledged_total",
        "dispatch_report_to_delivery_seconds_count",
        "dispatch_time_to_arrival_seconds_count",
    ):
        moved = value(after, name, tier="2") - value(before, name, tier="2")
        assert moved == (1 if name == "dispatch_time_to_arrival_seconds_count" else 0), name


async def test_escalations_and_replayed_messages_are_counted(world: World) -> None:
    await world.team("fixed_post", lon=QINGXI[0] + 0.02)  # far: covers nothing here
    ring = await world.team("fixed_post", lon=QINGXI[0] + 0.006)  # ~600 m: in the 1 km ring
    ring_leader = await world.leader(ring)
    operator = await world.operator()
    before = await scrape(world)
    await world.report(operator)
    escalated = await until(world, "dispatch_escalations_total", 1)
    assert value(escalated, "dispatch_dispatches_total", tier="1", ring="1") == 1
    assert value(escalated, "dispatch_replayed_messages_total") == value(
        before, "dispatch_replayed_messages_total"
    )
    # The leader opens the page only now: the stored alert comes from the mailbox.
    phone = await world.connect(ring_leader)
    await phone.next_of("alert")
    replayed = await scrape(world)
    assert (
        value(replayed, "dispatch_replayed_messages_total")
        - value(before, "dispatch_replayed_messages_total")
        == phone.last_seq
    )
    await phone.close()


async def test_a_rolled_back_unit_of_work_counts_nothing(world: World) -> None:
    operator = await world.operator()
    incident = await world.report(operator)
    before = await scrape(world)
    with pytest.raises(RuntimeError):
        async with world.runtime.transaction() as session:
            session.add(
                IncidentEvent(
                    incident_id=incident["id"],
                    at=world.clock.now(),
                    type="breached",
                    actor_id=None,
                    data={"tier": 3, "target_s": 300},
                )
            )
            await session.flush()
            raise RuntimeError("the unit of work fails after its flush")
    after = await scrape(world)
    assert value(after, "dispatch_chain_breaches_total", tier="3") == value(
        before, "dispatch_chain_breaches_total", tier="3"
    )


async def test_database_errors_are_counted_by_kind(world: World) -> None:
    before = await scrape(world)
    with pytest.raises(Exception, match="no_such_table"):
        async with world.runtime.engine.connect() as connection:
            await connection.execute(text("SELECT * FROM no_such_table"))
    after = await scrape(world)
    kinds: dict[str, float] = {
        dict(labels)["error"]: count - before.get((name, labels), 0.0)
        for (name, labels), count in after.items()
        if name == "dispatch_database_errors_total"
    }
    # The same word on SQLite (an OperationalError) and PostgreSQL (UndefinedTableError).
    assert {k: v for k, v in kinds.items() if v} == {"statement": 1}


async def test_the_fan_out_listener_shows_when_there_is_one(world: World) -> None:
    samples = await scrape(world)
    names = {name for name, _ in samples}
    listener: Any = world.runtime.fanout
    if listener is None:  # SQLite: one process, no listener
        assert "dispatch_fanout_connected" not in names
    else:
        assert value(samples, "dispatch_fanout_connected") == 1
        assert value(samples, "dispatch_fanout_errors_total") == listener.errors
    ready = await world.http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["fanout"] == ("off" if listener is None else "connected")


async def test_the_connections_in_use_show_by_pool(world: World) -> None:
    async with world.runtime.transaction() as session:
        await session.execute(text("SELECT 1"))
        held = await scrape(world)
    assert value(held, "dispatch_db_connections", pool="writes", state="in_use") >= 1
    pools = {dict(labels)["pool"] for name, labels in held if name == "dispatch_db_connections"}
    assert pools == {"writes", "reads"}
    for _ in range(250):  # (a timer's pass may hold one for a moment)
        samples = await scrape(world)
        if value(samples, "dispatch_db_connections", pool="writes", state="in_use") == 0:
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("the writers' connection was never given back")
    assert value(samples, "dispatch_db_connections", pool="writes", state="idle") >= 1


# A worker of ``dispatch serve --workers N``, started as far as serving and no further: what
# its shared files say then, before its event loop has run a single pass of anything else.
WORKER_JUST_STARTED = """
import asyncio, os, sys
from prometheus_client import CollectorRegistry, multiprocess
from dispatch.app import create_app

async def main():
    app = create_app()
    async with app.router.lifespan_context(app):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, os.environ["PROMETHEUS_MULTIPROC_DIR"])
        print(registry.get_sample_value("dispatch_fanout_connected"))

asyncio.run(main())
"""


async def test_a_worker_that_has_just_started_says_its_listener_is_up(
    postgres_only: str, tmp_path: Path
) -> None:
    """A worker once said 0 (its listener down) from the making of its metrics to their
    first pass of writing, after the rest of its startup: the scrapes of another worker,
    already serving, said the whole server's listener was down."""
    shared = tmp_path / "metrics"
    shared.mkdir()
    env = {**server_env(postgres_only, tmp_path), "PROMETHEUS_MULTIPROC_DIR": str(shared)}
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        WORKER_JUST_STARTED,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(child.communicate(), timeout=60)
    assert child.returncode == 0, err.decode()
    assert out.decode().split() == ["1.0"]


async def test_any_worker_of_a_server_answers_for_all_of_its_workers(
    postgres_only: str, tmp_path: Path
) -> None:
    """dispatch serve --workers 2: each worker once answered with its own counts alone (8
    scrapes after 6 reports said 3, or 3, or 3...)."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    env = {**server_env(postgres_only, tmp_path), "TMPDIR": str(temporary)}
    await cli(env, "users", "add", "duty", "--role", "operator", stdin="operator-password\n")
    server = ServerProcess(env, tmp_path / "server.log", args=("--workers", "2"))
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            token = await get_token(http, "duty", "operator-password")
        console = await open_socket(server.ws_url, token)

        async def report() -> None:
            # A connection of its own: either worker may take it.
            async with httpx.AsyncClient(base_url=server.base_url) as http:
                body = {"location": {"lon": 114.159, "lat": 22.847}, "category": "fight"}
                headers = {"Authorization": f"Bearer {token}"}
                reply = await http.post("/api/v1/incidents", json=body, headers=headers)
                assert reply.status_code == 201, reply.text

        await asyncio.gather(*(report() for _ in range(6)))

        async def scrape_anew() -> Samples:
            async with httpx.AsyncClient(base_url=server.base_url) as http:
                reply = await http.get("/metrics")
            assert reply.status_code == 200
            return {
                (sample.name, tuple(sorted(sample.labels.items()))): sample.value
                for family in text_string_to_metric_families(reply.text)
                for sample in family.samples
            }

        # Each worker writes its states every second: wait until both have.
        for _ in range(400):
            samples = await scrape_anew()
            workers = {
                dict(labels)["pid"]
                for name, labels in samples
                if name == "dispatch_clock_offset_seconds"
            }
            if len(workers) == 2 and value(
                samples, "dispatch_websocket_connections", role="operator"
            ):
                break
            await asyncio.sleep(0.05)
        assert len(workers) == 2, samples
        for _ in range(8):
            samples = await scrape_anew()
            assert value(samples, "dispatch_incidents_reported_total") == 6
            # The socket is on one worker; the sum over both is 1 whichever answers.
            assert value(samples, "dispatch_websocket_connections", role="operator") == 1
            assert value(samples, "dispatch_fanout_connected") == 1
        await console.close()
    finally:
        server.terminate()
        server.stop()
    started = set(re.findall(r"Started server process \[(\d+)\]", server.output()))
    assert started == workers, server.output()
    # The shared directory was made for this server alone, and is gone with it.
    assert list(temporary.iterdir()) == []
