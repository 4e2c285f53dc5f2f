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


class ChainHeadOut(Schema):
    """The newest row of the incident event log: what a record was read against."""

    event_id: int = Field(description="its incident_events row id")
    hash: str = Field(description="its hash (64 hex digits), which covers every row before it")
    at: LocalTime = Field(description="its time, in Beijing time")


class BreakPlaceOut(Schema):
    """The broken incident as the office knows it, to find in its reports and pages."""

    incident_id: str
    reported_at: LocalTime
    source: str = Field(description='"its reported event" or "its incidents row"')
    category: str | None = Field(description="the category code (theft, fire, ...)")
    village: str | None = Field(description="its village's name; null: in no village")
    event_type: str | None = Field(description="the event row named, by its type")
    event_at: LocalTime | None = Field(description="and its time as stored")


class BreakOut(Schema):
    incident_id: str
    event_id: int | None = Field(description="the incident_events row, when one is named")
    seq: int | None
    row: str | None = Field(description="the row named when it is not an event row")
    reason: str = Field(description="what does not hold, in English")
    code: str = Field(
        description="the kind of break, a stable code (docs/security.md lists each and its "
        "values): hash_mismatch, row_missing, value_differs, ..."
    )
    values: dict[str, Any] = Field(
        description="what the break names, by the code's keys (row ids, seqs, the column, the "
        "value stored and the one expected, ...): times in Beijing time; for the pages to say "
        "it in their own words"
    )
    text: str = Field(description="what `dispatch audit verify` prints after BROKEN:")
    where: str | None = Field(description="what it prints after where: (null: nothing to name)")
    place: BreakPlaceOut | None = Field(description="the same, as values")


class VerificationOut(Schema):
    ok: bool = Field(description="every chain holds and every row the reports read agrees")
    checked_at: LocalTime
    events: int = Field(description="event rows checked")
    incidents: int = Field(description="incident chains checked")
    unchecked: int = Field(
        description="incidents recorded before the events carried every column the reports "
        "read: those columns are not checked"
    )
    head: ChainHeadOut | None = Field(
        description="the log's newest row at checked_at; null when it has none"
    )
    breaks: list[BreakOut] = Field(
        description="what does not hold; verification stops at the first, so at most one"
    )
    asked_head: ChainHeadOut | None = Field(
        description="with head=: the row of the log with that hash; null when it is not there "
        "(or head= was not given)"
    )
    head_found: bool | None = Field(
        description="with head=: whether that row is still in the log; null without head="
    )
