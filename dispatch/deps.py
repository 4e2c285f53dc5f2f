"""Request dependencies: the runtime, the unit of work and who is asking."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.asgi import RECEIVED_AT
from dispatch.auth import service as auth
from dispatch.auth.models import Role
from dispatch.errors import Forbidden, Unauthorized
from dispatch.runtime import Runtime


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def get_runtime(request: Request) -> Runtime:
    # async: FastAPI runs a plain function dependency in its thread pool, a thread hop on
    # every request for one attribute read.
    return runtime_of(request)


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def received_at(request: Request) -> datetime:
    """The server's time when the request came in, before its body was read or a
    connection and its token's owner were waited for: the time a hop is recorded at."""
    at = request.scope.get(RECEIVED_AT)
    return at if isinstance(at, datetime) else runtime_of(request).clock.now()


# Requests that only read take their connection from the readers' pool, so that a long
# report queues no write behind it (the writers' pool is kept small on purpose).
READING_METHODS = frozenset({"GET", "HEAD"})


# The dependencies every request solves read the runtime off the request rather than depend on
# get_runtime: FastAPI's solving of each dependency, even one it finds in its cache, was
# about 1 % of a report's CPU (14 of them a report, now 8).
async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    reading = request.method in READING_METHODS
    async with runtime_of(request).transaction(read=reading) as session:
        yield session


# scope="function": the commit happens before the response is sent, so a 2xx means durable.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]

_bearer = HTTPBearer(auto_error=False, description="token from POST /api/v1/auth/token")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def get_principal(
    request: Request, session: SessionDep, credentials: Credentials
) -> auth.Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("an Authorization: Bearer token is required")
    runtime = runtime_of(request)
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


def require(*roles: Role) -> Callable[..., Awaitable[auth.Principal]]:
    # Takes what get_principal takes and calls it, rather than depend on it: a level less
    # for FastAPI to solve on every request (see get_session).
    async def check(
        request: Request, session: SessionDep, credentials: Credentials
    ) -> auth.Principal:
        principal = await get_principal(request, session, credentials)
        if principal.role not in roles:
            allowed = ", ".join(r.value for r in roles)
            raise Forbidden(f"this needs the role {allowed}; you are {principal.role.value}")
        return principal

    return check


AdminDep = Annotated[auth.Principal, Depends(require(Role.ADMIN))]
OperatorDep = Annotated[auth.Principal, Depends(require(Role.OPERATOR, Role.ADMIN))]
