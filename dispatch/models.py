"""Imports every model so the metadata knows every table (for migrations)."""

from alerts.models import Mailbox, Message
from dispatch.auth.models import User
from dispatch.incidents.models import ChainTier, Dispatch, Incident, IncidentEvent
from dispatch.jobs.models import Job
from dispatch.teams.models import Team

__all__ = [
    "ChainTier",
    "Dispatch",
    "Incident",
    "IncidentEvent",
    "Job",
    "Mailbox",
    "Message",
    "Team",
    "User",
]
