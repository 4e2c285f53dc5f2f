"""Imports every model so the metadata knows every table (for migrations)."""

from alerts.models import Mailbox, Message
from dispatch.auth.models import User
from dispatch.incidents.models import ChainTier, Dispatch, Incident, IncidentEvent
from dispatch.jobs.models import Job
from dispatch.notifiers.models import Notification, NotificationAttempt
from dispatch.reachability.models import Presence, TestAlert
from dispatch.rosters.models import DutySchedule, IncidentSkip, RosterMember
from dispatch.teams.models import Team
from dispatch.villages.models import Village

__all__ = [
    "ChainTier",
    "Dispatch",
    "DutySchedule",
    "Incident",
    "IncidentEvent",
    "IncidentSkip",
    "Job",
    "Mailbox",
    "Message",
    "Notification",
    "NotificationAttempt",
    "Presence",
    "RosterMember",
    "Team",
    "TestAlert",
    "User",
    "Village",
]
