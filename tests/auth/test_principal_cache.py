"""The token cache: a repeated token costs no query, and every change that ends tokens still
ends them at once, in this process and in the others."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event, update
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from dispatch.auth.cache import Principals
from dispatch.auth.models import Role, User
from dispatch.auth.service import Principal
from dispatch.clock import ManualClock
from dispatch.config import Settings
from dispatch.db import create_engine
from dispatch.realtime import ACCOUNT_DISABLED, LOGGED_OUT
from dispatch.runtime import Runtime
from tests.auth.test_tokens import DISABLED_401, hello_closes_with, me
from tests.conftest import RunningServer
from tests.processes import ServerProcess, cli, server_env
from tests.support import World, get_token, sync_engines


@contextmanager
def token_lookups(runtime: Runtime) -> Iterator[list[str]]:
    """The statements that look a token up: the user with the EXISTS on revoked_tokens (on
    either of the server's pools)."""
    seen: list[str] = []

    def record(*args: Any) -> None:
        statement: str = args[2]
        if "FROM users" in statement and "revoked_tokens" in statement:
            seen.append(statement)

    engines = sync_engines(runtime)
    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", record)


async def welcomed(world: World, token: str) -> bool:
    async with connect(world.ws_url, compression=None) as ws:
        await ws.send(json.dumps({"type": "hello", "token": token, "resume_from": 0}))
        reply: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 5))
    return bool(reply["type"] == "welcome")


async def test_a_repeated_token_is_answered_without_a_query(world: World) -> None:
    operator = await world.operator()
    cache = world.runtime.principals
    hits = cache.hits
    with token_lookups(world.runtime) as lookups:
        assert (await me(world, operator.token))[0] == 200
        assert len(lookups) == 1
        for _ in range(3):
            assert (await me(world, operator.token))[0] == 200
        assert await welcomed(world, operator.token)
        assert len(lookups) == 1
    assert cache.hits == hits + 4


async def test_logout_ends_a_cached_token_at_once(world: World) -> None:
    leader = await world.leader(await world.team())
    console = await world.relogin(leader)
    for token in (leader.token, leader.token, console.token):
        assert (await me(world, token))[0] == 200

    reply = await world.http.post("/api/v1/auth/logout", headers=leader.headers)
    assert reply.status_code == 204

    assert await me(world, leader.token) == (401, "the bearer token was revoked (logged out)")
    assert await hello_closes_with(world, leader.token) == LOGGED_OUT
    # The user's other token was forgotten too, and is read again: it was not revoked.
    assert (await me(world, console.token))[0] == 200


async def test_disabling_a_user_ends_his_cached_tokens_at_once(world: World) -> None:
    admin = await world.admin()
    leader = await world.leader(await world.team())
    assert (await me(world, leader.token))[0] == 200
    assert await welcomed(world, leader.token)
    url = f"/api/v1/users/{leader.id}"
    world.clock.advance(1)

    assert (await world.http.patch(url, json={"disabled": True}, headers=admin.headers)).is_success
    assert await me(world, leader.token) == DISABLED_401
    assert await hello_closes_with(world, leader.token) == ACCOUNT_DISABLED

    # Enabled again, the account takes new logins; the token from before stays dead.
    assert (await world.http.patch(url, json={"disabled": False}, headers=admin.headers)).is_success
    assert (await me(world, leader.token))[0] == 401
    assert (await me(world, (await world.relogin(leader)).token))[0] == 200


async def test_a_cached_token_still_expires_by_the_server_clock(world: World) -> None:
    operator = await world.operator()
    cache = world.runtime.principals
    with token_lookups(world.runtime) as lookups:
        assert (await me(world, operator.token))[0] == 200
        world.clock.advance(world.runtime.settings.token_ttl_s - 1)
        assert (await me(world, operator.token))[0] == 200
        hits = cache.hits
        world.clock.advance(1)
        assert await me(world, operator.token) == (401, "the bearer token has expired")
        assert await hello_closes_with(world, operator.token) == 1008
        # Refused on the cached entry itself, not after reading the rows again.
        assert cache.hits == hits + 2
        assert len(lookups) == 1


async def test_zero_seconds_caches_nothing(settings: Settings, clock: ManualClock) -> None:
    server = RunningServer(settings.model_copy(update={"principal_cache_s": 0.0}), clock)
    await server.start()
    world = World(server.app, f"http://127.0.0.1:{server.port}", clock)
    try:
        operator = await world.operator()
        with token_lookups(world.runtime) as lookups:
            for _ in range(3):
                assert (await me(world, operator.token))[0] == 200
            assert await welcomed(world, operator.token)
        assert len(lookups) == 4
        assert len(world.runtime.principals) == 0
        assert world.runtime.principals.hits == 0
    finally:
        await world.close()
        await server.stop()


def someone(user_id: str) -> Principal:
    return Principal(user_id, user_id, Role.OPERATOR, None, token_id=user_id)


def test_a_lookup_overtaken_by_a_change_is_not_kept() -> None:
    cache = Principals(30)
    # The lookup read the rows, then the user's access changed before it could store them.
    before = cache.generation
    cache.drop_user("u1")
    cache.put("t1", someone("u1"), 2e9, before)
    assert cache.get("t1") is None
    cache.put("t1", someone("u1"), 2e9, cache.generation)
    assert cache.get("t1") == (someone("u1"), 2e9)


def test_entries_are_dropped_by_user_by_age_and_oldest_first() -> None:
    now = [0.0]
    cache = Principals(30, max_entries=3, timer=lambda: now[0])
    for n in range(3):
        cache.put(f"t{n}", someone(f"u{n}"), 2e9, cache.generation)
    cache.put("t0b", someone("u0"), 2e9, cache.generation)
    assert len(cache) == 3 and cache.get("t0") is None  # the oldest went first

    cache.drop_user("u0")
    assert cache.get("t0b") is None and cache.get("t1") is not None

    now[0] = 29.9
    assert cache.get("t2") is not None
    now[0] = 30.0
    assert cache.get("t1") is None and cache.get("t2") is None
    assert len(cache) == 0


# Far longer than the test: an entry in B never ages out while it runs, so B refusing a token it
# has cached can only mean it was told. Ageing out is tested on the cache itself
# (test_entries_are_dropped_by_user_by_age_and_oldest_first).
CACHE_S = 600
# Only a guard against waiting forever: how soon B hears of it is not what is tested.
TOLD_WITHIN_S = 60


async def refused_within(http: httpx.AsyncClient, token: str, seconds: float) -> None:
    """Wait for ``token`` to be refused (the other process hears of it)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while True:
        reply = await http.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
        if reply.status_code == 401:
            return
        assert loop.time() - start < seconds, "the other process kept serving the token"
        await asyncio.sleep(0.005)


async def test_a_logout_on_one_process_ends_the_token_cached_in_another(
    postgres_only: str, tmp_path: Path
) -> None:
    env = server_env(postgres_only, tmp_path, principal_cache_s=str(CACHE_S))
    a = ServerProcess(env, tmp_path / "a.log")
    b = ServerProcess(env, tmp_path / "b.log")
    await cli(env, "users", "add", "chief", "--role", "admin", stdin="admin-password\n")
    try:
        await a.start()
        await b.start()
        async with (
            httpx.AsyncClient(base_url=a.base_url) as on_a,
            httpx.AsyncClient(base_url=b.base_url) as on_b,
        ):
            admin = {"Authorization": f"Bearer {await get_token(on_a, 'chief', 'admin-password')}"}
            tokens = {}
            for name in ("duty", "spare"):
                body = {"name": name, "password": f"{name}-password", "role": "operator"}
                assert (await on_a.post("/api/v1/users", json=body, headers=admin)).is_success
                tokens[name] = await get_token(on_a, name, f"{name}-password")
                assert (await on_b.get("/api/v1/auth/me", headers=bearer(tokens[name]))).is_success

            # B answers from memory: a change made past the API reaches A, which reads the row,
            # but not B, which is told nothing of it.
            await disable_in_database(postgres_only, "spare")
            assert (
                await on_a.get("/api/v1/auth/me", headers=bearer(tokens["spare"]))
            ).status_code == 401
            assert (await on_b.get("/api/v1/auth/me", headers=bearer(tokens["spare"]))).is_success

            # The duty operator's console renewed its login on A; the token it was renewed
            # from is still held (another tab) and has a socket open on B.
            renewal = await on_a.post("/api/v1/auth/renew", headers=bearer(tokens["duty"]))
            renewed = renewal.json()["access_token"]
            assert (await on_b.get("/api/v1/auth/me", headers=bearer(renewed))).is_success
            async with connect(b.ws_url, compression=None) as tab:
                hello = {"type": "hello", "token": tokens["duty"], "resume_from": 0}
                await tab.send(json.dumps(hello))
                assert json.loads(await asyncio.wait_for(tab.recv(), 5))["type"] == "welcome"

                logout = await on_a.post("/api/v1/auth/logout", headers=bearer(renewed))
                assert logout.status_code == 204
                # The whole login ends on B: both tokens, and the older one's socket.
                await refused_within(on_b, renewed, TOLD_WITHIN_S)
                await refused_within(on_b, tokens["duty"], TOLD_WITHIN_S)
                with pytest.raises(ConnectionClosed) as closed:
                    while True:
                        await asyncio.wait_for(tab.recv(), TOLD_WITHIN_S)
                assert closed.value.rcvd is not None and closed.value.rcvd.code == LOGGED_OUT
            # B forgot that user's token, not its whole memory (as a reconnect of its listener
            # would have made it): the disabled account it was not told of is still served.
            assert (await on_b.get("/api/v1/auth/me", headers=bearer(tokens["spare"]))).is_success
    finally:
        a.stop()
        b.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def disable_in_database(database_url: str, name: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(update(User).where(User.name == name).values(disabled=True))
    finally:
        await engine.dispose()
