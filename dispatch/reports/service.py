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

import asyncio
import math
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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
    not_,
    null,
    or_,
    select,
    type_coerce,
    union_all,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.audit import chain
from dispatch.audit.schemas import ChainHeadOut
from dispatch.auth.models import User
from dispatch.db import dialect_name, hold_snapshot
from dispatch.errors import InvalidInput, NotFound
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
    AlertedTeam,
    DispatchOutcome,
    Exclusion,
    Group,
    GroupBy,
    Grouping,
    HistogramBin,
    IncidentReportOut,
    ReportOut,
    SegmentStat,
    Stat,
    TeamLabel,
    TierFigures,
    TimelineEvent,
    Unit,
)
from dispatch.schemas import DISPLAY_TZ, empty_period
from dispatch.teams import service as teams
from dispatch.teams.models import Team
from dispatch.villages import service as villages
from dispatch.villages.models import Village

PERCENTILES = (50, 90)
METRICS = ("arrival", "a2d", "d2acc", "acc2arr")
# The per-dispatch segments, whose ends may be implied by a later hop rather than observed.
SEGMENTS = METRICS[1:]
OUTCOMES = (TierStatus.MET, TierStatus.BREACHED, TierStatus.CANCELLED, TierStatus.PENDING)
TIER_LABELS = {1: "一梯队 应急联防队", 2: "二梯队 巡逻警力", 3: "三梯队 处突警力"}
TIERS = tuple(TIER_LABELS)
NO_VILLAGE = "未划入村(社区)"
METHOD = (
    "Nearest-rank percentiles: the p-th percentile of n sorted times is the value at rank "
    "ceil(p*n/100) (integer arithmetic), a time that actually occurred; P90 is given per "
    "segment as in NFPA 1710 practice. Times are exact differences of the stored server "
    "timestamps (microseconds): time to arrival from the report to arrival on scene; segments "
    "per dispatch from alert to delivery, delivery to acceptance and acceptance to arrival, "
    "each measured only where both of its ends were observed: an acceptance (and a delivery "
    "without an ack before it) implied by a leader's arrival without an accept first is left "
    "out and counted as implied; an arrival an operator records implies neither. "
    "Each tier is judged by the target stored with the incident when it was reported "
    "(target_s; targets_s lists every target applied, and target_s is null when they differ). "
    "Share within target = met / (met + breached): a tier closed by its deadline with nobody "
    "on scene (cancelled) and one whose deadline has not passed (pending) are not judged. An "
    "arrival exactly at the deadline meets it, and with none a tier is pending up to and at "
    "its deadline's instant, breached only beyond it. Uncovered counts the tiers of which no "
    "team was alerted, whatever their outcome; such a tier is judged like any other: "
    "breached past its deadline unless closed by it (cancelled), pending until then; "
    "uncovered_breached counts those breached (they are in breached too). Per team, a team "
    "an operator added by hand after its tier's deadline is timed and judged from its own "
    "alert, against its tier's target (judged_from_alert counts them). Measurements "
    "without an arrival are counted and listed as exclusions."
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


async def filter_names(session: AsyncSession, filters: Filters) -> dict[str, str]:
    """The names of the team and village the filters name, by filter. Each must exist (a
    retired team does): an unknown id is a mistake to point out, not a period without
    incidents."""
    names: dict[str, str] = {}
    if filters.team_id is not None:
        team = (await teams.teams_by_id(session, [filters.team_id])).get(filters.team_id)
        if team is None:
            raise NotFound(f"team {filters.team_id!r} does not exist", field="team_id")
        names["team_id"] = team.name
    village_id = filters.village_id
    if village_id is not None:
        village = (await villages.villages_by_id(session, [village_id])).get(village_id)
        if village is None:
            raise NotFound(f"village {village_id!r} does not exist", field="village_id")
        names["village_id"] = village.name
    return names


async def check_filters(session: AsyncSession, filters: Filters) -> None:
    await filter_names(session, filters)


def local_period(
    start: datetime | None, end: datetime | None, now: datetime
) -> tuple[datetime, datetime]:
    """[start, end) from aware bounds (``schemas.LocalOrAware`` reads a naive one as Asia/
    Shanghai); default: the last 30 local days."""
    today = now.astimezone(DISPLAY_TZ).replace(hour=0, minute=0, second=0, microsecond=0)
    end_at = end if end is not None else today + timedelta(days=1)
    if start is not None:
        start_at = start
    else:
        try:
            start_at = end_at - timedelta(days=30)
            start_at.astimezone(UTC)
        except OverflowError:
            raise InvalidInput(
                "to: 30 days before it fall before the year 1; give from as well", field="to"
            ) from None
    if start_at >= end_at:
        raise empty_period(start_at, end_at, default_end=end is None)
    return start_at, end_at


# ---------------------------------------------------------------- SQL building blocks

# Memory for the report's sorts and hash joins, for its own transaction only. With the server
# default (4 MB) a year of a town's dispatches spills to temporary files several times over;
# the report holds at most its values once (about 24 bytes each) and is asked for rarely.
WORK_MEM = "64MB"
# The p-th percentiles of a series as PostgreSQL's percentile_disc fractions, and the maximum.
FRACTIONS = (*(p / 100 for p in PERCENTILES), 1.0)


class _Sql:
    """The few expressions SQLite and PostgreSQL spell differently."""

    def __init__(self, dialect: str, *, ordered_sets: bool | None = None) -> None:
        self.pg = dialect == "postgresql"
        # PostgreSQL picks ranks inside its percentile_disc aggregate, which sorts each group's
        # values alone; SQLite has no ordered-set aggregates and ranks rows with window
        # functions. Both give the same figures (the tests run both on PostgreSQL).
        self.ordered_sets = self.pg if ordered_sets is None else ordered_sets
        offset = DISPLAY_TZ.utcoffset(datetime(2000, 1, 1))
        assert offset is not None
        # SQLite has no time zones; Asia/Shanghai has kept UTC+8 without DST since 1991.
        self.shift = f"{int(offset.total_seconds() // 60):+d} minutes"

    def duration_us(self, later: Any, earlier: Any) -> ColumnElement[int]:
        """``later - earlier`` in microseconds as an exact integer; null if either is null."""
        if self.pg:
            # date_part gives float8 seconds, within 0.5 µs of the exact difference for any
            # span below decades, so the cast (which rounds) recovers the exact integer.
            # EXTRACT would give an exact numeric, at several times the cost per row.
            return cast(func.date_part("epoch", later - earlier) * 1_000_000, BigInteger)
        return self._epoch_us(later) - self._epoch_us(earlier)

    def _epoch_us(self, column: Any) -> ColumnElement[int]:
        # SQLite keeps 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC); julianday() would round to ~20 µs.
        seconds = cast(func.strftime("%s", func.substr(column, 1, 19)), Integer)
        return seconds * 1_000_000 + cast(func.substr(column, 21, 6), Integer)

    def _whole_seconds(self, column: Any) -> ColumnElement[str]:
        # SQLite's date functions round a time with a fraction to the millisecond, so
        # 23:59:59.9995 would become the next day: the calendar reads the whole seconds only.
        return func.substr(column, 1, 19)

    def local_day(self, column: Any) -> ColumnElement[str]:
        if self.pg:
            return func.to_char(func.timezone(DISPLAY_TZ.key, column), "YYYY-MM-DD")
        return func.date(self._whole_seconds(column), self.shift)

    def local_week(self, column: Any) -> ColumnElement[str]:
        """The Monday that starts the local ISO week."""
        if self.pg:
            return func.to_char(
                func.date_trunc("week", func.timezone(DISPLAY_TZ.key, column)), "YYYY-MM-DD"
            )
        return func.date(self._whole_seconds(column), self.shift, "weekday 0", "-6 days")

    def local_month(self, column: Any) -> ColumnElement[str]:
        if self.pg:
            return func.to_char(func.timezone(DISPLAY_TZ.key, column), "YYYY-MM")
        return func.strftime("%Y-%m", self._whole_seconds(column), self.shift)


def _key(sql: _Sql, by: GroupBy, team_column: Any, reported_at: Any) -> Any:
    if by == GroupBy.TIER:
        return literal("")
    if by == GroupBy.TEAM:
        return team_column
    if by == GroupBy.VILLAGE:
        return func.coalesce(Incident.village_id, "")
    if by == GroupBy.DAY:
        return sql.local_day(reported_at)
    if by == GroupBy.WEEK:
        return sql.local_week(reported_at)
    return sql.local_month(reported_at)


def _reads_incident(filters: Filters, by: GroupBy) -> bool:
    """Whether rows must be joined to their incident: for its village or category only, as
    tiers and dispatches keep their incident's report and close times."""
    return by == GroupBy.VILLAGE or filters.village_id is not None or filters.category is not None


def _incident_filters(
    filters: Filters, reported_at: Any = Incident.reported_at
) -> list[ColumnElement[bool]]:
    """The filters' conditions; the period on ``reported_at`` (the incident's report time or a
    row's copy of it)."""
    conditions: list[ColumnElement[bool]] = [
        reported_at >= filters.start,
        reported_at < filters.end,
    ]
    if filters.village_id is not None:
        conditions.append(Incident.village_id == filters.village_id)
    if filters.category is not None:
        conditions.append(Incident.category == filters.category.value)
    return conditions


def _outcome(arrived_at: Any, now: datetime) -> ColumnElement[str]:
    """Met, breached, cancelled or pending, judged from the timestamps themselves.

    The stored tier status is what was shown live; the timer may set it at the very instant of
    the deadline, a hair before an arrival stamped with that same instant. The report goes by
    the record: an arrival at or before the deadline meets it. With none, a tier is pending up
    to and at its deadline's instant (a team there then still meets it) and breached only
    beyond it, as the timer breaches it. Times are compared as stored (timestamptz on
    PostgreSQL, fixed-width UTC text on SQLite), which is exact on both.
    """
    return case(
        (arrived_at <= ChainTier.deadline, TierStatus.MET.value),
        (arrived_at.is_not(None), TierStatus.BREACHED.value),
        (ChainTier.status == TierStatus.CANCELLED.value, TierStatus.CANCELLED.value),
        (ChainTier.incident_closed_at <= ChainTier.deadline, TierStatus.CANCELLED.value),
        (ChainTier.deadline >= now, TierStatus.PENDING.value),
        else_=TierStatus.BREACHED.value,
    )


def _from_alert() -> ColumnElement[bool]:
    """Whether a dispatch is judged per team by its own alert: an operator added it by hand
    (人工加派, ring 2) after its tier's deadline, which it could never have met. The tier's
    judgement leaves such a team out (it does not cover the tier); per team it is judged by
    its tier's target counted from its own ``alerted_at``."""
    return and_(Dispatch.ring == incidents.RING_OPERATOR, Dispatch.alerted_at > ChainTier.deadline)


def _outcome_from_alert(sql: _Sql, now: datetime) -> ColumnElement[str]:
    """_outcome's rule for a dispatch judged by its own alert (_from_alert): its deadline is
    its tier's target after its ``alerted_at``, compared as exact microseconds. The tier's
    status says nothing of it (the tier was judged before the team was sent)."""
    target_us = ChainTier.target_s * 1_000_000
    alerted = Dispatch.alerted_at
    arrived = Dispatch.arrived_at
    at_now = literal(now, Dispatch.alerted_at.type)
    return case(
        (
            arrived.is_not(None),
            case(
                (sql.duration_us(arrived, alerted) <= target_us, TierStatus.MET.value),
                else_=TierStatus.BREACHED.value,
            ),
        ),
        (
            sql.duration_us(ChainTier.incident_closed_at, alerted) <= target_us,
            TierStatus.CANCELLED.value,
        ),
        (sql.duration_us(at_now, alerted) <= target_us, TierStatus.PENDING.value),
        else_=TierStatus.BREACHED.value,
    )


def _series(sql: _Sql, name: str, later: Any, earlier: Any) -> list[Any]:
    """A series' value in µs, and whether the row has one (counted without computing it)."""
    return [
        sql.duration_us(later, earlier).label(name),
        and_(later.is_not(None), earlier.is_not(None)).label(f"has_{name}"),
    ]


def _segment(sql: _Sql, name: str, later: Any, earlier: Any, implied: Any) -> list[Any]:
    """A segment's value in µs where both of its ends were observed, and null where one was
    ``implied`` by a later hop (a leader's arrival without an accept first): such a row is
    counted apart (``implied_``), never measured."""
    recorded = and_(later.is_not(None), earlier.is_not(None))
    observed = and_(recorded, not_(implied))
    return [
        case((observed, sql.duration_us(later, earlier))).label(name),
        observed.label(f"has_{name}"),
        and_(recorded, implied).label(f"implied_{name}"),
    ]


def _hops(sql: _Sql) -> list[Any]:
    delivered, accepted = Dispatch.delivered_implied, Dispatch.accepted_implied
    return [
        *_segment(sql, "a2d", Dispatch.delivered_at, Dispatch.alerted_at, delivered),
        *_segment(
            sql, "d2acc", Dispatch.accepted_at, Dispatch.delivered_at, or_(delivered, accepted)
        ),
        *_segment(sql, "acc2arr", Dispatch.arrived_at, Dispatch.accepted_at, accepted),
    ]


def _tier_rows(
    sql: _Sql, filters: Filters, by: GroupBy, now: datetime, *, missing: bool = False
) -> Select[Any]:
    """One row per incident tier: its first arrival against the tier's deadline."""
    reported_at = ChainTier.incident_reported_at
    query = select(
        _key(sql, by, literal(""), reported_at).label("g"),
        ChainTier.tier.label("tier"),
        ChainTier.incident_id.label("incident_id"),
        null().label("team_id"),
        reported_at.label("reported_at"),
        _outcome(ChainTier.arrived_at, now).label("outcome"),
        ChainTier.covered.label("covered"),
        ChainTier.target_s.label("target_s"),
        *_series(sql, "arrival", ChainTier.arrived_at, reported_at),
        literal(False).label("from_alert"),
    )
    if _reads_incident(filters, by):
        query = query.join(Incident, Incident.id == ChainTier.incident_id)
    query = query.where(*_incident_filters(filters, reported_at))
    if filters.tier is not None:
        query = query.where(ChainTier.tier == filters.tier)
    if missing:
        query = query.where(ChainTier.arrived_at.is_(None))
    return query


def _dispatch_rows(
    sql: _Sql,
    filters: Filters,
    by: GroupBy,
    now: datetime,
    *,
    judged: bool,
    missing: bool = False,
) -> Select[Any]:
    """One row per dispatch with its three hops; ``judged`` adds its own arrival and outcome."""
    reported_at = Dispatch.incident_reported_at
    columns = [
        _key(sql, by, Dispatch.team_id, reported_at).label("g"),
        Dispatch.tier.label("tier"),
        *_hops(sql),
    ]
    if judged:
        # A team added by hand after its tier's deadline is timed and judged from its own
        # alert (_from_alert); every other from the report, against the tier's deadline.
        from_alert = _from_alert()
        columns += [
            Dispatch.incident_id.label("incident_id"),
            Dispatch.team_id.label("team_id"),
            reported_at.label("reported_at"),
            case(
                (from_alert, _outcome_from_alert(sql, now)),
                else_=_outcome(Dispatch.arrived_at, now),
            ).label("outcome"),
            literal(True).label("covered"),
            ChainTier.target_s.label("target_s"),
            *_series(
                sql,
                "arrival",
                Dispatch.arrived_at,
                case((from_alert, Dispatch.alerted_at), else_=reported_at),
            ),
            from_alert.label("from_alert"),
        ]
    query = select(*columns)
    if _reads_incident(filters, by):
        query = query.join(Incident, Incident.id == Dispatch.incident_id)
    query = query.where(*_incident_filters(filters, reported_at))
    if judged:
        query = query.join(
            ChainTier,
            and_(ChainTier.incident_id == Dispatch.incident_id, ChainTier.tier == Dispatch.tier),
        )
    if filters.tier is not None:
        query = query.where(Dispatch.tier == filters.tier)
    if filters.team_id is not None:
        query = query.where(Dispatch.team_id == filters.team_id)
    if missing:
        query = query.where(Dispatch.arrived_at.is_(None))
    return query


# ---------------------------------------------------------------- figures per group and tier


@dataclass
class _Cell:
    incidents: int = 0
    with_arrival: int = 0
    met: int = 0
    breached: int = 0
    cancelled: int = 0
    pending: int = 0
    uncovered: int = 0
    uncovered_breached: int = 0
    from_alert: int = 0
    # Whether any measurement counted here was judged by a target other than today's (then
    # the stored ones are looked up), and the targets applied (chain_tiers.target_s).
    off_target: bool = False
    targets: tuple[float, ...] = ()


@dataclass(frozen=True)
class _Source:
    """Measurement rows, whether they carry outcomes to count, and which series to rank."""

    rows: Select[Any]
    counted: bool
    metrics: tuple[str, ...]


Found = dict[tuple[str, int], tuple[_Cell | None, dict[str, Stat]]]


def _sources(sql: _Sql, filters: Filters, by: GroupBy, unit: Unit, now: datetime) -> list[_Source]:
    if unit == Unit.INCIDENT_TIER:
        return [
            _Source(_tier_rows(sql, filters, by, now), True, ("arrival",)),
            _Source(_dispatch_rows(sql, filters, by, now, judged=False), False, METRICS[1:]),
        ]
    # Per team every figure is the team's own, so one pass over its dispatches holds them all.
    return [_Source(_dispatch_rows(sql, filters, by, now, judged=True), True, METRICS)]


# The _Cell counts, in the order of _aggregates' columns.
# Pending is not counted: it is what the other three outcomes leave (every row has one), and
# each outcome counted evaluates the outcome's CASE again for every row.
COUNTED_OUTCOMES = (TierStatus.MET, TierStatus.BREACHED, TierStatus.CANCELLED)
COUNTS = (
    "incidents",
    "with_arrival",
    *(outcome.value for outcome in COUNTED_OUTCOMES),
    "uncovered",
    "uncovered_breached",
    "from_alert",
)
COUNTED = len(COUNTS)


def _off_target(m: Any, source: _Source, targets: Sequence[float]) -> Any:
    """How many counted rows were judged by a target other than today's, in one aggregate
    over the rows. Nearly always none; only then are the stored targets looked up (a second
    pass), which spares every report two aggregates (min and max) per tier and row."""
    if not source.counted:
        return cast(null(), BigInteger)
    today = case({t: target for t, target in enumerate(targets, 1)}, value=m.c.tier)
    return func.count().filter(m.c.target_s != today)


def _aggregates(
    m: Any, only: ColumnElement[bool] | None, source: _Source, ranked: bool, tag: str
) -> list[Any]:
    """One block of columns, the same layout for every source: the seven counts, then per
    series its n, rows left out as implied (segments) and (``ranked``) P50, P90 and max by
    percentile_disc; typed nulls for what the source does not hold. Labels start with
    ``tag``, unique in the statement, so that each column of a result row is found by its own
    name."""

    def where(aggregate: Any, condition: ColumnElement[bool] | None = None) -> Any:
        conditions = [c for c in (only, condition) if c is not None]
        return aggregate.filter(and_(*conditions)) if conditions else aggregate

    columns: list[Any] = [cast(null(), BigInteger) for _ in range(COUNTED)]
    if source.counted:
        uncovered = m.c.covered.is_(False)
        breached = m.c.outcome == TierStatus.BREACHED.value
        columns = [where(func.count()), where(func.count(), m.c.has_arrival)]
        columns += [
            where(func.count(), m.c.outcome == outcome.value) for outcome in COUNTED_OUTCOMES
        ]
        columns.append(where(func.count(), uncovered))
        columns.append(where(func.count(), and_(uncovered, breached)))
        columns.append(where(func.count(), m.c.from_alert))
    for metric in METRICS:
        held = metric in source.metrics
        columns.append(
            where(func.count(), m.c[f"has_{metric}"]) if held else cast(null(), BigInteger)
        )
        segment = held and metric in SEGMENTS
        columns.append(
            where(func.count(), m.c[f"implied_{metric}"]) if segment else cast(null(), BigInteger)
        )
        if ranked and held:
            picked = func.percentile_disc(postgresql.array(FRACTIONS)).within_group(m.c[metric])
            columns.append(type_coerce(where(picked), postgresql.ARRAY(BigInteger)))
        elif ranked:
            columns.append(cast(null(), postgresql.ARRAY(BigInteger)))
    return [c.label(f"{tag}_{n}") for n, c in enumerate(columns)]


def _block_width(ranked: bool) -> int:
    return COUNTED + len(METRICS) * (3 if ranked else 2)


def _read(
    values: Sequence[Any], ranked: bool, off_target: bool
) -> tuple[_Cell | None, dict[str, Stat], int]:
    """One block of _aggregates' columns back into a cell and stats; and how many rows it had."""
    cell = None
    if values[0] is not None:
        cell = _Cell(off_target=off_target)
        for name, value in zip(COUNTS, values[:COUNTED], strict=True):
            setattr(cell, name, int(value or 0))
        cell.pending = cell.incidents - cell.met - cell.breached - cell.cancelled
    stats: dict[str, Stat] = {}
    rows = cell.incidents if cell else 0
    at = COUNTED
    for metric in METRICS:
        n, implied = values[at], values[at + 1]
        picked = values[at + 2] if ranked else None
        at += 3 if ranked else 2
        if n is not None:
            left_out = None if implied is None else int(implied)
            rows = max(rows, int(n), left_out or 0)
            stats[metric] = _stat_of(int(n), picked, left_out)
    return cell, stats, rows


def _stat_of(n: int, picked: Sequence[int] | None, implied: int | None = None) -> Stat:
    """A series' figures; a segment's (``implied`` given) with the rows it left out."""
    p50 = p90 = most = None
    if n and picked:
        p50, p90, most = (int(v) / 1e6 for v in picked)
    if implied is None:
        return Stat(n=n, p50_s=p50, p90_s=p90, max_s=most)
    return SegmentStat(n=n, p50_s=p50, p90_s=p90, max_s=most, implied=implied)


async def _ordered_set_figures(
    session: AsyncSession,
    plans: dict[GroupBy, list[_Source]],
    tiers: Sequence[int],
    targets: Sequence[float],
) -> dict[GroupBy, Found]:
    """Every count and percentile of the groupings' groups and tiers, in one statement.

    Each source is one branch of a UNION ALL, which PostgreSQL hands to parallel workers
    (Parallel Append): the aggregations run side by side. Every branch gives the same
    columns: its part number, group key, tier, rows off today's targets and one block per tier.
    Grouped by key, the tier
    is a column and one block is used; by tier alone, FILTER per tier fills a block each,
    which spares sorting every row by tier first.
    """
    width = _block_width(True)
    parts: list[tuple[GroupBy, _Source]] = []
    branches = []
    for by, sources in plans.items():
        for source in sources:
            part = len(parts)
            parts.append((by, source))
            # Flattened into the aggregate (an OFFSET 0 fence would rule out parallel workers),
            # a duration is computed by each aggregate that reads it: only percentile_disc
            # does; the counts read the has_ flags.
            m = source.rows.subquery(f"m{part}")
            off = _off_target(m, source, targets).label("off")
            if by != GroupBy.TIER:
                head = [literal(part).label("part"), m.c.g, m.c.tier, off]
                # Typed nulls in the other tiers' places.
                nothing = _Source(source.rows, False, ())
                blocks = _aggregates(m, None, source, True, "b0")
                for n in range(1, len(tiers)):
                    blocks += _aggregates(m, None, nothing, True, f"b{n}")
                branches.append(select(*head, *blocks).group_by(m.c.g, m.c.tier))
                continue
            head = [
                literal(part).label("part"),
                literal("").label("g"),
                literal(0).label("tier"),
                off,
            ]
            blocks = [
                c
                for n, t in enumerate(tiers)
                for c in _aggregates(m, m.c.tier == t, source, True, f"b{n}")
            ]
            branches.append(select(*head, *blocks))
    query = branches[0] if len(branches) == 1 else union_all(*branches)
    found: dict[GroupBy, Found] = {by: {} for by in plans}
    for row in (await session.execute(query)).all():
        by, _ = parts[int(row[0])]
        off = bool(row[3])
        if by != GroupBy.TIER:
            cell, stats, _ = _read(row[4 : 4 + width], True, off)
            _merge(found[by], (str(row[1]), int(row[2])), cell, stats)
            continue
        for n, t in enumerate(tiers):
            cell, stats, rows = _read(row[4 + n * width : 4 + (n + 1) * width], True, off)
            if rows:
                _merge(found[by], ("", t), cell, stats)
    return found


def _merge(found: Found, key: tuple[str, int], cell: _Cell | None, stats: dict[str, Stat]) -> None:
    """What one source found for a group and tier, added to what the others found."""
    had, series = found.get(key, (None, {}))
    found[key] = (cell or had, {**series, **stats})


async def _window_figures(
    session: AsyncSession, source: _Source, targets: Sequence[float]
) -> Found:
    """Counts with GROUP BY, then the values at the needed ranks by row_number()."""
    m = source.rows.subquery("m")
    found: Found = {}
    off = _off_target(m, source, targets)
    aggregates = _aggregates(m, None, source, False, "b0")
    query = select(m.c.g, m.c.tier, off, *aggregates).group_by(m.c.g, m.c.tier)
    for row in (await session.execute(query)).all():
        cell, stats, _ = _read(row[3:], False, bool(row[2]))
        found[(str(row[0]), int(row[1]))] = (cell, stats)
    window = (m.c.g, m.c.tier)
    columns: list[Any] = [m.c.g, m.c.tier]
    for metric in source.metrics:
        value = m.c[metric]
        columns += [
            value,
            func.row_number()
            .over(partition_by=window, order_by=value.asc().nulls_last())
            .label(f"r_{metric}"),
            func.count(value).over(partition_by=window).label(f"n_{metric}"),
        ]
    ranked = select(*columns).subquery("r")
    wanted = []
    for metric in source.metrics:
        rn, count = ranked.c[f"r_{metric}"], ranked.c[f"n_{metric}"]
        wanted += [rn == (p * count + 99) // 100 for p in PERCENTILES] + [rn == count]
    picked: dict[tuple[str, str, int], dict[int, int]] = {}
    for hit in (await session.execute(select(ranked).where(or_(*wanted)))).mappings():
        for metric in source.metrics:
            r, n, v = hit[f"r_{metric}"], hit[f"n_{metric}"], hit[metric]
            if v is not None and r in {rank(p, n) for p in PERCENTILES} | {n}:
                picked.setdefault((metric, str(hit["g"]), int(hit["tier"])), {})[int(r)] = int(v)
    for (g, tier), (_, stats) in found.items():
        for metric in source.metrics:
            size = stats[metric].n
            at_rank = picked.get((metric, g, tier), {})
            if size:
                values = [at_rank[rank(p, size)] for p in PERCENTILES] + [at_rank[size]]
                implied = getattr(stats[metric], "implied", None)
                stats[metric] = _stat_of(size, values, implied)
    return found


def _figures(tier: int, cell: _Cell, stats: dict[str, Stat]) -> TierFigures:
    judged = cell.met + cell.breached
    empty = Stat(n=0, p50_s=None, p90_s=None, max_s=None)
    none = SegmentStat(n=0, p50_s=None, p90_s=None, max_s=None, implied=0)

    def segment(name: str) -> SegmentStat:
        found = stats.get(name, none)
        assert isinstance(found, SegmentStat)
        return found

    applied = cell.targets
    return TierFigures(
        tier=tier,
        target_s=applied[0] if len(applied) == 1 else None,
        targets_s=list(applied),
        incidents=cell.incidents,
        with_arrival=cell.with_arrival,
        without_arrival=cell.incidents - cell.with_arrival,
        met=cell.met,
        breached=cell.breached,
        cancelled=cell.cancelled,
        pending=cell.pending,
        uncovered=cell.uncovered,
        uncovered_breached=cell.uncovered_breached,
        judged_from_alert=cell.from_alert,
        share_within_target=cell.met / judged if judged else None,
        time_to_arrival=stats.get("arrival", empty),
        alert_to_delivery=segment("a2d"),
        delivery_to_acceptance=segment("d2acc"),
        acceptance_to_arrival=segment("acc2arr"),
    )


def unit_for(by: GroupBy, filters: Filters) -> Unit:
    """Per team (grouped or filtered by team) each team's own arrival counts; else the tier's."""
    return Unit.DISPATCH if by == GroupBy.TEAM or filters.team_id else Unit.INCIDENT_TIER


async def groupings(
    session: AsyncSession,
    filters: Filters,
    wanted: Sequence[GroupBy],
    now: datetime,
    *,
    targets: Sequence[float],
    ordered_sets: bool | None = None,
) -> dict[GroupBy, Grouping]:
    """The groupings' figures; ``targets`` are today's (DISPATCH_CHAIN_TARGETS), which the
    measurements were nearly always judged by: only where some were not are the stored
    targets looked up."""
    sql = _Sql(dialect_name(session), ordered_sets=ordered_sets)
    tiers = [filters.tier] if filters.tier is not None else list(TIERS)
    units = {by: unit_for(by, filters) for by in wanted}
    plans = {by: _sources(sql, filters, by, units[by], now) for by in wanted}
    if sql.ordered_sets:
        # A statement per grouping: its sources side by side. All groupings in one statement
        # would run serially whenever the planner misjudges how many days or weeks there are
        # (it takes every row for a group), which costs more than it saves.
        found = {}
        for by, sources in plans.items():
            found.update(await _ordered_set_figures(session, {by: sources}, tiers, targets))
    else:
        found = {by: {} for by in wanted}
        for by, sources in plans.items():
            for source in sources:
                for key, (cell, series) in (
                    await _window_figures(session, source, targets)
                ).items():
                    _merge(found[by], key, cell, series)
    for by, sources in plans.items():
        await _list_stored_targets(session, sources, found[by], targets)
    return {by: await _grouping(session, by, units[by], found[by]) for by in wanted}


async def _list_stored_targets(
    session: AsyncSession, sources: Sequence[_Source], found: Found, targets: Sequence[float]
) -> None:
    """Every target applied to each cell: today's, unless some measurement of the statement
    was judged by another (the targets were changed since); only then, one more pass over the
    counted rows lists the stored ones."""
    mixed: set[tuple[str, int]] = set()
    for key, (cell, _) in found.items():
        if cell is not None and cell.off_target:
            mixed.add(key)
        elif cell is not None:
            cell.targets = (float(targets[key[1] - 1]),)
    if not mixed:
        return
    counted = next(source for source in sources if source.counted)
    m = counted.rows.subquery("m")
    applied: dict[tuple[str, int], set[float]] = {}
    for g, tier, target in await session.execute(select(m.c.g, m.c.tier, m.c.target_s).distinct()):
        key = (str(g), int(tier))
        if key in mixed:
            applied.setdefault(key, set()).add(float(target))
    for key, stored in applied.items():
        cell = found[key][0]
        assert cell is not None
        cell.targets = tuple(sorted(stored))


async def _grouping(session: AsyncSession, by: GroupBy, unit: Unit, found: Found) -> Grouping:
    cells = {k: cell for k, (cell, _) in found.items() if cell is not None}
    stats = {k: series for k, (_, series) in found.items()}
    keys = sorted({k for k, _ in cells})
    parts: dict[str, TeamLabel | None] = {}
    if by == GroupBy.TEAM:
        parts = await team_label_parts(session, keys)
        labels = {k: team_label_text(k, p) for k, p in parts.items()}
    else:
        labels = await _labels(session, by, keys)
    groups = []
    for key in labels:
        tiers_here = sorted(t for k, t in cells if k == key)
        groups.append(
            Group(
                key=key,
                label=labels[key],
                team=parts.get(key),
                tiers=[_figures(t, cells[(key, t)], stats.get((key, t), {})) for t in tiers_here],
            )
        )
    if by == GroupBy.TIER:
        groups = [
            Group(key=str(f.tier), label=TIER_LABELS[f.tier], tiers=[f])
            for g in groups
            for f in g.tiers
        ]
    return Grouping(by=by, unit=unit, groups=groups)


# Settings for the analytic queries' transaction (set_config with is_local, as SET LOCAL).
TUNING = {
    "work_mem": WORK_MEM,
    # PostgreSQL compiles a statement's expressions (JIT) from an estimated cost of 100000,
    # which a report over 100k incidents passes: compiling its dozens of aggregates there cost
    # more than it saved. From about 500k incidents on it saves a tenth (1M: 2.65 s against
    # 2.90 s without). Where the server has JIT off, it stays off.
    "jit_above_cost": "500000",
    # The server's sessions price a random read like a sequential one (dispatch.db), which
    # suits the alert path's few rows; these passes read most of their tables, and with that
    # price a report of 100k incidents took 8 % longer than with PostgreSQL's default.
    "random_page_cost": "4",
    # The driver prepares every statement on its connection, and after five runs PostgreSQL
    # may keep one generic plan for all periods, priced for a guessed 0.5 % of the incidents:
    # over a million incidents that plan's nested loops took 9 s where the period's own took
    # 3 s. Planning a report for its own period costs a millisecond.
    "plan_cache_mode": "force_custom_plan",
}


async def _tune(session: AsyncSession) -> None:
    """One moment for all of the report's statements (they are several, and an arrival may
    be recorded between two: a rank counted by one would then be missing from the next);
    and settings for this transaction's analytic queries, in one round trip (PostgreSQL)."""
    await hold_snapshot(session)
    if dialect_name(session) != "postgresql":
        return
    await session.execute(
        select(*(func.set_config(name, value, True) for name, value in TUNING.items()))
    )


async def _labels(session: AsyncSession, by: GroupBy, keys: Sequence[str]) -> dict[str, str]:
    """Each group's label but a team's (team_label_parts), in the order of the groups: by
    key."""
    if by == GroupBy.VILLAGE:
        found_v = await villages.villages_by_id(session, [k for k in keys if k])
        return {k: found_v[k].name if k in found_v else NO_VILLAGE for k in keys}
    if by == GroupBy.WEEK:
        return {k: _week_label(k) for k in keys}
    return {k: k for k in keys}


RETIRED = "（已撤销）"


async def team_labels(session: AsyncSession, team_ids: Iterable[str]) -> dict[str, str]:
    """How the report names each team (team_label_parts), in its order; a team not found by
    its id."""
    parts = await team_label_parts(session, team_ids)
    return {k: team_label_text(k, p) for k, p in parts.items()}


def team_label_text(team_id: str, parts: TeamLabel | None) -> str:
    """A team's label in Chinese, as the exports write it; a team not found, its id."""
    if parts is None:
        return team_id
    if parts.retired_on is None:
        return parts.name
    if parts.told_apart_by is None:
        return parts.name + RETIRED
    day = parts.retired_on.isoformat()
    if parts.told_apart_by == "day":
        return f"{parts.name}（{day}撤销）"
    return f"{parts.name}（{day}撤销，编号{team_id}）"


async def team_label_parts(
    session: AsyncSession, team_ids: Iterable[str]
) -> dict[str, TeamLabel | None]:
    """How the report names each team: by its name, a retired team's marked （已撤销）, as the
    report page marks it among the filters. A retired team's name may be taken again, so a
    retired team whose name another retired team had too is told apart by the day it was
    retired (甲联防队（2026-03-01撤销）), and by its id if that day was theirs too. A label
    depends on the team and its namesakes only, so it is the same in every part of the
    report. In parts (team_label_text says them in Chinese), None for a team not found. In
    order: by name, the team in service first, then the retired ones as they were retired."""
    wanted = sorted(set(team_ids))
    found = await teams.teams_by_id(session, wanted)
    names = sorted({t.name for t in found.values()})
    namesakes = []
    if names:
        namesakes = list(await session.scalars(select(Team).where(Team.name.in_(names))))
    retired = [t for t in namesakes if t.retired_at is not None]
    parts = {
        t.id: TeamLabel(
            name=t.name,
            retired_on=t.retired_at.astimezone(DISPLAY_TZ).date() if t.retired_at else None,
            told_apart_by=None,
        )
        for t in namesakes
    }
    for told_apart_by in ("day", "id"):
        labels = {k: team_label_text(k, p) for k, p in parts.items()}
        for clash in _clashes(labels, retired):
            for team in clash:
                parts[team.id] = parts[team.id].model_copy(update={"told_apart_by": told_apart_by})

    def order(team_id: str) -> tuple[Any, ...]:
        team = found.get(team_id)
        if team is None:  # a dispatch keeps its team, so never; its id then
            return (1, team_id)
        retired = team.retired_at.timestamp() if team.retired_at else None
        return (0, team.name, retired is not None, retired or 0.0, team.id)

    return {k: parts[k] if k in found else None for k in sorted(wanted, key=order)}


def _clashes(labels: dict[str, str], retired: Sequence[Team]) -> list[list[Team]]:
    """The retired teams whose labels another team has too, label by label."""
    holders: dict[str, int] = {}
    for label in labels.values():
        holders[label] = holders.get(label, 0) + 1
    found: dict[str, list[Team]] = {}
    for team in retired:
        if holders[labels[team.id]] > 1:
            found.setdefault(labels[team.id], []).append(team)
    return list(found.values())


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
    if unit == Unit.INCIDENT_TIER:
        missing = _tier_rows(sql, filters, GroupBy.TIER, now, missing=True)
    else:
        missing = _dispatch_rows(sql, filters, GroupBy.TIER, now, judged=True, missing=True)
    m = missing.subquery("m")
    listed = (
        select(
            m.c.incident_id,
            m.c.tier,
            m.c.team_id,
            m.c.reported_at,
            m.c.outcome,
            m.c.covered,
            m.c.from_alert,
        )
        .order_by(m.c.reported_at, m.c.incident_id, m.c.tier, m.c.team_id)
        .limit(limit)
        .subquery("listed")
    )
    # What the list is read by: the incident's category and place, and for an incident's tier
    # (no team of its own) the teams alerted in it, a row each, as alerted and nearest first,
    # joined to the listed rows only; of each team (a dispatch's own too) how far its alert
    # got: never delivered to a phone, delivered and not accepted, or accepted.
    query = (
        select(
            *listed.c,
            Incident.category,
            Incident.lon,
            Incident.lat,
            Incident.village_id,
            Village.name,
            Dispatch.team_id,
            Dispatch.delivered_at,
            Dispatch.accepted_at,
        )
        .join(Incident, Incident.id == listed.c.incident_id)
        .outerjoin(Village, Village.id == Incident.village_id)
        .outerjoin(
            Dispatch,
            and_(
                Dispatch.incident_id == listed.c.incident_id,
                Dispatch.tier == listed.c.tier,
                or_(listed.c.team_id.is_(None), Dispatch.team_id == listed.c.team_id),
            ),
        )
        .order_by(
            listed.c.reported_at,
            listed.c.incident_id,
            listed.c.tier,
            listed.c.team_id,
            Dispatch.alerted_at,
            Dispatch.distance_m,
            Dispatch.id,
        )
    )
    rows = (await session.execute(query)).all()
    team_ids = sorted({r[2] for r in rows if r[2]} | {r[12] for r in rows if r[12]})
    names = {t.id: t.name for t in (await teams.teams_by_id(session, team_ids)).values()}
    parts = await team_label_parts(session, team_ids)
    # Up to a million (a download of the list): made off the event loop, which 60k of them held
    # for half a second while a leader's tap waited. A loop of Python lets go of the GIL.
    return await asyncio.to_thread(_exclusions_of, rows, names, parts)


def _exclusions_of(
    rows: Sequence[Any], names: dict[str, str], parts: dict[str, TeamLabel | None]
) -> list[Exclusion]:
    found: list[Exclusion] = []
    last: tuple[Any, ...] | None = None
    for row in rows:
        incident_id, tier, team_id, reported_at, outcome, covered, from_alert = row[:7]
        category, lon, lat, village_id, village_name, alerted, delivered_at, accepted_at = row[7:]
        hops = (delivered_at, accepted_at)
        if (incident_id, tier, team_id) == last:
            found[-1].alerted_teams.append(_alerted_team(alerted, names, parts, *hops))
            continue
        last = (incident_id, tier, team_id)
        reason = REASONS.get(outcome, outcome)
        if not covered:
            reason = "no team of this tier covers the place (" + reason + ")"
        own = team_id or alerted
        found.append(
            Exclusion(
                incident_id=incident_id,
                tier=tier,
                team_id=team_id,
                team_name=names.get(team_id) if team_id else None,
                team_label=team_label_text(team_id, parts.get(team_id)) if team_id else None,
                team=parts.get(team_id) if team_id else None,
                alerted_teams=[_alerted_team(own, names, parts, *hops)] if own else [],
                reported_at=_as_datetime(reported_at),
                category=category,
                lon=lon,
                lat=lat,
                village_id=village_id,
                village_name=village_name,
                outcome=outcome,
                covered=bool(covered),
                judged_from_alert=bool(from_alert),
                reason=reason,
            )
        )
    return found


def _alerted_team(
    team_id: str,
    names: dict[str, str],
    parts: dict[str, TeamLabel | None],
    delivered_at: datetime | None = None,
    accepted_at: datetime | None = None,
) -> AlertedTeam:
    # An accept with no ack before it proves delivery (its delivered_at is the accept's), but
    # either alone says how far the alert got: an exclusion has no arrival to imply them.
    reached = "accepted" if accepted_at else "delivered" if delivered_at else "not_delivered"
    return AlertedTeam(
        team_id=team_id,
        team_name=names.get(team_id, team_id),
        team_label=team_label_text(team_id, parts.get(team_id)),
        team=parts.get(team_id),
        reached=reached,
        delivered_at=delivered_at,
        accepted_at=accepted_at,
    )


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
    now: datetime,
    targets: Sequence[float],
    max_exclusions: int,
    ordered_sets: bool | None = None,
) -> ReportOut:
    """The whole report. ``ordered_sets`` chooses how ranks are picked (None: the database's
    best way; False: window functions, which every database has)."""
    await _tune(session)
    wanted = list(dict.fromkeys(group_by)) or [GroupBy.TIER]
    # The totals are the grouping by tier, asked for or not.
    computed = await groupings(
        session,
        filters,
        [*wanted, *([] if GroupBy.TIER in wanted else [GroupBy.TIER])],
        now,
        targets=targets,
        ordered_sets=ordered_sets,
    )
    totals = computed[GroupBy.TIER]
    unit = totals.unit
    total_without = sum(f.without_arrival for g in totals.groups for f in g.tiers)
    listed = await exclusions(session, filters, unit, now, max_exclusions)
    names = await filter_names(session, filters)
    labels = dict(names)
    if filters.team_id is not None:
        labels["team_id"] = (await team_labels(session, [filters.team_id]))[filters.team_id]
    # Read in the figures' snapshot: the log as the report saw it.
    head = await chain.head_at(session, now)
    return ReportOut(
        generated_at=now,
        chain_head=None
        if head is None
        else ChainHeadOut(event_id=head.event_id, hash=head.hash, at=head.at),
        period_from=filters.start,
        period_to=filters.end,
        filters=filters.as_dict(),
        filter_names=names,
        filter_labels=labels,
        method=METHOD,
        totals=[f for g in totals.groups for f in g.tiers],
        groupings=[computed[by] for by in wanted],
        exclusions=listed,
        exclusions_total=total_without,
        exclusions_truncated=len(listed) < total_without,
    )


@dataclass(frozen=True)
class Histogram:
    """A tier's times to arrival counted in bins, and the targets its measurements were judged
    by (chain_tiers.target_s, ascending; none when the period has no measurement of it)."""

    tier: int
    bin_s: int
    counts: dict[int, int]
    targets: tuple[float, ...]


async def arrival_histogram(
    session: AsyncSession, filters: Filters, bin_s: int, now: datetime
) -> Histogram:
    """The filtered tier's times to arrival in ``bin_s`` second bins: bin b holds
    (b, b + 1] x bin_s. Without a tier, tier 1's, or filtered by team the team's own tier
    (team_tier), as the sheet 警情明细 shows it."""
    await _tune(session)
    sql = _Sql(dialect_name(session))
    tier = filters.tier or (await team_tier(session, filters) if filters.team_id else 1)
    chosen = Filters(
        filters.start, filters.end, tier, filters.team_id, filters.village_id, filters.category
    )
    if unit_for(GroupBy.TIER, chosen) == Unit.INCIDENT_TIER:
        rows = _tier_rows(sql, chosen, GroupBy.TIER, now)
    else:
        rows = _dispatch_rows(sql, chosen, GroupBy.TIER, now, judged=True)
    m = rows.subquery("m")
    # Bins are closed on the right, (50, 60], like the target: an arrival at exactly 60 s meets
    # it and is counted left of the 60 s line. Integer division on both databases. A row
    # without an arrival has no bin (null) but still tells the target it was judged by.
    bucket = case((m.c.arrival <= 0, 0), else_=(m.c.arrival - 1) // (bin_s * 1_000_000)).label("b")
    query = select(bucket, m.c.target_s, func.count(m.c.arrival)).group_by(bucket, m.c.target_s)
    counts: dict[int, int] = {}
    targets: set[float] = set()
    for b, target, n in (await session.execute(query)).all():
        targets.add(float(target))
        if b is not None:
            counts[int(b)] = counts.get(int(b), 0) + int(n)
    return Histogram(tier, bin_s, counts, tuple(sorted(targets)))


async def team_tier(session: AsyncSession, filters: Filters) -> int:
    """The tier the filtered team was alerted in to the filters' incidents (a team serves in
    one; the lowest, if its kind changed within the period), or with none, its tier now: a
    patrol's histogram is of tier 2, not an empty tier 1 against a 60 s line."""
    assert filters.team_id is not None
    query = select(func.min(Dispatch.tier)).where(
        Dispatch.team_id == filters.team_id,
        *_incident_filters(filters, Dispatch.incident_reported_at),
    )
    if _reads_incident(filters, GroupBy.TIER):
        query = query.join(Incident, Incident.id == Dispatch.incident_id)
    alerted = await session.scalar(query)
    if alerted is not None:
        return int(alerted)
    team = (await teams.teams_by_id(session, [filters.team_id]))[filters.team_id]
    return team.tier


# The bins drawn reach HISTOGRAM_SPAN times the highest target (at least two bins past it), and
# are at most HISTOGRAM_MAX_BINS; the arrivals later than that share one overflow bin. One
# arrival recorded ten days late made 864 000 bins of a second (36 MB of JSON, 16 s of the
# event loop), and as many rows on the workbook's histogram sheet.
HISTOGRAM_SPAN = 10
HISTOGRAM_MAX_BINS = 1000


def histogram_bins(
    counts: dict[int, int], bin_s: int, targets: Sequence[float]
) -> list[HistogramBin]:
    """Every bin from 0 to the last one used, and at least two past the highest target's, up to
    ``HISTOGRAM_SPAN`` times that target or ``HISTOGRAM_MAX_BINS`` bins, whichever is fewer;
    past them one overflow bin, from their end to the last arrival's bin's end, counts the
    rest."""
    highest = max(targets, default=0.0)
    past_target = int(highest // bin_s) + 2
    most = min(
        HISTOGRAM_MAX_BINS, max(past_target + 1, math.ceil(HISTOGRAM_SPAN * highest / bin_s))
    )
    used = max(counts, default=-1)
    last = min(max(used, past_target), most - 1)
    bins = [
        HistogramBin(from_s=b * bin_s, to_s=(b + 1) * bin_s, count=counts.get(b, 0))
        for b in range(last + 1)
    ]
    if used >= most:
        late = sum(n for b, n in counts.items() if b >= most)
        bins.append(
            HistogramBin(from_s=most * bin_s, to_s=(used + 1) * bin_s, count=late, overflow=True)
        )
    return bins


# ---------------------------------------------------------------- per incident, for the ledger


@dataclass(frozen=True, slots=True)
class DetailTier:
    outcome: str
    elapsed_s: float | None
    target_s: float
    # Filtered by team: the team was added by hand after the tier's deadline, and is timed and
    # judged from its own alert (judge_dispatch).
    from_alert: bool = False


@dataclass(frozen=True, slots=True)
class DetailRow:
    incident_id: str
    reported_at: datetime
    village: str
    category: str
    status: str
    tiers: dict[int, DetailTier]


@dataclass(frozen=True)
class Details:
    """What the sheet 警情明细 lists: how many incidents the filters keep (total), how many of
    them it lists (the oldest ``listed``), the tiers it shows, and the team whose own outcomes
    they are (None: each tier's, by its first arrival). The rows come in batches
    (detail_rows), so that a sheet of a million rows is never held whole."""

    total: int
    listed: int
    tiers: tuple[int, ...]
    team_id: str | None


# Rows of 警情明细 read at once: the incidents, then their tiers (and the team's dispatches).
DETAIL_BATCH = 2000


def _detail_conditions(filters: Filters) -> list[Any]:
    """The incidents 警情明细 may list: the filters', and filtered by team, those the team was
    alerted to (in the filtered tier)."""
    conditions = _incident_filters(filters)
    if filters.team_id is not None:
        mine = select(Dispatch.incident_id).where(Dispatch.team_id == filters.team_id)
        if filters.tier is not None:
            mine = mine.where(Dispatch.tier == filters.tier)
        conditions.append(Incident.id.in_(mine))
    return conditions


async def incident_details(session: AsyncSession, filters: Filters, limit: int) -> Details:
    """How many incidents the sheet 警情明细 lists of how many, and the tiers it shows: the
    filtered one; filtered by team, those the team was alerted in to the incidents listed (a
    team serves in one: its columns only; all three if it has none listed); else all three."""
    conditions = _detail_conditions(filters)
    total = int(
        await session.scalar(select(func.count()).select_from(Incident).where(*conditions)) or 0
    )
    if filters.tier is not None:
        shown: tuple[int, ...] = (filters.tier,)
    elif filters.team_id is not None:
        listed_ids = (
            select(Incident.id)
            .where(*conditions)
            .order_by(Incident.reported_at, Incident.id)
            .limit(limit)
        )
        alerted = await session.scalars(
            select(Dispatch.tier)
            .where(Dispatch.team_id == filters.team_id, Dispatch.incident_id.in_(listed_ids))
            .distinct()
        )
        shown = tuple(sorted(alerted)) or TIERS
    else:
        shown = TIERS
    return Details(total, min(total, limit), shown, filters.team_id)


async def detail_rows(
    session: AsyncSession,
    filters: Filters,
    details: Details,
    now: datetime,
    batch: int | None = None,
) -> AsyncIterator[list[DetailRow]]:
    """The rows of 警情明细 in batches of ``batch`` (DETAIL_BATCH): the period's incidents,
    oldest first (by report time, then id, each batch after the last one's), up to
    ``details.listed``, with the outcome, time and target of each tier the filters keep.
    Filtered by team, each with the team's own outcome and time, as the figures count them.
    Read as columns, not as records, a batch at a time: a million rows are never held at
    once."""
    size = batch or DETAIL_BATCH
    conditions = _detail_conditions(filters)
    team_id = filters.team_id
    village_names: dict[str, str] = {}
    after: tuple[datetime, str] | None = None
    left = details.listed
    while left > 0:
        query = select(
            Incident.id,
            Incident.reported_at,
            Incident.village_id,
            Incident.category,
            Incident.status,
            Incident.closed_at,
        ).where(*conditions)
        if after is not None:
            at, last = after
            query = query.where(
                or_(Incident.reported_at > at, and_(Incident.reported_at == at, Incident.id > last))
            )
        found = (
            await session.execute(
                query.order_by(Incident.reported_at, Incident.id).limit(min(size, left))
            )
        ).all()
        if not found:
            return
        left -= len(found)
        after = (found[-1].reported_at, found[-1].id)
        unknown = sorted({i.village_id for i in found if i.village_id} - village_names.keys())
        if unknown:
            for v in (await villages.villages_by_id(session, unknown)).values():
                village_names[v.id] = v.name
        ids = [i.id for i in found]
        closed = {i.id: i.closed_at for i in found}
        reported = {i.id: i.reported_at for i in found}
        tiers: dict[str, dict[int, DetailTier]] = {i: {} for i in ids}
        query_tiers = select(
            ChainTier.incident_id,
            ChainTier.tier,
            ChainTier.arrived_at,
            ChainTier.deadline,
            ChainTier.status,
            ChainTier.elapsed_s,
            ChainTier.target_s,
        ).where(ChainTier.incident_id.in_(ids))
        if filters.tier is not None:
            query_tiers = query_tiers.where(ChainTier.tier == filters.tier)
        chain = {(t.incident_id, t.tier): t for t in (await session.execute(query_tiers)).all()}
        if team_id is None:
            for t in chain.values():
                outcome = _one_outcome(
                    t.arrived_at, t.deadline, t.status, closed[t.incident_id], now
                )
                tiers[t.incident_id][t.tier] = DetailTier(outcome, t.elapsed_s, t.target_s)
        else:
            own = select(
                Dispatch.incident_id,
                Dispatch.tier,
                Dispatch.ring,
                Dispatch.alerted_at,
                Dispatch.arrived_at,
            ).where(Dispatch.incident_id.in_(ids), Dispatch.team_id == team_id)
            if filters.tier is not None:
                own = own.where(Dispatch.tier == filters.tier)
            for d in (await session.execute(own)).all():
                t = chain[(d.incident_id, d.tier)]
                judged = judge_dispatch(
                    d.ring,
                    d.alerted_at,
                    d.arrived_at,
                    reported[d.incident_id],
                    t.deadline,
                    t.target_s,
                    t.status,
                    closed[d.incident_id],
                    now,
                )
                tiers[d.incident_id][d.tier] = DetailTier(
                    judged.outcome, judged.elapsed_s, t.target_s, judged.from_alert
                )
        yield [
            DetailRow(
                incident_id=i.id,
                reported_at=i.reported_at,
                village=village_names.get(i.village_id, NO_VILLAGE) if i.village_id else NO_VILLAGE,
                category=i.category,
                status=i.status,
                tiers=tiers[i.id],
            )
            for i in found
        ]


# ---------------------------------------------------------------- one incident


# Events of the notifiers: a leader whose phone did not acknowledge the alert was texted or
# called out for (notified), or that gave up (notify_failed).
NOTIFY_EVENTS = ("notified", "notify_failed")


async def incident_report(
    session: AsyncSession, incident_id: str, now: datetime
) -> IncidentReportOut:
    # The incident, its events and its teams read in one moment: an arrival recorded between
    # two reads would show in the timeline and not in the outcomes.
    await hold_snapshot(session)
    view = await incidents.get_incident(session, incident_id)
    events = list(
        await session.scalars(
            select(IncidentEvent)
            .where(IncidentEvent.incident_id == incident_id)
            .order_by(IncidentEvent.at, IncidentEvent.id)
        )
    )
    # The leaders a notification was about are named as the actors are.
    about = {e.id: e.data.get("user_id") for e in events if e.type in NOTIFY_EVENTS}
    actor_ids = sorted(
        {e.actor_id for e in events if e.actor_id}
        | {u for u in about.values() if isinstance(u, str)}
    )
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
    # Each team's name when it was alerted: the team may have been renamed since.
    alerted_as = {
        e.data.get("dispatch_id"): e.data.get("team_name")
        for e in events
        if e.type == "dispatched" and isinstance(e.data.get("team_name"), str)
    }
    outcomes = []
    for d in view.dispatches:
        tier = chain[d.tier]
        judged = judge_dispatch(
            d.ring,
            d.alerted_at,
            d.arrived_at,
            view.reported_at,
            tier.deadline,
            tier.target_s,
            tier.status.value,
            view.closed_at,
            now,
        )
        outcomes.append(
            DispatchOutcome(
                dispatch_id=d.id,
                team_id=d.team_id,
                team_name=d.team_name,
                team_name_when_alerted=alerted_as.get(d.id),
                tier=d.tier,
                added_by=d.added_by,
                judged_from_alert=judged.from_alert,
                outcome=judged.outcome,
                time_to_arrival_s=judged.elapsed_s,
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
                leader_name=actors.get(str(about[e.id])) if about.get(e.id) else None,
                data=e.data,
            )
            for e in events
        ],
    )


@dataclass(frozen=True, slots=True)
class Judged:
    outcome: str
    elapsed_s: float | None
    from_alert: bool


def judge_dispatch(
    ring: int,
    alerted_at: datetime,
    arrived_at: datetime | None,
    reported_at: datetime,
    deadline: datetime,
    target_s: float,
    tier_status: str,
    closed_at: datetime | None,
    now: datetime,
) -> Judged:
    """One team's own outcome and time to arrival, as the figures per team count them: from
    the report against its tier's deadline; a team an operator added by hand after that
    deadline (_from_alert), from its own alert against its tier's target."""
    if ring == incidents.RING_OPERATOR and alerted_at > deadline:
        own = alerted_at + timedelta(seconds=target_s)
        outcome = _one_outcome(arrived_at, own, "", closed_at, now)
        elapsed = (arrived_at - alerted_at).total_seconds() if arrived_at else None
        return Judged(outcome, elapsed, True)
    outcome = _one_outcome(arrived_at, deadline, tier_status, closed_at, now)
    elapsed = (arrived_at - reported_at).total_seconds() if arrived_at else None
    return Judged(outcome, elapsed, False)


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
    if deadline >= now:
        return TierStatus.PENDING.value
    return TierStatus.BREACHED.value
