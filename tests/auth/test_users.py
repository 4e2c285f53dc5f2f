"""Accounts made by an admin: a name is one account's, however many ask for it at once."""

from __future__ import annotations

import uuid

import httpx

from tests.rosters.races import at_once, racing_a_writer, statuses
from tests.support import World


async def test_a_name_asked_for_by_requests_at_once_makes_one_account(world: World) -> None:
    admin = await world.admin()
    body = {"name": "dupX", "password": "password123", "role": "operator"}

    async def create(_: int) -> httpx.Response:
        return await world.http.post("/api/v1/users", json=body, headers=admin.headers)

    replies = await at_once(create)

    assert statuses(replies) == [201] + [409] * 7
    for refused in (r for r in replies if r.status_code == 409):
        assert refused.json()["error"] == "conflict" and refused.json()["field"] == "name"
    users = (await world.http.get("/api/v1/users", headers=admin.headers)).json()
    assert [u["name"] for u in users].count("dupX") == 1


async def test_a_name_taken_while_the_password_is_hashed_is_a_conflict(world: World) -> None:
    """On PostgreSQL: another transaction holds the name, not committed yet, when the request
    looks; it commits while the request hashes and inserts."""
    admin = await world.admin()
    body = {"name": "dupX", "password": "password123", "role": "operator"}

    reply = await racing_a_writer(
        world,
        lambda: world.http.post("/api/v1/users", json=body, headers=admin.headers),
        "INSERT INTO users (id, name, password_hash, role, disabled, created_at)"
        " VALUES ($1, 'dupX', 'x', 'operator', false, now())",
        uuid.uuid4().hex,
    )

    assert reply.status_code == 409, reply.text
    assert reply.json()["field"] == "name"
    assert "dupX" in reply.json()["detail"]
