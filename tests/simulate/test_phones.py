"""The simulator's phones against a real server: as the pages do, a phone that hears nothing
for a while pings, and the server's pongs come back."""

from __future__ import annotations

import asyncio
import logging

import pytest

from dispatch.simulate.leaders import Behaviour, Leader, Phones, WorkerJob
from tests.support import World


async def test_a_quiet_phone_pings_as_the_pages_do_and_hears_the_pongs(world: World) -> None:
    team = await world.team("fixed_post")
    account = await world.leader(team)
    leader = Leader(account.id, account.token, team["id"], "fixed_post")
    job = WorkerJob(world.ws_url, world.base_url, [leader], "measure", ping_after_s=0.2)
    phones = Phones(job)
    await phones.connect_all()
    try:
        async with asyncio.timeout(10):
            while phones.pongs < 3:
                await asyncio.sleep(0.05)
    finally:
        results = await phones.finish()
    assert results["connected"] == 1
    # One ping at a time: the next waits until the last one's pong and a quiet spell after it.
    assert results["pings"] - results["pongs"] in (0, 1), results


async def test_a_phone_without_page_pings_sends_none(world: World) -> None:
    team = await world.team("fixed_post")
    account = await world.leader(team)
    leader = Leader(account.id, account.token, team["id"], "fixed_post")
    phones = Phones(WorkerJob(world.ws_url, world.base_url, [leader], "measure"))
    await phones.connect_all()
    await asyncio.sleep(0.5)
    results = await phones.finish()
    assert (results["connected"], results["pings"], results["pongs"]) == (1, 0, 0)


@pytest.mark.parametrize(
    ("change", "code"), [({"disabled": True}, 4002), ({"password": "x" * 12}, 4003)]
)
async def test_a_phone_whose_login_the_admin_ended_does_not_come_back(
    world: World, caplog: pytest.LogCaptureFixture, change: dict[str, object], code: int
) -> None:
    """A simulated leader disabled or given a new password mid-run: his socket is closed
    saying so (4002, 4003), and his phone, as the pages, does not reconnect with the dead
    token, as after a refused token (1008)."""
    admin = await world.admin()
    team = await world.team("fixed_post")
    account = await world.leader(team)
    leader = Leader(account.id, account.token, team["id"], "fixed_post")
    phones = Phones(WorkerJob(world.ws_url, world.base_url, [leader], "simulate"))
    await phones.connect_all()
    caplog.set_level(logging.WARNING, logger="dispatch.simulate.leaders")
    try:
        reply = await world.http.patch(
            f"/api/v1/users/{account.id}", json=change, headers=admin.headers
        )
        assert reply.status_code == 200, reply.text
        async with asyncio.timeout(10):
            while phones.drops < 1:
                await asyncio.sleep(0.05)
        await asyncio.sleep(2)  # past the first reconnect's backoff
    finally:
        results = await phones.finish()
    assert (results["drops"], results["resumed"]) == (1, 0)
    assert f"token refused ({code}), not coming back" in caplog.text


def test_a_team_answers_an_incident_alike_in_two_runs_of_one_seed() -> None:
    """Common chances for layouts compared: a team's leader draws the same for the same
    incident whichever worker plays him, and differently for another team or incident."""
    leader = Leader("u1", "t", "team-1", "fixed_post", team_key="工业园驻点")
    incident = {"id": "id-of-run-1", "description": "模拟警情 #7"}
    in_one_run = Phones(WorkerJob("ws://x", "http://x", [leader], seed=1000, run_seed=1))
    in_another = Phones(WorkerJob("ws://x", "http://x", [leader], seed=1003, run_seed=1))
    again = {**incident, "id": "id-of-run-2"}
    first = in_one_run.draws(leader, incident).random()
    assert in_another.draws(leader, again).random() == first
    other_team = Leader("u2", "t", "team-2", "fixed_post", team_key="机动队")
    assert in_one_run.draws(other_team, incident).random() != first
    other_incident = {**incident, "description": "模拟警情 #8"}
    assert in_one_run.draws(leader, other_incident).random() != first
    other_seed = Phones(WorkerJob("ws://x", "http://x", [leader], seed=2000, run_seed=2))
    assert other_seed.draws(leader, incident).random() != first


async def test_a_leader_whose_incident_closed_before_he_answered_is_not_counted_accepting(
    world: World,
) -> None:
    """Closed before the leader's accept: the server refuses it (409) and records nothing, so
    the run does not count it among the accepts; it counts it as stopped by the close."""
    team = await world.team("fixed_post")
    account = await world.leader(team)
    leader = Leader(account.id, account.token, team["id"], "fixed_post", team_key="驻点")
    # The accept about 0.2 s after the alert (2 s, ten times faster), never missed.
    behaviour = Behaviour(speed=10.0, miss_share=0.0, accept_median_s=2.0)
    phones = Phones(WorkerJob(world.ws_url, world.base_url, [leader], "simulate", behaviour))
    await phones.connect_all()
    try:
        operator = await world.operator()
        incident = await world.report(operator)
        closed = await world.http.post(
            f"/api/v1/incidents/{incident['id']}/close", headers=operator.headers
        )
        assert closed.status_code == 200, closed.text
        async with asyncio.timeout(10):
            while phones.acts_done["accepted"] + phones.acts_done.get("closed", 0) == 0:
                await asyncio.sleep(0.05)
    finally:
        results = await phones.finish()
    acts = results["acts"]
    assert (acts["accepted"], acts.get("closed"), acts["errors"]) == (0, 1, 0), acts
    record = await world.incident(operator, incident["id"])
    assert record["dispatches"][0]["accepted_at"] is None
