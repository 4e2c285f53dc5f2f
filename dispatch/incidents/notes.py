"""The operator's note (调度员附言) of a team added by hand (加派), read from its ``team_added``
event: the one place it is kept. The leader's copy of the incident carries it on his team's
dispatch (``DispatchOut.note``), and the SMS and robot follow-ups of his alert quote it."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.incidents.models import IncidentEvent

# A dispatch's ``ring`` when an operator added its team by hand; only those have a note.
RING_OPERATOR = 2
TEAM_ADDED = "team_added"


def note_of(facts: dict[str, Any]) -> str | None:
    """The note a ``team_added`` event records, or None: none given, or only blanks."""
    note = facts.get("note")
    if not isinstance(note, str) or not note.strip():
        return None
    return note


async def operator_notes(session: AsyncSession, incident_ids: Collection[str]) -> dict[str, str]:
    """The notes of the teams added by hand to these incidents, by dispatch id (those without
    one left out). Read by the incidents' index of events (incident_id, seq); call it only for
    incidents with a dispatch of ``RING_OPERATOR``: most have none, and need no query."""
    if not incident_ids:
        return {}
    rows = await session.scalars(
        select(IncidentEvent.data).where(
            IncidentEvent.incident_id.in_(sorted(set(incident_ids))),
            IncidentEvent.type == TEAM_ADDED,
        )
    )
    notes: dict[str, str] = {}
    for facts in rows:
        note = note_of(facts)
        dispatch_id = facts.get("dispatch_id")
        if note is not None and isinstance(dispatch_id, str):
            notes[dispatch_id] = note
    return notes
