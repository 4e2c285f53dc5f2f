from __future__ import annotations

from pydantic import Field

from dispatch.schemas import LocalTime, Schema


class TestAlertOut(Schema):
    id: str
    team_id: str
    user_id: str
    sent_at: LocalTime
    acked_at: LocalTime | None = Field(description="when the leader's phone acknowledged it")
    round_trip_ms: float | None = Field(description="from sending to the phone's acknowledgement")


class LeaderReachabilityOut(Schema):
    user_id: str
    name: str
    connected: bool = Field(description="a websocket of this leader is open now, on any server")
    last_seen_at: LocalTime | None = Field(
        description="now while connected, else when the last socket closed; null if never seen"
    )
    phone_on_file: bool = Field(description="SMS and robot @-mentions can reach this leader")
    last_test: TestAlertOut | None


class TeamReachabilityOut(Schema):
    team_id: str
    team_name: str
    tier: int
    reachable: bool = Field(description="at least one leader of the team is connected now")
    leaders: list[LeaderReachabilityOut]


class TestAlertSentOut(Schema):
    team_id: str
    sent: list[TestAlertOut] = Field(description="one test alert per leader of the team")
