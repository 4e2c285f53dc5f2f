"""Incidents, their dispatches and the 1-3-5 chain: report, deliver, accept, arrive, breach."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dt_time
from functools import cache, partial
from typing import Any, Literal, cast

from sqlalchemy import (
    CTE,
    ColumnElement,
    Executable,
    Select,
    and_,
    bindparam,
    func,
    literal_column,
    or_,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from alerts import store as mailboxes
from alerts.bulk import (
    Added,
    Changed,
    Precondition,
    Read,
    Step,
    any_of,
    on_postgresql,
    write_later,
    write_rows,
)
from alerts.driver import fetch_rows
from alerts.store import Outgoing
from dispatch.audit import chain as event_chain
from dispatch.auth import service as auth
from dispatch.auth.models import Role
from dispatch.db import (
    after_commit,
    before_commit,
    dialect_name,
    falls_due,
    new_id,
    table_of,
    upsert_insert,
)
from dispatch.errors import Conflict, Forbidden, InvalidInput, KeyReused, NotFound
from dispatch.incidents import event_facts
from dispatch.incidents.models import (
    TIERS,
    AnyDispatch,
    AnyIncident,
    AnyTier,
    ArrivalSource,
    Category,
    ChainRecord,
    ChainTier,
    Dispatch,
    DispatchFollower,
    DispatchRecord,
    EventRecord,
    Incident,
    IncidentEvent,
    IncidentRecord,
    IncidentStatus,
    TierStatus,
)
from dispatch.incidents.schemas import (
    ChainTierOut,
    DispatchAddedOut,
    DispatchOut,
    EventOut,
    IncidentCreate,
    IncidentOut,
    SkippedTeamOut,
)
from dispatch.jobs import service as jobs
from dispatch.notifiers import service as notifiers
from dispatch.rosters import service as rosters
from dispatch.rosters.book import DutyBook
from dispatch.rosters.duty import OnTurn, leaders_on_turn
from dispatch.schemas import DISPLAY_TZ, LocationIn, LocationOut, show_time
from dispatch.security import limits
from dispatch.teams import service as teams
from dispatch.teams.coverage import (
    Coverage,
    CoveredBy,
    newest_revision,
    teams_unchanged,
    teams_unchanged_since,
)
from dispatch.villages.index import Villages
from dispatch.villages.models import Village
from geo.geodesy import distance_m

log = logging.getLogger(__name__)

INCIDENTS = table_of(Incident)
DISPATCHES = table_of(Dispatch)
FOLLOWERS = table_of(DispatchFollower)


# ---------------------------------------------------------------- reading


async def get_incident(
    session: AsyncSession, incident_id: str, *, viewer: auth.Principal | None = None
) -> IncidentOut:
    incident = await _load_incident(session, incident_id)
    views = await _views(session, [incident])
    view = views[0]
    if viewer is not None:
        _check_can_view(viewer, view)
        await _say_whom_alerted(session, views, viewer)
    return view


async def list_incidents(
    session: AsyncSession,
    *,
    status: IncidentStatus | None,
    viewer: auth.Principal,
    limit: int,
    day: str | None = None,
    offset: int = 0,
    before: str | None = None,
) -> list[IncidentOut]:
    # Ties of the report time go by id, always: pages, by offset or after a cursor, then
    # follow one another, neither repeating nor skipping incidents reported at one instant.
    # The index on (reported_at, id) gives them in this order, newest first, page by page.
    query = (
        select(Incident)
        .order_by(Incident.reported_at.desc(), Incident.id.desc())
        .limit(limit)
        .offset(offset)
    )
    if day is not None:
        start, end = local_day(day)
        query = query.where(Incident.reported_at >= start, Incident.reported_at < end)
    if status is not None:
        query = query.where(Incident.status == status.value)
    if viewer.role == Role.LEADER:
        mine = select(Dispatch.incident_id).where(Dispatch.team_id == viewer.team_id)
        query = query.where(Incident.id.in_(mine))
    if before is not None:
        # After the previous page's last incident, whatever became of it since (closed, it
        # is out of an open list, but its place in the order stays): closes between pages
        # move no later incident past the cursor, as they move them past an offset.
        # One row-value comparison, not an OR of two: both databases then read the index on
        # (reported_at, id) from the cursor on, where an OR had SQLite scan from the newest.
        at = await _cursor_time(session, before, viewer)
        query = query.where(tuple_(Incident.reported_at, Incident.id) < tuple_(at, before))
    views = await _views(session, list(await session.scalars(query)))
    await _say_whom_alerted(session, views, viewer)
    return views


async def _cursor_time(session: AsyncSession, before: str, viewer: auth.Principal) -> datetime:
    """The report time of the incident ``before`` names. One a leader may not read is refused
    as one that does not exist: the answer says nothing of other teams' incidents."""
    query = select(Incident.reported_at).where(Incident.id == before)
    if viewer.role == Role.LEADER:
        query = query.where(
            select(Dispatch.id)
            .where(Dispatch.incident_id == before, Dispatch.team_id == viewer.team_id)
            .exists()
        )
    at = await session.scalar(query)
    if at is None:
        raise InvalidInput(
            f"before: {before!r} names no incident of this list; give the id of the last "
            "incident of the page before",
            field="before",
        )
    return at


def local_day(day: str) -> tuple[datetime, datetime]:
    """A day in Beijing time (YYYY-MM-DD) as the instants it runs between, [start, end)."""
    try:
        start = datetime.combine(date.fromisoformat(day), dt_time(), DISPLAY_TZ)
        return start.astimezone(UTC), (start + timedelta(days=1)).astimezone(UTC)
    except (ValueError, OverflowError):
        raise InvalidInput(f"{day!r} is no day of the calendar", field="day") from None


async def incident_events(
    session: AsyncSession, incident_id: str, *, viewer: auth.Principal
) -> list[EventOut]:
    # Who may read it, as for the incident; the leader's own marks are not needed here.
    _check_can_view(
        viewer, (await _views(session, [await _load_incident(session, incident_id)]))[0]
    )
    rows = await session.scalars(
        select(IncidentEvent)
        .where(IncidentEvent.incident_id == incident_id)
        .order_by(IncidentEvent.at, IncidentEvent.id)
    )
    return [EventOut.model_validate(e) for e in rows]


# How many of the newest events (by id) the start-up's look at the record reads.
NEWEST_EVENTS = 1000


async def newest_on_record(session: AsyncSession) -> datetime | None:
    """The newest time on record: the latest incident's report time and the latest of the
    newest events' times (every hop, alert, breach and close has its event).

    One statement, read at start-up, cheap on any size of record: the report times' index
    read backwards for one row, and the events' primary key for the last ``NEWEST_EVENTS``
    (events have no index on their time; they are appended as they happen, so the newest
    times are among the last rows written)."""
    tail = (
        select(IncidentEvent.at).order_by(IncidentEvent.id.desc()).limit(NEWEST_EVENTS).subquery()
    )
    row = (
        await session.execute(
            select(
                select(func.max(Incident.reported_at)).scalar_subquery(),
                select(func.max(tail.c.at)).scalar_subquery(),
            )
        )
    ).one()
    return max((t for t in row if t is not None), default=None)


async def _say_whom_alerted(
    session: AsyncSession, views: Sequence[IncidentOut], viewer: auth.Principal
) -> None:
    """A leader's own views say of each dispatch whether its alert went to him
    (``alerted_you``). A phone that reloads its incidents after a resync counts as missed only
    the alerts it was sent: of a team whose units take turns, an off-turn leader was never
    alerted, and must not be rung for an incident as if he had been. The followers alerted are
    the leaders the alert went to (``_send_alerts``); a dispatch without followers went to
    every leader of its team."""
    if viewer.role != Role.LEADER:
        return
    mine = [d.id for view in views for d in view.dispatches if d.team_id == viewer.team_id]
    followed: set[str] = set()
    alerted: set[str] = set()
    if mine:
        rows = await session.execute(
            _followers_query(on_postgresql(session)), {"dispatch_ids": mine}
        )
        for dispatch_id, user_id, was_alerted in rows.all():
            followed.add(dispatch_id)
            if user_id == viewer.user_id and was_alerted:
                alerted.add(dispatch_id)
    for view in views:
        for d in view.dispatches:
            following = _Following(viewer.user_id, d.id in followed, d.id in alerted)
            d.alerted_you = d.team_id == viewer.team_id and following.alerted_him


@cache
def _followers_query(postgresql: bool) -> Select[str, str, bool]:
    return select(
        DispatchFollower.dispatch_id, DispatchFollower.user_id, DispatchFollower.alerted
    ).where(any_of(DispatchFollower.dispatch_id, "dispatch_ids", postgresql))


def _check_can_view(viewer: auth.Principal, view: IncidentOut) -> None:
    if viewer.role == Role.LEADER and all(d.team_id != viewer.team_id for d in view.dispatches):
        raise Forbidden("this incident was not dispatched to your team")


async def _load_incident(
    session: AsyncSession, incident_id: str, *, for_update: bool = False, for_share: bool = False
) -> Incident:
    """``for_update``: for what changes the incident's state (a close, an escalation);
    ``for_share``: for a hop, which must not be recorded on an incident closed meanwhile. The
    two conflict, hops do not conflict with each other (PostgreSQL; SQLite has one writer)."""
    incident = await session.scalar(
        _incident_query(for_update, for_share), {"incident_id": incident_id}
    )
    if incident is None:
        raise NotFound(f"incident {incident_id!r} does not exist", field="incident_id")
    return incident


@cache
def _incident_query(for_update: bool, for_share: bool) -> Select[Incident]:
    # Built once: every hop reads its incident, and building the statement cost as much of our
    # CPU as sending it and reading its row.
    query = select(Incident).where(Incident.id == bindparam("incident_id"))
    if for_update:
        query = query.with_for_update(key_share=True)
    elif for_share:
        query = query.with_for_update(read=True)
    if for_update or for_share:
        # Read before without a lock (a position fix decides first), the row is taken as the
        # lock finds it, not as the session remembers it.
        query = query.execution_options(populate_existing=True)
    return query


async def _views(session: AsyncSession, incidents: Sequence[Incident]) -> list[IncidentOut]:
    ids = [i.id for i in incidents]
    if not ids:
        return []
    chain_query, dispatch_query = _view_queries(on_postgresql(session))
    chains: dict[str, list[ChainTier]] = {i: [] for i in ids}
    for tier in await session.scalars(chain_query, {"incident_ids": ids}):
        chains[tier.incident_id].append(tier)
    dispatches: dict[str, list[Dispatch]] = {i: [] for i in ids}
    facts: dict[str, event_facts.DispatchFacts] = {}
    for d, note, nobody in await session.execute(dispatch_query, {"incident_ids": ids}):
        dispatches[d.incident_id].append(d)
        facts[d.id] = event_facts.facts(note, nobody)
    names = await teams.team_names(session, {d.team_id for ds in dispatches.values() for d in ds})
    skips = await rosters.skips_for(session, ids)
    villages = await _village_names(session, {i.village_id for i in incidents if i.village_id})
    return [
        incident_view(
            i,
            chains[i.id],
            dispatches[i.id],
            names,
            skips[i.id],
            villages.get(i.village_id) if i.village_id else None,
            facts,
        )
        for i in incidents
    ]


async def _village_names(session: AsyncSession, village_ids: set[str]) -> dict[str, str]:
    """Each village's name as it is now: the pages label an incident with it."""
    if not village_ids:
        return {}
    rows = await session.execute(
        select(Village.id, Village.name).where(Village.id.in_(sorted(village_ids)))
    )
    return {village_id: name for village_id, name in rows}


@cache
def _view_queries(
    postgresql: bool,
) -> tuple[Select[ChainTier], Select[Dispatch, str | None, bool]]:
    # Built once: every view (a hop's answer, a GET) reads its incidents' rows, and building
    # the statements took more of our CPU than sending them and reading the rows.
    # Each dispatch with what its events say of it (``event_facts``), in the same statement:
    # a console reloaded still shows them, and no view waits for a query more.
    return (
        select(ChainTier)
        .where(any_of(ChainTier.incident_id, "incident_ids", postgresql))
        .order_by(ChainTier.tier),
        select(Dispatch, event_facts.note_column(), event_facts.nobody_alerted_column())
        .where(any_of(Dispatch.incident_id, "incident_ids", postgresql))
        .order_by(Dispatch.tier, Dispatch.distance_m),
    )


def incident_view(
    incident: AnyIncident,
    chain: Iterable[AnyTier],
    dispatches: Iterable[AnyDispatch],
    team_names: dict[str, str],
    skipped: Iterable[SkippedTeamOut] = (),
    village_name: str | None = None,
    facts: Mapping[str, event_facts.DispatchFacts] | None = None,
) -> IncidentOut:
    return IncidentOut(
        id=incident.id,
        reported_at=incident.reported_at,
        location=LocationOut(lon=incident.lon, lat=incident.lat),
        category=Category(incident.category),
        description=incident.description,
        status=IncidentStatus(incident.status),
        closed_at=incident.closed_at,
        reported_by=incident.reported_by,
        chain=[ChainTierOut.model_validate(t) for t in sorted(chain, key=lambda t: t.tier)],
        dispatches=[
            dispatch_view(
                d, team_names.get(d.team_id, ""), (facts or {}).get(d.id, event_facts.NO_FACTS)
            )
            for d in dispatches
        ],
        village_id=incident.village_id,
        village_name=village_name,
        skipped=list(skipped),
    )


# How a dispatch of each ring came to be (DispatchOut.added_by).
ADDED_BY: dict[int, Literal["zone", "escalation", "operator"]] = {
    0: "zone",
    1: "escalation",
    2: "operator",
}


def dispatch_view(
    d: AnyDispatch, team_name: str, facts: event_facts.DispatchFacts = event_facts.NO_FACTS
) -> DispatchOut:
    arrival = (
        LocationOut(lon=d.arrival_lon, lat=d.arrival_lat)
        if d.arrival_lon is not None and d.arrival_lat is not None
        else None
    )
    return DispatchOut(
        id=d.id,
        incident_id=d.incident_id,
        team_id=d.team_id,
        team_name=team_name,
        tier=d.tier,
        ring=d.ring,
        added_by=ADDED_BY.get(d.ring, "zone"),
        note=facts.note,
        distance_m=d.distance_m,
        alerted_at=d.alerted_at,
        delivered_at=d.delivered_at,
        delivered_implied=d.delivered_implied,
        shown_at=d.shown_at,
        accepted_at=d.accepted_at,
        accepted_implied=d.accepted_implied,
        arrived_at=d.arrived_at,
        arrival_source=ArrivalSource(d.arrival_source) if d.arrival_source else None,
        arrival_location=arrival,
        arrival_distance_m=d.arrival_distance_m,
        arrival_accuracy_m=d.arrival_accuracy_m,
        arrival_device_time=d.arrival_device_time,
        arrival_clock_skew_s=_skew(d.arrival_device_time, d.arrived_at),
        nobody_alerted=facts.nobody_alerted,
    )


def _skew(device_time: datetime | None, server_time: datetime | None) -> float | None:
    if device_time is None or server_time is None:
        return None
    return round((device_time - server_time).total_seconds(), 3)


# ---------------------------------------------------------------- reporting


async def report_incident(
    session: AsyncSession,
    data: IncidentCreate,
    *,
    reporter: auth.Principal,
    idempotency_key: str | None,
    coverage: Coverage,
    villages: Villages,
    targets: tuple[float, float, float],
    escalation: Escalation,
    now: datetime,
    rate: limits.Rate | None = None,
    duty: DutyBook | None = None,
) -> tuple[IncidentOut, bool]:
    """Store the incident, its chain, its dispatches and their alerts in one transaction.

    Returns the incident and whether it is a replay of an earlier report with the same
    idempotency key (then nothing new was written, and no token of the reporter's ``rate``
    was spent).
    """
    lon, lat = data.location.to_wgs84()
    village_id, village_name = villages.named_at(lon, lat)
    incident = IncidentRecord(
        id=new_id(),
        reported_at=now,
        lon=lon,
        lat=lat,
        category=data.category.value,
        description=data.description,
        status=IncidentStatus.OPEN.value,
        reported_by=reporter.user_id,
        idempotency_key=idempotency_key,
        village_id=village_id,
    )
    # The incident is written with its other rows; with a key, by an insert of its own that
    # checks the key (on PostgreSQL in the same statement, on SQLite first).
    first: list[Step] = (
        [] if idempotency_key is not None else [Added(INCIDENTS, [incident.values()])]
    )
    # Teams changed through any process up to now count, heard of by NOTIFY yet or not. The
    # report is decided on the coverage index as it is, and its rows are written only if no
    # team changed since: on PostgreSQL checked by the statement that writes them (with a key,
    # which also inserts the incident unless the key was used), on SQLite by the read of the
    # dispatched teams' leaders before them (with a key, after the key's check).
    postgresql = on_postgresql(session)
    if (
        idempotency_key is not None
        and not postgresql
        and not await _insert_once(session, incident, coverage)
    ):
        return await _replay(session, reporter, incident), True
    context = _ReportContext(incident, reporter.user_id, village_name, targets, escalation, now)
    # The revision the decision is made on: no await between here and the decision.
    since = coverage.revision
    decided = await _decide(session, context, coverage, duty)
    written = await _insert_report_rows(session, incident, first, decided, since)
    if written.stale:
        # A team changed since: nothing was written. Decided again on the teams as they are
        # now (on PostgreSQL with a key, caught up by the key's check as well).
        if idempotency_key is None or not postgresql:
            await coverage.catch_up_to(session, written.newest)
        elif not await _insert_once(session, incident, coverage):
            return await _replay(session, reporter, incident), True
        decided = await _decide(session, context, coverage, duty)
        written = await _insert_report_rows(session, incident, first, decided, None)
    elif not written.inserted and idempotency_key is not None:
        # The key was used: the earlier report's incident is the answer.
        return await _replay(session, reporter, incident), True
    leaders = written.leaders
    event_chain.note_written(session, decided.events, decided.everyone)
    rosters.record_skips(session, incident.id, decided.skipped, now)
    chain, everyone, skipped = decided.chain, decided.everyone, decided.skipped
    # Every team just dispatched is active, so the coverage index knows its name.
    names = {d.team_id: coverage.name_of(d.team_id) for d in everyone}
    view = incident_view(incident, chain, everyone, names, skipped, village_name)
    # The rate-limit bucket and the mailboxes are rows that other reports lock too: taken
    # last, they are held for the end of the transaction, not for the whole report. The
    # bucket, shared by all of one user's reports, comes last of all.
    if rate is not None:
        key = f"report:{reporter.user_id}"
        before_commit(session, partial(limits.take, session, key, rate, now, "incident reports"))
    await _send_alerts(
        session, view, view.dispatches, now, new=True, leaders=leaders, on_turn=decided.on_turn
    )
    if not decided.tier1_covers:
        added = [d for d in view.dispatches if d.ring == 1]
        await _send_escalation(
            session, view, added, NO_TIER1, escalation.ring_m, now, now, new=True
        )
    return view, False


NO_TIER1 = "no tier-1 zone covers the incident"
# The header a report's key comes in, as a refusal names it.
IDEMPOTENCY_KEY = "Idempotency-Key"


@dataclass(frozen=True, slots=True)
class _ReportContext:
    """What a new incident's decision is made from, besides the coverage index and duties."""

    incident: IncidentRecord
    reporter_id: str
    village_name: str | None
    targets: tuple[float, float, float]
    escalation: Escalation
    now: datetime


@dataclass(frozen=True, slots=True)
class _Decided:
    """Whom a new incident alerts, as decided on the coverage index, with the rows recording it
    (nothing staged in the session but the time they fall due: they may be decided again)."""

    chain: list[ChainRecord]
    everyone: list[DispatchRecord]
    events: list[EventRecord]
    skipped: list[SkippedTeamOut]
    on_turn: dict[str, OnTurn]
    tier1_covers: bool
    job: list[Step]


async def _decide(
    session: AsyncSession, context: _ReportContext, coverage: Coverage, duty: DutyBook | None
) -> _Decided:
    incident, now, escalation = context.incident, context.now, context.escalation
    on_duty = await rosters.split_on_duty(
        session, coverage.covering(incident.lon, incident.lat), now, duty
    )
    hits, skipped, on_turn = on_duty.kept, on_duty.skipped, on_duty.on_turn
    chain = _new_chain(incident, hits, context.targets)
    falls_due(session, min(tier.deadline for tier in chain))
    dispatches = [_new_dispatch(incident, hit, now) for hit in hits]
    facts = _report_facts(incident, context.village_name, context.targets)
    events = [_event(incident.id, now, "reported", context.reporter_id, facts)]
    events += [_event(incident.id, now, "skipped", None, skip.model_dump()) for skip in skipped]
    events += [
        _dispatched_event(incident.id, now, d, coverage.name_of(d.team_id)) for d in dispatches
    ]
    ring: list[DispatchRecord] = []
    job = _on_duty_steps(session, context, on_duty)
    tier1_covers = any(h.tier == 1 for h in hits)
    if tier1_covers:
        due = now + timedelta(seconds=escalation.after_s)
        step = {"ring_m": escalation.ring_m, "after_s": escalation.after_s}
        job.append(jobs.job_rows(session, ESCALATE, due, incident_id=incident.id, data=step))
    else:
        known = {h.team_id for h in hits}
        ring, ring_events, ring_on_turn = await _add_ring(
            session, incident, now, now, coverage, escalation.ring_m, NO_TIER1, known, duty
        )
        events += ring_events
        on_turn = {**on_turn, **ring_on_turn}
        chain[0].covered = chain[0].covered or bool(ring)
    everyone = sorted([*dispatches, *ring], key=lambda d: (d.tier, d.distance_m))
    return _Decided(chain, everyone, events, skipped, on_turn, tier1_covers, job)


def _on_duty_steps(
    session: AsyncSession, context: _ReportContext, on_duty: rosters.OnDuty
) -> list[Step]:
    """An escalation step at the moment each covering tier-1 team skipped outside its duty
    hours comes on duty, if that is before tier 1's deadline: it alerts the team then, unless a
    tier-1 team has answered by then. Without it a team on duty from seconds after the report
    was never alerted where no other tier-1 team covered: the ring was drawn at once, while it
    was off duty, and no step came after."""
    incident, now, escalation = context.incident, context.now, context.escalation
    deadline = now + timedelta(seconds=context.targets[0])
    coming: dict[datetime, list[str]] = {}
    for skip in on_duty.skipped:
        begins = on_duty.begins.get(skip.team_id)
        if skip.tier == 1 and begins is not None and begins < deadline:
            coming.setdefault(begins, []).append(skip.team_id)
    steps: list[Step] = []
    for due, team_ids in sorted(coming.items()):
        # An escalation step of its own kind's data: a process of the release before, which
        # knows no ``teams``, alerts the whole ring at that moment instead, this team within it.
        step = {
            "ring_m": escalation.ring_m,
            "after_s": (due - now).total_seconds(),
            "teams": sorted(team_ids),
        }
        steps.append(jobs.job_rows(session, ESCALATE, due, incident_id=incident.id, data=step))
    return steps


async def _insert_once(session: AsyncSession, incident: IncidentRecord, coverage: Coverage) -> bool:
    """Insert unless the reporter already used this idempotency key: race-free on both backends.
    On PostgreSQL, if inserted, bring ``coverage`` up to the teams' newest revision, read by the
    same statement (after a report with a key found a team changed since its decision).

    A missing key is NULL, and NULLs never conflict, so such reports always insert.
    """
    dialect = dialect_name(session)
    statement = _insert_unless_replayed(dialect)
    if dialect == "postgresql":
        params = {f"new_{key}": value for key, value in incident.values().items()}
        (row,) = await fetch_rows(session, statement, params)
        if row["inserted"]:
            await coverage.catch_up_to(session, row["newest"])
        return bool(row["inserted"])
    result = await session.execute(statement, incident.values())
    return bool(getattr(result, "rowcount", 0))


@cache
def _insert_unless_replayed(dialect: str) -> Executable:
    """The incident's insert, doing nothing where its key was used. On PostgreSQL the insert
    is a CTE, and the statement answers whether it inserted and the teams' newest revision."""
    statement = upsert_insert(dialect)(INCIDENTS).on_conflict_do_nothing(
        index_elements=["reported_by", "idempotency_key"]
    )
    if dialect != "postgresql":
        return statement
    values = {c.key: bindparam(f"new_{c.key}", type_=c.type) for c in INCIDENTS.c}
    inserted = statement.values(values).returning(INCIDENTS.c.id).cte("inserted")
    return select(
        select(func.count()).select_from(inserted).scalar_subquery().label("inserted"),
        newest_revision().scalar_subquery().label("newest"),
    )


async def _replay(
    session: AsyncSession, reporter: auth.Principal, incident: IncidentRecord
) -> IncidentOut:
    """The incident the reporter's earlier report with this idempotency key stored, if
    ``incident`` (this report's, not written) is the same report: the same point as stored
    (WGS84, whatever system each came in), category and description, every field a report has.
    A different report under a used key is refused (``KeyReused``): replayed, it was lost."""
    key = incident.idempotency_key
    earlier = (
        await session.execute(
            select(
                Incident.id, Incident.lon, Incident.lat, Incident.category, Incident.description
            ).where(Incident.reported_by == reporter.user_id, Incident.idempotency_key == key)
        )
    ).one()
    asked = (incident.lon, incident.lat, incident.category, incident.description)
    if tuple(earlier)[1:] != asked:
        raise KeyReused(
            f"{IDEMPOTENCY_KEY}: this key was used for a different report (incident "
            f"{earlier.id}), which is kept; send this one with a new key",
            field=IDEMPOTENCY_KEY,
        )
    return await get_incident(session, earlier.id)


def _new_chain(
    incident: AnyIncident, hits: Sequence[CoveredBy], targets: tuple[float, float, float]
) -> list[ChainRecord]:
    covered = {h.tier for h in hits}
    return [
        ChainRecord(
            incident_id=incident.id,
            tier=tier,
            target_s=targets[tier - 1],
            deadline=incident.reported_at + timedelta(seconds=targets[tier - 1]),
            status=TierStatus.PENDING.value,
            covered=tier in covered,
            incident_reported_at=incident.reported_at,
        )
        for tier in TIERS
    ]


def _new_dispatch(
    incident: AnyIncident, hit: CoveredBy, alerted_at: datetime, ring: int = 0
) -> DispatchRecord:
    return DispatchRecord(
        id=new_id(),
        incident_id=incident.id,
        team_id=hit.team_id,
        tier=hit.tier,
        ring=ring,
        distance_m=round(hit.distance_m, 3),
        alerted_at=alerted_at,
        incident_reported_at=incident.reported_at,
    )


def _report_facts(
    incident: AnyIncident, village_name: str | None, targets: tuple[float, float, float]
) -> dict[str, Any]:
    """What the ``reported`` event records of the incident, as stored: every column the reports
    count, filter or show it by, and each tier's target (``targets_s``, tier 1 first), so that
    ``dispatch audit verify`` can hold its rows to them. All known here: no query."""
    return {
        "lon": incident.lon,
        "lat": incident.lat,
        "category": incident.category,
        "description": incident.description,
        "village_id": incident.village_id,
        "village_name": village_name,
        "targets_s": list(targets),
    }


def _dispatch_facts(d: AnyDispatch) -> dict[str, Any]:
    return {"dispatch_id": d.id, "team_id": d.team_id, "tier": d.tier, "distance_m": d.distance_m}


def _dispatched_event(
    incident_id: str, at: datetime, d: AnyDispatch, team_name: str
) -> EventRecord:
    """A ``dispatched`` event: the dispatch, and its team's name as it was when alerted, which
    the record of the incident keeps when the team is renamed later."""
    return _event(
        incident_id, at, "dispatched", None, {**_dispatch_facts(d), "team_name": team_name}
    )


def _event(
    incident_id: str, at: datetime, kind: str, actor_id: str | None, data: dict[str, Any]
) -> EventRecord:
    """An event for the bulk appends (``audit.chain.new_chain_rows``, ``appended_rows``)."""
    return EventRecord(incident_id, at, kind, actor_id, data)


def _record(
    session: AsyncSession,
    incident_id: str,
    at: datetime,
    kind: str,
    actor_id: str | None,
    data: dict[str, Any],
) -> None:
    session.add(
        IncidentEvent(incident_id=incident_id, at=at, type=kind, actor_id=actor_id, data=data)
    )


@dataclass(frozen=True, slots=True)
class _Written:
    """What ``_insert_report_rows`` wrote: the dispatched teams' leaders; and, where it wrote
    only if no team changed after a revision, the teams' newest revision as it saw them."""

    leaders: dict[str, list[str]]
    newest: int | None = None
    # A team changed after the revision the report was decided on: nothing was written.
    stale: bool = False
    # The incident was written (not with its key checked in the statement and found used).
    inserted: bool = True


async def _insert_report_rows(
    session: AsyncSession,
    incident: IncidentRecord,
    first: Sequence[Step],
    decided: _Decided,
    unchanged_since: int | None,
) -> _Written:
    """A new incident's rows (``first``: the incident unless already in), escalation job,
    chain, dispatches, events and event chain head, written together (``write_rows``): the
    unit of work's bookkeeping for some thirty new objects was a quarter of a report's CPU, and
    a round trip a table the most of its wait. The objects stay out of the session; views are
    built from them. The dispatched teams' leaders are read with them, and returned.

    With ``unchanged_since`` it writes only if no team changed after that revision: on
    PostgreSQL as the statement's condition, and a report with a key (``first`` empty) has its
    incident inserted by the same statement, unless the key was used, and the other rows
    written only where it was; on SQLite as the read of the leaders, before the writes."""
    team_ids = {"leader_teams": sorted({d.team_id for d in decided.everyone})}
    dialect = dialect_name(session)
    steps = _report_steps(first, decided)
    if unchanged_since is not None and dialect != "postgresql":
        read = Read(_leaders_and_revision(dialect), team_ids)
        return await _insert_unless_changed(session, steps, read, unchanged_since)
    keyed = unchanged_since is not None and incident.idempotency_key is not None
    only_if: Precondition | None = None
    query: Select[Any] = auth.leaders_query(dialect)
    if keyed:
        once, holds, query = _incident_once()
        params = {f"new_{key}": value for key, value in incident.values().items()}
        only_if = Precondition(holds, {**params, "coverage_revision": unchanged_since}, (once,))
    elif unchanged_since is not None:
        only_if, query = teams_unchanged_since(unchanged_since), _leaders_and_revision(dialect)
    rows = await write_rows(session, *steps, read=Read(query, team_ids), only_if=only_if)
    leaders = auth.leaders_from(rows)
    if unchanged_since is None:
        return _Written(leaders)
    newest = rows[0]["newest"] or 0
    stale = newest > unchanged_since
    inserted = not stale and (not keyed or bool(rows[0]["inserted"]))
    return _Written(leaders, newest, stale, inserted)


def _report_steps(first: Sequence[Step], decided: _Decided) -> list[Step]:
    return [
        *first,
        *decided.job,
        Added(table_of(ChainTier), [t.values() for t in decided.chain]),
        Added(DISPATCHES, [d.values() for d in decided.everyone]),
        *event_chain.new_chain_rows(decided.events),
    ]


async def _insert_unless_changed(
    session: AsyncSession, steps: Sequence[Step], read: Read, since: int
) -> _Written:
    """SQLite: ``read`` (the leaders with the teams' newest revision), then the rows, unless a
    team changed after ``since``. The server is SQLite's one process and its one connection
    is the request's until it commits, so only another process (a command run beside it)
    could change a team between the read and the writes, as it could between a revision read
    before the decision and the writes."""
    rows = await fetch_rows(session, read.statement, read.params)
    newest = rows[0]["newest"] or 0
    if newest > since:
        return _Written({}, newest, stale=True)
    await write_rows(session, *steps)
    return _Written(auth.leaders_from(rows), newest)


@cache
def _incident_once() -> tuple[CTE, ColumnElement[bool], Select[Any]]:
    """For a report with a key on PostgreSQL: the insert of its incident, unless the key was
    used and only if no team changed after ``coverage_revision``, as a CTE; the condition the
    report's other rows are written under (that, and the incident written: a report sent again
    while the first is in flight waits for that one's outcome, and writes nothing if it
    committed); the read that says which. Built once: they key the compiled statement."""
    unchanged = teams_unchanged()
    values = [bindparam(f"new_{c.key}", type_=c.type) for c in INCIDENTS.c]
    once = (
        upsert_insert("postgresql")(INCIDENTS)
        .from_select([c.key for c in INCIDENTS.c], select(*values).where(unchanged))
        .on_conflict_do_nothing(index_elements=["reported_by", "idempotency_key"])
        .returning(INCIDENTS.c.id)
        .cte("incident_once")
    )
    written = select(func.count()).select_from(once).scalar_subquery()
    read = _leaders_and_revision("postgresql").add_columns(written.label("inserted"))
    return once, and_(unchanged, written > 0), read


@cache
def _leaders_and_revision(dialect: str) -> Select[Any]:
    """The dispatched teams' leaders (``auth.leaders_query``), each row with the teams' newest
    revision; that revision alone, with no leader, where there is none. Built once: it keys the
    compiled statement a report's bulk write carries it in."""
    leaders = auth.leaders_query(dialect).subquery("leaders")
    one = select(literal_column("1").label("one")).subquery("one")
    newest = newest_revision().scalar_subquery().label("newest")
    return select(newest, leaders.c.team_id, leaders.c.id).select_from(
        one.outerjoin(leaders, true())
    )


async def _send_alerts(
    session: AsyncSession,
    view: IncidentOut,
    alerted: Sequence[DispatchOut],
    now: datetime,
    *,
    new: bool = False,
    leaders: dict[str, list[str]] | None = None,
    on_turn: Mapping[str, OnTurn],
) -> None:
    """Alert the leaders of the ``alerted`` dispatches (``leaders`` by team, when known);
    tell the operators' board the new state. Of a team whose units take turns (``on_turn``),
    only the leaders serving with the unit on turn (``leaders_on_turn``), who are kept as the
    dispatch's followers: the incident's news goes to them, not to the team's off-turn leaders
    (``_audience``).

    A ``new`` incident's messages are written last in the transaction (no other transaction
    can see the incident, so none can race its content).
    """
    if leaders is None:
        leaders = await auth.leaders_by_team(session, [d.team_id for d in alerted])
    leaders = await _serving(session, view.id, alerted, leaders, on_turn, now)
    unalerted = await _nobody_alerted(session, view.id, alerted, leaders, now)
    followers = [
        {"dispatch_id": d.id, "user_id": leader, "alerted": True}
        for d in alerted
        if d.team_id in on_turn
        for leader in leaders.get(d.team_id, [])
    ]
    if followers:
        # With the transaction's last statement: nothing reads them before it commits.
        write_later(session, Added(FOLLOWERS, followers))
    incident_json = view.model_dump(mode="json")
    copies = _LeaderCopies(incident_json)
    outgoing = [
        Outgoing(
            leader,
            "alert",
            {"incident": copies.of(d.team_id), "dispatch": copies.dispatch(d.id)},
            ref=d.id,
        )
        for d in alerted
        for leader in leaders.get(d.team_id, [])
    ]
    outgoing.append(Outgoing(auth.BOARD_MAILBOX, "incident.updated", incident_json))
    if unalerted:
        # After the incident, whose dispatches carry ``nobody_alerted`` too: the console
        # shows the card it warns of.
        news = {"incident_id": view.id, "at": show_time(now), "teams": unalerted}
        outgoing.append(Outgoing(auth.BOARD_MAILBOX, NOBODY_ALERTED, news))
    watch = partial(notifiers.watch_alerts, session, now=now)
    await _send(session, outgoing, now, new=new, then=watch)


async def _serving(
    session: AsyncSession,
    incident_id: str,
    alerted: Sequence[DispatchOut],
    leaders: dict[str, list[str]],
    on_turn: Mapping[str, OnTurn],
    now: datetime,
) -> dict[str, list[str]]:
    """The leaders each alerted team's alert goes to: of a team whose units take turns, those
    serving with the unit on turn (``leaders_on_turn``). When none of a team's leaders does,
    all of them are alerted, and the incident's timeline (``all_leaders_alerted``) and the log
    say so."""
    if not on_turn:
        return leaders
    chosen = dict(leaders)
    fell_back: list[EventRecord] = []
    for d in alerted:
        turn = on_turn.get(d.team_id)
        if turn is None:
            continue
        chosen[d.team_id], everyone = leaders_on_turn(leaders.get(d.team_id, []), turn)
        if everyone:
            detail = (
                f"unit {turn.unit} is on turn and every leader account of the team speaks for "
                f"a member of another unit: all {len(chosen[d.team_id])} are alerted"
            )
            facts = {
                "dispatch_id": d.id,
                "team_id": d.team_id,
                "tier": d.tier,
                "unit": turn.unit,
                "detail": detail,
            }
            fell_back.append(_event(incident_id, now, "all_leaders_alerted", None, facts))
            line = "incident %s: team %s (%s): %s"
            after_commit(
                session, partial(log.warning, line, incident_id, d.team_name, d.team_id, detail)
            )
    if fell_back:
        # Rare (a roster to put right), so a statement of its own: after the incident's rows,
        # before the messages, as every transaction takes the chain's head and the mailboxes.
        await write_rows(session, *await event_chain.appended_rows(session, fell_back))
    return chosen


# The board's message that says a dispatched team's alert reached nobody, and why (its event
# is ``event_facts.NOBODY_ALERTED``, of the same name).
NOBODY_ALERTED = "nobody_alerted"
NO_ENABLED_LEADER = "no_enabled_leader"


async def _nobody_alerted(
    session: AsyncSession,
    incident_id: str,
    alerted: Sequence[DispatchOut],
    leaders: Mapping[str, Sequence[str]],
    now: datetime,
) -> list[dict[str, Any]]:
    """Of the ``alerted`` dispatches, those whose alert goes to nobody: their team has no
    enabled leader account (all disabled, or none; of a team whose units take turns, its
    leaders off turn are alerted when none serves with the unit on turn, so only a team with
    none at all). Each gets a ``nobody_alerted`` event in the incident's chain, written now in
    the dispatch's transaction, and its view ``nobody_alerted``; returned, they are what the
    board's message of the same name says. A team alerted to nobody is still dispatched (the
    operator may radio it), but nothing on its phones or its follow-ups will ever answer."""
    facts = [
        {
            "dispatch_id": d.id,
            "team_id": d.team_id,
            "team_name": d.team_name,
            "tier": d.tier,
            "reason": NO_ENABLED_LEADER,
        }
        for d in alerted
        if not leaders.get(d.team_id)
    ]
    if not facts:
        return []
    events = [_event(incident_id, now, event_facts.NOBODY_ALERTED, None, f) for f in facts]
    # Rare (a team to give a leader), so a statement of its own, as ``_serving``'s.
    await write_rows(session, *await event_chain.appended_rows(session, events))
    unalerted = {f["dispatch_id"] for f in facts}
    for d in alerted:
        if d.id in unalerted:
            d.nobody_alerted = True
    line = "incident %s: team %s (%s): no enabled leader account; its alert reached nobody"
    for f in facts:
        after_commit(session, partial(log.warning, line, incident_id, f["team_name"], f["team_id"]))
    return facts


async def _send(
    session: AsyncSession,
    outgoing: Sequence[Outgoing],
    now: datetime,
    *,
    new: bool,
    then: mailboxes.Enqueued | None = None,
) -> None:
    """Enqueue now, or, for a ``new`` incident, as the transaction's last writes."""
    if new:
        mailboxes.stage(session, outgoing, now=now, then=then)
        return
    envelopes = await mailboxes.enqueue(session, outgoing, now=now)
    if then is not None:
        then(envelopes)


# ---------------------------------------------------------------- escalation

ESCALATE = "escalate"


@dataclass(frozen=True)
class Escalation:
    after_s: float
    ring_m: float


async def escalate_if_unaccepted(
    session: AsyncSession,
    incident_id: str,
    now: datetime,
    *,
    after_s: float,
    coverage: Coverage,
    ring_m: float,
    teams: Sequence[str] | None = None,
) -> str:
    """The escalation step: if no tier-1 team has accepted within ``after_s`` of the report,
    alert the wider ring. With ``teams``: the covering tier-1 teams whose duty hours begin
    ``after_s`` after the report, which were skipped at the report; those of them on duty now
    are alerted, not the ring (which has its own step, or was alerted at the report)."""
    incident = await _load_incident(session, incident_id, for_update=True)
    # Of the report, not of the job: a step retried after a failure is due later, and its
    # event would carry the retry's time and its reason the wrong number of seconds.
    due_at = incident.reported_at + timedelta(seconds=after_s)
    if incident.status == IncidentStatus.CLOSED.value:
        return "not needed: the incident is closed"
    answered = await session.scalar(
        select(Dispatch.accepted_at.is_not(None))
        .where(
            Dispatch.incident_id == incident_id,
            Dispatch.tier == 1,
            # An arrival recorded by radio comes with no accept: the team is there all the same.
            or_(Dispatch.accepted_at.is_not(None), Dispatch.arrived_at.is_not(None)),
        )
        .order_by(Dispatch.accepted_at.is_(None))
        .limit(1)
    )
    if answered is not None:
        return f"not needed: a tier-1 team {'accepted' if answered else 'arrived'}"
    if teams is not None:
        view = await _escalate(session, incident, due_at, now, coverage, ring_m, ON_DUTY, teams)
        came = sum(1 for d in view.dispatches if d.ring == 1 and d.team_id in teams)
        return f"escalated: {came} of {len(teams)} covering tier-1 teams came on duty"
    reason = f"no tier-1 team accepted within {after_s:g} s"
    view = await _escalate(session, incident, due_at, now, coverage, ring_m, reason)
    ringed = sum(1 for d in view.dispatches if d.ring == 1)
    return f"escalated: {ringed} tier-1 teams within {ring_m:g} m"


ON_DUTY = "a covering tier-1 team came on duty"


async def _escalate(
    session: AsyncSession,
    incident: Incident,
    due_at: datetime,
    now: datetime,
    coverage: Coverage,
    ring_m: float,
    reason: str,
    teams: Sequence[str] | None = None,
) -> IncidentOut:
    """Alert the tier-1 teams within ``ring_m`` (or of ``teams``, those covering the incident)
    not yet dispatched, and tell operators."""
    known = set(
        await session.scalars(select(Dispatch.team_id).where(Dispatch.incident_id == incident.id))
    )
    # The ring is drawn from the teams as they are now (a report's own is, by report_incident).
    await coverage.catch_up(session)
    added, events, on_turn = await _add_ring(
        session, incident, due_at, now, coverage, ring_m, reason, known, only=teams
    )
    if added:
        # The tier's row before the event chain's head, in the order an arrival or a breach
        # takes them: the other way round, an escalation and an arrival deadlocked.
        await session.execute(
            update(ChainTier)
            .where(ChainTier.incident_id == incident.id, ChainTier.tier == 1)
            .values(covered=True)
        )
    await write_rows(
        session,
        Added(DISPATCHES, [d.values() for d in added]),
        *await event_chain.appended_rows(session, events, added),
    )
    await session.flush()
    view = (await _views(session, [incident]))[0]
    added_ids = {a.id for a in added}
    alerted = [d for d in view.dispatches if d.id in added_ids]
    await _send_alerts(session, view, alerted, now, on_turn=on_turn)
    await _send_escalation(session, view, alerted, reason, ring_m, due_at, now)
    return view


async def _add_ring(
    session: AsyncSession,
    incident: AnyIncident,
    due_at: datetime,
    now: datetime,
    coverage: Coverage,
    ring_m: float,
    reason: str,
    known: set[str],
    duty: DutyBook | None = None,
    *,
    only: Sequence[str] | None = None,
) -> tuple[list[DispatchRecord], list[EventRecord], dict[str, OnTurn]]:
    """The dispatches of the tier-1 teams on duty within ``ring_m`` (or of ``only``, those that
    cover the incident, wherever their site) that are not among ``known``, their events, and
    the unit on turn of those whose units take turns; the caller stores them."""
    if only is None:
        candidates = coverage.tier1_within(incident.lon, incident.lat, ring_m)
    else:
        candidates = [
            h
            for h in coverage.covering(incident.lon, incident.lat)
            if h.tier == 1 and h.team_id in only
        ]
    ring = [h for h in candidates if h.team_id not in known]
    # A team off duty is not alerted by the wider ring either.
    on_duty = await rosters.split_on_duty(session, ring, now, duty)
    added = [_new_dispatch(incident, hit, now, ring=1) for hit in on_duty.kept]
    facts = {
        "reason": reason,
        "ring_m": ring_m,
        "team_ids": [d.team_id for d in added],
        "fired_at": show_time(now),
    }
    # Recorded at its due time, also when it fires late (after a restart).
    events = [_event(incident.id, due_at, "escalated", None, facts)]
    events += [_dispatched_event(incident.id, now, d, coverage.name_of(d.team_id)) for d in added]
    return added, events, on_duty.on_turn


async def _send_escalation(
    session: AsyncSession,
    view: IncidentOut,
    alerted: Sequence[DispatchOut],
    reason: str,
    ring_m: float,
    at: datetime,
    now: datetime,
    *,
    new: bool = False,
) -> None:
    body = {
        "incident_id": view.id,
        # When it was due, as its escalated event is dated: a console that hears of it in a
        # replay, after a dropped line, says then, not when it heard.
        "at": show_time(at),
        "reason": reason,
        "ring_m": ring_m,
        "dispatches": [d.model_dump(mode="json") for d in alerted],
        "incident": view.model_dump(mode="json"),
    }
    await _send(session, [Outgoing(auth.BOARD_MAILBOX, "escalation", body)], now, new=new)


# ---------------------------------------------------------------- dispatches added by hand

# A dispatch's ``ring``: 0 for the teams whose zone covers the incident, 1 for those the
# escalation added, 2 for those an operator added by hand (``add_dispatch``).
RING_OPERATOR = event_facts.RING_OPERATOR


async def add_dispatch(
    session: AsyncSession,
    actor: auth.Principal,
    incident_id: str,
    team_id: str,
    note: str | None,
    now: datetime,
    duty: DutyBook | None = None,
) -> DispatchAddedOut:
    """An operator adds a team to an open incident by hand (加派): a team outside the zones,
    a second patrol, the team the caller asks for. It is alerted as an escalation's teams are
    (its dispatch's hops, followers and notifiers the same), at its own tier, with ``ring`` 2;
    a ``team_added`` event (the operator, the note) comes before its ``dispatched`` one.

    Its tier counts it as covered only if it is added by that tier's deadline: added later,
    the tier's judgement (breached, or uncovered and breached) stays what it was.

    A team without an enabled leader account is added all the same (the operator may still
    radio it and wants it on record), and the answer says so (``no_active_leader``)."""
    # Locked as an escalation step locks it: an add, a close and a step come one after another.
    incident = await _load_incident(session, incident_id, for_update=True)
    if incident.status == IncidentStatus.CLOSED.value:
        raise Conflict(
            f"incident_id: the incident is closed ({incident_id}): no team can be added",
            field="incident_id",
        )
    # Held, as a retirement locks it: a team retired at the same moment is not added.
    team = await teams.get_team(session, team_id, held=True)
    dispatched = await session.scalar(
        select(Dispatch.id).where(Dispatch.incident_id == incident_id, Dispatch.team_id == team_id)
    )
    if dispatched is not None:
        raise Conflict(
            f"team_id: team {team.name!r} is already dispatched to this incident "
            f"(dispatch {dispatched})",
            field="team_id",
        )
    hit = CoveredBy(team.id, team.tier, distance_m(team.lon, team.lat, incident.lon, incident.lat))
    on_duty = await rosters.split_on_duty(session, [hit], now, duty)
    if not on_duty.kept:
        skip = on_duty.skipped[0]
        raise Conflict(
            f"team_id: team {team.name!r} is off duty ({skip.reason}: {skip.detail})",
            field="team_id",
        )
    d = _new_dispatch(incident, hit, now, ring=RING_OPERATOR)
    facts = {
        "dispatch_id": d.id,
        "team_id": team.id,
        "team_name": team.name,
        "tier": team.tier,
        "note": note,
    }
    events = [
        _event(incident.id, now, event_facts.TEAM_ADDED, actor.user_id, facts),
        _dispatched_event(incident.id, now, d, team.name),
    ]
    tier = await session.scalar(
        select(ChainTier)
        .where(ChainTier.incident_id == incident.id, ChainTier.tier == team.tier)
        .with_for_update(key_share=True)
    )
    assert tier is not None, "every incident has three chain tiers"
    if now <= tier.deadline and not tier.covered:
        # The tier's row before the event chain's head, as an escalation takes them.
        tier.covered = True
        await session.flush()
    await write_rows(
        session,
        Added(DISPATCHES, [d.values()]),
        *await event_chain.appended_rows(session, events, [d]),
    )
    await session.flush()
    view = (await _views(session, [incident]))[0]
    alerted = [v for v in view.dispatches if v.id == d.id]
    leaders = await auth.leaders_by_team(session, [team.id])
    await _send_alerts(session, view, alerted, now, leaders=leaders, on_turn=on_duty.on_turn)
    # Whom its alert went to, as ``_send_alerts`` found them: nobody, ``nobody_alerted``.
    nobody = any(v.nobody_alerted for v in alerted)
    return DispatchAddedOut(**dict(view), no_active_leader=nobody)


class _LeaderCopies:
    """Leaders' copies of an incident, one per team: the chain whole, of the dispatches only
    their team's, no off-duty teams. The rest is the console's; carrying all of it to every
    leader stored the whole incident once per recipient (~7 KB each with 10 dispatches) and
    was the most of what a report wrote."""

    def __init__(self, incident_json: dict[str, Any]) -> None:
        self._incident = incident_json
        self._copies: dict[str, dict[str, Any]] = {}

    def of(self, team_id: str) -> dict[str, Any]:
        copy = self._copies.get(team_id)
        if copy is None:
            own = [d for d in self._incident["dispatches"] if d["team_id"] == team_id]
            copy = self._copies[team_id] = {**self._incident, "dispatches": own, "skipped": []}
        return copy

    def dispatch(self, dispatch_id: str) -> dict[str, Any]:
        return next(d for d in self._incident["dispatches"] if d["id"] == dispatch_id)


async def _audience(session: AsyncSession, incident_id: str) -> dict[str, str | None]:
    """Who follows an incident: the operators' board (None) and the enabled leaders of each
    dispatched team (their team) whom its dispatch's news is for. Of a team whose units take
    turns, the dispatch's followers: the leaders its alert went to and those who took it on
    since; an off-turn leader who was not alerted is not woken by news of an incident he was
    never told of. Of any other team, every leader, as its alert went to every leader."""
    rows = await session.execute(
        select(Dispatch.team_id, DispatchFollower.user_id)
        .outerjoin(DispatchFollower, DispatchFollower.dispatch_id == Dispatch.id)
        .where(Dispatch.incident_id == incident_id)
    )
    # Team -> its followers, or None: the whole team follows.
    following: dict[str, set[str] | None] = {}
    for team_id, user_id in rows.all():
        if user_id is None:
            following[team_id] = None
        else:
            chosen = following.setdefault(team_id, set())
            if chosen is not None:
                chosen.add(user_id)
    leaders = await auth.leaders_by_team(session, sorted(following))
    audience: dict[str, str | None] = {auth.BOARD_MAILBOX: None}
    for team, users in leaders.items():
        chosen = following[team]
        audience.update((user, team) for user in users if chosen is None or user in chosen)
    return audience


@dataclass(frozen=True, slots=True)
class _Following:
    """Who follows a dispatch, as its lock found it, for the team's leader ``user_id`` who acts
    on it: ``chosen`` when its alert went to chosen leaders (of a team whose units took turns
    when it was alerted: the dispatch has followers), and whether he is one of them and was
    alerted (``alerted``: None when he is not one of them)."""

    user_id: str
    chosen: bool
    alerted: bool | None

    @property
    def alerted_him(self) -> bool:
        """Whether the dispatch's alert went to this leader: to every leader of the team,
        unless it went to chosen ones, and then to him if he was one."""
        return not self.chosen or bool(self.alerted)


async def _take_on(session: AsyncSession, d: Dispatch, following: _Following | None) -> bool:
    """A leader acts on his team's dispatch (accepts, arrives): from now on he follows it. True
    when his team's units take turns and its alert did not go to him (he is off turn): his
    act is the team's all the same, and its event says so. ``following`` is None for anyone
    but the team's leader (``_acting_dispatch``)."""
    if following is None or not following.chosen:
        # The whole team follows the dispatch: its alert went to every leader.
        return False
    if following.alerted is None:
        insert = upsert_insert(dialect_name(session))
        follower = {"dispatch_id": d.id, "user_id": following.user_id, "alerted": False}
        await session.execute(insert(FOLLOWERS).values(follower).on_conflict_do_nothing())
    return not following.alerted_him


async def _announce(
    session: AsyncSession,
    incident_id: str,
    now: datetime,
    *,
    breached: Sequence[ChainTier] = (),
    audience: dict[str, str | None] | None = None,
) -> IncidentOut:
    """Tell operators and the incident's leaders what changed: the new state, and breaches."""
    if audience is None:
        audience = await _audience(session, incident_id)
    # Lock the mailboxes before reading the state: a transaction that takes a later seq then
    # reads after every earlier one committed, so a later message never shows an older state.
    await mailboxes.lock(session, list(audience))
    view = (await _views(session, [await _load_incident(session, incident_id)]))[0]
    incident_json = view.model_dump(mode="json")
    copies = _LeaderCopies(incident_json)
    followers = [
        (user, incident_json if team is None else copies.of(team))
        for user, team in sorted(audience.items())
    ]
    outgoing: list[Outgoing] = []
    for tier in breached:
        tier_json = ChainTierOut.model_validate(tier).model_dump(mode="json")
        outgoing += [
            Outgoing(
                u, "chain.breached", {"incident_id": incident_id, "tier": tier_json, "incident": i}
            )
            for u, i in followers
        ]
    outgoing += [Outgoing(u, "incident.updated", i) for u, i in followers]
    await mailboxes.enqueue(session, outgoing, now=now)
    return view


# ---------------------------------------------------------------- alerts a resync skipped

SEND_AGAIN = "alert.send_again"


@dataclass(frozen=True, slots=True)
class SkippedAlert:
    """A leader's alert (of ``dispatch_id``, stored as ``seq``) that a resync passed without
    sending it to his phone."""

    user_id: str
    dispatch_id: str
    seq: int


async def send_again(session: AsyncSession, skipped: Sequence[SkippedAlert], now: datetime) -> None:
    """Send these alerts again, each by a job due now (``send_alert_again``), scheduled in the
    transaction that moved the leader's acknowledged mark past it: a crash loses none.

    A resync passes messages without sending them (the phone reloads its state instead), so the
    phone shows such an incident but never rang for it, and its acks prove nothing of it
    (alerts.acks): the leader is as good as unalerted, whatever another leader of the team
    acknowledged. Sent again as a new message, it rings like any alert, on this connection or
    the next one, and its ack proves it received by him.
    """
    if not skipped:
        return
    found = await session.execute(
        select(Dispatch.id, Dispatch.incident_id).where(
            Dispatch.id.in_(sorted({s.dispatch_id for s in skipped}))
        )
    )
    incident_of = {dispatch_id: incident_id for dispatch_id, incident_id in found.all()}
    for alert in skipped:
        incident_id = incident_of.get(alert.dispatch_id)
        if incident_id is None:
            continue
        data = {"user_id": alert.user_id, "dispatch_id": alert.dispatch_id, "seq": alert.seq}
        jobs.schedule(session, jobs.new_job(SEND_AGAIN, now, incident_id=incident_id, data=data))
    # Now, not at the commit: the transaction's last statement holds the mailboxes.
    await session.flush()


async def send_alert_again(
    session: AsyncSession, incident_id: str, dispatch_id: str, user_id: str, seq: int, now: datetime
) -> str:
    """The job of ``send_again``: the alert of ``dispatch_id`` to ``user_id`` once more, with
    the incident as it is now, unless it no longer asks anything of him (the team answered, the
    incident is closed, he is no longer one of the team's leaders) or a copy after ``seq`` is
    already his. The dispatch's ``delivered_at`` stays the team's first delivery; his ack of
    the copy is what ``alerts.store.received`` finds for the notifiers."""
    # His mailbox before the state, as every announcement: a later message never shows an
    # older state.
    await mailboxes.lock(session, [user_id])
    later = await mailboxes.later_copy(session, user_id, dispatch_id, seq)
    if later is not None:
        return f"not needed: sent again as seq {later}"
    incident = await session.get(Incident, incident_id)
    if incident is None:
        return "not needed: the incident is gone"
    view = (await _views(session, [incident]))[0]
    d = next((d for d in view.dispatches if d.id == dispatch_id), None)
    if d is None:
        return "not needed: the dispatch is gone"
    if view.status == IncidentStatus.CLOSED:
        return "not needed: the incident is closed"
    if d.accepted_at is not None or d.arrived_at is not None:
        return "not needed: the team answered"
    if user_id not in (await auth.leaders_by_team(session, [d.team_id])).get(d.team_id, []):
        return "not needed: no longer a leader of the team"
    copies = _LeaderCopies(view.model_dump(mode="json"))
    # Marked as a copy: a phone that already rang for the incident (the leader's other device,
    # or this one from its reload) does not ring for it again.
    alert = {"incident": copies.of(d.team_id), "dispatch": copies.dispatch(d.id), "again": True}
    [sent] = await mailboxes.enqueue(
        session, [Outgoing(user_id, "alert", alert, ref=d.id)], now=now
    )
    return f"sent again as seq {sent.seq}"


# ---------------------------------------------------------------- the hops


@dataclass(frozen=True, slots=True)
class Delivery:
    """A leader's phone acknowledged the alert of a dispatch, at this server time."""

    dispatch_id: str
    user_id: str
    at: datetime


async def record_deliveries(
    session: AsyncSession,
    deliveries: Sequence[Delivery],
    now: datetime,
    coverage: Coverage | None = None,
) -> None:
    """The first acknowledgement of an alert sets its dispatch's delivered_at, unless the
    delivery is on record already (one an arrival implied is replaced), if it came while the
    incident was open: the close ends the chain of hops, and an acknowledgement that came after
    it records nothing (one that came before, written a moment later by its group commit, is
    recorded at its own time).

    Operators are told with one small ``dispatches.updated``; nobody else needs it, and
    re-sending the whole incident to every recipient on every delivery made the work per
    incident grow with the square of its recipients. Acknowledgements are the most frequent
    write of all, so the rows are read and written as bulk statements past the unit of work,
    and team names come from the ``coverage`` index when it holds them.
    """
    first: dict[str, Delivery] = {}
    for delivery in sorted(deliveries, key=lambda d: d.at):
        first.setdefault(delivery.dispatch_id, delivery)
    if not first:
        return
    undelivered = _undelivered_locked(on_postgresql(session))
    rows = await session.execute(undelivered, {"delivered_ids": sorted(first)})
    # Plain objects for the views, never added to the session.
    changed: list[DispatchRecord] = []
    said_of: dict[str, event_facts.DispatchFacts] = {}
    for row in rows.mappings():
        values = dict(row)
        closed_at = values.pop(CLOSED_AT)
        said = event_facts.facts(values.pop(event_facts.NOTE), values.pop(event_facts.NOBODY))
        if closed_at is None or first[values["id"]].at < closed_at:
            changed.append(DispatchRecord(**values))
            said_of[values["id"]] = said
    if not changed:
        return
    events: list[EventRecord] = []
    for d in changed:
        delivery = first[d.id]
        # Not before the alert (nor the report): an ack stamped by a process whose clock is
        # behind is recorded at the alert's time. Not floored at the hops on record: an
        # observed delivery may come before the arrival that implied one.
        at, floored = _hop_time(d, delivery.at, after_hops=False)
        facts: dict[str, Any] = {"dispatch_id": d.id, **floored}
        if d.delivered_implied:
            # The delivery an arrival implied gives way to the one observed, earlier or later:
            # the timeline keeps both, the dispatch (and the report) the observed one.
            facts["replaces_implied"] = True
        d.delivered_at, d.delivered_implied = at, False
        events.append(_event(d.incident_id, at, "delivered", delivery.user_id, facts))
    delivered = [
        {"id": d.id, "delivered_at": d.delivered_at, "delivered_implied": False} for d in changed
    ]
    marked = [
        Changed(DISPATCHES, "id", delivered),
        *await event_chain.appended_rows(session, events, changed),
    ]
    # The rows and the operators' news go with the transaction's last statement (staged): the
    # board is locked for the commit alone, and the announcement to other processes rides it.
    for step in marked:
        write_later(session, step)
    mailboxes.stage(session, await _board_news(session, changed, said_of, coverage), now=now)


# The column beside a dispatch's own that says when its incident was closed.
CLOSED_AT = "incident_closed_at"


@cache
def _undelivered_locked(postgresql: bool) -> Select[Any]:
    # Built once: built at every flush of deliveries, it was walked again for its cache key.
    return (
        select(
            DISPATCHES,
            INCIDENTS.c.closed_at.label(CLOSED_AT),
            # What the operators' news says of each beside its row, read here: the most
            # frequent write of all waits for no query more.
            event_facts.note_column(),
            event_facts.nobody_alerted_column(),
        )
        .join(INCIDENTS, INCIDENTS.c.id == DISPATCHES.c.incident_id)
        .where(
            any_of(DISPATCHES.c.id, "delivered_ids", postgresql),
            or_(DISPATCHES.c.delivered_at.is_(None), DISPATCHES.c.delivered_implied),
        )
        # Locked in id order: two batches of deliveries never wait on each other in a circle.
        # The dispatches alone: deliveries never lock an incident.
        .order_by(DISPATCHES.c.id)
        .with_for_update(key_share=True, of=DISPATCHES)
    )


async def _tell_operators(
    session: AsyncSession, changed: Sequence[AnyDispatch], now: datetime
) -> None:
    """A ``dispatches.updated`` to the operators' board with the dispatches whose hops moved."""
    if changed:
        facts = await event_facts.facts_of(session, [d.id for d in changed])
        await mailboxes.enqueue(session, await _board_news(session, changed, facts), now=now)


async def _board_news(
    session: AsyncSession,
    changed: Sequence[AnyDispatch],
    facts: Mapping[str, event_facts.DispatchFacts],
    coverage: Coverage | None = None,
) -> list[Outgoing]:
    """The board's ``dispatches.updated`` for these dispatches, with what their events say of
    them (``facts``): one message for all of them.

    A flush of acknowledgements delivers the dispatches of one alert together; a message each
    was a row, a frame to every console and a render each, for what the console shows at once.
    """
    team_ids = sorted({d.team_id for d in changed})
    names = {t: coverage.name_of(t) for t in team_ids} if coverage is not None else {}
    # A team the index does not hold (deactivated since) is looked up.
    missing = [t for t in team_ids if not names.get(t)]
    names.update({t.id: t.name for t in (await teams.teams_by_id(session, missing)).values()})
    views = [
        dispatch_view(
            d, names.get(d.team_id, ""), facts.get(d.id, event_facts.NO_FACTS)
        ).model_dump(mode="json")
        for d in changed
    ]
    return [Outgoing(auth.BOARD_MAILBOX, "dispatches.updated", {"dispatches": views})]


@dataclass(frozen=True, slots=True)
class _Acting:
    """A dispatch a user acts on, its incident and, for the team's leader when asked for, who
    follows it (``_take_on``)."""

    dispatch: Dispatch
    incident: Incident
    following: _Following | None = None


async def _acting_dispatch(
    session: AsyncSession,
    actor: auth.Principal,
    dispatch_id: str,
    *,
    lock: bool = True,
    followers: bool = False,
) -> _Acting:
    """The dispatch and its incident, locked for a hop (``lock``; unlocked, for a request that
    decides first whether it writes at all). ``followers``: for a hop that the leader takes on
    (``_take_on``), who follows the dispatch, read by the statement that locks it.

    Read with the lock, the followers cost no round trip of their own, though only the
    dispatches of teams whose units take turns have any. On PostgreSQL a statement that
    waited for the lock sees the rows of others as they were when it began, yet nothing is
    missed: a dispatch's alert writes its followers in the transaction that creates it (not
    found before it commits), and ``_take_on`` adds one only to a dispatch that has them
    already, and only unalerted, which is what a leader not found among them is taken for.
    """
    taking_on = lock and followers and actor.role == Role.LEADER
    query = _dispatch_query(lock, taking_on)
    params = {"dispatch_id": dispatch_id, "user_id": actor.user_id}
    row = (await session.execute(query, params)).first()
    if row is None:
        raise NotFound(f"dispatch {dispatch_id!r} does not exist", field="dispatch_id")
    d: Dispatch = row[0]
    if actor.role == Role.LEADER and actor.team_id != d.team_id:
        raise Forbidden("this dispatch belongs to another team")
    following = None
    if taking_on:
        chosen, alerted = cast(tuple[Any, bool | None], tuple(row)[1:])
        following = _Following(actor.user_id, bool(chosen), alerted)
    if lock:
        # Shared with the other hops, not with a close (nor an escalation step), which lock
        # the incident before its tiers: a hop that came in while a close was being written
        # waits for its commit and finds the incident closed. Read unlocked, the hop saw it
        # open, waited for the tier or the mailboxes the close held, and recorded after it.
        # Taken after the dispatch and before the tier, the order of every path that locks
        # more than one of them.
        incident = await _load_incident(session, d.incident_id, for_share=True)
    else:
        # Unlocked, the incident comes with the dispatch, in the same statement.
        incident = row[1]
    if incident.status == IncidentStatus.CLOSED.value:
        raise Conflict("the incident is closed", field="dispatch_id")
    return _Acting(d, incident, following)


@cache
def _dispatch_query(lock: bool, taking_on: bool) -> Select[Any]:
    # Built once, as the incident's (``_incident_query``): every hop reads its dispatch.
    query = select(Dispatch).where(Dispatch.id == bindparam("dispatch_id"))
    if lock:
        # populate_existing: a dispatch read unlocked before is taken as the lock finds it.
        query = query.with_for_update(key_share=True).execution_options(populate_existing=True)
    else:
        query = query.join(Incident, Incident.id == Dispatch.incident_id).add_columns(Incident)
    if taking_on:
        query = query.add_columns(
            select(DispatchFollower.user_id)
            .where(DispatchFollower.dispatch_id == Dispatch.id)
            .exists(),
            select(DispatchFollower.alerted)
            .where(
                DispatchFollower.dispatch_id == Dispatch.id,
                DispatchFollower.user_id == bindparam("user_id"),
            )
            .scalar_subquery(),
        )
    return query


async def _latest_hop(session: AsyncSession, incident_id: str) -> datetime | None:
    """The time of the incident's latest hop on record, of any of its dispatches."""
    row = (
        await session.execute(
            select(
                func.max(Dispatch.delivered_at),
                func.max(Dispatch.shown_at),
                func.max(Dispatch.accepted_at),
                func.max(Dispatch.arrived_at),
            ).where(Dispatch.incident_id == incident_id)
        )
    ).one()
    return max((t for t in row if t is not None), default=None)


async def _latest_on_record(session: AsyncSession, incident_id: str) -> datetime | None:
    """The latest time on record for the incident: of its events (an ``escalated`` one is
    dated at its step's due time, its ``dispatched`` ones when the step fired), its
    dispatches' alerts and its hops."""
    alerted = await session.scalar(
        select(func.max(Dispatch.alerted_at)).where(Dispatch.incident_id == incident_id)
    )
    event_at = await session.scalar(
        select(func.max(IncidentEvent.at)).where(IncidentEvent.incident_id == incident_id)
    )
    hop = await _latest_hop(session, incident_id)
    return max((t for t in (alerted, event_at, hop) if t is not None), default=None)


# A hop floored by at least this much was read by a clock behind the one that wrote what it
# follows (another host's, or this host's before a restart): a wait for a row lock while an
# earlier hop committed is milliseconds.
CLOCK_BEHIND_WARN_S = 1.0
# ... and told of at most once in this long by a process, with the count since.
CLOCK_BEHIND_WARN_EVERY_S = 300.0


class _ClockBehind:
    """Tells operations, once in a while, that hops came in before what they follow."""

    def __init__(self, every_s: float = CLOCK_BEHIND_WARN_EVERY_S) -> None:
        self._every_s = every_s
        self._next_at: float | None = None
        self._untold = 0

    def floored(self, incident_id: str, own: datetime, floor: datetime) -> None:
        behind = (floor - own).total_seconds()
        if behind < CLOCK_BEHIND_WARN_S:
            return
        self._untold += 1
        # Rate-limited on the monotonic clock: how often to log, not a time for the record.
        at = time.monotonic()
        if self._next_at is not None and at < self._next_at:
            return
        self._next_at = at + self._every_s
        count, self._untold = self._untold, 0
        log.warning(
            "this process's clock is behind the record: a hop of incident %s came in at %s by "
            "it, %.3f s before %s, the latest time on record that the hop follows (its alert, "
            "its incident's report or an earlier hop, written by a process or a start whose "
            "clock was ahead); recorded at %s, its event keeping clock_behind_s (%d such hops "
            "since the last warning). Check the hosts' clocks (docs/deploy.md, the host clock)",
            incident_id,
            show_time(own),
            behind,
            show_time(floor),
            show_time(floor),
            count,
            extra={"clock_behind_s": round(behind, 6), "incident_id": incident_id},
        )


_CLOCK_BEHIND = _ClockBehind()


def _hop_time(
    d: AnyDispatch, now: datetime, *, reported_at: datetime | None = None, after_hops: bool = True
) -> tuple[datetime, dict[str, Any]]:
    """The time to record a hop of ``d`` at, and what its event adds to say so: the request's
    time (``now``, this process's reading), unless something the hop follows is on record
    later. Every hop goes through here: delivered, shown, accepted and arrived, however it
    came (a tap, a fix on scene, an operator's radio arrival).

    What a hop follows: the incident's report (``reported_at``, or the dispatch's copy of it),
    the dispatch's alert and, ``after_hops``, its hops on record (not for an observed delivery,
    which may come before an arrival that implied one). A hop can come in before them two
    ways. Its request's time is taken when it arrives, before it waits for the dispatch's row
    lock: a hop that committed meanwhile (the phone's ack, written by its group commit) can
    be later, by the wait. Or its process's clock is behind the one that wrote them: each
    process's time is its host's at its start (``dispatch.clock``), and two hosts on one
    database, or a server restarted after its host's clock was set back, disagree by
    seconds or more. Recorded at that later time, the record stays in order, no duration on
    it is negative, and a tier is judged at the time on record; the event keeps how far this
    process's reading was behind (``clock_behind_s``), and a second or more is logged
    (``_ClockBehind``). All of it is on the rows the hop has read already: no query.
    """
    floors = [d.alerted_at, reported_at or d.incident_reported_at]
    if after_hops:
        floors += [d.delivered_at, d.shown_at, d.accepted_at, d.arrived_at]
    floor = max((t for t in floors if t is not None), default=now)
    if floor <= now:
        return now, {}
    _CLOCK_BEHIND.floored(d.incident_id, now, floor)
    return floor, {"clock_behind_s": round((floor - now).total_seconds(), 6)}


def _mark_delivered(
    session: AsyncSession, d: Dispatch, actor_id: str, now: datetime, *, implied: bool = False
) -> None:
    """Record the delivery at ``now`` unless one is on record: observed when the phone showed
    or accepted the alert, ``implied`` when an arrival stands for it. An observed one replaces
    an implied one."""
    if d.delivered_at is not None and (implied or not d.delivered_implied):
        return
    # Showing or accepting proves receipt, even when the websocket ack never came or is still
    # being gathered: the record never has a hop before the delivery it follows.
    facts: dict[str, Any] = {"dispatch_id": d.id}
    if implied:
        facts["implied"] = True
    elif d.delivered_implied:
        facts["replaces_implied"] = True
    d.delivered_at, d.delivered_implied = now, implied
    _record(session, d.incident_id, now, "delivered", actor_id, facts)


def _mark_accepted(
    session: AsyncSession,
    d: Dispatch,
    actor_id: str,
    now: datetime,
    device_time: datetime | None = None,
    *,
    implied: bool = False,
    off_turn: bool = False,
    floored: Mapping[str, Any] | None = None,
) -> None:
    """Record the acceptance at ``now`` (and the delivery, if none is on record): tapped, or
    ``implied`` by the leader's arrival without an accept first; ``off_turn``: by a leader
    the alert did not go to (``_take_on``). ``now`` comes from ``_hop_time``, and ``floored``
    is what it added to the event."""
    _mark_delivered(session, d, actor_id, now, implied=implied)
    if d.accepted_at is None:
        d.accepted_at, d.accepted_implied = now, implied
        facts: dict[str, Any] = {"dispatch_id": d.id, **(floored or {})}
        if implied:
            facts["implied"] = True
        if off_turn:
            facts["off_turn"] = True
        if device_time is not None:
            # The phone's clock at the tap: a tap kept through an outage reaches the server
            # late, and is recorded then; the record keeps when the leader tapped.
            facts["device_time"] = show_time(device_time)
        _record(session, d.incident_id, now, "accepted", actor_id, facts)


async def accept_dispatch(
    session: AsyncSession,
    actor: auth.Principal,
    dispatch_id: str,
    now: datetime,
    device_time: datetime | None = None,
) -> IncidentOut:
    acting = await _acting_dispatch(session, actor, dispatch_id, followers=True)
    d, incident = acting.dispatch, acting.incident
    # A leader who accepts follows the incident from now on, also when the team had accepted
    # already: he is on his way too. An off-turn leader's accept is the team's: it stops the
    # escalation and the notifiers as any other does (docs/reports.md, duty and rotation).
    off_turn = await _take_on(session, d, acting.following)
    # Once the team is on scene there is nothing left to accept: a tap that reaches the server
    # after an arrival recorded by radio would put the acceptance after the arrival.
    if d.accepted_at is not None or d.arrived_at is not None:
        return await get_incident(session, incident.id)
    now, floored = _hop_time(d, now, reported_at=incident.reported_at)
    _mark_accepted(session, d, actor.user_id, now, device_time, off_turn=off_turn, floored=floored)
    await session.flush()
    return await _announce(session, incident.id, now)


@dataclass(frozen=True)
class Fix:
    """A position as a device reported it."""

    location: LocationIn | None = None
    accuracy_m: float | None = None
    device_time: datetime | None = None


async def record_arrival(
    session: AsyncSession,
    actor: auth.Principal,
    dispatch_id: str,
    fix: Fix,
    now: datetime,
    source: ArrivalSource = ArrivalSource.BUTTON,
) -> IncidentOut:
    acting = await _acting_dispatch(session, actor, dispatch_id, followers=True)
    if acting.dispatch.arrived_at is not None:
        # The team is on scene already; the leader who says so too follows the incident.
        await _take_on(session, acting.dispatch, acting.following)
        return await get_incident(session, acting.incident.id)
    if actor.role != Role.LEADER and source == ArrivalSource.BUTTON:
        source = ArrivalSource.OPERATOR
    return await _arrive(session, actor, acting, fix, now, source)


async def _arrive(
    session: AsyncSession,
    actor: auth.Principal,
    acting: _Acting,
    fix: Fix,
    now: datetime,
    source: ArrivalSource,
) -> IncidentOut:
    # An arrival keeps the time its request came in, unless what it follows is on record
    # later (``_hop_time``: a clock behind, or an accept that committed while it waited):
    # that time is judged against the deadline, the record's. An off-turn leader on scene is
    # the team on scene: the tier is met by it all the same.
    d, incident = acting.dispatch, acting.incident
    off_turn = await _take_on(session, d, acting.following)
    now, floored = _hop_time(d, now, reported_at=incident.reported_at)
    if source != ArrivalSource.OPERATOR:
        # The leader acted on the alert: his arrival stands for the accept he did not tap (and
        # for the delivery, if no ack came), marked implied, so that no segment is measured
        # from it. An operator's radio arrival says nothing of the phone: it records only the
        # arrival, and the phone's ack may still come.
        _mark_accepted(session, d, actor.user_id, now, implied=True, off_turn=off_turn)
    d.arrived_at, d.arrival_source = now, source.value
    d.arrival_accuracy_m, d.arrival_device_time = fix.accuracy_m, fix.device_time
    if fix.location is not None:
        d.arrival_lon, d.arrival_lat = fix.location.to_wgs84()
        d.arrival_distance_m = round(
            distance_m(d.arrival_lon, d.arrival_lat, incident.lon, incident.lat), 3
        )
    elapsed = (now - incident.reported_at).total_seconds()
    facts = {
        **_dispatch_facts(d),
        **floored,
        "elapsed_s": elapsed,
        "source": source.value,
        "arrival_distance_m": d.arrival_distance_m,
        "arrival_lon": d.arrival_lon,
        "arrival_lat": d.arrival_lat,
        "arrival_accuracy_m": d.arrival_accuracy_m,
        "device_time": show_time(fix.device_time) if fix.device_time else None,
    }
    if off_turn:
        facts["off_turn"] = True
    _record(session, incident.id, now, "arrived", actor.user_id, facts)
    breached = await _settle_tier(session, incident, d.tier, now, elapsed)
    await session.flush()
    return await _announce(session, incident.id, now, breached=breached)


async def record_shown(
    session: AsyncSession,
    actor: auth.Principal,
    dispatch_id: str,
    device_time: datetime | None,
    now: datetime,
) -> IncidentOut:
    """The alert was on the leader's screen: the hop between "received" and "accepted"."""
    acting = await _acting_dispatch(session, actor, dispatch_id)
    d, incident = acting.dispatch, acting.incident
    if d.shown_at is not None:
        return await get_incident(session, incident.id)
    now, floored = _hop_time(d, now, reported_at=incident.reported_at)
    _mark_delivered(session, d, actor.user_id, now)
    d.shown_at = now
    facts = {
        "dispatch_id": d.id,
        **floored,
        "device_time": show_time(device_time) if device_time else None,
    }
    _record(session, incident.id, now, "shown", actor.user_id, facts)
    await session.flush()
    await _tell_operators(session, [d], now)
    return await get_incident(session, incident.id)


async def record_position(
    session: AsyncSession,
    actor: auth.Principal,
    dispatch_id: str,
    fix: Fix,
    now: datetime,
    geofence: tuple[float, float],
) -> tuple[float, IncidentOut | None]:
    """A position on the way from the team leader's phone; close and accurate enough, it
    records the arrival by geofence.

    Returns the distance to the incident and, when this fix recorded the arrival, the incident
    as it left it. A fix that records nothing changes nothing, and has no view to send back:
    the websocket carries every change. The phone sends a fix every few seconds while its team
    is on the way, so at a town's scale fixes are the most frequent request of all, and the
    view cost more than the rest of the fix's work.
    """
    if actor.role != Role.LEADER:
        # An arrival by geofence stands for the phone's GPS on scene: a position an operator
        # typed in would be recorded as that proof. Operators record arrivals with /arrive.
        raise Forbidden(
            "positions come from the team leader's phone (its GPS); an operator records an "
            "arrival with POST /api/v1/dispatches/{id}/arrive (source operator)"
        )
    assert fix.location is not None and fix.accuracy_m is not None
    # Most fixes record nothing (too far, too inaccurate, before the accept or after the
    # arrival): decided on rows read without a lock, they hold none, and the leader's arrive
    # tap or accept never waits behind one. Only a fix that arrives takes the locks, and
    # decides again on the rows as locked: an arrival (or a close) that committed meanwhile
    # is neither lost nor followed by a second one.
    acting = await _acting_dispatch(session, actor, dispatch_id, lock=False)
    incident = acting.incident
    lon, lat = fix.location.to_wgs84()
    distance = distance_m(lon, lat, incident.lon, incident.lat)
    radius_m, accuracy_m = geofence
    # The fence decides on the distance itself: 50.0004 m is outside a 50 m fence, although
    # it is shown, rounded to the millimetre, as 50.0.
    on_scene = distance <= radius_m and fix.accuracy_m <= accuracy_m
    shown = round(distance, 3)
    if on_scene and _arrives(acting.dispatch):
        acting = await _acting_dispatch(session, actor, dispatch_id, followers=True)
        if _arrives(acting.dispatch):
            return shown, await _arrive(session, actor, acting, fix, now, ArrivalSource.GEOFENCE)
    return shown, None


def _arrives(d: Dispatch) -> bool:
    """Whether a fix on scene records the team's arrival: once accepted, until arrived."""
    return d.accepted_at is not None and d.arrived_at is None


async def _settle_tier(
    session: AsyncSession, incident: Incident, tier: int, now: datetime, elapsed: float
) -> list[ChainTier]:
    """A tier is met when a team arrives by its deadline; arriving later still counts time."""
    row = await session.scalar(
        select(ChainTier)
        .where(ChainTier.incident_id == incident.id, ChainTier.tier == tier)
        .with_for_update(key_share=True)
    )
    assert row is not None, "every incident has three chain tiers"
    if row.arrived_at is None or now < row.arrived_at:
        row.arrived_at, row.elapsed_s = now, elapsed
    # The timer (or a close) can breach the tier while an arrival that came by the deadline
    # waits for a lock or a connection: the arrival's time decides, as the report's does.
    breached_meanwhile = row.status == TierStatus.BREACHED.value and now <= row.deadline
    if row.status != TierStatus.PENDING.value and not breached_meanwhile:
        return []
    if now <= row.deadline:
        facts: dict[str, Any] = {"tier": tier, "elapsed_s": elapsed}
        if breached_meanwhile:
            facts["breach_withdrawn"] = True
            row.breached_at = None
        row.status = TierStatus.MET.value
        _record(session, incident.id, now, "met", None, facts)
        return []
    _breach(session, row)
    return [row]


def _breach(session: AsyncSession, row: ChainTier) -> None:
    # The breach happened at the deadline, whenever it is noticed.
    row.status, row.breached_at = TierStatus.BREACHED.value, row.deadline
    facts = {"tier": row.tier, "target_s": row.target_s}
    _record(session, row.incident_id, row.deadline, "breached", None, facts)


async def fire_due_breaches(session: AsyncSession, now: datetime, limit: int = 100) -> int:
    """Breach every pending tier whose deadline has passed; each is claimed by one process."""
    rows = list(
        await session.scalars(
            select(ChainTier)
            # Strictly past: an arrival at the very deadline still meets it.
            .where(ChainTier.status == TierStatus.PENDING.value, ChainTier.deadline < now)
            .order_by(ChainTier.deadline)
            .limit(limit)
            .with_for_update(skip_locked=True, key_share=True)
        )
    )
    by_incident: dict[str, list[ChainTier]] = {}
    for row in rows:
        _breach(session, row)
        by_incident.setdefault(row.incident_id, []).append(row)
    await session.flush()
    audiences = {i: await _audience(session, i) for i in by_incident}
    # Every mailbox at once, in user-id order: locking incident by incident would take them
    # out of order and could deadlock with another transaction locking the same users.
    await mailboxes.lock(session, sorted({u for users in audiences.values() for u in users}))
    for incident_id, breached in by_incident.items():
        await _announce(
            session, incident_id, now, breached=breached, audience=audiences[incident_id]
        )
    return len(rows)


async def next_deadline(session: AsyncSession) -> datetime | None:
    due: datetime | None = await session.scalar(
        select(ChainTier.deadline)
        .where(ChainTier.status == TierStatus.PENDING.value)
        .order_by(ChainTier.deadline)
        .limit(1)
    )
    return due


async def close_incident(
    session: AsyncSession, actor: auth.Principal, incident_id: str, now: datetime
) -> IncidentOut:
    incident = await _load_incident(session, incident_id, for_update=True)
    if incident.status == IncidentStatus.CLOSED.value:
        return await get_incident(session, incident_id)
    # Hops share the incident's row and a close waits for all of them, also for those that
    # came in after it did (on PostgreSQL a share lock does not queue behind a waiting close);
    # it may also have waited behind an escalation step that fired after its call came in
    # (its ``escalated`` event dated at the due time, its ring alerted when it fired). What
    # they recorded stays, and the close comes after it: nothing is on record after the
    # close, and a late arrival's breach is not taken for the timer's and withdrawn. The
    # tiers are judged at that time too: one whose deadline passed before it is breached.
    now = max(now, await _latest_on_record(session, incident_id) or now)
    # The database gives every tier the close's time, which the reports judge it by (a
    # trigger on the incident's closed_at, migration 0024, which keeps it for every writer).
    incident.status, incident.closed_at = IncidentStatus.CLOSED.value, now
    tiers = await session.scalars(
        select(ChainTier)
        .where(ChainTier.incident_id == incident_id)
        .order_by(ChainTier.tier)
        .with_for_update(key_share=True)
    )
    breached: list[ChainTier] = []
    withdrawn: list[int] = []
    open_statuses = (TierStatus.PENDING.value, TierStatus.BREACHED.value)
    for row in tiers:
        if row.status not in open_statuses:
            continue
        if row.deadline < now:
            if row.status == TierStatus.PENDING.value:
                _breach(session, row)
                breached.append(row)
            continue
        # Closed by the deadline. A breach there can only be the timer's, fired while this
        # request waited for the incident's lock: the close's time decides.
        if row.status == TierStatus.BREACHED.value:
            withdrawn.append(row.tier)
        row.status, row.breached_at = TierStatus.CANCELLED.value, None
    facts = {"breaches_withdrawn": withdrawn} if withdrawn else {}
    _record(session, incident_id, now, "closed", actor.user_id, facts)
    await session.flush()
    return await _announce(session, incident_id, now, breached=breached)
