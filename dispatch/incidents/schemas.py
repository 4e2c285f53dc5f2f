from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from dispatch.incidents.models import ArrivalSource, Category, IncidentStatus, TierStatus
from dispatch.schemas import (
    Instant,
    LocalTime,
    LocationIn,
    LocationOut,
    Number,
    Schema,
    ShownText,
)


class IncidentCreate(Schema):
    location: LocationIn
    category: Category
    description: ShownText | None = Field(
        default=None,
        description="free text in lines: tabs and line breaks, no other control characters",
    )


class ChainTierOut(Schema):
    tier: int = Field(ge=1, le=3)
    target_s: float
    deadline: LocalTime
    status: TierStatus
    covered: bool = Field(description="whether any team of this tier was alerted")
    arrived_at: LocalTime | None
    elapsed_s: float | None = Field(description="seconds from report to the tier's first arrival")
    breached_at: LocalTime | None


class DispatchOut(Schema):
    id: str
    incident_id: str
    team_id: str
    team_name: str
    tier: int
    ring: int = Field(
        description="0: the team's zone covers the incident; 1: the escalation added it; 2: an "
        "operator added it by hand (POST /api/v1/incidents/{id}/dispatches)"
    )
    added_by: Literal["zone", "escalation", "operator"] = Field(
        description="how the team came to be alerted, as ring says it: its zone covers the "
        "incident, the escalation added it, or an operator did (人工加派)"
    )
    note: str | None = Field(
        default=None,
        description="of a team an operator added (added_by operator): the note he gave with "
        "it (调度员附言, the note of POST /api/v1/incidents/{id}/dispatches, as its team_added "
        "event keeps it), for the team's leader on the way; null without one (or only "
        "blanks) and for every other dispatch",
    )
    distance_m: float
    alerted_at: LocalTime
    delivered_at: LocalTime | None = Field(
        description="the phone had the alert: its first websocket ack, or it was shown or "
        "accepted first; when delivered_implied, the time of the arrival that stood for it"
    )
    delivered_implied: bool = Field(
        description="the delivery was not observed but implied by the leader's arrival (no ack "
        "had come): not measured; the phone's ack, when it comes, replaces it"
    )
    shown_at: LocalTime | None = Field(description="the alert was on the leader's screen")
    accepted_at: LocalTime | None = Field(
        description="the leader accepted; when accepted_implied, the time of his arrival"
    )
    accepted_implied: bool = Field(
        description="the leader arrived without accepting first: his arrival stands for the "
        "accept, which is not measured. An arrival an operator records implies nothing"
    )
    arrived_at: LocalTime | None
    arrival_source: ArrivalSource | None
    arrival_location: LocationOut | None
    arrival_distance_m: float | None = Field(description="metres from the incident at arrival")
    arrival_accuracy_m: float | None
    arrival_device_time: LocalTime | None = Field(description="the device's clock at arrival")
    arrival_clock_skew_s: float | None = Field(
        description="device clock minus server clock at arrival; large values mean a wrong clock"
    )
    nobody_alerted: bool = Field(
        default=False,
        description="its alert reached nobody: the team had no enabled leader account when it "
        "was dispatched (its nobody_alerted event says so). It is dispatched all the same, to "
        "be reached by radio or phone; nothing on its phones answers for it",
    )
    alerted_you: bool | None = Field(
        default=None,
        description="in a leader's own GET /api/v1/incidents and /api/v1/incidents/{id}: "
        "whether this dispatch's alert went to him (of a team whose units take turns, only to "
        "the leaders serving with the unit on turn; of any other team, to every leader; never "
        "another team's). Null in every other view: the websocket's copies, the answers to "
        "hops, the console's",
    )


class SkippedTeamOut(Schema):
    """A team whose zone covered the incident but which was off duty, so not alerted."""

    team_id: str
    team_name: str
    tier: int
    reason: str = Field(description="off_hours (outside its duty hours) or unit_empty")
    detail: str
    unit: int | None = Field(description="the unit whose turn it was, if the team rotates")


class IncidentOut(Schema):
    id: str
    reported_at: LocalTime
    location: LocationOut
    category: Category
    description: str | None
    status: IncidentStatus
    closed_at: LocalTime | None
    reported_by: str
    chain: list[ChainTierOut]
    dispatches: list[DispatchOut]
    village_id: str | None = Field(default=None, description="the village it falls in, if any")
    village_name: str | None = Field(
        default=None,
        description="that village's name as it is now (the console and the phone label the "
        "incident with it), null in none",
    )
    skipped: list[SkippedTeamOut] = Field(
        default_factory=list, description="covering teams not alerted because off duty"
    )


class DispatchAddedOut(IncidentOut):
    """The answer to 加派: the incident as it is now, and whether anyone got the alert."""

    no_active_leader: bool = Field(
        description="the team added has no enabled leader account (all disabled, or none): "
        "its alert reached nobody and no SMS or robot follow-up can reach anyone. The team "
        "is on record all the same, dispatched, to be reached by radio or phone"
    )


class ArriveIn(Schema):
    location: LocationIn | None = Field(
        default=None, description="where the team is, as the device measured it"
    )
    accuracy_m: Number | None = Field(default=None, gt=0, le=100_000, allow_inf_nan=False)
    device_time: Instant | None = Field(
        default=None, description="the device's clock (ISO 8601 with offset); kept for comparison"
    )


class ShownIn(Schema):
    device_time: Instant | None = Field(default=None, description="the device's clock")


class AcceptIn(ShownIn):
    """The body of an acceptance, which may be left out: the device's clock at the tap."""


class PositionIn(Schema):
    location: LocationIn
    accuracy_m: Number = Field(gt=0, le=100_000, allow_inf_nan=False, description="metres, 1 sigma")
    device_time: Instant | None = None


class PositionOut(Schema):
    distance_m: float = Field(description="geodesic metres from the incident")
    arrived: bool = Field(description="whether this fix recorded the arrival (source geofence)")
    incident: IncidentOut | None = Field(
        description="the incident as this fix left it when it recorded the arrival; null when "
        "it recorded nothing (the websocket carries every change)"
    )


class EventOut(Schema):
    id: int
    incident_id: str
    at: LocalTime
    type: str
    actor_id: str | None
    data: dict[str, Any]


class DispatchAddIn(Schema):
    """A team an operator adds to an open incident by hand (加派)."""

    team_id: str = Field(min_length=1, max_length=32, description="a team in service")
    note: ShownText | None = Field(
        default=None,
        max_length=500,
        description="why (the caller asked for it, a second car...): kept in the incident's "
        "timeline with who added the team",
    )
