"""Every figure of the report equals a direct computation from the raw timestamps.

Four hundred incidents with random times to the microsecond are written straight into the
tables (as the dispatch core would have left them: some tiers nobody covered, alerts never
delivered, accepts without an arrival, arrivals exactly at the deadline, leaders arriving without
an accept first (the accept, and the delivery without an ack, implied), arrivals recorded by an
operator (no accept at all), acks coming after an implied delivery, tiers cancelled, closed
before the deadline, or still pending; a few judged by other targets, as after the targets were
changed; teams an operator added by hand after their tier's deadline). The expected report is
worked out below in plain Python: sort each series, take the values at the nearest ranks,
count the outcomes by the rules of docs/reports.md. On PostgreSQL the report is computed both
ways the server knows (ordered-set aggregates and window functions) and each must agree to the
microsecond.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from dispatch.db import dialect_name, new_id
from dispatch.incidents.models import ChainTier, Dispatch, Incident
from dispatch.reports import service
from dispatch.reports.schemas import GroupBy
from dispatch.schemas import DISPLAY_TZ
from tests.support import QINGXI, World

TARGETS = (60.0, 180.0, 300.0)
# Targets some incidents were reported under: each is judged by its own, stored with its chain.
OTHER_TARGETS = (90.0, 240.0, 300.0)
CATEGORIES = ("fight", "theft", "fire")
LON, LAT = QINGXI


@dataclass
class Hop:
    team_id: str
    tier: int
    alerted: datetime
    delivered: datetime | None
    accepted: datetime | None
    arrived: datetime | None
    delivered_implied: bool = False
    accepted_implied: bool = False
    ring: int = 0


@dataclass
class Tier:
    tier: int
    target_s: float
    deadline: datetime
    status: str
    covered: bool
    arrived: datetime | None


@dataclass
class Case:
    id: str
    reported: datetime
    closed: datetime | None
    category: str
    village_id: str | None
    tiers: list[Tier] = field(default_factory=list)
    hops: list[Hop] = field(default_factory=list)


def breached_unanswered(team_id: str, reported: datetime) -> Case:
    """A fight closed ten minutes after its report, whose one tier (tier 1, alerting
    ``team_id`` alone) breached with nobody ever answering."""
    case = Case(new_id(), reported, reported + timedelta(minutes=10), "fight", None)
    case.tiers = [Tier(1, 60.0, reported + timedelta(seconds=60), "breached", True, None)]
    case.hops = [Hop(team_id, 1, reported, None, None, None)]
    return case


def us(seconds: float) -> timedelta:
    return timedelta(microseconds=round(seconds * 1e6))


def unanswered_arrival(
    kinds: random.Random, hop: Hop, target: float, now: datetime, deadline: datetime
) -> None:
    """An arrival of a team that never accepted on its phone: by the leader's button (the
    accept implied, and the delivery if no ack had come; that ack may come later and replace
    it) or recorded by an operator (nothing implied)."""
    start = hop.delivered or hop.alerted
    arrived = start + us(kinds.uniform(5, target * 1.3))
    if kinds.random() < 0.1:
        arrived = max(start, deadline)
    if arrived > now:
        return
    hop.arrived = arrived
    if kinds.random() < 0.3:
        return  # by radio, recorded by an operator
    hop.accepted, hop.accepted_implied = arrived, True
    if hop.delivered is None:
        hop.delivered, hop.delivered_implied = arrived, True
        late = arrived + us(kinds.uniform(0.5, 90))
        if kinds.random() < 0.4 and late <= now:
            hop.delivered, hop.delivered_implied = late, False


def added_late(
    added: random.Random,
    team_ids: list[str],
    hops: list[Hop],
    tier: int,
    target: float,
    deadline: datetime,
    closed: datetime | None,
    now: datetime,
) -> Hop | None:
    """Now and then, a team of a later tier an operator added by hand (人工加派, ring 2) after
    the tier's deadline: it does not cover the tier (the stored tier is left as it was), and
    per team it is judged from its own alert. Some arrive, one now and then exactly its own
    target after its alert."""
    sent = {h.team_id for h in hops}
    free = [t for t in team_ids if t not in sent]
    if tier == 1 or not free or added.random() > 0.15:
        return None
    alerted = deadline + us(added.uniform(0.5, 120))
    if alerted > now or (closed is not None and alerted >= closed):
        return None
    hop = Hop(added.choice(free), tier, alerted, None, None, None, ring=2)
    if added.random() < 0.8:
        hop.delivered = alerted + us(added.uniform(0.05, 4))
        hop.accepted = hop.delivered + us(added.uniform(0, 20))
        arrived = hop.accepted + us(added.uniform(5, target * 1.2))
        if added.random() < 0.1:
            arrived = alerted + us(target)  # exactly at its own deadline
        if arrived <= now and (closed is None or arrived <= closed):
            hop.arrived = arrived
    return hop


def invent(
    rng: random.Random, now: datetime, teams: dict[int, list[str]], villages: list[str]
) -> list[Case]:
    # The hops without an accept are drawn apart, leaving the other draws as they were; so
    # are the teams added by hand.
    kinds = random.Random(5_3_1)
    added = random.Random(2_2_2)
    # One whole day in Shanghai keeps the usual targets, so the report meets a day judged by a
    # single target whatever the hour the test runs at (the day boundaries move with it).
    steady_day = (now - timedelta(days=3)).astimezone(DISPLAY_TZ).date()
    cases = []
    for n in range(400):
        # The last few were reported moments ago: their later tiers are still pending.
        ago = rng.uniform(40, 200) if n >= 390 else rng.uniform(600, 20 * 86400)
        reported = now - us(ago)
        early = rng.random() < 0.08
        closed = reported + us(20) if early else (reported + us(900) if ago > 900 else None)
        case = Case(
            new_id(),
            reported,
            closed,
            rng.choice(CATEGORIES),
            rng.choice([*villages, None]),
        )
        other = rng.random() < 0.15
        if reported.astimezone(DISPLAY_TZ).date() == steady_day:
            other = False
        targets = OTHER_TARGETS if other else TARGETS
        for tier, target in enumerate(targets, start=1):
            deadline = reported + us(target)
            count = rng.choice([0, 1, 1, 2]) if tier == 1 else rng.choice([0, 1, 1, 1])
            hops = []
            for team_id in rng.sample(teams[tier], count):
                alerted = reported + us(rng.uniform(0.01, 0.2))
                delivered = None if rng.random() < 0.1 else alerted + us(rng.uniform(0.05, 4))
                accepted = None
                if delivered and rng.random() < 0.85:
                    accepted = delivered + us(rng.uniform(0, 30))
                arrived = None
                if accepted and not early and rng.random() < 0.85:
                    arrived = accepted + us(rng.uniform(5, target * 1.3))
                    if rng.random() < 0.05:
                        arrived = max(accepted, deadline)  # exactly at the deadline
                    if arrived > now:
                        arrived = None
                hop = Hop(team_id, tier, alerted, delivered, accepted, arrived)
                if accepted is None and not early and kinds.random() < 0.6:
                    unanswered_arrival(kinds, hop, target, now, deadline)
                hops.append(hop)
            arrivals = [h.arrived for h in hops if h.arrived]
            first = min(arrivals) if arrivals else None
            if first is not None:
                status = "met" if first <= deadline else "breached"
            elif early or rng.random() < 0.05:
                status = "cancelled"
            else:
                status = "pending" if deadline > now else "breached"
            case.tiers.append(Tier(tier, target, deadline, status, bool(hops), first))
            case.hops += hops
            late = added_late(added, teams[tier], hops, tier, target, deadline, closed, now)
            if late is not None and not early:
                case.hops.append(late)
        cases.append(case)
    return cases


async def store(world: World, cases: list[Case], operator_id: str) -> None:
    async with world.runtime.transaction() as session:
        for c in cases:
            session.add(
                Incident(
                    id=c.id,
                    reported_at=c.reported,
                    lon=LON,
                    lat=LAT,
                    category=c.category,
                    status="closed" if c.closed else "open",
                    closed_at=c.closed,
                    reported_by=operator_id,
                    village_id=c.village_id,
                )
            )
        await session.flush()
        for c in cases:
            for t in c.tiers:
                elapsed = (t.arrived - c.reported).total_seconds() if t.arrived else None
                session.add(
                    ChainTier(
                        incident_id=c.id,
                        tier=t.tier,
                        target_s=t.target_s,
                        deadline=t.deadline,
                        status=t.status,
                        covered=t.covered,
                        arrived_at=t.arrived,
                        elapsed_s=elapsed,
                        breached_at=None,
                        incident_reported_at=c.reported,
                        incident_closed_at=c.closed,
                    )
                )
            for h in c.hops:
                session.add(
                    Dispatch(
                        id=new_id(),
                        incident_id=c.id,
                        team_id=h.team_id,
                        tier=h.tier,
                        distance_m=10.0,
                        alerted_at=h.alerted,
                        incident_reported_at=c.reported,
                        delivered_at=h.delivered,
                        accepted_at=h.accepted,
                        arrived_at=h.arrived,
                        delivered_implied=h.delivered_implied,
                        accepted_implied=h.accepted_implied,
                        ring=h.ring,
                    )
                )


# ---------------------------------------------------------------- the figures, by hand


def outcome(arrived: datetime | None, tier: Tier, closed: datetime | None, now: datetime) -> str:
    if arrived is not None:
        return "met" if arrived <= tier.deadline else "breached"
    if tier.status == "cancelled" or (closed is not None and closed <= tier.deadline):
        return "cancelled"
    return "pending" if tier.deadline > now else "breached"


def from_alert(hop: Hop | None, tier: Tier) -> bool:
    """A team added by hand after its tier's deadline: judged per team from its own alert."""
    return hop is not None and hop.ring == 2 and hop.alerted > tier.deadline


def own_outcome(hop: Hop, tier: Tier, closed: datetime | None, now: datetime) -> str:
    """Such a team's outcome: its deadline is its tier's target after its own alert."""
    own = hop.alerted + us(tier.target_s)
    if hop.arrived is not None:
        return "met" if hop.arrived <= own else "breached"
    if closed is not None and closed <= own:
        return "cancelled"
    return "pending" if own > now else "breached"


def micro(span: timedelta) -> int:
    return (span.days * 86400 + span.seconds) * 1_000_000 + span.microseconds


def stat(values: list[int], implied: int | None = None) -> dict[str, Any]:
    """The figures of a series; of a segment (``implied`` given), with the rows left out."""
    ordered = sorted(values)
    n = len(ordered)
    found: dict[str, Any] = {"n": 0, "p50_s": None, "p90_s": None, "max_s": None}
    if n:
        # Nearest rank, in integers: rank = ceil(p n / 100), 1-based.
        at = [ordered[(p * n + 99) // 100 - 1] for p in (50, 90)] + [ordered[-1]]
        found = {"n": n, "p50_s": at[0] / 1e6, "p90_s": at[1] / 1e6, "max_s": at[2] / 1e6}
    return found if implied is None else {**found, "implied": implied}


def key_of(by: str, c: Case, team_id: str | None) -> str:
    local = c.reported.astimezone(DISPLAY_TZ).date()
    keys: dict[str, Callable[[], str]] = {
        "tier": lambda: "",
        "team": lambda: team_id or "",
        "village": lambda: c.village_id or "",
        "day": local.isoformat,
        "week": lambda: (local - timedelta(days=local.weekday())).isoformat(),
        "month": lambda: local.strftime("%Y-%m"),
    }
    return keys[by]()


def expected(
    cases: list[Case], by: str, now: datetime, tier: int | None = None, team_id: str | None = None
) -> dict[tuple[str, int], dict[str, Any]]:
    per_team = by == "team" or team_id is not None
    counts: dict[tuple[str, int], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    series: dict[tuple[str, int], dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    implied: dict[tuple[str, int], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    targets: dict[tuple[str, int], set[float]] = defaultdict(set)
    for c in cases:
        tiers = {t.tier: t for t in c.tiers}
        measured: list[tuple[str, int, datetime | None, bool, Hop | None]] = []
        if per_team:
            for h in c.hops:
                if team_id in (None, h.team_id):
                    measured.append((key_of(by, c, h.team_id), h.tier, h.arrived, True, h))
        else:
            for row in c.tiers:
                measured.append((key_of(by, c, None), row.tier, row.arrived, row.covered, None))
        for key, t, arrived, covered, hop in measured:
            if tier not in (None, t):
                continue
            cell = counts[(key, t)]
            own = from_alert(hop, tiers[t])
            if hop is not None and own:
                judged = own_outcome(hop, tiers[t], c.closed, now)
            else:
                judged = outcome(arrived, tiers[t], c.closed, now)
            cell["judged_from_alert"] += own
            cell["incidents"] += 1
            cell["with_arrival"] += arrived is not None
            cell[judged] += 1
            cell["uncovered"] += not covered
            cell["uncovered_breached"] += not covered and judged == "breached"
            targets[(key, t)].add(tiers[t].target_s)
            if arrived is not None:
                start = hop.alerted if hop is not None and own else c.reported
                series[(key, t)]["arrival"].append(micro(arrived - start))
        for h in c.hops:
            if tier not in (None, h.tier) or team_id not in (None, h.team_id):
                continue
            key = key_of(by, c, h.team_id)
            for name, later, earlier, guessed in (
                ("a2d", h.delivered, h.alerted, h.delivered_implied),
                ("d2acc", h.accepted, h.delivered, h.delivered_implied or h.accepted_implied),
                ("acc2arr", h.arrived, h.accepted, h.accepted_implied),
            ):
                if later is None or earlier is None:
                    continue
                # A segment is measured only between two hops that were observed.
                if guessed:
                    implied[(key, h.tier)][name] += 1
                else:
                    series[(key, h.tier)][name].append(micro(later - earlier))
    figures = {}
    for (key, t), cell in counts.items():
        judged = cell["met"] + cell["breached"]
        values = series[(key, t)]
        applied = sorted(targets[(key, t)])
        figures[(key, t)] = {
            "tier": t,
            "target_s": applied[0] if len(applied) == 1 else None,
            "targets_s": applied,
            "incidents": cell["incidents"],
            "with_arrival": cell["with_arrival"],
            "without_arrival": cell["incidents"] - cell["with_arrival"],
            "met": cell["met"],
            "breached": cell["breached"],
            "cancelled": cell["cancelled"],
            "pending": cell["pending"],
            "uncovered": cell["uncovered"],
            "uncovered_breached": cell["uncovered_breached"],
            "judged_from_alert": cell["judged_from_alert"],
            "share_within_target": cell["met"] / judged if judged else None,
            "time_to_arrival": stat(values["arrival"]),
            "alert_to_delivery": stat(values["a2d"], implied[(key, t)]["a2d"]),
            "delivery_to_acceptance": stat(values["d2acc"], implied[(key, t)]["d2acc"]),
            "acceptance_to_arrival": stat(values["acc2arr"], implied[(key, t)]["acc2arr"]),
        }
    return figures


def shown(grouping: dict[str, Any]) -> dict[tuple[str, int], dict[str, Any]]:
    """The report's groups keyed like the expected figures (by tier, the key is the tier)."""
    found = {}
    for group in grouping["groups"]:
        for figures in group["tiers"]:
            key = "" if grouping["by"] == "tier" else group["key"]
            found[(key, figures["tier"])] = figures
    return found


# ---------------------------------------------------------------- the test


async def test_every_figure_equals_a_direct_computation(world: World) -> None:
    rng = random.Random(1_3_5)
    operator = await world.operator()
    teams = {
        1: [(await world.team("fixed_post"))["id"] for _ in range(3)],
        2: [(await world.team("patrol", radius_m=3000))["id"] for _ in range(2)],
        3: [(await world.team("response", radius_m=6000))["id"]],
    }
    admin = await world.admin()
    boundary = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"name": name},
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [[[x, 0], [x + 1, 0], [x + 1, 1], [x, 1], [x, 0]]],
                },
            }
            for name, x in (("上元村", 10.0), ("下仙社区", 12.0))
        ],
    }
    reply = await world.http.post(
        "/api/v1/villages/import", content=json.dumps(boundary), headers=admin.headers
    )
    assert reply.status_code == 200, reply.text
    villages = [
        v["id"] for v in (await world.http.get("/api/v1/villages", headers=admin.headers)).json()
    ]
    now = world.clock.now()
    cases = invent(rng, now, teams, villages)
    hops = [h for c in cases for h in c.hops]
    # Every kind of arrival without an accept tapped is among them: implied delivery and
    # accept, an ack after the arrival replacing the delivery, an operator's record.
    assert any(h.delivered_implied for h in hops)
    # Teams added by hand after the deadline, arriving within their own target and not.
    late = [h for h in hops if h.ring == 2]
    assert any(h.arrived for h in late) and not all(h.arrived for h in late)
    assert any(h.accepted_implied and h.delivered > h.arrived for h in hops if h.delivered)
    assert any(h.arrived and h.accepted is None for h in hops)
    await store(world, cases, operator.id)
    start = min(c.reported for c in cases) - timedelta(seconds=1)
    period = {"from": start.isoformat(), "to": (now + timedelta(seconds=1)).isoformat()}
    auditor = await world.account("auditor")

    every = ["tier", "team", "village", "day", "week", "month"]
    asks: list[dict[str, Any]] = [
        {"group_by": every},
        {"group_by": ["tier", "day"], "tier": 2},
        {"group_by": ["tier", "village"], "team_id": teams[1][0]},
        {"group_by": ["tier", "team"], "tier": 1, "category": "theft"},
    ]
    for ask in asks:
        reply = await world.http.get(
            "/api/v1/reports/response-times",
            params={**period, **ask, "max_exclusions": 5},
            headers=auditor.headers,
        )
        assert reply.status_code == 200, reply.text
        body = reply.json()
        chosen = [c for c in cases if ask.get("category") in (None, c.category)]
        for grouping in body["groupings"]:
            want = expected(chosen, grouping["by"], now, ask.get("tier"), ask.get("team_id"))
            assert shown(grouping) == want, (ask, grouping["by"])
        totals = {("", f["tier"]): f for f in body["totals"]}
        assert totals == expected(chosen, "tier", now, ask.get("tier"), ask.get("team_id"))
        without = sum(f["without_arrival"] for f in body["totals"])
        assert body["exclusions_total"] == without
        assert len(body["exclusions"]) == min(5, without)
        listed = [(e["reported_at"], e["incident_id"], e["tier"]) for e in body["exclusions"]]
        assert listed == sorted(listed)

    # Ranked by the database's own aggregate and by window functions: the same, to the µs.
    async with world.runtime.sessionmaker() as session:
        ways = [None, False] if dialect_name(session) == "postgresql" else [None]
        filters = service.Filters(start, now + timedelta(seconds=1))
        reports = [
            (
                await service.response_times(
                    session,
                    filters,
                    list(GroupBy),
                    now=now,
                    targets=world.runtime.settings.chain_targets,
                    max_exclusions=5,
                    ordered_sets=way,
                )
            ).model_dump()
            for way in ways
        ]
    for report in reports:
        for grouping in report["groupings"]:
            assert shown(grouping) == expected(cases, grouping["by"], now), grouping["by"]
        # Both kinds were met: groups judged by one target, and groups by several.
        targets = {
            (grouping["by"], f["target_s"], tuple(f["targets_s"]))
            for grouping in report["groupings"]
            for group in grouping["groups"]
            for f in group["tiers"]
        }
        assert ("tier", None, (60.0, 90.0)) in targets
        assert ("tier", 300.0, (300.0,)) in targets
        assert any(by == "day" and one == 60.0 for by, one, _ in targets)
