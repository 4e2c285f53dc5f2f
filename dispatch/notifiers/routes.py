from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from dispatch.audit import service as audit
from dispatch.auth import service as auth
from dispatch.auth.models import Role
from dispatch.deps import AdminDep, SessionDep, require
from dispatch.incidents import service as incidents
from dispatch.notifiers import service
from dispatch.notifiers.schemas import AttemptOut, NotificationOut, PhoneIn, PhoneOut
from dispatch.routing import api_router

router = api_router("/api/v1", tags=["notifiers"])

Watcher = Annotated[auth.Principal, Depends(require(Role.ADMIN, Role.OPERATOR, Role.AUDITOR))]


@router.put("/users/{user_id}/phone", response_model=PhoneOut)
async def set_phone(user_id: str, body: PhoneIn, session: SessionDep, _: AdminDep) -> PhoneOut:
    """The number SMS and the group robots' @-mentions use to reach a leader."""
    user = await service.set_phone(session, user_id, body.phone)
    # Personal data: the audit trail shows it in full to admins only.
    audit.note(session, phone=user.phone)
    return PhoneOut(user_id=user.id, phone=user.phone)


@router.get("/incidents/{incident_id}/notifications", response_model=list[NotificationOut])
async def incident_notifications(
    incident_id: str, session: SessionDep, viewer: Watcher
) -> list[NotificationOut]:
    """Every outbound notification of the incident's alerts, with every attempt."""
    await incidents.get_incident(session, incident_id, viewer=viewer)
    found = await service.notification_attempts(session, incident_id)
    names = await service.leader_names(session, {n.user_id for n, _ in found})
    return [
        NotificationOut(
            id=n.id,
            incident_id=n.incident_id,
            dispatch_id=n.dispatch_id,
            user_id=n.user_id,
            leader_name=names.get(n.user_id, ""),
            channel=n.channel,
            status=n.status,
            attempts=[AttemptOut.model_validate(a) for a in attempts],
            created_at=n.created_at,
            finished_at=n.finished_at,
            held=n.held,
            held_until=n.held_until,
        )
        for n, attempts in found
    ]
