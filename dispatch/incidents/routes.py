from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Query, Request, Response
from sqlalchemy.exc import IntegrityError

from dispatch.audit import service as audit
from dispatch.auth import service as auth
from dispatch.auth.models import Role
from dispatch.deps import (
    OperatorDep,
    RuntimeDep,
    SessionDep,
    received_at,
    require,
    runtime_of,
)
from dispatch.errors import RATE_LIMITED, Responses, TryAgain, error_response, header
from dispatch.incidents import service
from dispatch.incidents.models import IncidentStatus
from dispatch.incidents.schemas import (
    AcceptIn,
    ArriveIn,
    DispatchAddedOut,
    DispatchAddIn,
    EventOut,
    IncidentCreate,
    IncidentOut,
    PositionIn,
    PositionOut,
    ShownIn,
)
from dispatch.routing import api_router
from dispatch.security import limits
from dispatch.villages import service as villages

incidents_router = api_router("/api/v1/incidents", tags=["incidents"])
dispatches_router = api_router("/api/v1/dispatches", tags=["dispatches"])

Viewer = Annotated[
    auth.Principal, Depends(require(Role.ADMIN, Role.OPERATOR, Role.AUDITOR, Role.LEADER))
]
Responder = Annotated[auth.Principal, Depends(require(Role.LEADER, Role.OPERATOR, Role.ADMIN))]

# Every role reads incidents; a leader only those dispatched to his team (service.get_incident).
_LEADERS_OWN: Responses = {
    403: error_response(403, "a leader: the incident was not dispatched to his team")
}
# What a hop of a dispatch (accept, shown, arrive, position) is refused beside who asks.
_HOP_REFUSALS: Responses = {
    403: error_response(403, "an auditor; or a leader of another team than the dispatch's"),
    409: error_response(409, "the incident is closed (field dispatch_id)"),
}


@incidents_router.post(
    "",
    status_code=201,
    response_model=IncidentOut,
    responses={
        201: {
            "description": "stored with its dispatches and alerts, then alerted",
            "headers": {
                "Idempotent-Replayed": header(
                    "true when the Idempotency-Key was seen before: this is the incident it "
                    "reported then, and nothing new was stored",
                    required=False,
                )
            },
        },
        **RATE_LIMITED,
        422: error_response(
            422,
            "invalid_input, as every route; or idempotency_key_reused (field Idempotency-Key): "
            "the key was used for a different report, which is kept; nothing was written",
        ),
        503: error_response(
            503,
            "busy or database_unavailable, as every route; or try_again: a village was "
            "deleted while the report was written. Nothing was written: send it again",
        ),
    },
)
async def report_incident(
    data: IncidentCreate,
    response: Response,
    request: Request,
    session: SessionDep,
    reporter: OperatorDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            min_length=1,
            max_length=128,
            description="the same key from the same user with the same report returns the "
            "same incident; with a different report (location, category or description) it "
            "is refused (422 idempotency_key_reused)",
        ),
    ] = None,
) -> IncidentOut:
    # The runtime read off the request, not depended on: a dependency fewer to solve.
    runtime = runtime_of(request)
    settings = runtime.settings
    # Per user: one account cannot flood the teams with alerts.
    rate = limits.Rate(settings.report_burst, settings.report_per_min)
    try:
        view, replayed = await service.report_incident(
            session,
            data,
            reporter=reporter,
            idempotency_key=idempotency_key,
            coverage=runtime.coverage,
            villages=runtime.villages,
            targets=runtime.settings.chain_targets,
            escalation=service.Escalation(
                runtime.settings.escalation_after_s, runtime.settings.escalation_ring_m
            ),
            now=received_at(request),
            rate=rate,
            duty=runtime.duty_book(),
        )
    except IntegrityError as error:
        if not villages.lost_its_village(error):
            raise
        # Nothing was written. This process tags from the villages as they are now at once,
        # not when the delete's announcement comes; the page sends the report again. Through
        # ``reload``: were a change's index put in place while it reads, it reads again rather
        # than put its older read over it.
        await runtime.villages.reload()
        raise TryAgain(
            "a village was deleted while this report was written; send it again"
        ) from None
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    audit.note(session, target_id=view.id, category=view.category.value, replayed=replayed)
    return view


@incidents_router.get(
    "",
    response_model=list[IncidentOut],
    responses={
        422: error_response(
            422,
            "invalid_input, as every route; a day not of the calendar (field day); or a "
            "cursor that names no incident this account may read (field before)",
        )
    },
)
async def list_incidents(
    session: SessionDep,
    viewer: Viewer,
    status: IncidentStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    day: Annotated[
        str | None,
        Query(
            pattern=r"^\d{4}-\d{2}-\d{2}$",
            description="only those reported on this day in Beijing time (YYYY-MM-DD)",
        ),
    ] = None,
    before: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=32,
            description="the next page: the id of the last incident of the page before; only "
            "those after it in the list's order come (older, or reported at the same time "
            "with a smaller id), whatever became of it since. Incidents closed or reported "
            "between pages neither skip nor repeat one, as they do with offset",
        ),
    ] = None,
    offset: Annotated[
        int,
        Query(
            ge=0,
            le=1_000_000,
            description="skip this many (after the cursor, with before), for the next page",
        ),
    ] = 0,
) -> list[IncidentOut]:
    """Newest first, incidents reported at the same time by id, largest first. A leader sees
    only incidents dispatched to his team."""
    return await service.list_incidents(
        session, status=status, viewer=viewer, limit=limit, day=day, offset=offset, before=before
    )


@incidents_router.get("/{incident_id}", response_model=IncidentOut, responses=_LEADERS_OWN)
async def get_incident(incident_id: str, session: SessionDep, viewer: Viewer) -> IncidentOut:
    return await service.get_incident(session, incident_id, viewer=viewer)


@incidents_router.get(
    "/{incident_id}/events", response_model=list[EventOut], responses=_LEADERS_OWN
)
async def incident_events(incident_id: str, session: SessionDep, viewer: Viewer) -> list[EventOut]:
    """The append-only timeline: every state change with server time and actor."""
    return await service.incident_events(session, incident_id, viewer=viewer)


@incidents_router.post("/{incident_id}/close", response_model=IncidentOut)
async def close_incident(
    incident_id: str, request: Request, session: SessionDep, actor: OperatorDep
) -> IncidentOut:
    return await service.close_incident(session, actor, incident_id, received_at(request))


@incidents_router.post(
    "/{incident_id}/dispatches",
    status_code=201,
    response_model=DispatchAddedOut,
    responses={
        201: {
            "description": "the team was added and alerted: the incident as it is now, and "
            "no_active_leader true when the team has no enabled leader account to alert"
        },
        403: error_response(403, "not an operator or an administrator"),
        404: error_response(
            404, "no such incident (field incident_id) or no team in service (field team_id)"
        ),
        409: error_response(
            409,
            "the incident is closed (field incident_id); or the team is already dispatched to "
            "it, or off duty (field team_id)",
        ),
    },
)
async def add_dispatch(
    incident_id: str,
    data: DispatchAddIn,
    request: Request,
    session: SessionDep,
    actor: OperatorDep,
) -> DispatchAddedOut:
    """Add a team to an open incident by hand (加派): it is alerted as any dispatched team,
    at its own tier, its dispatch marked ``added_by: operator`` (``ring`` 2), and the
    incident's timeline records who added it, when, and the note (``team_added``)."""
    runtime = runtime_of(request)
    view = await service.add_dispatch(
        session,
        actor,
        incident_id,
        data.team_id,
        data.note,
        received_at(request),
        runtime.duty_book(),
    )
    audit.note(session, target_id=incident_id, team_id=data.team_id)
    return view


@dispatches_router.post(
    "/{dispatch_id}/accept", response_model=IncidentOut, responses=_HOP_REFUSALS
)
async def accept_dispatch(
    dispatch_id: str,
    request: Request,
    session: SessionDep,
    actor: Responder,
    body: AcceptIn | None = None,
) -> IncidentOut:
    """Recorded at the server's time; ``device_time`` is kept beside it in the event."""
    device_time = body.device_time if body is not None else None
    return await service.accept_dispatch(
        session, actor, dispatch_id, received_at(request), device_time
    )


@dispatches_router.post("/{dispatch_id}/shown", response_model=IncidentOut, responses=_HOP_REFUSALS)
async def record_shown(
    dispatch_id: str,
    request: Request,
    session: SessionDep,
    actor: Responder,
    body: ShownIn | None = None,
) -> IncidentOut:
    """The leader's page reports when the alert was actually visible on screen."""
    device_time = body.device_time if body is not None else None
    return await service.record_shown(
        session, actor, dispatch_id, device_time, received_at(request)
    )


@dispatches_router.post(
    "/{dispatch_id}/arrive", response_model=IncidentOut, responses=_HOP_REFUSALS
)
async def record_arrival(
    dispatch_id: str,
    request: Request,
    session: SessionDep,
    actor: Responder,
    body: ArriveIn | None = None,
) -> IncidentOut:
    """On scene, by the leader's button (or an operator on the leader's behalf)."""
    fix = (
        service.Fix(body.location, body.accuracy_m, body.device_time)
        if body is not None
        else service.Fix()
    )
    return await service.record_arrival(session, actor, dispatch_id, fix, received_at(request))


@dispatches_router.post(
    "/{dispatch_id}/position",
    response_model=PositionOut,
    responses={
        403: error_response(
            403,
            "not the leader of the dispatch's team: positions come from the leader's phone "
            "(an operator records an arrival with /arrive)",
        ),
        409: _HOP_REFUSALS[409],
    },
)
async def record_position(
    dispatch_id: str,
    body: PositionIn,
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    actor: Responder,
) -> PositionOut:
    """A position fix from the team leader's phone while on the way. Once accepted, a fix with
    accuracy within ``geofence_accuracy_m`` (30 m) no farther than ``geofence_radius_m`` (50 m)
    from the incident records the arrival with source ``geofence``, and the answer carries the
    incident as it left it. A fix that records nothing is answered with its distance alone
    (``incident`` null: the websocket carries every change) and leaves no audit row."""
    settings = runtime.settings
    distance, view = await service.record_position(
        session,
        actor,
        dispatch_id,
        service.Fix(body.location, body.accuracy_m, body.device_time),
        received_at(request),
        (settings.geofence_radius_m, settings.geofence_accuracy_m),
    )
    if view is None:
        audit.unchanged(session)
    return PositionOut(distance_m=distance, arrived=view is not None, incident=view)
