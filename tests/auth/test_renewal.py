"""A login renewed while it still holds: a leader who keeps the phone page open through a
shift is not signed out at the token's 12 h, and a renewal keeps every rule a login has."""

from __future__ import annotations

from datetime import datetime, timedelta

import jwt

from dispatch.auth.models import RevokedToken
from dispatch.realtime import LOGGED_OUT
from tests.auth.test_tokens import DISABLED_401, hello_closes_with, me
from tests.reachability.test_reachability import until
from tests.realtime.test_socket_limits import closed_with
from tests.support import Account, World

RENEW = "/api/v1/auth/renew"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def renew(world: World, token: str) -> tuple[int, dict[str, object]]:
    reply = await world.http.post(RENEW, headers=bearer(token))
    return reply.status_code, reply.json()


async def test_a_token_still_valid_is_renewed_for_a_full_term(world: World) -> None:
    leader = await world.leader(await world.team())
    ttl = world.runtime.settings.token_ttl_s
    world.clock.advance(ttl - 60)
    status, body = await renew(world, leader.token)
    assert status == 200, body
    fresh = str(body["access_token"])
    assert body["token_type"] == "bearer" and body["expires_in"] == ttl
    expires = datetime.fromisoformat(str(body["expires_at"]))
    assert abs(expires - (world.clock.now() + timedelta(seconds=ttl))) < timedelta(seconds=1)
    old = jwt.decode(leader.token, options={"verify_signature": False})
    new = jwt.decode(fresh, options={"verify_signature": False})
    assert new["sub"] == old["sub"] and new["jti"] != old["jti"]

    # Past the old token's expiry, the renewed one works; the old one ends as it would have.
    world.clock.advance(61)
    assert await me(world, leader.token) == (401, "the bearer token has expired")
    assert (await me(world, fresh))[0] == 200
    status, body = await renew(world, leader.token)
    assert (status, body["detail"]) == (401, "the bearer token has expired")


async def test_a_renewal_keeps_every_rule_of_a_login(world: World) -> None:
    """Renewal is no way around a logout, a disabled account or a password reset: the token
    presented must hold as REST judges it, and the renewed one ends with the account."""
    admin = await world.admin()
    leader = await world.leader(await world.team())

    logged_out = await world.relogin(leader)
    await world.http.post("/api/v1/auth/logout", headers=logged_out.headers)
    status, body = await renew(world, logged_out.token)
    assert (status, body["detail"]) == (401, "the bearer token was revoked (logged out)")

    assert (await renew(world, "garbage"))[0] == 401
    assert (await world.http.post(RENEW)).status_code == 401

    renewed = str((await renew(world, leader.token))[1]["access_token"])
    world.clock.advance(1)
    patch = await world.http.patch(
        f"/api/v1/users/{leader.id}", json={"disabled": True}, headers=admin.headers
    )
    assert patch.status_code == 200
    for token in (leader.token, renewed):
        status, body = await renew(world, token)
        assert (status, body["detail"]) == DISABLED_401
    await world.http.patch(
        f"/api/v1/users/{leader.id}", json={"disabled": False}, headers=admin.headers
    )
    # Enabled again: a token from before stays dead, renewed or not.
    assert (await renew(world, renewed))[0] == 401

    again = await world.relogin(leader)
    world.clock.advance(1)
    reset = await world.http.patch(
        f"/api/v1/users/{leader.id}",
        json={"password": "a-new-long-password"},
        headers=admin.headers,
    )
    assert reset.status_code == 200
    status, body = await renew(world, again.token)
    assert status == 401 and "password was reset" in str(body["detail"])


async def test_logout_of_a_renewed_token_ends_it(world: World) -> None:
    operator = await world.operator()
    renewed = str((await renew(world, operator.token))[1]["access_token"])
    assert (
        await world.http.post("/api/v1/auth/logout", headers=bearer(renewed))
    ).status_code == 204
    assert (await me(world, renewed))[0] == 401
    assert (await me(world, operator.token))[0] == 401
    # One row for the login, kept until the last token it may have been renewed to expires.
    login = jwt.decode(renewed, options={"verify_signature": False})["sid"]
    async with world.runtime.sessionmaker() as session:
        row = await session.get(RevokedToken, login)
    ttl = timedelta(seconds=world.runtime.settings.token_ttl_s)
    assert row is not None and row.expires_at.replace(tzinfo=None) >= (
        world.clock.now() + ttl - timedelta(seconds=1)
    ).replace(tzinfo=None)


async def test_a_socket_moves_to_the_renewed_token_and_misses_nothing(world: World) -> None:
    """The 08:00 leader at 20:00: the socket of the old token is closed at its expiry (1008,
    saying so); one opened with the renewed token resumes where it was, the alert reported in
    between included."""
    team = await world.team()
    leader = await world.leader(team)
    operator = await world.operator()
    phone = await world.connect(leader)
    ttl = world.runtime.settings.token_ttl_s
    world.clock.advance(ttl - 60)
    renewed = Account(
        **{**leader.__dict__, "token": str((await renew(world, leader.token))[1]["access_token"])}
    )
    world.clock.advance(61)
    reporter = await world.relogin(operator)
    incident = await world.report(reporter)
    code, reason = await closed_with(phone)
    assert code == 1008 and "expired" in reason
    assert await hello_closes_with(world, leader.token) == 1008
    again = await world.connect(renewed, resume_from=phone.last_seq)
    alert = await again.next_of("alert")
    assert alert["data"]["incident"]["id"] == incident["id"]
    await again.close()


async def test_the_schema_declares_the_renewals_statuses(world: World) -> None:
    schema = (await world.http.get("/openapi.json")).json()
    declared = schema["paths"][RENEW]["post"]["responses"]
    assert {"200", "401"} <= set(declared)


async def test_the_console_sees_a_phone_whose_login_ended_as_unreachable(world: World) -> None:
    """A socket closed for its token's expiry is a leader out of reach on the operator's
    reachability view (not a phone silently deaf), and reachable again once his page opens one
    with a renewed or new token."""
    team = await world.team("fixed_post")
    leader = await world.leader(team)
    operator = await world.operator()
    ttl = world.runtime.settings.token_ttl_s
    phone = await world.connect(leader)
    assert (await until(world, operator, team["id"], lambda v: v["reachable"]))["reachable"]
    world.clock.advance(ttl - 60)
    fresh = str((await renew(world, leader.token))[1]["access_token"])
    world.clock.advance(61)
    desk = await world.relogin(operator)
    await world.report(desk)  # something to send: the socket looks at its token and ends
    code, _ = await closed_with(phone)
    assert code == 1008
    gone = await until(world, desk, team["id"], lambda v: not v["reachable"])
    assert gone["leaders"][0]["connected"] is False
    again = await world.connect(Account(**{**leader.__dict__, "token": fresh}), phone.last_seq)
    back = await until(world, desk, team["id"], lambda v: v["reachable"])
    assert back["leaders"][0]["connected"] is True
    await again.close()


async def test_logout_ends_every_token_renewed_from_the_login(world: World) -> None:
    """A leader signs out of a shared console whose login was renewed twice: the tokens it
    was renewed from (another tab's, or one captured) end with it, REST and open sockets alike,
    on the spot; his phone's own login goes on."""
    team = await world.team()
    leader = await world.leader(team)
    phone = await world.relogin(leader)
    first = leader.token
    second = str((await renew(world, first))[1]["access_token"])
    world.clock.advance(1)
    third = str((await renew(world, second))[1]["access_token"])
    tabs = [
        await world.connect(Account(**{**leader.__dict__, "token": token}))
        for token in (first, second)
    ]
    phones_socket = await world.connect(phone)

    reply = await world.http.post("/api/v1/auth/logout", headers=bearer(third))
    assert reply.status_code == 204
    for token in (first, second, third):
        assert await me(world, token) == (401, "the bearer token was revoked (logged out)")
        assert (await renew(world, token))[0] == 401
        assert await hello_closes_with(world, token) == LOGGED_OUT
    for tab in tabs:
        code, reason = await closed_with(tab)
        assert code == LOGGED_OUT and reason.startswith("logged out")
    assert (await me(world, phone.token))[0] == 200
    operator = await world.operator()
    incident = await world.report(operator)
    alert = await phones_socket.next_of("alert")
    assert alert["data"]["incident"]["id"] == incident["id"]
    await phones_socket.close()


async def test_a_token_from_before_logins_were_tracked_works_until_its_family_logs_out(
    world: World,
) -> None:
    """A token issued before renewals carried their login (no ``sid``) works as it did: on its
    own until it expires; renewed, the renewals are its login, and a logout of one ends all."""
    leader = await world.leader(await world.team())
    claims = jwt.decode(leader.token, options={"verify_signature": False})
    older = {k: v for k, v in claims.items() if k != "sid"}
    old = jwt.encode(older, world.runtime.secret, algorithm="HS256")
    assert (await me(world, old))[0] == 200
    renewed = str((await renew(world, old))[1]["access_token"])
    assert (await me(world, renewed))[0] == 200
    other = jwt.encode({**older, "jti": "f" * 32}, world.runtime.secret, algorithm="HS256")
    logout = await world.http.post("/api/v1/auth/logout", headers=bearer(renewed))
    assert logout.status_code == 204
    assert await me(world, old) == (401, "the bearer token was revoked (logged out)")
    assert await me(world, renewed) == (401, "the bearer token was revoked (logged out)")
    assert (await me(world, other))[0] == 200
    logout = await world.http.post("/api/v1/auth/logout", headers=bearer(other))
    assert logout.status_code == 204
    assert (await me(world, other))[0] == 401


async def test_a_login_ends_at_its_maximum_age_however_often_it_is_renewed(
    world: World,
) -> None:
    """A token taken from a phone and renewed by whoever took it, unnoticed, works no longer
    than DISPATCH_LOGIN_MAX_AGE_S from the password login; the last renewal is for what is
    left of it, and says when the login ends, so the page can say so ahead."""
    hour = 3600
    world.runtime.settings.token_ttl_s = 12 * hour
    world.runtime.settings.login_max_age_s = 30 * hour
    start = world.clock.now()
    leader = await world.leader(await world.team())
    login_ends = start + timedelta(hours=30)
    token = leader.token
    for step, term in ((10, 12 * hour), (10, 10 * hour), (9, hour)):
        world.clock.advance(step * hour)
        status, body = await renew(world, token)
        assert status == 200, body
        token = str(body["access_token"])
        assert body["expires_in"] == term
        ends = datetime.fromisoformat(str(body["login_expires_at"]))
        assert abs(ends - login_ends) < timedelta(seconds=1)
        expires = datetime.fromisoformat(str(body["expires_at"]))
        assert abs(expires - (world.clock.now() + timedelta(seconds=term))) < timedelta(seconds=1)
    world.clock.advance(hour)
    assert await me(world, token) == (401, "the bearer token has expired")
    assert (await renew(world, token))[0] == 401
    again = await world.relogin(leader)
    assert (await me(world, again.token))[0] == 200
