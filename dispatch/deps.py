"""Request dependencies: the runtime, the unit of work and who is asking."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.auth import service as auth
from dispatch.auth.models import Role
from dispatch.errors import Forbidden, Unauthorized
from dispatch.runtime import Runtime


async def get_runtime(request: Request) -> Runtime:
    # async: FastAPI runs a plain function dependency in its thread pool, a thread hop on
    # every request for one attribute read.
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


# Requests that only read take their connection from the readers' pool, so that a long
# report queues no write behind it (the writers' pool is kept small on purpose).
READING_METHODS = frozenset({"GET", "HEAD"})


async def get_session(request: Request, runtime: RuntimeDep) -> AsyncIterator[AsyncSession]:
    async with runtime.transaction(read=request.method in READING_METHODS) as session:
        yield session


# scope="function": the commit happens before the response is sent, so a 2xx means durable.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]

_bearer = HTTPBearer(auto_error=False, description="token from POST /api/v1/auth/token")


async def get_principal(
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> auth.Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("an Authorization: Bearer token is required")
    principal = await auth.principal_for_token(
        session,
        credentials.credentials,
        secret=runtime.secret,
        now=runtime.clock.now(),
        cache=runtime.principal_cache(),
    )
    # The audit trail names who made a change.
    request.state.principal = principal
    return principal


PrincipalDep = Annotated[auth.Principal, Depends(get_principal)]


def require(*roles: Role) -> Callable[[auth.Principal], Awaitable[auth.Principal]]:
    async def check(principal: PrincipalDep) -> auth.Principal:
        if principal.role not in roles:
            allowed = ", ".join(r.value for r in roles)
            raise Forbidden(f"this needs the role {allowed}; you are {principal.role.value}")
        return principal

    return check


AdminDep = Annotated[auth.Principal, Depends(require(Role.ADMIN))]
OperatorDep = Annotated[auth.Principal, Depends(require(Role.OPERATOR, Role.ADMIN))]
