"""Real server processes with the notifiers on: two on one PostgreSQL database, where a leader
whose phone is off is texted and called out for once, not once a process; and one killed and
started again, where a leader whose phone was connected is given time to reconnect."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from dispatch.jobs.models import Job
from dispatch.reachability.models import Presence
from tests.notifiers.receiver import Receiver
from tests.processes import ServerProcess, cli, server_env
from tests.realtime.test_durability import build_town, events_of
from tests.support import QINGXI, get_token, open_socket

PHONE = "13800138000"


@pytest.fixture
def servers() -> Iterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    yield started
    for server in started:
        server.stop()


async def test_two_processes_send_each_notification_once(
    postgres_only: str, tmp_path: Path, servers: list[ServerProcess]
) -> None:
    """The check falls due on both processes, as each of the SMS's retries does: the gateway,
    failing once, gets the text twice (its one retry), the webhook once, and each attempt is
    on record once at the server's time."""
    sms = Receiver(((500, {"error": "gateway down"}), (200, {"ok": True})))
    hook = Receiver()
    await sms.start()
    await hook.start()
    try:
        env = server_env(
            postgres_only,
            tmp_path,
            chain_targets="60,180,300",
            notify_after_s="1",
            notify_backoff_s="0.5",
            sms_gateway_url=sms.url,
            webhook_url=hook.url,
            webhook_secret="webhook-secret-for-tests",
        )
        a = ServerProcess(env, tmp_path / "a.log")
        b = ServerProcess(env, tmp_path / "b.log")
        servers.extend([a, b])
        town = await build_town(a, ring_team=False)
        await b.start()
        async with httpx.AsyncClient(base_url=b.base_url) as on_b:
            users = (await on_b.get("/api/v1/users", headers=town.admin)).json()
            leader_id = next(u["id"] for u in users if u["name"] == town.leaders[0].name)
            reply = await on_b.put(
                f"/api/v1/users/{leader_id}/phone", json={"phone": PHONE}, headers=town.admin
            )
            assert reply.status_code == 200, reply.text
            body = {"location": {"lon": QINGXI[0], "lat": QINGXI[1]}, "category": "fight"}
            reply = await on_b.post("/api/v1/incidents", json=body, headers=town.operator)
            assert reply.status_code == 201, reply.text
            incident = reply.json()
        # Every leader of the town is offline: each is texted (the fixed post's has a phone).
        await sms.wait_for(2, timeout=20)
        await hook.wait_for(len(incident["dispatches"]), timeout=20)
        records = await settled(a, town.operator, incident["id"])
        # Long enough for a second process's duplicate to have come.
        await asyncio.sleep(3)

        assert len(sms.requests) == 2
        assert [r.json()["to"] for r in sms.requests] == [PHONE, PHONE]
        hooks = [r.json() for r in hook.requests]
        assert len(hooks) == len(incident["dispatches"])
        assert len({h["leader"]["id"] for h in hooks}) == len(hooks)
        assert {r.headers["x-dispatch-delivery"] for r in hook.requests} == {
            n["id"] for n in records if n["channel"] == "webhook"
        }
        [texted] = [n for n in records if n["channel"] == "sms" and n["user_id"] == leader_id]
        assert [(t["attempt"], t["ok"]) for t in texted["attempts"]] == [(1, False), (2, True)]
        assert texted["status"] == "notified"
        assert [n for n in records if n["channel"] == "sms" and n["user_id"] != leader_id] == [
            n for n in records if n["channel"] == "sms" and n["status"] == "failed"
        ]
        events = await events_of(b, town, incident["id"])
        notified = [e for e in events if e["type"] == "notified"]
        assert sorted((e["data"]["channel"], e["data"]["user_id"]) for e in notified) == sorted(
            (n["channel"], n["user_id"]) for n in records if n["status"] == "notified"
        )
        assert len(notified) == len(hooks) + 1
        # Each attempt began after the check fell due, by the server's clock, the retry after
        # the first try.
        first, second = texted["attempts"]
        assert texted["created_at"] <= first["at"] < second["at"]
    finally:
        await sms.stop()
        await hook.stop()


async def settled(server: ServerProcess, headers: dict[str, str], incident_id: str) -> Any:
    """The incident's notifications once none is pending."""
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        for _ in range(200):
            reply = await http.get(
                f"/api/v1/incidents/{incident_id}/notifications", headers=headers
            )
            records = reply.json()
            if records and all(n["status"] != "pending" for n in records):
                return records
            await asyncio.sleep(0.1)
    raise AssertionError("the notifications never settled")


async def test_a_phone_connected_when_the_server_was_killed_is_given_its_grace_at_restart(
    clean_database: str, tmp_path: Path, servers: list[ServerProcess]
) -> None:
    """kill -9 right after an alert reached the phone, its acknowledgement not yet written,
    and the server started again at once: the process that died left the leader's socket open
    on record, so his alert's check, falling due as the server is back, waits for his phone
    instead of texting him (before, the text went as the server started), and the phone,
    reconnecting, acknowledges the alert: no text goes. On PostgreSQL the dead process's
    heartbeat is still fresh then (it is taken as dead after three missed beats, 30 s): it is
    known dead at once by its lock, which PostgreSQL freed as its connection closed (before,
    its leaders were taken as still connected to it, and texted at once)."""
    sms = Receiver()
    await sms.start()
    try:
        env = server_env(
            clean_database,
            tmp_path,
            sms_gateway_url=sms.url,
            notify_after_s="3",
            notify_reconnect_grace_s="10",
        )
        server = ServerProcess(env, tmp_path / "server.log")
        servers.append(server)
        await cli(env, "users", "add", "chief", "--role", "admin", stdin="admin-password\n")
        await server.start()
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            admin = {"Authorization": f"Bearer {await get_token(http, 'chief', 'admin-password')}"}
            body = {"name": "三中驻点队", "kind": "fixed_post", "location": QINGXI_POINT}
            team = (await http.post("/api/v1/teams", json=body, headers=admin)).json()
            leader = await add(http, admin, "leader1", "leader", team["id"])
            reply = await http.put(
                f"/api/v1/users/{leader}/phone", json={"phone": "13800138000"}, headers=admin
            )
            assert reply.status_code == 200, reply.text
            await add(http, admin, "duty", "operator")
            operator = {"Authorization": f"Bearer {await get_token(http, 'duty', 'pw-operator')}"}
            token = await get_token(http, "leader1", "pw-leader")
            phone = await open_socket(server.ws_url, token)
            await on_record(clean_database, leader)
            body = {"location": QINGXI_POINT, "category": "fight"}
            reply = await http.post("/api/v1/incidents", json=body, headers=operator)
            assert reply.status_code == 201, reply.text
            before = phone.last_seq
            await phone.next_of("alert")
            server.kill()
        await server.start()
        outcome = await check_outcome(clean_database)
        assert outcome.startswith("held until"), outcome
        again = await open_socket(server.ws_url, token, resume_from=before)
        await again.next_of("alert")
        await again.ack()
        checks = await checks_done(clean_database, 2, timeout_s=30)
        assert [c.outcome for c in checks] == [outcome, "not needed: acknowledged"]
        # The check looked again at the end of the grace it was held for.
        assert datetime.fromisoformat(checks[1].data["held_until"]) == checks[1].due_at
        assert sms.requests == []
        await again.close()
    finally:
        await sms.stop()


QINGXI_POINT = {"lon": QINGXI[0], "lat": QINGXI[1]}


async def add(
    http: httpx.AsyncClient, admin: dict[str, str], name: str, role: str, team_id: str = ""
) -> str:
    body = {"name": name, "password": f"pw-{role}", "role": role, "team_id": team_id or None}
    reply = await http.post("/api/v1/users", json=body, headers=admin)
    assert reply.status_code == 201, reply.text
    user_id: str = reply.json()["id"]
    return user_id


async def on_record(database_url: str, user_id: str) -> None:
    """The process writes its sockets' presence within half a second of their opening: the
    phone had been connected that long when the server was killed."""
    engine = create_async_engine(database_url)
    try:
        for _ in range(200):
            async with engine.connect() as connection:
                found = await connection.scalar(
                    select(Presence.connected).where(Presence.user_id == user_id)
                )
            if found:
                return
            await asyncio.sleep(0.05)
    finally:
        await engine.dispose()
    raise AssertionError("the leader's socket never went on record")


async def check_outcome(database_url: str) -> str:
    """The outcome of the first alert check the restarted server did."""
    engine = create_async_engine(database_url)
    try:
        for _ in range(400):
            async with engine.connect() as connection:
                outcome = await connection.scalar(
                    select(Job.outcome).where(Job.kind == "notify.check", Job.status == "done")
                )
            if outcome is not None:
                return str(outcome)
            await asyncio.sleep(0.05)
    finally:
        await engine.dispose()
    raise AssertionError("the check never ran")


async def checks_done(database_url: str, count: int, timeout_s: float) -> list[Job]:
    """The alert checks, once ``count`` of them are done, in the order they fell due."""
    engine = create_async_engine(database_url)
    try:
        for _ in range(int(timeout_s / 0.1)):
            async with AsyncSession(engine) as session:
                found = (
                    await session.scalars(
                        select(Job).where(Job.kind == "notify.check").order_by(Job.due_at)
                    )
                ).all()
            if sum(j.status == "done" for j in found) >= count:
                return list(found)
            await asyncio.sleep(0.1)
    finally:
        await engine.dispose()
    raise AssertionError(f"{count} checks never ran")
