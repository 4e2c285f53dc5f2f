from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.security import OAuth2PasswordRequestForm

from dispatch.auth import service
from dispatch.auth.schemas import TokenOut, UserCreate, UserOut
from dispatch.deps import AdminDep, PrincipalDep, RuntimeDep, SessionDep
from dispatch.teams import service as teams

router = APIRouter(prefix="/api/v1", tags=["auth"])


@router.post("/auth/token", response_model=TokenOut)
async def issue_token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    runtime: RuntimeDep,
    session: SessionDep,
) -> TokenOut:
    """OAuth2 password flow: form fields ``username`` and ``password``."""
    user = await service.authenticate(session, form.username, form.password, runtime.passwords)
    token, expires_at = service.issue_token(
        user, secret=runtime.secret, ttl_s=runtime.settings.token_ttl_s, now=runtime.clock.now()
    )
    return TokenOut(access_token=token, expires_at=expires_at)


@router.get("/auth/me", response_model=UserOut)
async def who_am_i(principal: PrincipalDep, session: SessionDep) -> UserOut:
    return UserOut.model_validate(await service.get_user(session, principal.user_id))


@router.post("/users", status_code=201, response_model=UserOut, tags=["users"])
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
    return UserOut.model_validate(user)


@router.get("/users", response_model=list[UserOut], tags=["users"])
async def list_users(session: SessionDep, _: AdminDep) -> list[UserOut]:
    return [UserOut.model_validate(u) for u in await service.list_users(session)]
