"""The end of a login is exact: a disabling, a password reset or a logout ends every token of
before it, even one issued in the same microsecond (the test clock stands still between
requests), and a logout is remembered for as long as the settings of the day let a token of
its login live."""

from __future__ import annotations

import jwt

from dispatch.realtime import LOGGED_OUT, LOGIN_ENDED, PASSWORD_RESET
from tests.auth.test_renewal import bearer, renew
from tests.auth.test_tokens import ENDED_401, RESET_401, hello_closes_with, me
from tests.support import Account, World

LOGGED_OUT_401 = (401, "the bearer token was revoked (logged out)")
HOUR = 3600


async def test_a_disabling_in_the_same_microsecond_as_a_login_ends_it_for_good(
    world: World,
) -> None:
    """The lost phone's login and the disabling come in the same microsecond: enabling the
    account again (for the new phone) does not bring that token, nor the one it was renewed
    to, back; the new phone's login, in that microsecond too, works."""
    admin = await world.admin()
    leader = await world.leader(await world.team())
    status, renewed = await renew(world, leader.token)
    assert status == 200
    url = f"/api/v1/users/{leader.id}"
    assert (await world.http.patch(url, json={"disabled": True}, headers=admin.headers)).is_success
    assert (await world.http.patch(url, json={"disabled": False}, headers=admin.headers)).is_success

    for token in (leader.token, str(renewed["access_token"])):
        assert await me(world, token) == ENDED_401
        assert (await renew(world, token))[0] == 401
        assert await hello_closes_with(world, token) == LOGIN_ENDED
    new_phone = await world.relogin(leader)
    assert await me(world, new_phone.token) == (200, "")


async def test_a_password_reset_in_the_same_microsecond_as_a_login_ends_it(world: World) -> None:
    admin = await world.admin()
    operator = await world.operator()
    reply = await world.http.patch(
        f"/api/v1/users/{operator.id}",
        json={"password": "a-new-long-password"},
        headers=admin.headers,
    )
    assert reply.status_code == 200
    assert await me(world, operator.token) == RESET_401
    assert (await renew(world, operator.token))[0] == 401
    assert await hello_closes_with(world, operator.token) == PASSWORD_RESET
    fresh = await world.relogin(Account(**{**operator.__dict__, "password": "a-new-long-password"}))
    assert await me(world, fresh.token) == (200, "")
    # Two resets at once both count: neither leaves a token of before working.
    for password in ("another-long-password", "and-one-more-password"):
        reply = await world.http.patch(
            f"/api/v1/users/{operator.id}", json={"password": password}, headers=admin.headers
        )
        assert reply.status_code == 200
    assert await me(world, fresh.token) == RESET_401


async def test_a_renewal_in_the_same_microsecond_as_the_logout_ends_with_the_login(
    world: World,
) -> None:
    leader = await world.leader(await world.team())
    status, renewed = await renew(world, leader.token)
    assert status == 200
    logout = await world.http.post("/api/v1/auth/logout", headers=leader.headers)
    assert logout.status_code == 204
    for token in (leader.token, str(renewed["access_token"])):
        assert await me(world, token) == LOGGED_OUT_401
        assert await hello_closes_with(world, token) == LOGGED_OUT


async def test_a_token_from_before_generations_works_until_a_reset_after_it(world: World) -> None:
    """A token issued before tokens carried the user's generation (no ``gen``) is judged by its
    issue time, as it was: it works, renews, and ends with the next reset or disabling."""
    admin = await world.admin()
    leader = await world.leader(await world.team())
    claims = jwt.decode(leader.token, options={"verify_signature": False})
    older = jwt.encode(
        {k: v for k, v in claims.items() if k != "gen"}, world.runtime.secret, algorithm="HS256"
    )
    assert await me(world, older) == (200, "")
    status, renewed = await renew(world, older)
    assert status == 200
    assert await me(world, str(renewed["access_token"])) == (200, "")
    world.clock.advance(1)
    reply = await world.http.patch(
        f"/api/v1/users/{leader.id}",
        json={"password": "a-new-long-password"},
        headers=admin.headers,
    )
    assert reply.status_code == 200
    for token in (older, str(renewed["access_token"])):
        assert await me(world, token) == RESET_401


async def test_a_token_with_a_generation_that_is_no_count_is_refused(world: World) -> None:
    leader = await world.leader(await world.team())
    claims = jwt.decode(leader.token, options={"verify_signature": False})
    for generation in ("0", 0.5, True, -1, None):
        forged = jwt.encode({**claims, "gen": generation}, world.runtime.secret, algorithm="HS256")
        expected = (200, "") if generation is None else (401, "the bearer token is invalid")
        assert await me(world, forged) == expected, generation


async def test_a_logout_is_kept_while_a_token_renewed_for_a_raised_term_holds(
    world: World,
) -> None:
    """A rolling restart raising DISPATCH_TOKEN_TTL_S from 12 h to 24 h: a process already
    restarted renews a console's login for 24 h, one not yet restarted serves its logout. The
    logout is remembered by the term as set when the records are purged (24 h), so the
    24-hour token stays refused after the old 12 h, as long as it could hold."""
    settings = world.runtime.settings
    settings.token_ttl_s = 12 * HOUR
    operator = await world.operator()
    settings.token_ttl_s = 24 * HOUR
    status, body = await renew(world, operator.token)
    assert status == 200 and body["expires_in"] == 24 * HOUR
    longer = str(body["access_token"])
    settings.token_ttl_s = 12 * HOUR
    assert (await world.http.post("/api/v1/auth/logout", headers=operator.headers)).is_success
    settings.token_ttl_s = 24 * HOUR

    world.clock.advance(13 * HOUR)
    # Another user's logout purges the records no token can outlive any more.
    other = await world.operator()
    assert (await world.http.post("/api/v1/auth/logout", headers=other.headers)).is_success
    assert await me(world, longer) == LOGGED_OUT_401
    assert (await renew(world, longer))[0] == 401

    world.clock.advance(11 * HOUR)
    assert await me(world, longer) == (401, "the bearer token has expired")
    third = await world.operator()
    assert (await world.http.post("/api/v1/auth/logout", headers=bearer(third.token))).is_success
