"""The audit row of every change made through the API, written in the change's transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import Request
from fastapi.routing import APIRoute

from dispatch.audit import service
from dispatch.auth import service as auth
from dispatch.deps import SessionDep, runtime_of

READS = frozenset({"GET", "HEAD", "OPTIONS"})


def actor_of(request: Request) -> service.Actor:
    principal: auth.Principal | None = getattr(request.state, "principal", None)
    address = request.client.host if request.client is not None else None
    if principal is None:
        return service.Actor(None, None, None, address)
    return service.Actor(principal.user_id, principal.name, principal.role.value, address)


async def audit_trail(request: Request, session: SessionDep) -> AsyncIterator[None]:
    """On every API router. A request that changes something and succeeds leaves one row
    (one that succeeds without a change says so with ``audit.service.unchanged``):
    the route, who (the bearer token's user), from which address, the ids in the path, and
    what the handler noted with ``audit.service.note``. A failed request raises through the
    ``yield``, so it leaves no row, and its unit of work is rolled back anyway."""
    yield
    if request.method in READS or not service.changed_anything(session):
        return
    route = request.scope.get("route")
    assert isinstance(route, APIRoute)
    noted = service.take_note(session)
    path = dict(request.path_params)
    target_id = noted.pop("target_id", None) or next(iter(path.values()), None)
    data = {**({"path": path} if path else {}), **noted}
    row = service.entry(
        actor_of(request),
        route.name,
        runtime_of(request).clock.now(),
        target_id=target_id,
        method=request.method,
        route=route.path,
        data=data,
    )
    service.write(session, row)
    # Whatever the handler left unflushed is written now, before the unit of work's last
    # writes (the rows every request shares) are taken at commit.
    await session.flush()
