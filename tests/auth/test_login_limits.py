"""Login attempts: a growing wait per account and per address, never a permanent lockout."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from tests.support import World


async def login(
    world: World, name: str, password: str, *, forwarded: str | None = None
) -> httpx.Response:
    """``forwarded``: the X-Forwarded-For of a trusted proxy (the test server trusts 127.0.0.1)."""
    headers = {} if forwarded is None else {"X-Forwarded-For": forwarded}
    return await world.http.post(
        "/api/v1/auth/token", data={"username": name, "password": password}, headers=headers
    )


async def test_failures_on_one_account_earn_a_doubling_wait(world: World) -> None:
    operator = await world.operator()
    settings = world.runtime.settings
    for _ in range(settings.login_account_free_failures + 1):
        assert (await login(world, operator.name, "wrong-password")).status_code == 401
    # The sixth failure earned a wait of 1 s: even the right password is not tried meanwhile.
    refused = await login(world, operator.name, operator.password)
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["error"] == "rate_limited"

    world.clock.advance(1)
    assert (await login(world, operator.name, "wrong-password")).status_code == 401
    assert (await login(world, operator.name, operator.password)).headers["retry-after"] == "2"
    world.clock.advance(2)
    assert (await login(world, operator.name, operator.password)).status_code == 200
    # A success forgets the account's failures.
    assert (await login(world, operator.name, "wrong-password")).status_code == 401
    assert (await login(world, operator.name, operator.password)).status_code == 200


async def test_the_wait_is_capped_so_a_real_user_is_never_locked_out_for_good(
    world: World,
) -> None:
    leader = await world.leader(await world.team())
    settings = world.runtime.settings
    cap = settings.login_account_backoff_max_s
    # 5 free, then waits of 1, 2, 4, ... 256 s, then the cap; under the address's 20 free.
    for _ in range(settings.login_account_free_failures + 11):
        reply = await login(world, leader.name, "guess")
        if reply.status_code == 429:
            world.clock.advance(float(reply.headers["retry-after"]))
            reply = await login(world, leader.name, "guess")
        assert reply.status_code == 401
    refused = await login(world, leader.name, leader.password)
    assert refused.status_code == 429 and float(refused.headers["retry-after"]) == cap
    world.clock.advance(cap)
    assert (await login(world, leader.name, leader.password)).status_code == 200


async def test_failures_from_one_address_across_accounts_are_limited_too(world: World) -> None:
    operator = await world.operator()
    settings = world.runtime.settings
    for n in range(settings.login_address_free_failures + 1):
        # A different name each time: only the address's count grows.
        assert (await login(world, f"sprayed-{n}", "password1")).status_code == 401
    refused = await login(world, operator.name, operator.password)
    assert refused.status_code == 429
    world.clock.advance(float(refused.headers["retry-after"]))
    assert (await login(world, operator.name, operator.password)).status_code == 200


async def test_a_burst_of_parallel_guesses_is_counted_before_any_is_checked(
    world: World,
) -> None:
    operator = await world.operator()
    free = world.runtime.settings.login_account_free_failures
    replies = await asyncio.gather(
        *(login(world, operator.name, f"guess-{n}") for n in range(free + 10))
    )
    codes = sorted(r.status_code for r in replies)
    # Each attempt is counted as it starts: the one after the free ones sets the wait.
    assert codes == [401] * (free + 1) + [429] * 9


async def test_an_addresss_failures_are_forgotten_one_for_every_three_minutes(
    world: World,
) -> None:
    operator = await world.operator()
    free = world.runtime.settings.login_address_free_failures
    for n in range(free):
        assert (await login(world, f"sprayed-{n}", "password1")).status_code == 401
    assert (await login(world, operator.name, operator.password)).status_code == 200
    # Three minutes (an hour / 20) forget one: one more failure is free again.
    world.clock.advance(180)
    assert (await login(world, "sprayed-again", "password1")).status_code == 401
    assert (await login(world, operator.name, operator.password)).status_code == 200
    # Faster than that, failures add up.
    world.clock.advance(179)
    assert (await login(world, "sprayed-once-more", "password1")).status_code == 401
    refused = await login(world, operator.name, operator.password)
    assert refused.status_code == 429 and refused.headers["retry-after"] == "1"


async def test_a_control_rooms_occasional_typos_never_lock_everyone_out(world: World) -> None:
    """One control room behind one NAT address, staffed round the clock: once every 50
    minutes an operator mistypes his password once and then types it right. Each attempt used
    to move the address's time of last failure, so its count never started again from zero;
    after the 20th typo of the week each single typo made every operator wait, doubling up to
    900 s. Now each 3 minutes without a failure forget one."""
    settings = world.runtime.settings
    operators = [await world.operator() for _ in range(3)]
    refused: list[tuple[int, str]] = []
    for n in range(settings.login_address_free_failures + 10):
        world.clock.advance(50 * 60)
        typist = operators[n % 3]
        colleague = operators[(n + 1) % 3]
        typo = await login(world, typist.name, "typo-" + uuid.uuid4().hex)
        assert typo.status_code == 401
        # The colleague at the next desk signs in with the right password.
        reply = await login(world, colleague.name, colleague.password)
        if reply.status_code != 200:
            refused.append((n + 1, reply.headers.get("retry-after", "?")))
    assert not refused, (
        f"operators typing the right password were refused (typo number, Retry-After s): {refused}"
    )


async def test_no_more_failures_than_the_free_ones_in_any_hour_never_earn_a_wait(
    world: World,
) -> None:
    """Two typos half a minute apart every six minutes: ten failures an hour, under the
    address's 20.
    Forgotten from each last failure, the second of a pair would forgive nothing and the
    count would grow by one every six minutes."""
    operator = await world.operator()
    settings = world.runtime.settings
    for _ in range(settings.login_address_free_failures * 2):
        for wait_s in (5.5 * 60, 30):
            world.clock.advance(wait_s)
            typo = await login(world, f"typist-{uuid.uuid4().hex[:8]}", "typo")
            assert typo.status_code == 401
        assert (await login(world, operator.name, operator.password)).status_code == 200


async def test_operators_signing_in_together_with_the_right_password_all_get_in(
    world: World,
) -> None:
    """More than the address's 20 free failures in flight at once, none of them a failure (a
    control room's shift change behind one NAT, phones behind one carrier NAT): each attempt
    used to count as a failure of the address until it succeeded, and right passwords were
    refused with 429. The address counts failures only."""
    operators = [await world.operator() for _ in range(30)]
    replies = await asyncio.gather(*(login(world, o.name, o.password) for o in operators))
    codes = sorted(r.status_code for r in replies)
    assert codes == [200] * len(operators), codes


async def test_a_burst_of_guesses_from_one_address_has_no_more_judged_than_one_by_one(
    world: World,
) -> None:
    """The address counts a failure only once its check fails, yet a burst of guesses at many
    names sent at once is not all judged: one whose check ends while the address is waiting
    is answered 429, whatever its password."""
    free = world.runtime.settings.login_address_free_failures
    replies = await asyncio.gather(
        *(login(world, f"sprayed-{n}", "password1") for n in range(free + 10))
    )
    codes = sorted(r.status_code for r in replies)
    assert codes == [401] * (free + 1) + [429] * 9


async def test_failed_logins_are_in_the_audit_trail_with_the_address(world: World) -> None:
    admin = await world.admin()
    await login(world, "nobody-here", "password1")
    trail = await world.http.get(
        "/api/v1/audit", params={"action": "login_failed"}, headers=admin.headers
    )
    [entry] = trail.json()["items"]
    assert entry["actor_name"] == "nobody-here" and entry["actor_id"] is None
    assert entry["address"] == "127.0.0.1"
    assert entry["data"] == {"username": "nobody-here"}
    logins = await world.http.get(
        "/api/v1/audit", params={"action": "issue_token"}, headers=admin.headers
    )
    assert admin.id in {e["actor_id"] for e in logins.json()["items"]}


async def test_forwarded_addresses_that_are_no_ip_address_are_one_address(world: World) -> None:
    """A trusted proxy's X-Forwarded-For is taken as it comes. One of 65 characters made every
    login a 500 on PostgreSQL (the audit row's address holds 64), the failure already counted;
    and each new text was a backoff key of its own. Now whatever is no IP address counts as
    one address, "(not an IP address)", in the backoff and the audit trail."""
    operator = await world.operator()
    admin = await world.admin()
    assert (
        await login(world, operator.name, operator.password, forwarded="a" * 65)
    ).status_code == 200
    free = world.runtime.settings.login_address_free_failures
    for n in range(free + 1):
        garbage = f"{'g' * 70}-{n}"
        reply = await login(world, f"sprayed-{n}", "password1", forwarded=garbage)
        assert reply.status_code == 401, (reply.status_code, reply.text)
    refused = await login(world, operator.name, operator.password, forwarded="b" * 65)
    assert refused.status_code == 429, refused.text
    # An address of its own is not held up by them.
    allowed = await login(world, operator.name, operator.password, forwarded="203.0.113.9")
    assert allowed.status_code == 200, allowed.text
    trail = await world.http.get(
        "/api/v1/audit", params={"action": "login_failed", "limit": 1}, headers=admin.headers
    )
    assert trail.json()["items"][0]["address"] == "(not an IP address)"


async def test_a_disabled_accounts_right_password_neither_skips_nor_clears_the_wait(
    world: World,
) -> None:
    """Told that the account is disabled, the attempt still counts as a failure: it is refused
    while the account waits, earns the next wait, and enabling the account again finds the
    count where it was."""
    admin = await world.admin()
    leader = await world.leader(await world.team())
    url = f"/api/v1/users/{leader.id}"
    await world.http.patch(url, json={"disabled": True}, headers=admin.headers)
    settings = world.runtime.settings
    for _ in range(settings.login_account_free_failures + 1):
        assert (await login(world, leader.name, "guess")).status_code == 401
    # The sixth failure earned a wait of 1 s: the right password is not even checked.
    refused = await login(world, leader.name, leader.password)
    assert refused.status_code == 429 and refused.headers["retry-after"] == "1"

    world.clock.advance(1)
    told = await login(world, leader.name, leader.password)
    assert told.status_code == 401 and told.json()["error"] == "account_disabled"
    # Counted as the seventh failure: the wait doubled, the count not cleared.
    assert (await login(world, leader.name, leader.password)).headers["retry-after"] == "2"
    await world.http.patch(url, json={"disabled": False}, headers=admin.headers)
    assert (await login(world, leader.name, leader.password)).headers["retry-after"] == "2"
    world.clock.advance(2)
    assert (await login(world, leader.name, leader.password)).status_code == 200


async def test_a_disabled_accounts_right_password_counts_against_the_address(
    world: World,
) -> None:
    admin = await world.admin()
    operator = await world.operator()
    settings = world.runtime.settings
    # Enough disabled accounts that none of them reaches its own wait: only the address does.
    dismissed = [await world.operator() for _ in range(5)]
    for user in dismissed:
        await world.http.patch(
            f"/api/v1/users/{user.id}", json={"disabled": True}, headers=admin.headers
        )
    address = "203.0.113.77"
    for n in range(settings.login_address_free_failures + 1):
        user = dismissed[n % len(dismissed)]
        reply = await login(world, user.name, user.password, forwarded=address)
        assert reply.json()["error"] == "account_disabled", (n, reply.text)
    refused = await login(world, operator.name, operator.password, forwarded=address)
    assert refused.status_code == 429, refused.text
