"""What a dispatch's events say of it beside its row, each kept in one event and nowhere else:
the operator's note (调度员附言) of a team added by hand (加派), in its ``team_added`` event, and
that its alert reached nobody, in a ``nobody_alerted`` event. The leader's copy of the incident
carries the note on his team's dispatch (``DispatchOut.note``), and the SMS and robot
follow-ups of his alert quote it; every view of the dispatch says ``nobody_alerted``.

Both are read as columns of the statement that reads the dispatches (``note_column``,
``nobody_alerted_column``), by the incident's index of events (incident_id, seq): a view waits
for no query more, and a message never says what a reload contradicts."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Select, case, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.incidents.models import Dispatch, IncidentEvent

# A dispatch's ``ring`` when an operator added its team by hand; only those have a note.
RING_OPERATOR = 2
TEAM_ADDED = "team_added"
NOBODY_ALERTED = "nobody_alerted"
# The labels of the two columns beside a dispatch's own.
NOTE = "event_note"
NOBODY = "event_nobody_alerted"


@dataclass(frozen=True, slots=True)
class DispatchFacts:
    note: str | None = None
    nobody_alerted: bool = False


NO_FACTS = DispatchFacts()


def _events_of_dispatch(kind: str) -> Select[int]:
    # Correlated to the dispatch of the enclosing statement.
    return select(IncidentEvent.id).where(
        IncidentEvent.incident_id == Dispatch.incident_id,
        IncidentEvent.type == kind,
        IncidentEvent.data["dispatch_id"].as_string() == Dispatch.id,
    )


def note_column() -> ColumnElement[str | None]:
    """The note its ``team_added`` event records, or null: only a dispatch added by hand has
    that event, so the others' events are not read."""
    note = (
        _events_of_dispatch(TEAM_ADDED)
        .with_only_columns(IncidentEvent.data["note"].as_string())
        .limit(1)
        .scalar_subquery()
    )
    return case((Dispatch.ring == RING_OPERATOR, note), else_=None).label(NOTE)


def nobody_alerted_column() -> ColumnElement[bool]:
    return exists(_events_of_dispatch(NOBODY_ALERTED)).label(NOBODY)


def facts(note: str | None, nobody_alerted: bool) -> DispatchFacts:
    """The facts read beside a dispatch; a note of blanks alone is none."""
    if note is not None and not note.strip():
        note = None
    if note is None and not nobody_alerted:
        return NO_FACTS
    return DispatchFacts(note, bool(nobody_alerted))


async def facts_of(
    session: AsyncSession, dispatch_ids: Collection[str]
) -> dict[str, DispatchFacts]:
    """The facts of these dispatches, by id: one statement, none when there are none."""
    if not dispatch_ids:
        return {}
    rows = await session.execute(
        select(Dispatch.id, note_column(), nobody_alerted_column()).where(
            Dispatch.id.in_(sorted(set(dispatch_ids)))
        )
    )
    return {dispatch_id: facts(note, nobody) for dispatch_id, note, nobody in rows}
