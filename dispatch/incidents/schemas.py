from __future__ import annotations

from typing import Any

from pydantic import Field

from dispatch.incidents.models import ArrivalSource, Category, IncidentStatus, TierStatus
from dispatch.schemas import LocalTime, LocationIn, LocationOut, Schema


class IncidentCreate(Schema):
    location: LocationIn
    category: Category
    description: str | None = Field(default=None, max_length=2000)


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
    distance_m: float
    alerted_at: LocalTime
    delivered_at: LocalTime | None
    accepted_at: LocalTime | None
    arrived_at: LocalTime | None
    arrival_source: ArrivalSource | None
    arrival_location: LocationOut | None
    arrival_distance_m: float | None


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


class ArriveIn(Schema):
    location: LocationIn | None = Field(
        default=None, description="where the team is, as the device measured it"
    )


class EventOut(Schema):
    id: int
    incident_id: str
    at: LocalTime
    type: str
    actor_id: str | None
    data: dict[str, Any]
