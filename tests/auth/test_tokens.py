"""Accounts and tokens: Argon2 hashes, expiry, logout, disabling, password resets, signatures."""

from __future__ import annotations

import asyncio
import json
from typing import Literal

import jwt
import pytest
from argon2 import PasswordHasher, extract_parameters
from sqlalchemy import select
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from dispatch.auth.models import RevokedToken, User
from dispatch.realtime import ACCOUNT_DISABLED, LOGGED_OUT, LOGIN_ENDED, PASSWORD_RESET
from tests.support import World

# What a page is told of a login an administrator ended (docs/api.md), each its own 401.
DISABLED_401 = (401, "the account was disabled (account disabled): ask your administrator")
RESET_401 = (
    401,
    "the password was reset by an administrator (password reset): log in with the new password",
)
ENDED_401 = (
    401,
    "the bearer token was issued before the password was reset or the account disabled"
    " (login ended): log in again",
)


async def me(world: World, token: str) -> tuple[int, str]:
    reply = await world.http.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    return reply.status_code, reply.json().get("detail", "")


async def hello_closes_with(world: World, token: str) -> int:
    async with connect(world.ws_url, compression=None) as ws:
        await ws.send(json.dumps({"type": "hello", "token": token, "resume_from": 0}))
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code


async def test_passwords_are_stored_as_argon2id_hashes(world: World) -> None:
    operator = await world.operator()
    async with world.runtime.sessionmaker() as session:
        stored = await session.scalar(select(User.password_hash).where(User.id == operator.id))
    assert stored is not None and stored.startswith("$argon2id$")
    assert operator.password not in stored


async def test_logout_revokes_that_token_at_once_and_only_that_one(world: World) -> None:
    leader = await world.leader(await world.team())
    console = await world.relogin(leader)
    assert await me(world, leader.token) == (200, "")

    reply = await world.http.post("/api/v1/auth/logout", headers=leader.headers)
    assert reply.status_code == 204

    assert await me(world, leader.token) == (401, "the bearer token was revoked (logged out)")
    assert (await me(world, console.token))[0] == 200
    assert await hello_closes_with(world, leader.token) == LOGGED_OUT
    again = await world.http.post("/api/v1/auth/logout", headers=leader.headers)
    assert again.status_code == 401


async def test_a_disabled_users_tokens_stop_working_at_once(world: World) -> None:
    admin = await world.admin()
    leader = await world.leader(await world.team())
    assert (await me(world, leader.token))[0] == 200

    reply = await world.http.patch(
        f"/api/v1/users/{leader.id}", json={"disabled": True}, headers=admin.headers
    )
    assert reply.status_code == 200 and reply.json()["disabled"] is True

    assert await me(world, leader.token) == DISABLED_401
    assert await hello_closes_with(world, leader.token) == ACCOUNT_DISABLED
    login = {"username": leader.name, "password": leader.password}
    assert (await world.http.post("/api/v1/auth/token", data=login)).status_code == 401

    await world.http.patch(
        f"/api/v1/users/{leader.id}", json={"disabled": False}, headers=admin.headers
    )
    assert (await world.http.post("/api/v1/auth/token", data=login)).status_code == 200


async def test_a_disabled_user_with_his_right_password_is_told_his_account_is_disabled(
    world: World,
) -> None:
    """He stops retrying his password and asks his administrator. A wrong password tells
    nothing: the same answer as a wrong password of an enabled account or an unknown name."""
    admin = await world.admin()
    leader = await world.leader(await world.team())
    enabled = await world.operator()
    await world.http.patch(
        f"/api/v1/users/{leader.id}", json={"disabled": True}, headers=admin.headers
    )

    async def login(name: str, password: str) -> tuple[int, dict[str, str], str]:
        reply = await world.http.post(
            "/api/v1/auth/token", data={"username": name, "password": password}
        )
        return reply.status_code, reply.json(), reply.headers["www-authenticate"]

    assert await login(leader.name, leader.password) == (
        401,
        {"error": "account_disabled", "detail": DISABLED_401[1]},
        "Bearer",
    )
    wrong = (401, {"error": "unauthorized", "detail": "username or password is wrong"}, "Bearer")
    assert await login(leader.name, "not-his-password") == wrong
    assert await login(enabled.name, "not-his-password") == wrong
    assert await login("nobody-of-that-name", "not-his-password") == wrong
    # The administrator sees who tried: a disabled account's right password is a failed login.
    trail = await world.http.get(
        "/api/v1/audit", params={"action": "login_failed"}, headers=admin.headers
    )
    reasons = [
        (row["data"]["username"], row["data"].get("reason")) for row in trail.json()["items"]
    ]
    assert sorted(reasons, key=str) == sorted(
        [
            (leader.name, "account_disabled"),
            (leader.name, None),
            (enabled.name, None),
            ("nobody-of-that-name", None),
        ],
        key=str,
    )


async def test_every_refused_login_costs_one_password_hash_of_the_same_cost(
    world: World,
) -> None:
    """Timing tells no more than the answer: an unknown name, a wrong password and a disabled
    account, with the right password or not, each cost one Argon2 hash with the server's
    parameters, as a login that succeeds does."""
    admin = await world.admin()
    disabled = await world.leader(await world.team())
    enabled = await world.operator()
    await world.http.patch(
        f"/api/v1/users/{disabled.id}", json={"disabled": True}, headers=admin.headers
    )
    hasher = world.runtime.passwords
    spent: list[tuple[str, int, int]] = []

    class Counted(PasswordHasher):
        def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
            spent.append(("hash", self.time_cost, self.memory_cost))
            return super().hash(password, salt=salt)

        def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
            params = extract_parameters(hash if isinstance(hash, str) else hash.decode())
            spent.append(("verify", params.time_cost, params.memory_cost))
            return super().verify(hash, password)

    world.runtime.passwords = Counted(time_cost=hasher.time_cost, memory_cost=hasher.memory_cost)
    cost = (hasher.time_cost, hasher.memory_cost)
    tries = [
        ("nobody-of-that-name", "a-guess", "hash"),
        (enabled.name, "a-guess", "verify"),
        (enabled.name, enabled.password, "verify"),
        (disabled.name, "a-guess", "verify"),
        (disabled.name, disabled.password, "verify"),
    ]
    for name, password, way in tries:
        spent.clear()
        await world.http.post("/api/v1/auth/token", data={"username": name, "password": password})
        assert spent == [(way, *cost)], (name, password)


async def test_disabled_is_a_json_true_or_false(world: World) -> None:
    """As the schema's boolean says: "false", 0 or "no" is refused naming the field, not read
    as false (nor "true" or 1 as true), and the account stays as it was."""
    admin = await world.admin()
    leader = await world.leader(await world.team())
    for value in ("false", 0, "no", "true", 1, "yes"):
        reply = await world.http.patch(
            f"/api/v1/users/{leader.id}", json={"disabled": value}, headers=admin.headers
        )
        assert reply.status_code == 422, (value, reply.text)
        assert [f["field"] for f in reply.json()["fields"]] == ["disabled"], reply.text
    assert await me(world, leader.token) == (200, "")
    reply = await world.http.patch(
        f"/api/v1/users/{leader.id}", json={"disabled": False}, headers=admin.headers
    )
    assert reply.status_code == 200 and reply.json()["disabled"] is False


async def test_a_token_from_before_disabling_stays_dead_when_the_account_is_enabled_again(
    world: World,
) -> None:
    admin = await world.admin()
    leader = await world.leader(await world.team())
    # The lost phone's token, used once, so that the server holds it in its token cache too.
    assert (await me(world, leader.token))[0] == 200
    world.clock.advance(1)
    await world.http.patch(
        f"/api/v1/users/{leader.id}", json={"disabled": True}, headers=admin.headers
    )
    world.clock.advance(60)
    reply = await world.http.patch(
        f"/api/v1/users/{leader.id}", json={"disabled": False}, headers=admin.headers
    )
    assert reply.status_code == 200 and reply.json()["disabled"] is False

    assert await me(world, leader.token) == ENDED_401
    assert await hello_closes_with(world, leader.token) == LOGIN_ENDED
    # The new phone signs in.
    new_phone = await world.relogin(leader)
    assert await me(world, new_phone.token) == (200, "")


async def test_a_password_reset_ends_every_token_issued_before_it(world: World) -> None:
    admin = await world.admin()
    operator = await world.operator()
    # Used once, so that the server holds it in its token cache too.
    assert (await me(world, operator.token))[0] == 200
    world.clock.advance(1)
    reply = await world.http.patch(
        f"/api/v1/users/{operator.id}",
        json={"password": "a-new-long-password"},
        headers=admin.headers,
    )
    assert reply.status_code == 200
    assert await me(world, operator.token) == RESET_401
    assert await hello_closes_with(world, operator.token) == PASSWORD_RESET
    old = {"username": operator.name, "password": operator.password}
    assert (await world.http.post("/api/v1/auth/token", data=old)).status_code == 401
    new = {"username": operator.name, "password": "a-new-long-password"}
    fresh = await world.http.post("/api/v1/auth/token", data=new)
    assert fresh.status_code == 200
    assert (await me(world, fresh.json()["access_token"]))[0] == 200


async def test_tokens_expire_by_the_server_clock(world: World) -> None:
    operator = await world.operator()
    world.clock.advance(world.runtime.settings.token_ttl_s - 1)
    assert (await me(world, operator.token))[0] == 200
    world.clock.advance(1)
    assert await me(world, operator.token) == (401, "the bearer token has expired")
    assert await hello_closes_with(world, operator.token) == 1008


async def test_forged_and_unsigned_tokens_are_refused(world: World) -> None:
    operator = await world.operator()
    claims = jwt.decode(operator.token, options={"verify_signature": False})
    forged = jwt.encode(claims, "not-the-server-secret-" * 3, algorithm="HS256")
    unsigned = jwt.encode(claims, key=None, algorithm="none")
    without_id = jwt.encode(
        {k: v for k, v in claims.items() if k != "jti"}, world.runtime.secret, algorithm="HS256"
    )
    for token in (forged, unsigned, without_id, "garbage"):
        assert await me(world, token) == (401, "the bearer token is invalid"), token
    no_scheme = await world.http.get("/api/v1/auth/me", headers={"Authorization": operator.token})
    assert no_scheme.status_code == 401
    assert no_scheme.headers["www-authenticate"] == "Bearer"


async def test_expired_revocations_are_forgotten(world: World) -> None:
    first = await world.operator()
    await world.http.post("/api/v1/auth/logout", headers=first.headers)
    world.clock.advance(world.runtime.settings.token_ttl_s + 1)
    second = await world.relogin(first)
    await world.http.post("/api/v1/auth/logout", headers=second.headers)
    async with world.runtime.sessionmaker() as session:
        kept = list(await session.scalars(select(RevokedToken.jti)))
    # The first login's tokens would have expired anyway: only the second login is remembered.
    assert kept == [jwt.decode(second.token, options={"verify_signature": False})["sid"]]


async def test_the_schema_says_a_logins_401_is_a_wrong_name_or_password(world: World) -> None:
    """Not the generic 401 of a missing or bad token: the login takes no token."""
    operator = await world.operator()
    reply = await world.http.post(
        "/api/v1/auth/token", data={"username": operator.name, "password": "not it"}
    )
    assert reply.status_code == 401
    assert reply.json()["detail"] == "username or password is wrong"
    schema = (await world.http.get("/openapi.json")).json()
    declared = schema["paths"]["/api/v1/auth/token"]["post"]["responses"]["401"]
    assert declared["description"] == (
        "wrong name or password, or a disabled user (`account_disabled` only with the "
        "right password)"
    )
