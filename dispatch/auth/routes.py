from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Form, Request, Response

from dispatch.audit import service as audit
from dispatch.audit.trail import actor_of
from dispatch.auth import service
from dispatch.auth.models import Role
from dispatch.auth.schemas import TokenOut, UserCreate, UserOut, UserPatch
from dispatch.config import Settings
from dispatch.deps import AdminDep, PrincipalDep, RuntimeDep, SessionDep
from dispatch.errors import RATE_LIMITED, Unauthorized, error_response
from dispatch.routing import api_router
from dispatch.schemas import ShortName
from dispatch.security import limits
from dispatch.teams import service as teams

router = api_router("/api/v1", tags=["auth"])


def login_limits(settings: Settings, name: str, address: str) -> dict[str, limits.BackoffPolicy]:
    """Two counts for every attempt: the account's (from anywhere) and the address's (for any
    account), the account's first in key order. Either one waiting refuses the attempt."""
    account = limits.BackoffPolicy(
        settings.login_account_free_failures,
        settings.login_backoff_s,
        settings.login_account_backoff_max_s,
        settings.login_forget_after_s,
    )
    addressed = limits.BackoffPolicy(
        settings.login_address_free_failures,
        settings.login_backoff_s,
        settings.login_address_backoff_max_s,
        settings.login_forget_after_s,
    )
    return {f"login:account:{name}"[:200]: account, f"login:address:{address}"[:200]: addressed}


@router.post(
    "/auth/token",
    response_model=TokenOut,
    responses={
        **RATE_LIMITED,
        401: error_response(
            401,
            "wrong name or password, or a disabled user (`account_disabled` only with the "
            "right password)",
        ),
    },
)
async def issue_token(
    request: Request,
    # As names are stored: without surrounding whitespace or control characters. One with a
    # control character names no account; refused, it puts none on the trail or in the log.
    username: Annotated[ShortName, Form()],
    password: Annotated[str, Form(min_length=1, max_length=256)],
    runtime: RuntimeDep,
    grant_type: Annotated[str | None, Form(pattern="^password$")] = None,
) -> TokenOut:
    """OAuth2 password flow: form fields ``username`` and ``password``.

    Failed attempts earn a growing wait (429 with Retry-After), per account and per address.
    """
    now = runtime.clock.now()
    actor = actor_of(request)
    name = username
    keys = login_limits(runtime.settings, name, actor.address or "unknown")
    account_key, address_key = keys
    # Each step its own short unit of work: the password hash runs holding no connection. The
    # account counts the attempt as a failure already: parallel guesses at one account cannot
    # all be checked. The address counts only a failure: operators behind one address signing
    # in together are not refused for each other's attempts in flight; an attempt whose check
    # ends while the address waits is refused as if it came then, so a burst of guesses from
    # one address has no more of them judged than the same guesses sent one by one.
    async with runtime.transaction() as session:
        await limits.admit(session, keys, now, "login", count=[account_key])
    async with runtime.reading() as session:
        found = await service.find_user(session, name)
    try:
        user = await service.check_password(runtime.passwords, found, password)
    except Unauthorized as refusal:
        # A disabled account's right password is a failure too, for the backoff as for the
        # trail: counted as a wrong one is, the account's count kept, so that it neither skips
        # nor clears a wait. The trail says which, for the administrator who disabled it.
        data = {"username": name}
        if isinstance(refusal, service.AccountDisabled):
            data["reason"] = refusal.code
        async with runtime.transaction() as session:
            tried = audit.Actor(None, name, None, actor.address)
            failed = audit.entry(tried, "login_failed", now, data=data)
            audit.record(session, failed)
            wait = await limits.failed(
                session, {address_key: keys[address_key]}, runtime.clock.now()
            )
        if wait is not None:
            limits.refuse_waiting(wait, "login")
        raise
    async with runtime.transaction() as session:
        await limits.succeeded(
            session, runtime.clock.now(), "login", clear=[account_key], check=[address_key]
        )
    settings = runtime.settings
    issued = service.issue_token(
        user,
        secret=runtime.secret,
        ttl_s=settings.token_ttl_s,
        now=now,
        max_age_s=settings.login_max_age_s,
        generation=user.token_generation,
    )
    request.state.principal = service.Principal(user.id, user.name, Role(user.role), user.team_id)
    return token_out(issued, now)


@router.post(
    "/auth/renew",
    response_model=TokenOut,
    responses={
        401: error_response(
            401,
            "no token, or an expired, revoked or bad one, a disabled user, or one from before "
            "a password reset: a new login is needed",
        )
    },
)
async def renew_token(
    request: Request, principal: PrincipalDep, runtime: RuntimeDep, session: SessionDep
) -> TokenOut:
    """A fresh token for the presented one while it still holds, for a full term from now:
    the pages ask for it once half of their login's term has passed, so that a leader or an
    operator who keeps the page open through a shift is not signed out in the middle of it.
    The presented token is judged as for any request (and read from the rows again); it is
    not ended, and expires as it would have."""
    _, _, presented = (request.headers.get("Authorization") or "").partition(" ")
    now = runtime.clock.now()
    issued = await service.renew_token(
        session,
        presented.strip(),
        secret=runtime.secret,
        ttl_s=runtime.settings.token_ttl_s,
        max_age_s=runtime.settings.login_max_age_s,
        now=now,
    )
    return token_out(issued, now)


def token_out(issued: service.Issued, now: datetime) -> TokenOut:
    # The term as given: the last token of a login is for what is left of it.
    term = round((issued.expires_at - now).total_seconds())
    return TokenOut(
        access_token=issued.token,
        expires_at=issued.expires_at,
        expires_in=term,
        login_expires_at=issued.login_expires_at,
    )


@router.post("/auth/logout", status_code=204, response_class=Response)
async def logout(principal: PrincipalDep, runtime: RuntimeDep, session: SessionDep) -> Response:
    """End the login of this request's bearer token: the token and every token renewed from
    the same password login stop working at once, everywhere; other logins go on."""
    await service.revoke(
        session,
        principal,
        runtime.clock.now(),
        principals=runtime.principals,
        sockets=runtime.hub,
        ttl_s=runtime.settings.token_ttl_s,
    )
    return Response(status_code=204)


@router.get("/auth/me", response_model=UserOut)
async def who_am_i(principal: PrincipalDep, session: SessionDep) -> UserOut:
    return UserOut.model_validate(await service.get_user(session, principal.user_id))


@router.post(
    "/users",
    status_code=201,
    response_model=UserOut,
    tags=["users"],
    responses={
        404: error_response(404, "team_id names no team in service"),
        409: error_response(409, "a user has this name already (field name)"),
    },
)
async def create_user(
    data: UserCreate, runtime: RuntimeDep, session: SessionDep, _: AdminDep
) -> UserOut:
    if data.team_id is not None:
        await teams.get_team(session, data.team_id)
    user = await service.create_user(
        session,
        name=data.name,
        password=data.password,
        role=data.role,
        team_id=data.team_id,
        now=runtime.clock.now(),
        hasher=runtime.passwords,
    )
    audit.note(session, target_id=user.id, name=user.name, role=user.role, team_id=user.team_id)
    return UserOut.model_validate(user)


@router.get("/users", response_model=list[UserOut], tags=["users"])
async def list_users(session: SessionDep, _: AdminDep) -> list[UserOut]:
    return [UserOut.model_validate(u) for u in await service.list_users(session)]


@router.patch("/users/{user_id}", response_model=UserOut, tags=["users"])
async def update_user(
    user_id: str, patch: UserPatch, runtime: RuntimeDep, session: SessionDep, _: AdminDep
) -> UserOut:
    """Disable or enable an account, or reset its password."""
    user = await service.update_user(
        session,
        user_id,
        disabled=patch.disabled,
        password=patch.password,
        now=runtime.clock.now(),
        hasher=runtime.passwords,
        principals=runtime.principals,
        sockets=runtime.hub,
    )
    # The trail withholds the password itself; it records that one was set.
    audit.note(session, changes=patch.model_dump(exclude_unset=True))
    return UserOut.model_validate(user)
