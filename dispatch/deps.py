"""Request dependencies: the runtime, the unit of work and who is asking."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.asgi import RECEIVED_AT
from dispatch.audit import trail
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
#
# The unit of work also leaves the audit row of what a write changed (``audit.trail.record``),
# where a dependency of its own on every API router did: one dependency fewer to solve on every
# request, the same row in the same transaction, before the commit.
async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    runtime = runtime_of(request)
    if request.method in READING_METHODS:
        async with runtime.transaction(read=True) as session:
            yield session
        return
    async with runtime.transaction() as session:
        yield session
        await trail.record(request, session, runtime.clock)


# scope="function": the commit happens before the response is sent, so a 2xx means durable.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


class BearerPrincipal(HTTPBearer):
    """Who is asking: the user of the ``Authorization: Bearer`` token, with one of ``roles``
    (any role without them). One dependency, which FastAPI also documents as the HTTP bearer
    scheme (an ``HTTPBearer``'s name and model): it reads the header itself, where an
    ``HTTPBearer`` beside it was a dependency more to solve on every request, and a pydantic
    model built to carry the token (some 1 % of a report's instructions)."""

    def __init__(self, *roles: Role) -> None:
        super().__init__(
            auto_error=False,
            description="token from POST /api/v1/auth/token",
            scheme_name="HTTPBearer",
        )
        self.roles = roles

    async def __call__(  # type: ignore[override]
        self, request: Request, session: SessionDep
    ) -> auth.Principal:
        # As HTTPBearer reads the header: the scheme up to the first space, then the token.
        scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
        token = token.strip()
        if not (scheme and token) or scheme.lower() != "bearer":
            raise Unauthorized("an Authorization: Bearer token is required")
        runtime = runtime_of(request)
        principal = await auth.principal_for_token(
            session,
            token,
            secret=runtime.secret,
            now=runtime.clock.now(),
            cache=runtime.principal_cache(),
        )
        # The audit trail names who made a change.
        request.state.principal = principal
        if self.roles and principal.role not in self.roles:
            allowed = ", ".join(r.value for r in self.roles)
            raise Forbidden(f"this needs the role {allowed}; you are {principal.role.value}")
        return principal


get_principal = BearerPrincipal()
PrincipalDep = Annotated[auth.Principal, Depends(get_principal)]


def require(*roles: Role) -> BearerPrincipal:
    """The principal, refused 403 unless it has one of ``roles``."""
    return BearerPrincipal(*roles)


AdminDep = Annotated[auth.Principal, Depends(require(Role.ADMIN))]
OperatorDep = Annotated[auth.Principal, Depends(require(Role.OPERATOR, Role.ADMIN))]
