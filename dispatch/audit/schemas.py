from __future__ import annotations

from typing import Any

from pydantic import Field

from dispatch.schemas import LocalTime, Schema


class AuditEntryOut(Schema):
    id: int
    at: LocalTime
    actor_id: str | None = Field(description="null for the server itself or a failed login")
    actor_name: str | None
    actor_role: str | None
    address: str | None = Field(
        description="the client's address as the server saw it, an IP address, or "
        '"(not an IP address)" for anything else a trusted proxy forwarded'
    )
    action: str = Field(description="the route's name (update_team, close_incident, ...)")
    method: str | None
    route: str | None = Field(description="the route's path template")
    target_id: str | None = Field(description="the record changed (team, user, incident, ...)")
    data: dict[str, Any] = Field(
        description="what changed; phone and ID numbers masked unless the reader is an admin"
    )


class AuditPage(Schema):
    items: list[AuditEntryOut]
    next_before_id: int | None = Field(
        description="pass as before_id for the next (older) page; null on the last page"
    )
