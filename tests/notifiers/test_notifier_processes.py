"""Two real server processes on one PostgreSQL database, both with the notifiers on: a leader
whose phone is off is texted and called out for once, not once a process."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.notifiers.receiver import Receiver
from tests.processes import ServerProcess, server_env
from tests.realtime.test_durability import build_town, events_of
from tests.support import QINGXI

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
