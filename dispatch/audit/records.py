"""The rows the reports judge from, checked against the hashed events that record them.

The reports read ``incidents``, ``chain_tiers``, ``dispatches``, ``incident_skips`` and the
villages' names, which no hash covers: an arrival time moved in ``dispatches`` turns a breach
into a met target while every chain still holds. Every change the server makes to those rows
is written in the same transaction as the event that records it, so the events of an incident,
replayed in their chain's order, give the values its rows must hold. ``check`` replays one
incident's events and names the first row and column that differ.

What the events record, and so what is checked (``docs/security.md`` lists what is not):

- the incident: ``reported_at``, ``lon``/``lat``, ``reported_by``, ``category`` and
  ``description`` (its ``reported`` event); ``village_id`` and that village's name (its
  ``reported`` event, then each ``village_changed`` event: villages imported or deleted);
  ``status`` and ``closed_at`` (its ``closed`` event, or none);
- each dispatch: that it exists, its ``team_id``, ``tier``, ``distance_m`` and ``alerted_at``
  (its ``dispatched`` event), ``incident_reported_at`` (the ``reported`` event), its ``ring``
  (1 when an ``escalated`` event named its team, 2 when a ``team_added`` event did), and
  each hop: ``delivered_at``, ``shown_at``,
  ``accepted_at`` (their events; an arrival records the accept and the delivery it implies as
  events of their own, marked implied, which gives ``delivered_implied`` and
  ``accepted_implied``; a later delivery observed replaces an implied one, its event says so),
  ``arrived_at``, ``arrival_source``, ``arrival_distance_m``, ``arrival_device_time``,
  ``arrival_lon``, ``arrival_lat`` and ``arrival_accuracy_m`` (its ``arrived`` event); a hop
  with no event must be null;
- each of the three tiers: that it exists, ``incident_reported_at`` and ``incident_closed_at``
  (the ``reported`` and ``closed`` events), ``covered`` (a ``dispatched`` event of that tier,
  but for a team added by hand after the tier's deadline),
  ``arrived_at`` and ``elapsed_s`` (the tier's first ``arrived`` event), ``status`` and
  ``breached_at`` (``met``, ``breached`` and ``closed`` events, as the service applies them),
  ``target_s`` (the ``reported`` event's ``targets_s``; a ``breached`` event's), ``deadline``
  where a ``breached`` event records it; any tier's deadline is its report's time plus its
  ``target_s``, a met tier's is not before the arrival that met it, nor a cancelled tier's
  before the close that cancelled it;
- each team skipped: its row and its ``skipped`` event, one for the other;
- each event: of a type the server records (``EVENT_TYPES``).

Events written before they carried the category, description, village, targets and arrival
positions leave those columns unchecked; ``Checked.unrecorded`` names them, for verify to count
the incidents it could not prove whole.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row

from dispatch.incidents.models import TIERS, IncidentStatus, TierStatus
from dispatch.schemas import show_instant

Rows = Sequence[Row[Any]]


@dataclass(frozen=True)
class Told:
    """A value as the events tell it: ``event`` is the row that says so (None: no event does;
    the value is then what a row holds without one), ``what`` names that event."""

    value: Any
    event: Row[Any] | None
    what: str

    def differs(self, row: Named, column: str, stored: Any) -> Mismatch:
        where = (
            f"its {self.what} (incident_events row id={self.event.id}, seq {self.event.seq}: "
            if self.event is not None
            else f"its events (no {self.what}: "
        )
        reason = f"{column} {show(stored)} differs from {where}{show(self.value)})"
        values = {
            **row.keys,
            "column": column,
            "stored": value_of(stored),
            "expected": value_of(self.value),
            "expected_from": self.what,
            "event_id": None if self.event is None else self.event.id,
            "seq": None if self.event is None else self.event.seq,
            "event_type": None if self.event is None else value_of(self.event.type),
        }
        return Mismatch(row.name, reason, "value_differs", values)


@dataclass(frozen=True)
class Named:
    """A stored row as a break names it: in the command line's words, and as values (its
    table and keys) for the pages to say in their own."""

    name: str
    keys: dict[str, Any]


@dataclass(frozen=True)
class Mismatch:
    """The first stored row that disagrees with the events: which row, and how; ``code`` and
    ``values`` say the same for the pages (``docs/security.md`` lists the codes)."""

    row: str
    reason: str
    code: str
    values: dict[str, Any] = field(default_factory=dict)


def value_of(value: Any) -> Any:
    """A value a break names, as JSON carries it: times in Beijing time (RFC 3339), numbers,
    flags and text as they are, anything else as the command line quotes it."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime):
        return show(value)
    return show_text(value)


def show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, datetime):
        # In Beijing time, as every page and report shows it: the office finds the moment
        # named in its own records (stored in UTC, the same instant).
        return show_instant(value)
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def show_text(value: Any, limit: int = 80) -> str:
    """A stored value the server did not write, quoted as Python would, cut at ``limit``."""
    shown = repr(value)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def _int(data: dict[str, Any], key: str) -> int | None:
    value = data.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) else None


# What an incident's events record of it since they carry everything the reports read, and
# so what verify checks only where they do: each column of these is left unchecked of an
# incident recorded before (``Checked.unrecorded``), never flagged.
INCIDENT_FACTS = ("category", "description", "village_id")
ARRIVAL_POSITION = ("arrival_lon", "arrival_lat", "arrival_accuracy_m")


class _Replay:
    """One incident's rows as its events, applied in chain order, leave them."""

    def __init__(self) -> None:
        self.reported: Row[Any] | None = None
        self.incident: dict[str, Told] = {}
        # The name of the incident's village, as the event that tagged it recorded it.
        self.village_name: Told | None = None
        # The columns some event of the incident was written too early to record.
        self.unrecorded: set[str] = set()
        # Each skipped team's event, by team id.
        self.skipped: dict[str, Row[Any]] = {}
        self.dispatches: dict[str, dict[str, Told]] = {}
        self.dispatched: dict[str, Row[Any]] = {}
        self.tiers: dict[int, dict[str, Told]] = {
            tier: {
                "status": Told(TierStatus.PENDING.value, None, "met, breached or closed event"),
                "breached_at": Told(None, None, "breached event"),
                "arrived_at": Told(None, None, f"arrived event of tier {tier}"),
                "elapsed_s": Told(None, None, f"arrived event of tier {tier}"),
                "covered": Told(False, None, f"dispatched event of tier {tier}"),
            }
            for tier in TIERS
        }
        # Bounds on a tier's deadline: the met event (at or before it), the close that
        # cancelled the tier (at or before it).
        self.met: dict[int, Row[Any]] = {}
        self.cancelled: dict[int, Row[Any]] = {}
        self.ringed: dict[str, Row[Any]] = {}
        # The teams an operator added by hand (their ``team_added`` events), by team id.
        self.added: dict[str, Row[Any]] = {}

    def _tier(self, data: dict[str, Any]) -> dict[str, Told] | None:
        tier = _int(data, "tier")
        return self.tiers.get(tier) if tier is not None else None

    def _dispatch(self, data: dict[str, Any]) -> dict[str, Told] | None:
        dispatch_id = _str(data, "dispatch_id")
        return self.dispatches.get(dispatch_id) if dispatch_id is not None else None

    def apply(self, e: Row[Any]) -> bool:
        """Apply one event; False when its type is none the server records."""
        if e.type not in EVENT_TYPES:
            return False
        data: dict[str, Any] = e.data if isinstance(e.data, dict) else {}
        handle = _HANDLERS.get(e.type)
        if handle is not None:
            handle(self, e, data)
        return True

    def _reported(self, e: Row[Any], data: dict[str, Any]) -> None:
        if self.reported is not None:
            return
        self.reported = e
        told = self.incident
        told["reported_at"] = Told(e.at, e, "reported event")
        told["reported_by"] = Told(e.actor_id, e, "reported event")
        for key in ("lon", "lat", *INCIDENT_FACTS):
            if key in data:
                told[key] = Told(data[key], e, "reported event")
        if "village_name" in data:
            self.village_name = Told(data["village_name"], e, "reported event")
        told["status"] = Told(IncidentStatus.OPEN.value, None, "closed event")
        told["closed_at"] = Told(None, None, "closed event")
        for copies in self.tiers.values():
            # Each tier's copies of its incident's times, which the reports read.
            copies["incident_reported_at"] = Told(e.at, e, "reported event")
            copies["incident_closed_at"] = Told(None, None, "closed event")
        targets = data.get("targets_s")
        if isinstance(targets, list) and len(targets) == len(TIERS):
            for tier, target in zip(TIERS, targets, strict=True):
                self.tiers[tier]["target_s"] = Told(target, e, "reported event")

    def _village_changed(self, e: Row[Any], data: dict[str, Any]) -> None:
        # The incident tagged again (its village's boundary imported or deleted): the reports
        # count it in the new village from then on.
        if "village_id" in data:
            self.incident["village_id"] = Told(data["village_id"], e, "village_changed event")
        if "village_name" in data:
            self.village_name = Told(data["village_name"], e, "village_changed event")

    def _skipped(self, e: Row[Any], data: dict[str, Any]) -> None:
        team_id = _str(data, "team_id")
        if team_id is not None:
            self.skipped.setdefault(team_id, e)

    def unrecorded_columns(self) -> frozenset[str]:
        """The columns of the incident's rows its events do not record, as events written
        before they did leave them: not checked."""
        missing = set(self.unrecorded)
        missing.update(c for c in INCIDENT_FACTS if c not in self.incident)
        if self.village_name is None:
            missing.add("village_name")
        if any("target_s" not in told for told in self.tiers.values()):
            missing.add("target_s")
        return frozenset(missing)

    def _closed(self, e: Row[Any], data: dict[str, Any]) -> None:
        self.incident["status"] = Told(IncidentStatus.CLOSED.value, e, "closed event")
        self.incident["closed_at"] = Told(e.at, e, "closed event")
        withdrawn = data.get("breaches_withdrawn")
        withdrawn = withdrawn if isinstance(withdrawn, list) else []
        for tier, told in self.tiers.items():
            told["incident_closed_at"] = Told(e.at, e, "closed event")
            status = told["status"].value
            # A close cancels the tiers still pending (those past their deadline it breached
            # first, in events of their own), and the breaches it withdrew.
            if status == TierStatus.PENDING.value or (
                status == TierStatus.BREACHED.value and tier in withdrawn
            ):
                told["status"] = Told(TierStatus.CANCELLED.value, e, "closed event")
                told["breached_at"] = Told(None, e, "closed event")
                self.cancelled[tier] = e

    def _escalated(self, e: Row[Any], data: dict[str, Any]) -> None:
        team_ids = data.get("team_ids")
        for team_id in team_ids if isinstance(team_ids, list) else []:
            if isinstance(team_id, str):
                self.ringed.setdefault(team_id, e)

    def _team_added(self, e: Row[Any], data: dict[str, Any]) -> None:
        team_id = _str(data, "team_id")
        if team_id is not None:
            self.added.setdefault(team_id, e)

    def _dispatched(self, e: Row[Any], data: dict[str, Any]) -> None:
        dispatch_id = _str(data, "dispatch_id")
        if dispatch_id is None or dispatch_id in self.dispatches:
            return
        self.dispatched[dispatch_id] = e
        told: dict[str, Told] = {"alerted_at": Told(e.at, e, "dispatched event")}
        if self.reported is not None:
            # The dispatch's copy of its incident's report time, which the reports read.
            told["incident_reported_at"] = Told(self.reported.at, self.reported, "reported event")
        for key in ("team_id", "tier", "distance_m"):
            if key in data:
                told[key] = Told(data[key], e, "dispatched event")
        team_id = _str(data, "team_id")
        escalated = self.ringed.get(team_id) if team_id is not None else None
        added = self.added.get(team_id) if team_id is not None else None
        if added is not None:
            told["ring"] = Told(2, added, "team_added event")
        elif escalated is not None:
            told["ring"] = Told(1, escalated, "escalated event")
        else:
            told["ring"] = Told(0, e, "dispatched event")
        for column, kind in (
            ("delivered_at", "delivered"),
            ("shown_at", "shown"),
            ("accepted_at", "accepted"),
        ):
            told[column] = Told(None, None, f"{kind} event")
        for column, kind in (("delivered_implied", "delivered"), ("accepted_implied", "accepted")):
            told[column] = Told(False, None, f"{kind} event")
        for column in (
            "arrived_at",
            "arrival_source",
            "arrival_distance_m",
            "arrival_device_time",
            *ARRIVAL_POSITION,
        ):
            told[column] = Told(None, None, "arrived event")
        self.dispatches[dispatch_id] = told
        tier = self._tier(data)
        if tier is not None and not (added is not None and self._past_deadline(tier, e.at)):
            # A team added by hand after its tier's deadline leaves the tier as it was.
            tier["covered"] = Told(True, e, "dispatched event")

    def _past_deadline(self, tier: dict[str, Told], at: datetime) -> bool:
        target = tier.get("target_s")
        if self.reported is None or target is None or not isinstance(target.value, int | float):
            return False
        return bool(at > self.reported.at + timedelta(seconds=target.value))

    def _hop(self, e: Row[Any], data: dict[str, Any], column: str) -> None:
        told = self._dispatch(data)
        if told is None:
            return
        # The first such event stamps the hop, and only an observed delivery replaces one an
        # arrival implied (its event says so): the service stamps no hop twice otherwise.
        if told[column].event is None or data.get("replaces_implied") is True:
            what = f"{e.type} event"
            told[column] = Told(e.at, e, what)
            flag = IMPLIED_FLAGS.get(column)
            if flag is not None:
                told[flag] = Told(data.get("implied") is True, e, what)

    def _delivered(self, e: Row[Any], data: dict[str, Any]) -> None:
        self._hop(e, data, "delivered_at")

    def _shown(self, e: Row[Any], data: dict[str, Any]) -> None:
        self._hop(e, data, "shown_at")

    def _accepted(self, e: Row[Any], data: dict[str, Any]) -> None:
        self._hop(e, data, "accepted_at")

    def _arrived(self, e: Row[Any], data: dict[str, Any]) -> None:
        told = self._dispatch(data)
        if told is not None and told["arrived_at"].event is None:
            told["arrived_at"] = Told(e.at, e, "arrived event")
            if "source" in data:
                told["arrival_source"] = Told(data["source"], e, "arrived event")
            if "arrival_distance_m" in data:
                told["arrival_distance_m"] = Told(data["arrival_distance_m"], e, "arrived event")
            if "device_time" in data:
                device_time = data["device_time"]
                parsed = _instant(device_time) if isinstance(device_time, str) else None
                told["arrival_device_time"] = Told(parsed, e, "arrived event")
            for column in ARRIVAL_POSITION:
                if column in data:
                    told[column] = Told(data[column], e, "arrived event")
                else:
                    # An arrival recorded before its event carried where the team was.
                    del told[column]
                    self.unrecorded.add(column)
        tier = self._tier(data)
        if tier is None:
            return
        first = tier["arrived_at"]
        # The tier keeps its earliest arrival, and that arrival's elapsed time.
        if first.value is None or e.at < first.value:
            what = f"arrived event of tier {data['tier']}"
            tier["arrived_at"] = Told(e.at, e, what)
            if "elapsed_s" in data:
                tier["elapsed_s"] = Told(data["elapsed_s"], e, what)

    def _met(self, e: Row[Any], data: dict[str, Any]) -> None:
        tier = self._tier(data)
        if tier is not None:
            tier["status"] = Told(TierStatus.MET.value, e, "met event")
            tier["breached_at"] = Told(None, e, "met event")
            self.met[data["tier"]] = e

    def _breached(self, e: Row[Any], data: dict[str, Any]) -> None:
        tier = self._tier(data)
        if tier is None:
            return
        tier["status"] = Told(TierStatus.BREACHED.value, e, "breached event")
        # A breach is recorded at the deadline, whenever it was noticed.
        tier["breached_at"] = Told(e.at, e, "breached event")
        tier["deadline"] = Told(e.at, e, "breached event")
        if "target_s" in data:
            tier["target_s"] = Told(data["target_s"], e, "breached event")


# Each kind of event that sets what the rows must hold, and its step of the replay. Looked up
# by name in this table, never among the replay's attributes: an event forged with the type
# ``tier`` is not a call of ``_Replay._tier``.
_HANDLERS: dict[str, Callable[[_Replay, Row[Any], dict[str, Any]], None]] = {
    "reported": _Replay._reported,
    "village_changed": _Replay._village_changed,
    "skipped": _Replay._skipped,
    "closed": _Replay._closed,
    "escalated": _Replay._escalated,
    "team_added": _Replay._team_added,
    "dispatched": _Replay._dispatched,
    "delivered": _Replay._delivered,
    "shown": _Replay._shown,
    "accepted": _Replay._accepted,
    "arrived": _Replay._arrived,
    "met": _Replay._met,
    "breached": _Replay._breached,
}
# Every type of event the server records: those above, and those that set no row the reports
# read (a report that alerted every leader of a team on turn; a team whose alert reached
# nobody, with no enabled leader account; a notifier's outcome). An event of any other type
# was not written by the server. A new kind of event is added here.
EVENT_TYPES = frozenset(_HANDLERS) | {
    "all_leaders_alerted",
    "nobody_alerted",
    "notified",
    "notify_failed",
}


# The column that says a hop was implied by its dispatch's arrival rather than observed.
IMPLIED_FLAGS = {"delivered_at": "delivered_implied", "accepted_at": "accepted_implied"}


def _settle_implied(told: dict[str, Told]) -> None:
    """Hops recorded before their events said whether they were implied (migration 0017) were
    judged implied when stamped at their arrival's very instant: such a flag is not checked."""
    arrived = told["arrived_at"].value
    for hop, flag in IMPLIED_FLAGS.items():
        event = told[flag].event
        if (
            event is not None
            and "implied" not in (event.data if isinstance(event.data, dict) else {})
            and arrived is not None
            and told[hop].value == arrived
        ):
            del told[flag]


def _instant(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _first_difference(row: Named, stored: Row[Any], told: dict[str, Told]) -> Mismatch | None:
    for column, expected in told.items():
        value = getattr(stored, column)
        if value != expected.value:
            return expected.differs(row, column, value)
    return None


def _event(e: Row[Any]) -> dict[str, Any]:
    return {"event_id": e.id, "seq": e.seq}


@dataclass(frozen=True)
class Checked:
    """One incident's rows against its events: the first that differs (None: none does), and
    the columns its events were written too early to record, left unchecked."""

    mismatch: Mismatch | None
    unrecorded: frozenset[str]


def check(
    incident_id: str,
    events: Rows,
    incident: Row[Any] | None,
    tiers: Rows,
    dispatches: Rows,
    skips: Rows,
) -> Checked:
    """The incident's stored rows (``incident`` with its village's ``village_name``) against
    its events (a chain already verified, in order)."""
    replay = _Replay()
    for e in events:
        if not replay.apply(e):
            unknown = Mismatch(
                f"incident_events row id={e.id} (incident {incident_id}, seq {e.seq})",
                f"its type {show_text(e.type)} is none the server records",
                "event_type_unknown",
                {**_event(e), "type": value_of(e.type)},
            )
            return Checked(unknown, replay.unrecorded_columns())
    for told in replay.dispatches.values():
        _settle_implied(told)
    found = _mismatch(incident_id, events, incident, tiers, dispatches, skips, replay)
    return Checked(found, replay.unrecorded_columns())


def _mismatch(
    incident_id: str,
    events: Rows,
    incident: Row[Any] | None,
    tiers: Rows,
    dispatches: Rows,
    skips: Rows,
    replay: _Replay,
) -> Mismatch | None:
    """The first of the incident's stored rows that its events do not bear out; None when
    they all agree."""
    reported = replay.reported
    if incident is None:
        if not events:
            # Tiers or dispatches of an incident with neither a row nor events.
            return Mismatch(
                f"incident {incident_id}",
                "chain_tiers or dispatches rows name it, but it has no incidents row, no events",
                "rows_without_incident",
            )
        first = events[0]
        return Mismatch(
            f"incident {incident_id}",
            f"no incidents row, though its events are on record (incident_events row "
            f"id={first.id}, seq {first.seq})",
            "incident_row_missing",
            _event(first),
        )
    row = Named(f"incidents row {incident_id}", {"table": "incidents"})
    if reported is None:
        return Mismatch(row.name, "no reported event records it", "reported_event_missing")
    if (found := _first_difference(row, incident, replay.incident)) is not None:
        return found
    named = replay.village_name
    if named is not None and incident.village_name != named.value:
        # Its village is the one its events name (checked above): that village's row is off.
        village = Named(
            f"villages row {incident.village_id} (the village of incident {incident_id})",
            {"table": "villages", "village_id": incident.village_id},
        )
        return named.differs(village, "name", incident.village_name)

    for d in dispatches:
        if d.id not in replay.dispatches:
            return Mismatch(
                f"dispatches row {d.id} (incident {incident_id})",
                "no dispatched event records it",
                "dispatch_unrecorded",
                {"dispatch_id": d.id},
            )
    by_id = {d.id: d for d in dispatches}
    for dispatch_id, told in replay.dispatches.items():
        stored = by_id.get(dispatch_id)
        if stored is None:
            e = replay.dispatched[dispatch_id]
            return Mismatch(
                f"dispatches (incident {incident_id})",
                f"no row for dispatch {dispatch_id}, which its dispatched event records "
                f"(incident_events row id={e.id}, seq {e.seq})",
                "dispatch_row_missing",
                {"dispatch_id": dispatch_id, **_event(e)},
            )
        row = Named(
            f"dispatches row {dispatch_id} (incident {incident_id})",
            {"table": "dispatches", "dispatch_id": dispatch_id},
        )
        if (found := _first_difference(row, stored, told)) is not None:
            return found
    by_tier = {t.tier: t for t in tiers}
    for t in tiers:
        if t.tier not in replay.tiers:
            return Mismatch(
                f"chain_tiers row (incident {incident_id}, tier {t.tier})",
                "no such tier",
                "tier_unknown",
                {"tier": value_of(t.tier)},
            )
    for tier, told in replay.tiers.items():
        row = Named(
            f"chain_tiers row (incident {incident_id}, tier {tier})",
            {"table": "chain_tiers", "tier": tier},
        )
        stored = by_tier.get(tier)
        if stored is None:
            return Mismatch(
                f"chain_tiers (incident {incident_id})",
                f"no row for tier {tier}",
                "tier_row_missing",
                {"tier": tier},
            )
        if (found := _first_difference(row, stored, told)) is not None:
            return found
        if (found := _deadline(row, stored, reported, replay, tier)) is not None:
            return found
    return _skips_mismatch(incident_id, skips, replay)


def _skips_mismatch(incident_id: str, skips: Rows, replay: _Replay) -> Mismatch | None:
    """The teams the report skipped (``incident_skips``, shown with the incident) against its
    ``skipped`` events, one a team, written in the report's transaction."""
    for s in skips:
        if s.team_id not in replay.skipped:
            return Mismatch(
                f"incident_skips row (incident {incident_id}, team {s.team_id})",
                "no skipped event records it",
                "skip_unrecorded",
                {"team_id": s.team_id},
            )
    by_team = {s.team_id: s for s in skips}
    for team_id, e in replay.skipped.items():
        stored = by_team.get(team_id)
        if stored is None:
            return Mismatch(
                f"incident_skips (incident {incident_id})",
                f"no row for team {team_id}, which its skipped event records "
                f"(incident_events row id={e.id}, seq {e.seq})",
                "skip_row_missing",
                {"team_id": team_id, **_event(e)},
            )
        data: dict[str, Any] = e.data if isinstance(e.data, dict) else {}
        told = {"at": Told(e.at, e, "skipped event")}
        for column in ("team_name", "tier", "reason", "detail", "unit"):
            if column in data:
                value = data[column]
                # The row keeps the first 255 characters of the reason in words.
                if column == "detail" and isinstance(value, str):
                    value = value[:DETAIL_CHARS]
                told[column] = Told(value, e, "skipped event")
        row = Named(
            f"incident_skips row (incident {incident_id}, team {team_id})",
            {"table": "incident_skips", "team_id": team_id},
        )
        if (found := _first_difference(row, stored, told)) is not None:
            return found
    return None


# As many characters of a skip's detail as its row keeps (``IncidentSkip.detail``).
DETAIL_CHARS = 255


def _deadline(
    row: Named, stored: Row[Any], reported: Row[Any], replay: _Replay, tier: int
) -> Mismatch | None:
    """What no event states outright about a tier's deadline, but its events bound."""
    try:
        due = reported.at + timedelta(seconds=stored.target_s)
    except (OverflowError, TypeError, ValueError):
        due = None
    if due != stored.deadline:
        what = f"reported event plus its target_s {show(stored.target_s)}"
        found = Told(due, reported, what).differs(row, "deadline", stored.deadline)
        values = {**found.values, "target_s": value_of(stored.target_s)}
        return Mismatch(found.row, found.reason, found.code, values)
    for bound, kind in ((replay.met.get(tier), "met"), (replay.cancelled.get(tier), "closed")):
        if bound is not None and stored.deadline < bound.at:
            reason = (
                f"deadline {show(stored.deadline)} is before its {kind} event (incident_events "
                f"row id={bound.id}, seq {bound.seq}: {show(bound.at)})"
            )
            values = {
                **row.keys,
                "column": "deadline",
                "stored": value_of(stored.deadline),
                "event_type": kind,
                **_event(bound),
                "event_at": value_of(bound.at),
            }
            return Mismatch(row.name, reason, "deadline_before_event", values)
    return None
