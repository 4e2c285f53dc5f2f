"""The audit row of every change made through the API, written in the change's transaction."""

from __future__ import annotations

import functools
import ipaddress

from fastapi import Request
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import HTTPConnection

from dispatch.audit import service
from dispatch.auth import service as auth
from dispatch.clock import Clock

READS = frozenset({"GET", "HEAD", "OPTIONS"})
# What stands for a client address that is no IP address (docs/security.md).
NOT_AN_ADDRESS = "(not an IP address)"
# The length of audit_log.address: an IPv6 address (39) and a zone (``%eth0``) of up to 24.
ADDRESS_LENGTH = 64


def client_address(connection: HTTPConnection) -> str | None:
    """The client's address as it is stored and counted (the audit trail, the login backoff):
    an IP address in its normal form (``2001:db8::1``; an IPv4-mapped one as IPv4), else
    ``NOT_AN_ADDRESS``; None without a client. Behind a trusted proxy uvicorn takes the
    address from X-Forwarded-For unchecked, so it can be any text of any length: kept as it
    came, one of 65 characters failed the audit row's insert (a 500 on every write and login,
    on PostgreSQL), and each new text was a login backoff key of its own."""
    if connection.client is None:
        return None
    return _address(connection.client.host)


@functools.lru_cache(maxsize=1024)
def _address(host: str) -> str:
    """``client_address`` of a host's text. Kept for the few addresses a server hears from
    (its proxies', its consoles'): ipaddress took 3 µs to parse one, on every write and every
    login, where the lookup takes 0.07."""
    try:
        parsed = ipaddress.ip_address(host)
    except ValueError:
        return NOT_AN_ADDRESS
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        parsed = parsed.ipv4_mapped
    address = str(parsed)
    return address if len(address) <= ADDRESS_LENGTH else NOT_AN_ADDRESS


def actor_of(request: Request) -> service.Actor:
    principal: auth.Principal | None = getattr(request.state, "principal", None)
    address = client_address(request)
    if principal is None:
        return service.Actor(None, None, None, address)
    return service.Actor(principal.user_id, principal.name, principal.role.value, address)


async def record(request: Request, session: AsyncSession, clock: Clock) -> None:
    """The audit row of a request that changed something, written in its unit of work by the
    session's dependency (``deps.get_session``) once the handler has returned: the route, who
    (the bearer token's user), from which address, the ids in the path, and what the handler
    noted with ``audit.service.note``; none for a read, or for a request that succeeded
    without a change (``audit.service.unchanged``). A failed request raises before it, so it
    leaves no row, and its unit of work is rolled back anyway."""
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
        clock.now(),
        target_id=target_id,
        method=request.method,
        route=route.path,
        data=data,
    )
    service.write(session, row)
    # Whatever the handler left unflushed is written now, before the unit of work's last
    # writes (the rows every request shares) are taken at commit. A session with nothing to
    # flush is not asked: its flush would do nothing, after a hop through a greenlet of its own.
    if session.new or session.dirty or session.deleted:
        await session.flush()
