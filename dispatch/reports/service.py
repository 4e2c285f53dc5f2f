"""Response-time reports, computed by the database from the raw timestamps.

Every figure comes from the stored times of each incident and dispatch; nothing is averaged from
other summaries. Durations are exact integers of microseconds computed in SQL, counts are
GROUP BY aggregates, and percentiles are picked by rank with window functions, so the work runs
inside the database (SQLite or PostgreSQL) and only a few rows per group come back.

Percentiles are nearest-rank: the p-th percentile of n sorted values is the value at 1-based
rank ceil(p x n / 100), computed in integer arithmetic as (p x n + 99) div 100. It is always a
time that actually occurred, which is what an assessor can check against the record. As in NFPA
1710 practice, the 90th percentile is reported for each segment separately (alert to delivery,
delivery to acceptance, acceptance to arrival) and for the whole time to arrival; the segments'
percentiles do not add up to the whole's, by nature.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    Select,
    and_,
    case,
    cast,
    func,
    literal,
    null,
    or_,
    select,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.auth.models import User
from dispatch.db import dialect_name
from dispatch.errors import InvalidInput
from dispatch.incidents import service as incidents
from dispatch.incidents.models import (
    Category,
    ChainTier,
    Dispatch,
    Incident,
    IncidentEvent,
    TierStatus,
)
from dispatch.reports.schemas import (
    DispatchOutcome,
    Exclusion,
    Group,
    GroupBy,
    Grouping,
    IncidentReportOut,
    ReportOut,
    Stat,
    TierFigures,
    TimelineEvent,
    Unit,
)
from dispatch.schemas import DISPLAY_TZ
from dispatch.teams import service as teams
from dispatch.villages import service as villages

PERCENTILES = (50, 90)
METRICS = ("arrival", "a2d", "d2acc", "acc2arr")
TIER_LABELS = {1: "一梯队 应急联防队", 2: "二梯队 巡逻警力", 3: "三梯队 处突警力"}
NO_VILLAGE = "未划入村(社区)"
METHOD = (
    "Nearest-rank percentiles: the p-th percentile of n sorted times is the value at rank "
    "ceil(p*n/100) (integer arithmetic), a time that actually occurred; P90 is given per "
    "segment as in NFPA 1710 practice. Times are exact differences of the stored server "
    "timestamps (microseconds): time to arrival from the report to arrival on scene; segments "
    "per dispatch from alert to delivery, delivery to acceptance and acceptance to arrival. "
    "Share within target = met / (met + breached): a tier closed by its deadline with nobody "
    "on scene (cancelled) and one whose deadline is still ahead (pending) are not judged. An "
    "arrival exactly at the deadline meets it. A tier no team covered is breached and counted "
    "as uncovered. Measurements without an arrival are counted and listed as exclusions."
)


def rank(percentile: int, n: int) -> int:
    """The 1-based nearest rank of a percentile among n values, without floating point."""
    return (percentile * n + 99) // 100


@dataclass(frozen=True)
class Filters:
    start: datetime
    end: datetime
    tier: int | None = None
    team_id: str | None = None
    village_id: str | None = None
    category: Category | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "tier": self.tier,
            "team_id": self.team_id,
            "village_id": self.village_id,
            "category": self.category.value if self.category else None,
        }


def local_period(
    start: datetime | None, end: datetime | None, now: datetime
) -> tuple[datetime, datetime]:
    """[start, end) with naive values read as Asia/Shanghai; default: the last 30 local days."""

    def aware(value: datetime) -> datetime:
        return value.replace(tzinfo=DISPLAY_TZ) if value.tzinfo is None else value

    today = now.astimezone(DISPLAY_TZ).replace(hour=0, minute=0, second=0, microsecond=0)
    end_at = aware(end) if end is not None else today + timedelta(days=1)
    start_at = aware(start) if start is not None else end_at - timedelta(days=30)
    if start_at >= end_at:
        raise InvalidInput("from: the period's start must be before its end", field="from")
    return start_at, end_at


# ---------------------------------------------------------------- SQL building blocks


class _Sql:
    """The few expressions SQLite and PostgreSQL spell differently."""

    def __init__(self, dialect: str) -> None:
        self.pg = dialect == "postgresql"
        offset = DISPLAY_TZ.utcoffset(datetime(2000, 1, 1))
        assert offset is not None
        # SQLite has no time zones; Asia/Shanghai has kept UTC+8 without DST since 1991.
        self.shift = f"{int(offset.total_seconds() // 60):+d} minutes"

    def epoch_us(self, column: Any) -> ColumnElement[int]:
        """Microseconds since 1970 as an exact integer."""
        if self.pg:
            return cast(func.extract("epoch", column) * 1_000_000, BigInteger)
        # SQLite keeps 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC); julianday() would round to ~20 µs.
        seconds = cast(func.strftime("%s", func.substr(column, 1, 19)), Integer)
        return seconds * 1_000_000 + cast(func.substr(column, 21, 6), Integer)

    def local_day(self, column: Any) -> ColumnElement[str]:
        if self.pg:
            return func.to_char(func.timezone(DISPLAY_TZ.key, column), "YYYY-MM-DD")
        return func.date(column, self.shift)

    def local_week(self, column: Any) -> ColumnElement[str]:
        """The Monday that starts the local ISO week."""
        if self.pg:
            return func.to_char(
                func.date_trunc("week", func.timezone(DISPLAY_TZ.key, column)), "YYYY-MM-DD"
            )
        return func.date(column, self.shift, "weekday 0", "-6 days")

    def local_month(self, column: Any) -> ColumnElement[str]:
        if self.pg:
            return func.to_char(func.timezone(DISPLAY_TZ.key, column), "YYYY-MM")
        return func.strftime("%Y-%m", column, self.shift)


def _key(sql: _Sql, by: GroupBy, tier_column: Any, team_column: Any) -> Any:
    if by == GroupBy.TIER:
        return literal("")
    if by == GroupBy.TEAM:
        return team_column
    if by == GroupBy.VILLAGE:
        return func.coalesce(Incident.village_id, "")
    if by == GroupBy.DAY:
        return sql.local_day(Incident.reported_at)
    if by == GroupBy.WEEK:
        return sql.local_week(Incident.reported_at)
    return sql.local_month(Incident.reported_at)


def _incident_filters(filters: Filters) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [
        Incident.reported_at >= filters.start,
        Incident.reported_at < filters.end,
    ]
    if filters.village_id is not None:
        conditions.append(Incident.village_id == filters.village_id)
    if filters.category is not None:
        conditions.append(Incident.category == filters.category.value)
    return conditions


def _outcome(sql: _Sql, arrived_at: Any, now_us: int) -> ColumnElement[str]:
    """Met, breached, cancelled or pending, judged from the timestamps themselves.

    The stored tier status is what was shown live; the timer may set it at the very instant of
    the deadline, a hair before an arrival stamped with that same instant. The report goes by
    the record: an arrival at or before the deadline meets it.
    """
    arrived = sql.epoch_us(arrived_at)
    deadline = sql.epoch_us(ChainTier.deadline)
    return case(
        (and_(arrived_at.is_not(None), arrived <= deadline), TierStatus.MET.value),
        (arrived_at.is_not(None), TierStatus.BREACHED.value),
        (ChainTier.status == TierStatus.CANCELLED.value, TierStatus.CANCELLED.value),
        (
            and_(Incident.closed_at.is_not(None), sql.epoch_us(Incident.closed_at) <= deadline),
            TierStatus.CANCELLED.value,
        ),
        (deadline > now_us, TierStatus.PENDING.value),
        else_=TierStatus.BREACHED.value,
    )


def _measurements(sql: _Sql, filters: Filters, by: GroupBy, unit: Unit, now_us: int) -> Select[Any]:
    """One row per measurement: group key, tier, outcome, covered, time to arrival (µs)."""
    reported = sql.epoch_us(Incident.reported_at)
    if unit == Unit.INCIDENT_TIER:
        query = (
            select(
                _key(sql, by, ChainTier.tier, literal("")).label("g"),
                ChainTier.tier.label("tier"),
                ChainTier.incident_id.label("incident_id"),
                null().label("team_id"),
                Incident.reported_at.label("reported_at"),
                _outcome(sql, ChainTier.arrived_at, now_us).label("outcome"),
                ChainTier.covered.label("covered"),
                case(
                    (
                        ChainTier.arrived_at.is_not(None),
                        sql.epoch_us(ChainTier.arrived_at) - reported,
                    ),
                    else_=null(),
                ).label("arrival"),
            )
            .join(Incident, Incident.id == ChainTier.incident_id)
            .where(*_incident_filters(filters))
        )
        if filters.tier is not None:
            query = query.where(ChainTier.tier == filters.tier)
        return query
    query = (
        select(
            _key(sql, by, Dispatch.tier, Dispatch.team_id).label("g"),
            Dispatch.tier.label("tier"),
            Dispatch.incident_id.label("incident_id"),
            Dispatch.team_id.label("team_id"),
            Incident.reported_at.label("reported_at"),
            _outcome(sql, Dispatch.arrived_at, now_us).label("outcome"),
            literal(True).label("covered"),
            case(
                (Dispatch.arrived_at.is_not(None), sql.epoch_us(Dispatch.arrived_at) - reported),
                else_=null(),
            ).label("arrival"),
        )
        .join(Incident, Incident.id == Dispatch.incident_id)
        .join(
            ChainTier,
            and_(ChainTier.incident_id == Dispatch.incident_id, ChainTier.tier == Dispatch.tier),
        )
        .where(*_incident_filters(filters))
    )
    return _dispatch_filters(query, filters)


def _dispatch_filters(query: Select[Any], filters: Filters) -> Select[Any]:
    if filters.tier is not None:
        query = query.where(Dispatch.tier == filters.tier)
    if filters.team_id is not None:
        query = query.where(Dispatch.team_id == filters.team_id)
    return query


def _segments(sql: _Sql, filters: Filters, by: GroupBy) -> Select[Any]:
    """One row per dispatch with its three hops in µs (null where a hop is missing)."""

    def hop(later: Any, earlier: Any) -> ColumnElement[int | None]:
        return case(
            (
                and_(later.is_not(None), earlier.is_not(None)),
                sql.epoch_us(later) - sql.epoch_us(earlier),
            ),
            else_=null(),
        )

    query = (
        select(
            _key(sql, by, Dispatch.tier, Dispatch.team_id).label("g"),
            Dispatch.tier.label("tier"),
            hop(Dispatch.delivered_at, Dispatch.alerted_at).label("a2d"),
            hop(Dispatch.accepted_at, Dispatch.delivered_at).label("d2acc"),
            hop(Dispatch.arrived_at, Dispatch.accepted_at).label("acc2arr"),
        )
        .join(Incident, Incident.id == Dispatch.incident_id)
        .where(*_incident_filters(filters))
    )
    return _dispatch_filters(query, filters)


# ---------------------------------------------------------------- the three queries


@dataclass
class _Cell:
    incidents: int = 0
    with_arrival: int = 0
    met: int = 0
    breached: int = 0
    cancelled: int = 0
    pending: int = 0
    uncovered: int = 0


async def _counts(session: AsyncSession, measurements: Select[Any]) -> dict[tuple[str, int], _Cell]:
    m = measurements.subquery("m")

    def count_of(outcome: str) -> Any:
        return func.sum(case((m.c.outcome == outcome, 1), else_=0))

    query = select(
        m.c.g,
        m.c.tier,
        func.count(),
        func.count(m.c.arrival),
        count_of(TierStatus.MET.value),
        count_of(TierStatus.BREACHED.value),
        count_of(TierStatus.CANCELLED.value),
        count_of(TierStatus.PENDING.value),
        func.sum(case((m.c.covered.is_(False), 1), else_=0)),
    ).group_by(m.c.g, m.c.tier)
    cells: dict[tuple[str, int], _Cell] = {}
    for row in (await session.execute(query)).all():
        cells[(str(row[0]), int(row[1]))] = _Cell(*(int(v or 0) for v in row[2:]))
    return cells


async def _percentiles(
    session: AsyncSession, measurements: Select[Any], segments: Select[Any]
) -> dict[tuple[str, str, int], dict[int, int]]:
    """For every metric, group and tier: n and the values at the needed ranks."""
    m = measurements.subquery("m")
    s = segments.subquery("s")
    parts = [
        select(literal("arrival").label("metric"), m.c.g, m.c.tier, m.c.arrival.label("v")).where(
            m.c.arrival.is_not(None)
        )
    ]
    for metric in METRICS[1:]:
        column = s.c[metric]
        parts.append(
            select(literal(metric).label("metric"), s.c.g, s.c.tier, column.label("v")).where(
                column.is_not(None)
            )
        )
    values = union_all(*parts).subquery("v")
    window = (values.c.metric, values.c.g, values.c.tier)
    ranked = select(
        values.c.metric,
        values.c.g,
        values.c.tier,
        values.c.v,
        func.row_number().over(partition_by=window, order_by=values.c.v).label("rn"),
        func.count().over(partition_by=window).label("n"),
    ).subquery("r")
    wanted = [ranked.c.rn == (p * ranked.c.n + 99) // 100 for p in PERCENTILES]
    query = select(
        ranked.c.metric, ranked.c.g, ranked.c.tier, ranked.c.rn, ranked.c.n, ranked.c.v
    ).where(or_(*wanted, ranked.c.rn == ranked.c.n))
    found: dict[tuple[str, str, int], dict[int, int]] = {}
    for metric, g, tier, rn, n, v in (await session.execute(query)).all():
        entry = found.setdefault((str(metric), str(g), int(tier)), {0: int(n)})
        entry[int(rn)] = int(v)
    return found


def _stat(found: dict[int, int] | None) -> Stat:
    if not found:
        return Stat(n=0, p50_s=None, p90_s=None, max_s=None)
    n = found[0]
    return Stat(
        n=n,
        p50_s=found[rank(50, n)] / 1e6,
        p90_s=found[rank(90, n)] / 1e6,
        max_s=found[n] / 1e6,
    )


def _figures(
    tier: int,
    target_s: float,
    cell: _Cell,
    values: dict[tuple[str, str, int], dict[int, int]],
    key: str,
) -> TierFigures:
    judged = cell.met + cell.breached
    return TierFigures(
        tier=tier,
        target_s=target_s,
        incidents=cell.incidents,
        with_arrival=cell.with_arrival,
        without_arrival=cell.incidents - cell.with_arrival,
        met=cell.met,
        breached=cell.breached,
        cancelled=cell.cancelled,
        pending=cell.pending,
        uncovered=cell.uncovered,
        share_within_target=cell.met / judged if judged else None,
        time_to_arrival=_stat(values.get(("arrival", key, tier))),
        alert_to_delivery=_stat(values.get(("a2d", key, tier))),
        delivery_to_acceptance=_stat(values.get(("d2acc", key, tier))),
        acceptance_to_arrival=_stat(values.get(("acc2arr", key, tier))),
    )


def unit_for(by: GroupBy, filters: Filters) -> Unit:
    """Per team (grouped or filtered by team) each team's own arrival counts; else the tier's."""
    return Unit.DISPATCH if by == GroupBy.TEAM or filters.team_id else Unit.INCIDENT_TIER


async def grouping(
    session: AsyncSession,
    filters: Filters,
    by: GroupBy,
    targets: Sequence[float],
    now: datetime,
) -> Grouping:
    sql = _Sql(dialect_name(session))
    unit = unit_for(by, filters)
    now_us = _now_us(now)
    measurements = _measurements(sql, filters, by, unit, now_us)
    cells = await _counts(session, measurements)
    values = await _percentiles(session, measurements, _segments(sql, filters, by))
    labels = await _labels(session, by, sorted({k for k, _ in cells}))
    keys = sorted({k for k, _ in cells}, key=lambda k: labels[k] if by == GroupBy.TEAM else k)
    groups = []
    for key in keys:
        tiers = sorted(t for k, t in cells if k == key)
        groups.append(
            Group(
                key=key,
                label=labels[key],
                tiers=[_figures(t, targets[t - 1], cells[(key, t)], values, key) for t in tiers],
            )
        )
    if by == GroupBy.TIER:
        groups = [
            Group(key=str(f.tier), label=TIER_LABELS[f.tier], tiers=[f])
            for g in groups
            for f in g.tiers
        ]
    return Grouping(by=by, unit=unit, groups=groups)


def _now_us(now: datetime) -> int:
    delta = now - datetime(1970, 1, 1, tzinfo=now.tzinfo)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


async def _labels(session: AsyncSession, by: GroupBy, keys: Sequence[str]) -> dict[str, str]:
    if by == GroupBy.TEAM:
        found = await teams.teams_by_id(session, list(keys))
        return {k: found[k].name if k in found else k for k in keys}
    if by == GroupBy.VILLAGE:
        found_v = await villages.villages_by_id(session, [k for k in keys if k])
        return {k: found_v[k].name if k in found_v else NO_VILLAGE for k in keys}
    if by == GroupBy.WEEK:
        return {k: _week_label(k) for k in keys}
    return {k: k for k in keys}


def _week_label(monday: str) -> str:
    year, week, _ = datetime.fromisoformat(monday).isocalendar()
    return f"{year}-W{week:02d}（{monday}起）"


# ---------------------------------------------------------------- exclusions


REASONS = {
    TierStatus.CANCELLED.value: "closed by the deadline with nobody on scene",
    TierStatus.PENDING.value: "the deadline is still ahead",
    TierStatus.BREACHED.value: "nobody arrived",
}


async def exclusions(
    session: AsyncSession, filters: Filters, unit: Unit, now: datetime, limit: int
) -> list[Exclusion]:
    sql = _Sql(dialect_name(session))
    m = _measurements(sql, filters, GroupBy.TIER, unit, _now_us(now)).subquery("m")
    query = (
        select(m.c.incident_id, m.c.tier, m.c.team_id, m.c.reported_at, m.c.outcome, m.c.covered)
        .where(m.c.arrival.is_(None))
        .order_by(m.c.reported_at, m.c.incident_id, m.c.tier, m.c.team_id)
        .limit(limit)
    )
    rows = (await session.execute(query)).all()
    names = {
        t.id: t.name
        for t in (await teams.teams_by_id(session, sorted({r[2] for r in rows if r[2]}))).values()
    }
    found = []
    for incident_id, tier, team_id, reported_at, outcome, covered in rows:
        reason = REASONS.get(outcome, outcome)
        if not covered:
            reason = "no team of this tier covers the place (" + reason + ")"
        found.append(
            Exclusion(
                incident_id=incident_id,
                tier=tier,
                team_id=team_id,
                team_name=names.get(team_id) if team_id else None,
                reported_at=_as_datetime(reported_at),
                outcome=outcome,
                reason=reason,
            )
        )
    return found


def _as_datetime(value: Any) -> datetime:
    # Labelled columns in a subquery keep the UTCDateTime type, so this is already aware.
    assert isinstance(value, datetime)
    return value


# ---------------------------------------------------------------- the report


async def response_times(
    session: AsyncSession,
    filters: Filters,
    group_by: Sequence[GroupBy],
    *,
    targets: Sequence[float],
    now: datetime,
    max_exclusions: int,
) -> ReportOut:
    wanted = list(dict.fromkeys(group_by)) or [GroupBy.TIER]
    computed = {by: await grouping(session, filters, by, targets, now) for by in wanted}
    totals = computed.get(GroupBy.TIER) or await grouping(
        session, filters, GroupBy.TIER, targets, now
    )
    unit = totals.unit
    total_without = sum(f.without_arrival for g in totals.groups for f in g.tiers)
    listed = await exclusions(session, filters, unit, now, max_exclusions)
    return ReportOut(
        generated_at=now,
        period_from=filters.start,
        period_to=filters.end,
        filters=filters.as_dict(),
        method=METHOD,
        totals=[f for g in totals.groups for f in g.tiers],
        groupings=[computed[by] for by in wanted],
        exclusions=listed,
        exclusions_total=total_without,
        exclusions_truncated=len(listed) < total_without,
    )


async def arrival_histogram(
    session: AsyncSession, filters: Filters, bin_s: int, now: datetime
) -> dict[int, int]:
    """Tier-1 times to arrival in ``bin_s`` second bins: bin b holds (b, b + 1] x bin_s."""
    sql = _Sql(dialect_name(session))
    tier1 = Filters(
        filters.start, filters.end, 1, filters.team_id, filters.village_id, filters.category
    )
    m = _measurements(
        sql, tier1, GroupBy.TIER, unit_for(GroupBy.TIER, tier1), _now_us(now)
    ).subquery("m")
    # Bins are closed on the right, (50, 60], like the target: an arrival at exactly 60 s meets
    # it and is counted left of the 60 s line. Integer division on both databases.
    bucket = case((m.c.arrival <= 0, 0), else_=(m.c.arrival - 1) // (bin_s * 1_000_000)).label("b")
    query = select(bucket, func.count()).where(m.c.arrival.is_not(None)).group_by(bucket)
    return {int(b): int(n) for b, n in (await session.execute(query)).all()}


# ---------------------------------------------------------------- per incident, for the ledger


@dataclass(frozen=True)
class DetailRow:
    incident_id: str
    reported_at: datetime
    village: str
    category: str
    status: str
    tiers: dict[int, tuple[str, float | None]]


async def incident_details(
    session: AsyncSession, filters: Filters, limit: int, now: datetime
) -> tuple[list[DetailRow], int]:
    """The period's incidents, oldest first, each with its tiers' outcomes; and how many."""
    conditions = _incident_filters(filters)
    if filters.team_id is not None:
        mine = select(Dispatch.incident_id).where(Dispatch.team_id == filters.team_id)
        conditions.append(Incident.id.in_(mine))
    total = int(
        await session.scalar(select(func.count()).select_from(Incident).where(*conditions)) or 0
    )
    found = list(
        await session.scalars(
            select(Incident)
            .where(*conditions)
            .order_by(Incident.reported_at, Incident.id)
            .limit(limit)
        )
    )
    names = {
        v.id: v.name
        for v in (
            await villages.villages_by_id(
                session, sorted({i.village_id for i in found if i.village_id})
            )
        ).values()
    }
    tiers: dict[str, dict[int, tuple[str, float | None]]] = {i.id: {} for i in found}
    closed = {i.id: i.closed_at for i in found}
    ids = [i.id for i in found]
    for start in range(0, len(ids), 500):
        batch = ids[start : start + 500]
        for row in await session.scalars(select(ChainTier).where(ChainTier.incident_id.in_(batch))):
            closed_at = closed[row.incident_id]
            outcome = _one_outcome(row.arrived_at, row.deadline, row.status, closed_at, now)
            tiers[row.incident_id][row.tier] = (outcome, row.elapsed_s)
    rows = [
        DetailRow(
            incident_id=i.id,
            reported_at=i.reported_at,
            village=names.get(i.village_id, NO_VILLAGE) if i.village_id else NO_VILLAGE,
            category=i.category,
            status=i.status,
            tiers=tiers[i.id],
        )
        for i in found
    ]
    return rows, total


# ---------------------------------------------------------------- one incident


async def incident_report(
    session: AsyncSession, incident_id: str, now: datetime
) -> IncidentReportOut:
    view = await incidents.get_incident(session, incident_id)
    events = list(
        await session.scalars(
            select(IncidentEvent)
            .where(IncidentEvent.incident_id == incident_id)
            .order_by(IncidentEvent.at, IncidentEvent.id)
        )
    )
    actor_ids = sorted({e.actor_id for e in events if e.actor_id})
    actors = (
        {u.id: u.name for u in (await session.scalars(select(User).where(User.id.in_(actor_ids))))}
        if actor_ids
        else {}
    )
    village = (
        (await villages.villages_by_id(session, [view.village_id])).get(view.village_id)
        if view.village_id
        else None
    )
    chain = {t.tier: t for t in view.chain}
    outcomes = []
    for d in view.dispatches:
        tier = chain[d.tier]
        elapsed = (d.arrived_at - view.reported_at).total_seconds() if d.arrived_at else None
        outcomes.append(
            DispatchOutcome(
                dispatch_id=d.id,
                team_id=d.team_id,
                team_name=d.team_name,
                tier=d.tier,
                outcome=_one_outcome(
                    d.arrived_at, tier.deadline, tier.status.value, view.closed_at, now
                ),
                time_to_arrival_s=elapsed,
            )
        )
    return IncidentReportOut(
        incident=view,
        village_name=village.name if village else None,
        tiers=[
            {
                "tier": t.tier,
                "label": TIER_LABELS[t.tier],
                "target_s": t.target_s,
                "status": t.status.value,
                "outcome": _one_outcome(
                    t.arrived_at, t.deadline, t.status.value, view.closed_at, now
                ),
                "covered": t.covered,
                "elapsed_s": t.elapsed_s,
            }
            for t in view.chain
        ],
        teams=outcomes,
        timeline=[
            TimelineEvent(
                at=e.at,
                type=e.type,
                actor_id=e.actor_id,
                actor_name=actors.get(e.actor_id) if e.actor_id else None,
                data=e.data,
            )
            for e in events
        ],
    )


def _one_outcome(
    arrived: datetime | None,
    deadline: datetime,
    tier_status: str,
    closed_at: datetime | None,
    now: datetime,
) -> str:
    """The rule of _outcome's SQL, for one tier or dispatch."""
    if arrived is not None:
        return TierStatus.MET.value if arrived <= deadline else TierStatus.BREACHED.value
    if tier_status == TierStatus.CANCELLED.value:
        return TierStatus.CANCELLED.value
    if closed_at is not None and closed_at <= deadline:
        return TierStatus.CANCELLED.value
    if deadline > now:
        return TierStatus.PENDING.value
    return TierStatus.BREACHED.value
