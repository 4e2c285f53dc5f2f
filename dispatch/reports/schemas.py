from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field

from dispatch.audit.schemas import ChainHeadOut
from dispatch.incidents.schemas import IncidentOut
from dispatch.schemas import LocalTime, Schema


class GroupBy(StrEnum):
    TIER = "tier"
    TEAM = "team"
    VILLAGE = "village"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


class Unit(StrEnum):
    # One measurement per incident and tier: the tier's first arrival against its deadline.
    INCIDENT_TIER = "incident_tier"
    # One measurement per alerted team: that team's own arrival against the tier's deadline.
    DISPATCH = "dispatch"


class Stat(Schema):
    n: int = Field(description="measurements that have both ends of the interval")
    p50_s: float | None = Field(description="median, nearest-rank, seconds")
    p90_s: float | None = Field(description="90th percentile, nearest-rank, seconds")
    max_s: float | None


class SegmentStat(Stat):
    n: int = Field(description="dispatches of which both ends of the segment were observed")
    implied: int = Field(
        description="dispatches left out: both ends are on record, but one was not observed, "
        "only implied by the leader's arrival (no accept tapped, no ack before it)"
    )


class TierFigures(Schema):
    tier: int
    target_s: float | None = Field(
        description="the target every measurement counted was judged by, as stored with each "
        "incident's chain when it was reported (not the current setting); null when they were "
        "judged by different targets (the targets were changed within the period)"
    )
    targets_s: list[float] = Field(
        description="every target the measurements counted were judged by, ascending"
    )
    incidents: int = Field(description="measurements: incident tiers, or dispatches per team")
    with_arrival: int
    without_arrival: int = Field(description="listed in exclusions")
    met: int
    breached: int
    cancelled: int = Field(description="closed by the deadline with nobody on scene: not judged")
    pending: int = Field(description="deadline not passed (ahead or this instant): not judged")
    uncovered: int = Field(
        description="tiers of which no team was alerted (neither by its zones nor by the "
        "escalation ring), whatever their outcome: judged like any other, breached past the "
        "deadline unless closed by it (cancelled), pending until then; 0 per team"
    )
    uncovered_breached: int = Field(
        description="of the uncovered, those breached: nobody could come (counted in breached)"
    )
    judged_from_alert: int = Field(
        default=0,
        description="per team: of the dispatches counted, those an operator added by hand "
        "(人工加派) after their tier's deadline, each timed and judged from its own alert (its "
        "tier's target counted from its alerted_at), not from the report; 0 by tier",
    )
    share_within_target: float | None = Field(description="met / (met + breached)")
    time_to_arrival: Stat = Field(
        description="from the report to arrival on scene; per team, for a dispatch added by "
        "hand after its tier's deadline (judged_from_alert), from its own alert"
    )
    alert_to_delivery: SegmentStat = Field(description="per dispatch: alert sent to phone received")
    delivery_to_acceptance: SegmentStat = Field(description="per dispatch: received to accepted")
    acceptance_to_arrival: SegmentStat = Field(description="per dispatch: accepted to on scene")


class TeamLabel(Schema):
    """The parts a team's label is made of, for a page to say it in its own language."""

    name: str
    retired_on: date | None = Field(
        description="the day (Asia/Shanghai) the team was retired; null while in service"
    )
    told_apart_by: Literal["day", "id"] | None = Field(
        description="what the label adds to tell a retired team from a retired namesake: the "
        "day it was retired (甲联防队（2026-03-01撤销）), or that day and its id when the "
        "namesake was retired that day too; null when the label needs neither"
    )


class Group(Schema):
    key: str = Field(
        description="the group: a tier, a team's or village's id, a day, a week's Monday "
        "(YYYY-MM-DD) or a month"
    )
    label: str = Field(
        description="by team: its name, a retired team's marked （已撤销） and told apart from "
        "a retired namesake by the day it was retired (甲联防队（2026-03-01撤销）); by week: "
        "the ISO week and its Monday (2026-W50（2026-12-07起）); in Chinese, as the exports "
        "write it"
    )
    team: TeamLabel | None = Field(
        default=None, description="by team: the parts of its label; null in other groupings"
    )
    tiers: list[TierFigures]


class Grouping(Schema):
    by: GroupBy
    unit: Unit
    groups: list[Group]


class AlertedTeam(Schema):
    """A team alerted in an excluded tier, named as the groups by team label it."""

    team_id: str
    team_name: str
    team_label: str = Field(description="as Exclusion.team_label")
    team: TeamLabel | None = Field(description="the parts of team_label")
    reached: Literal["not_delivered", "delivered", "accepted"] = Field(
        description="how far the team's alert got: not_delivered (no leader's phone "
        "acknowledged it: off, asleep with the page closed, or out of the network), delivered "
        "(a phone had it, nobody accepted), accepted (nobody came on scene)"
    )
    delivered_at: LocalTime | None = Field(
        description="when the alert first reached a leader's phone (or an accept proved it)"
    )
    accepted_at: LocalTime | None = Field(description="when a leader accepted the dispatch")


class Exclusion(Schema):
    incident_id: str
    tier: int
    team_id: str | None
    team_name: str | None
    team_label: str | None = Field(
        description="the team as the groups by team label it: its name, a retired team's "
        "marked （已撤销） and told apart from a retired namesake by the day it was retired"
    )
    team: TeamLabel | None = Field(
        default=None, description="the parts of team_label; null without a team"
    )
    alerted_teams: list[AlertedTeam] = Field(
        default_factory=list,
        description="the teams alerted in this tier, as they were alerted (the escalation's "
        "included); measured per dispatch, the one team of team_id; empty when none was "
        "(covered false)",
    )
    reported_at: LocalTime
    category: str | None = Field(default=None, description="the incident's category")
    lon: float | None = Field(default=None, description="the incident's place, WGS84")
    lat: float | None = Field(default=None, description="the incident's place, WGS84")
    village_id: str | None = Field(default=None, description="the village the place is in")
    village_name: str | None = Field(default=None, description="that village's name")
    outcome: str = Field(description="breached, cancelled or pending")
    covered: bool = Field(description="false when no team of the tier was alerted")
    judged_from_alert: bool = Field(
        default=False,
        description="measured per dispatch: an operator added the team by hand (人工加派) after "
        "its tier's deadline, so it is judged by its tier's target counted from its own alert",
    )
    reason: str = Field(description="the outcome and cover in English words; a stable text")


class ReportOut(Schema):
    generated_at: LocalTime
    chain_head: ChainHeadOut | None = Field(
        default=None,
        description="the incident event log's newest row at generated_at, which the figures "
        "were computed against (记录链头): check it later with GET /api/v1/audit/verification"
        "?head=; null when the log is empty",
    )
    period_from: LocalTime
    period_to: LocalTime = Field(description="exclusive")
    filters: dict[str, Any]
    filter_names: dict[str, str] = Field(
        description="the names of the team and village filtered by (team_id, village_id)"
    )
    filter_labels: dict[str, str] = Field(
        default_factory=dict,
        description="the team and village filtered by as the report labels them (team_id, "
        "village_id): the team as the groups by team do, a retired team marked （已撤销） and "
        "told apart from a retired namesake; in Chinese, as the exports write them",
    )
    method: str = Field(description="how the figures are computed, percentile definition included")
    totals: list[TierFigures] = Field(
        description="every measurement of the period, per tier; empty when it has none"
    )
    groupings: list[Grouping]
    exclusions: list[Exclusion] = Field(description="measurements without an arrival")
    exclusions_total: int
    exclusions_truncated: bool


class HistogramBin(Schema):
    from_s: int = Field(description="lower edge, excluded")
    to_s: int = Field(description="upper edge, included: an arrival at exactly 60 s is in 50-60")
    count: int
    overflow: bool = Field(
        default=False,
        description="the last bin, wider than bin_s: every arrival later than the bins before "
        "it, up to the end of the latest one's bin",
    )


class ArrivalHistogramOut(Schema):
    generated_at: LocalTime
    period_from: LocalTime
    period_to: LocalTime = Field(description="exclusive")
    filters: dict[str, Any] = Field(description="as given, ids (tier null when not given)")
    tier: int = Field(
        description="the tier counted: the one asked for, else filtered by team the team's own "
        "tier (the tier it was alerted in to the period's incidents, else its tier now), else 1"
    )
    unit: Unit
    target_s: float | None = Field(
        description="the target the tier's measurements were judged by (stored with each "
        "incident; the current setting when the period has none), for the line drawn across "
        "the bins; null when they were judged by different targets"
    )
    targets_s: list[float] = Field(description="every such target, ascending: a line each")
    bin_s: int
    n: int = Field(description="measurements of the tier with an arrival")
    bins: list[HistogramBin] = Field(
        description="from 0 up to the last arrival, and at least two bins past the highest "
        "target; but no further than 10 times that target nor more than 1000 bins, the later "
        "arrivals then counted in one overflow bin after them (overflow true)"
    )


class TimelineEvent(Schema):
    at: LocalTime
    type: str
    actor_id: str | None
    actor_name: str | None
    leader_name: str | None = Field(
        default=None,
        description="of a notified or notify_failed event, the leader it was about (data.user_id)",
    )
    data: dict[str, Any]


class DispatchOutcome(Schema):
    dispatch_id: str
    team_id: str
    team_name: str = Field(description="the team's name now")
    team_name_when_alerted: str | None = Field(
        default=None,
        description="the team's name when it was alerted, as its dispatched event recorded it "
        "(another if the team was renamed since); null for a dispatch recorded before the "
        "event kept it",
    )
    tier: int
    added_by: Literal["zone", "escalation", "operator"] = Field(
        default="zone", description="as the incident's dispatch says it (人工加派: operator)"
    )
    judged_from_alert: bool = Field(
        default=False,
        description="an operator added the team by hand after its tier's deadline: its outcome "
        "and time_to_arrival_s count from its own alert, against its tier's target",
    )
    outcome: str
    time_to_arrival_s: float | None = Field(
        description="from the report to the team's arrival; from its own alert when "
        "judged_from_alert"
    )


class IncidentReportOut(Schema):
    incident: IncidentOut
    village_name: str | None
    tiers: list[dict[str, Any]] = Field(description="each tier: target, status, elapsed_s")
    teams: list[DispatchOutcome]
    timeline: list[TimelineEvent]
