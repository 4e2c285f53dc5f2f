from __future__ import annotations

from pydantic import Field

from dispatch.schemas import LocalTime, Schema


class PhoneIn(Schema):
    phone: str | None = Field(
        description="the leader's mobile number, digits with an optional leading +; null clears it",
        pattern=r"^\+?[0-9]{6,15}$",
    )


class PhoneOut(Schema):
    user_id: str
    phone: str | None


class AttemptOut(Schema):
    attempt: int
    at: LocalTime
    ok: bool
    status_code: int | None
    error: str | None
    duration_ms: float


class NotificationOut(Schema):
    id: str
    incident_id: str
    dispatch_id: str
    user_id: str
    leader_name: str = Field(description="the name of the leader to be reached")
    channel: str = Field(description="webhook, wecom, dingtalk or sms")
    status: str = Field(
        description="pending, notified, failed, or stopped (the leader answered or was"
        " disabled, the incident closed, or the channel was switched off by a restart before"
        " its last retry)"
    )
    attempts: list[AttemptOut]
    created_at: LocalTime
    finished_at: LocalTime | None
    held: str | None = Field(
        description="why it was begun later than its alert's check fell due: the leader's"
        " phone, connected when a server process went away, was given"
        " DISPATCH_NOTIFY_RECONNECT_GRACE_S to reconnect; null when it was not held"
    )
    held_until: LocalTime | None = Field(
        description="of a held notification, until when it waited: the end of the leader's"
        " reconnection grace by the server's clock; null when it was not held (or was held"
        " before the server recorded this)"
    )
