"""Imports every model so the metadata knows every table (for migrations)."""

from alerts.models import Mailbox, Message
from dispatch.audit.models import AuditEntry, EventChainHead
from dispatch.auth.models import RevokedToken, User
from dispatch.incidents.models import (
    ChainTier,
    Dispatch,
    DispatchFollower,
    Incident,
    IncidentEvent,
)
from dispatch.jobs.models import Job
from dispatch.notifiers.models import Notification, NotificationAttempt
from dispatch.reachability.models import Presence, PresenceBeat, TestAlert
from dispatch.rosters.models import DutySchedule, IncidentSkip, RosterMember
from dispatch.security.models import Backoff, RateBucket
from dispatch.teams.models import Team
from dispatch.villages.models import Village

__all__ = [
    "AuditEntry",
    "Backoff",
    "ChainTier",
    "Dispatch",
    "DispatchFollower",
    "DutySchedule",
    "EventChainHead",
    "Incident",
    "IncidentEvent",
    "IncidentSkip",
    "Job",
    "Mailbox",
    "Message",
    "Notification",
    "NotificationAttempt",
    "Presence",
    "PresenceBeat",
    "RateBucket",
    "RevokedToken",
    "RosterMember",
    "Team",
    "TestAlert",
    "User",
    "Village",
]
