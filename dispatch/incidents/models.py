from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint, false, text
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.db import Base


class Category(StrEnum):
    VIOLENCE = "violence"
    EXTREMISM = "extremism"
    FIGHT = "fight"
    ROBBERY = "robbery"
    THEFT = "theft"
    FIRE = "fire"
    DISPUTE = "dispute"
    SUSPICIOUS = "suspicious"
    OTHER = "other"


# Every category's Chinese name, the one table the server says them from (exports, alerts):
# the pages' words (web/src/shared/i18n.js) and docs/api.md's, kept equal by a test.
CATEGORY_LABELS: dict[str, str] = {
    Category.VIOLENCE: "暴力袭击",
    Category.EXTREMISM: "个人极端",
    Category.FIGHT: "打架斗殴",
    Category.ROBBERY: "抢劫抢夺",
    Category.THEFT: "盗窃",
    Category.FIRE: "火情",
    Category.DISPUTE: "纠纷",
    Category.SUSPICIOUS: "可疑情况",
    Category.OTHER: "其他",
}


class IncidentStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


# The 1-3-5 chain's tiers: every incident has one chain_tiers row for each.
TIERS = (1, 2, 3)


class TierStatus(StrEnum):
    PENDING = "pending"
    MET = "met"
    BREACHED = "breached"
    # Closed before its deadline with nobody of the tier on scene: not measured.
    CANCELLED = "cancelled"


class ArrivalSource(StrEnum):
    BUTTON = "button"
    GEOFENCE = "geofence"
    OPERATOR = "operator"


class Incident(Base):
    __tablename__ = "incidents"
    __table_args__ = (
        UniqueConstraint("reported_by", "idempotency_key"),
        # The list's order, newest first with ties by id: a page, the first or one after a
        # cursor, is read off it in order. Its leading column serves what reads by the report
        # time alone (a day, a period, the newest).
        Index("ix_incidents_reported_at_id", "reported_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    reported_at: Mapped[datetime]
    lon: Mapped[float]
    lat: Mapped[float]
    category: Mapped[str] = mapped_column(String(32))
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), index=True)
    closed_at: Mapped[datetime | None]
    reported_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    idempotency_key: Mapped[str | None] = mapped_column(String(128))
    # The village or community it falls in, for reports by village.
    village_id: Mapped[str | None] = mapped_column(ForeignKey("villages.id"), index=True)


_UNREACHED = text("arrived_at IS NULL")


class ChainTier(Base):
    """One tier's clock for one incident: target, stored deadline, and outcome."""

    __tablename__ = "chain_tiers"
    __table_args__ = (
        Index("ix_chain_tiers_due", "status", "deadline"),
        Index(
            "ix_chain_tiers_incident_reported_at",
            "incident_reported_at",
            postgresql_using="brin",
        ),
        # The tiers nobody reached, in the order a report lists them (its exclusions): the
        # first thousand of a period read from here instead of sorting all of them.
        Index(
            "ix_chain_tiers_unreached",
            "incident_reported_at",
            "incident_id",
            "tier",
            postgresql_where=_UNREACHED,
            sqlite_where=_UNREACHED,
        ),
    )

    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id"), primary_key=True)
    tier: Mapped[int] = mapped_column(primary_key=True)
    target_s: Mapped[float]
    deadline: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16))
    covered: Mapped[bool]
    arrived_at: Mapped[datetime | None]
    elapsed_s: Mapped[float | None]
    breached_at: Mapped[datetime | None]
    # Copies of the incident's report and close times, so that the reports judge each tier
    # from its own row: joining every tier to its incident was a third of a report's time.
    # Audit verify holds them to the incident's reported and closed events. The report
    # writes the first; the database's triggers (migration 0024) carry every change of the
    # incident's times to them, the close included, and fill them in for a writer that
    # leaves them out (the release before, which is why null is allowed).
    incident_reported_at: Mapped[datetime | None]
    incident_closed_at: Mapped[datetime | None]


class Dispatch(Base):
    __tablename__ = "dispatches"
    # Rows come in report order, so a BRIN index finds a period's for the cost of a few pages
    # (SQLite makes it a B-tree).
    __table_args__ = (
        Index(
            "ix_dispatches_incident_reported_at",
            "incident_reported_at",
            postgresql_using="brin",
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id"), index=True)
    team_id: Mapped[str] = mapped_column(ForeignKey("teams.id"), index=True)
    tier: Mapped[int]
    # 0 for the teams whose zone covers the incident; 1 for those alerted by escalation.
    ring: Mapped[int] = mapped_column(default=0, server_default="0")
    distance_m: Mapped[float]
    alerted_at: Mapped[datetime]
    # A copy of the incident's report time, for the reports (as ChainTier's; the database's
    # triggers fill it in for a writer that leaves it out).
    incident_reported_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    # When the phone actually put the alert on screen (Page Visibility), not just received it.
    shown_at: Mapped[datetime | None]
    accepted_at: Mapped[datetime | None]
    # A leader's arrival without an accept first stands for the accept (and for the delivery
    # when no ack came): those hops are on record at the arrival's time, but were never
    # observed, so they are marked and measure nothing. An ack later replaces such a delivery.
    delivered_implied: Mapped[bool] = mapped_column(default=False, server_default=false())
    accepted_implied: Mapped[bool] = mapped_column(default=False, server_default=false())
    arrived_at: Mapped[datetime | None]
    arrival_source: Mapped[str | None] = mapped_column(String(16))
    arrival_lon: Mapped[float | None]
    arrival_lat: Mapped[float | None]
    arrival_distance_m: Mapped[float | None]
    arrival_accuracy_m: Mapped[float | None]
    # The device's own clock at arrival; the record uses the server's, this shows disagreement.
    arrival_device_time: Mapped[datetime | None]


class DispatchFollower(Base):
    """A leader who follows a dispatch of a team whose units take turns: one its alert went to
    (``alerted``), or one who took the dispatch on since without having been alerted (an
    off-turn leader who accepted or arrived). The incident's news goes to these leaders only; a
    dispatch without such rows (a team whose units do not take turns) is followed by every
    leader of its team."""

    __tablename__ = "dispatch_followers"

    dispatch_id: Mapped[str] = mapped_column(ForeignKey("dispatches.id"), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), primary_key=True)
    alerted: Mapped[bool]


@dataclass
class DispatchRecord:
    """A dispatch row as plain values, for rows no session tracks: a new report's dispatches
    and a batch of deliveries, written as bulk statements. Building the mapped object cost
    ~20 µs a row (its instrumented attributes), an eighth of a delivery batch's CPU."""

    id: str
    incident_id: str
    team_id: str
    tier: int
    ring: int
    distance_m: float
    alerted_at: datetime
    incident_reported_at: datetime
    delivered_at: datetime | None = None
    shown_at: datetime | None = None
    accepted_at: datetime | None = None
    delivered_implied: bool = False
    accepted_implied: bool = False
    arrived_at: datetime | None = None
    arrival_source: str | None = None
    arrival_lon: float | None = None
    arrival_lat: float | None = None
    arrival_distance_m: float | None = None
    arrival_accuracy_m: float | None = None
    arrival_device_time: datetime | None = None

    def values(self) -> dict[str, Any]:
        """The row's column values, for an insert."""
        return dict(vars(self))


# Either form of a dispatch, for what only reads its values (views, event facts, counters).
AnyDispatch = Dispatch | DispatchRecord


class _PlainRow:
    """A row as plain values (a dataclass with slots, its fields the table's columns)."""

    __slots__ = ()

    def values(self) -> dict[str, Any]:
        """The row's column values, for an insert."""
        columns: tuple[str, ...] = self.__slots__  # the subclass's: its fields
        return {name: getattr(self, name) for name in columns}


@dataclass(slots=True)
class IncidentRecord(_PlainRow):
    """A new incident's row as plain values, for the report's bulk statement (the mapped
    object and its row cost ten times these)."""

    id: str
    reported_at: datetime
    lon: float
    lat: float
    category: str
    description: str | None
    status: str
    reported_by: str
    idempotency_key: str | None
    village_id: str | None
    closed_at: datetime | None = None


# Either form of an incident, for what only reads its values (views, a report's rows).
AnyIncident = Incident | IncidentRecord


@dataclass(slots=True)
class ChainRecord(_PlainRow):
    """A new incident's chain tier as plain values, written by the report's bulk statement:
    three mapped objects and their rows cost a report ~0.1 ms, the plain ones an eighth."""

    incident_id: str
    tier: int
    target_s: float
    deadline: datetime
    status: str
    covered: bool
    incident_reported_at: datetime
    arrived_at: datetime | None = None
    elapsed_s: float | None = None
    breached_at: datetime | None = None
    incident_closed_at: datetime | None = None


# Either form of a chain tier, for what only reads its values (views).
AnyTier = ChainTier | ChainRecord


class IncidentEvent(Base):
    """The append-only record of everything that happened to an incident.

    Tamper-evident: each row's ``hash`` covers its content and the previous row's hash of the
    same incident (dispatch.audit.chain fills them in as the row is flushed).
    """

    __tablename__ = "incident_events"
    # The unique (incident_id, seq) is also the index for an incident's events, in order.
    __table_args__ = (UniqueConstraint("incident_id", "seq"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id"))
    at: Mapped[datetime]
    type: Mapped[str] = mapped_column(String(32))
    actor_id: Mapped[str | None] = mapped_column(String(32))
    data: Mapped[dict[str, Any]]
    # Place in the incident's chain (1, 2, ...), the previous row's hash, and this row's.
    seq: Mapped[int]
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


@dataclass
class EventRecord:
    """An event row as plain values, for the bulk appends (a new report's events, a batch of
    deliveries): sealed into the chain by ``dispatch.audit.chain`` and inserted as rows. The
    database numbers its ``id``."""

    incident_id: str
    at: datetime
    type: str
    actor_id: str | None
    data: dict[str, Any]
    seq: int = 0
    prev_hash: str = ""
    hash: str = ""

    def values(self) -> dict[str, Any]:
        """The row's column values, for an insert."""
        return dict(vars(self))


# Either form of an event, for what only reads or seals it.
AnyEvent = IncidentEvent | EventRecord


# Seals every new event into its incident's hash chain as it is flushed, whoever adds it; at
# the end of this module because the chain reads IncidentEvent.
from dispatch.audit import chain as _chain  # noqa: E402, F401
