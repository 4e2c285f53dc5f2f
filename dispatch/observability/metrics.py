"""Prometheus metrics, counted from what commits.

The incident record is append-only: every hop is an ``IncidentEvent`` added in the transaction
that makes it true. So rather than sprinkling counters through the domains, the runtime's
sessions report the events (and the alert messages and notifier attempts) they flushed, and the
counters move only once that transaction has committed; a rolled-back report counts nothing.
What is a state rather than an event (open sockets, the fan-out listener) is read at scrape.

The workers of ``dispatch serve --workers N`` share their metrics through files in a directory
that command makes for them (prometheus_client's multiprocess mode): any worker's /metrics
answers for the whole server. There the states are written to those files instead, by each
worker every SHARED_STATE_S and before each scrape it answers.
"""

from __future__ import annotations

import asyncio
import collections
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import event, inspect
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key
from sqlalchemy.pool import QueuePool

from alerts.store import OUTBOX_KEY, Envelope
from dispatch.audit.chain import WRITTEN_KEY, Written
from dispatch.incidents.models import AnyDispatch, ChainTier, Dispatch, IncidentEvent
from dispatch.notifiers.models import NotificationAttempt
from dispatch.outages import error_kind
from dispatch.reachability.models import TestAlert
from dispatch.runtime import Runtime

PENDING_KEY = "observability.pending"

# Seconds from the alert to the phone's receipt: most land well under a second.
DELIVERY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0)
# Seconds from the report to the first team of a tier on scene, around the 60/180/300 targets.
ARRIVAL_BUCKETS = (15.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 240.0, 300.0, 420.0, 600.0)
ROUND_TRIP_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)

# How often a worker writes its states for the others to answer with (multiprocess mode).
SHARED_STATE_S = 1.0

SOCKETS_HELP = "Open websockets by role."
REPLAYED_HELP = (
    "Messages sent from the store rather than live (resume after a reconnect, catch-up)."
)
FANOUT_CONNECTED_HELP = (
    "1 while the cross-process fan-out listener is connected (absent on SQLite)."
)
FANOUT_ERRORS_HELP = "Errors of the cross-process fan-out listener."
CONNECTIONS_HELP = "Database connections by pool (writes, reads) and state."
OFFSET_HELP = "The host's wall clock minus the server's time, which does not follow a step of it."
ROLES = ("admin", "operator", "leader", "auditor")


def multiprocess_dir() -> str | None:
    """The directory the workers of ``dispatch serve --workers N`` share their metrics in, or
    None in a process that counts alone. prometheus_client chose where its values live when
    it was imported, from the same variable."""
    if not getattr(values.ValueClass, "_multiprocess", False):
        return None
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR")


@dataclass
class _Pending:
    """What a transaction did, held until it commits."""

    events: list[tuple[str, dict[str, Any], datetime, Dispatch | None]] = field(
        default_factory=list
    )
    attempts: list[tuple[str, bool]] = field(default_factory=list)
    round_trips: list[float] = field(default_factory=list)
    # Tiers reached: the tier and the seconds from the report to its first team on scene.
    reached: list[tuple[str, float]] = field(default_factory=list)


class _Tally:
    """A committed transaction's increments, by counter and label values: each series moves
    once, by its sum (a report dispatches a dozen teams of two or three tiers)."""

    def __init__(self) -> None:
        self.counts: collections.Counter[tuple[Counter, tuple[str, ...]]] = collections.Counter()

    def add(self, metric: Counter, *labels: str) -> None:
        self.counts[metric, labels] += 1


class Metrics:
    """Every metric of one server process, in a registry of its own (never the global one)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        # One series a counter, without the *_created companions nobody graphs.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.incidents = Counter("dispatch_incidents_reported", "Incidents reported.", registry=r)
        self.dispatches = Counter(
            "dispatch_dispatches",
            "Teams dispatched, by tier and ring (0: zone covers, 1: escalation).",
            ["tier", "ring"],
            registry=r,
        )
        self.alerts_sent = Counter(
            "dispatch_alerts_sent", "Alert messages stored for leaders.", ["tier"], registry=r
        )
        self.alerts_delivered = Counter(
            "dispatch_alerts_delivered",
            "Dispatches whose alert a leader's phone confirmed receiving.",
            ["tier"],
            registry=r,
        )
        self.alerts_acknowledged = Counter(
            "dispatch_alerts_acknowledged",
            "Dispatches a leader accepted (已接警).",
            ["tier"],
            registry=r,
        )
        self.delivery_latency = Histogram(
            "dispatch_report_to_delivery_seconds",
            "From the alert (the report, or the escalation that added the team) to the phone's "
            "receipt.",
            ["tier"],
            buckets=DELIVERY_BUCKETS,
            registry=r,
        )
        self.arrival = Histogram(
            "dispatch_time_to_arrival_seconds",
            "From the report to the first team of the tier on scene, once a tier.",
            ["tier"],
            buckets=ARRIVAL_BUCKETS,
            registry=r,
        )
        self.met = Counter("dispatch_chain_met", "Chain tiers met in time.", ["tier"], registry=r)
        self.breaches = Counter(
            "dispatch_chain_breaches", "Chain tiers breached (超时).", ["tier"], registry=r
        )
        # A counter only goes up: a breach the record withdraws later (an arrival that came
        # in by the deadline, a close by it) stays in the breaches and is counted here too.
        self.breach_withdrawals = Counter(
            "dispatch_chain_breach_withdrawals",
            "Breaches the record withdrew (an arrival or a close that came in by the "
            "deadline); breaches minus these are the tiers breached.",
            ["tier"],
            registry=r,
        )
        # Every tier's series from the start, at 0: a series that first appears at 1 has no
        # increase over a window to Prometheus, and the dashboard's sums need all three.
        for tier in ("1", "2", "3"):
            for chain in (self.met, self.breaches, self.breach_withdrawals):
                chain.labels(tier)
        self.escalations = Counter(
            "dispatch_escalations", "Escalations to the wider tier-1 ring.", registry=r
        )
        self.database_errors = Counter(
            "dispatch_database_errors",
            "Errors raised by the database driver, by kind: an outage's (connection, locked, "
            "read_only, resources, shutdown, io) or a refusal's (constraint, data, statement, "
            "conflict), else other.",
            ["error"],
            registry=r,
        )
        self.notify_attempts = Counter(
            "dispatch_notify_attempts",
            "Outbound notifier attempts, by channel and result.",
            ["channel", "result"],
            registry=r,
        )
        self.notify_outcomes = Counter(
            "dispatch_notify_outcomes",
            "Final outcomes of outbound notifications (notified / notify_failed).",
            ["channel", "outcome"],
            registry=r,
        )
        self.test_alerts = Counter(
            "dispatch_test_alerts", "Test alerts sent to leaders.", registry=r
        )
        self.test_round_trip = Histogram(
            "dispatch_test_alert_round_trip_seconds",
            "From sending a test alert to the phone's acknowledgement.",
            buckets=ROUND_TRIP_BUCKETS,
            registry=r,
        )
        self.shared_dir = multiprocess_dir()
        self.shared: _SharedState | None = None
        if self.shared_dir is None:
            r.register(_LiveState(runtime))
            self._exposed = r
        else:
            self.shared = _SharedState(runtime, r)
            # Every worker's files, this one's included; not this registry, which holds only
            # this worker's own counts.
            self._exposed = CollectorRegistry(auto_describe=True)
            multiprocess.MultiProcessCollector(self._exposed, self.shared_dir)  # type: ignore[no-untyped-call]
        self._session_class: type[Session] | None = None
        # Each labelled metric's series by its label values (``_series``).
        self._label_series: dict[tuple[Counter | Histogram, tuple[str, ...]], Any] = {}

    # ------------------------------------------------------------ wiring

    def install(self) -> None:
        """Count from this runtime's sessions and engine from now on."""
        if self.shared_dir is not None:
            forget_dead_workers(self.shared_dir)
        session_class: type[Session] = type("MeteredSession", (Session,), {})
        event.listen(session_class, "after_flush", self._after_flush)
        event.listen(session_class, "after_commit", self._after_commit)
        event.listen(session_class, "after_soft_rollback", self._after_rollback)
        self.runtime.sessionmaker.configure(sync_session_class=session_class)
        self._session_class = session_class
        for engine in self.runtime.pools().values():
            event.listen(engine.sync_engine, "handle_error", self._database_error)

    def uninstall(self) -> None:
        for engine in self.runtime.pools().values():
            event.remove(engine.sync_engine, "handle_error", self._database_error)
        if self.shared_dir is not None:
            # This worker's states leave the sums; its counts stay in them.
            multiprocess.mark_process_dead(os.getpid(), self.shared_dir)  # type: ignore[no-untyped-call]

    async def share_states(self) -> None:
        """In multiprocess mode, keep this worker's states written for the others to answer
        with."""
        assert self.shared is not None
        while True:
            self.shared.write()
            await asyncio.sleep(SHARED_STATE_S)

    def mount(self, app: FastAPI) -> None:
        app.state.metrics = self

    # ------------------------------------------------------------ session events

    def _after_flush(self, session: Session, _context: Any) -> None:
        pending: _Pending = session.info.setdefault(PENDING_KEY, _Pending())
        added = {obj.id: obj for obj in session.new if isinstance(obj, Dispatch)}
        for obj in session.new:
            if isinstance(obj, IncidentEvent):
                dispatch = _dispatch_of(session, obj.data, added)
                pending.events.append((obj.type, dict(obj.data), obj.at, dispatch))
            elif isinstance(obj, NotificationAttempt):
                pending.attempts.append((obj.channel, obj.ok))
        for obj in session.dirty:
            if isinstance(obj, TestAlert) and inspect(obj).attrs.acked_at.history.added:
                pending.round_trips.append((obj.round_trip_ms or 0.0) / 1000)
            elif isinstance(obj, ChainTier):
                # The tier's time is its first team's: a second team on scene, or a later one,
                # is no new measure of the tier (and a tier of two teams is not two tiers).
                reached = inspect(obj).attrs.arrived_at.history
                if reached.added and not any(reached.deleted):
                    pending.reached.append((str(obj.tier), float(obj.elapsed_s or 0.0)))

    def _after_commit(self, session: Session) -> None:
        pending: _Pending | None = session.info.pop(PENDING_KEY, None)
        outbox: list[Envelope] = session.info.get(OUTBOX_KEY, [])
        tally = _Tally()
        self._count_messages(tally, outbox)
        written: list[Written] = session.info.pop(WRITTEN_KEY, [])
        for kind, data, at, dispatch in written:
            self._count_event(tally, kind, data, at, dispatch)
        if pending is not None:
            for kind, data, at, dispatch in pending.events:
                self._count_event(tally, kind, data, at, dispatch)
            for channel, ok in pending.attempts:
                tally.add(self.notify_attempts, channel, "ok" if ok else "error")
            for seconds in pending.round_trips:
                self.test_round_trip.observe(seconds)
            for tier, seconds in pending.reached:
                self._series(self.arrival, (tier,)).observe(seconds)
        for (metric, labels), count in tally.counts.items():
            self._series(metric, labels).inc(count)

    def _after_rollback(self, session: Session, _previous: Any) -> None:
        session.info.pop(PENDING_KEY, None)
        session.info.pop(WRITTEN_KEY, None)

    def _database_error(self, context: ExceptionContext) -> None:
        error = context.sqlalchemy_exception or context.original_exception
        self.database_errors.labels(error_kind(error)).inc()

    # ------------------------------------------------------------ counting

    def _series(self, metric: Counter | Histogram, labels: tuple[str, ...]) -> Any:
        """The metric's series of these label values, kept: ``labels()`` checks and locks at
        every call, for the same few series each time (a tier, a ring)."""
        if not labels:
            return metric
        key = (metric, labels)
        series = self._label_series.get(key)
        if series is None:
            series = self._label_series[key] = metric.labels(*labels)
        return series

    def _count_messages(self, tally: _Tally, envelopes: Iterable[Envelope]) -> None:
        for envelope in envelopes:
            if envelope.type == "alert":
                tier = envelope.data.get("dispatch", {}).get("tier", "")
                tally.add(self.alerts_sent, str(tier))
            elif envelope.type == "test_alert":
                tally.add(self.test_alerts)

    def _count_event(
        self,
        tally: _Tally,
        kind: str,
        data: dict[str, Any],
        at: datetime,
        dispatch: AnyDispatch | None,
    ) -> None:
        tier = str(data.get("tier", dispatch.tier if dispatch is not None else ""))
        if kind == "reported":
            tally.add(self.incidents)
        elif kind == "dispatched":
            tally.add(self.dispatches, tier, str(dispatch.ring if dispatch is not None else 0))
        elif kind in ("delivered", "accepted") and data.get("implied"):
            # Stood for by an arrival, not observed: neither a receipt nor a tap to count.
            return
        elif kind == "delivered":
            tally.add(self.alerts_delivered, tier)
            if dispatch is not None:
                latency = (at - dispatch.alerted_at).total_seconds()
                self._series(self.delivery_latency, (tier,)).observe(max(latency, 0.0))
        elif kind == "accepted":
            tally.add(self.alerts_acknowledged, tier)
        elif kind == "met":
            tally.add(self.met, tier)
            if data.get("breach_withdrawn"):
                tally.add(self.breach_withdrawals, tier)
        elif kind == "breached":
            tally.add(self.breaches, tier)
        elif kind == "closed":
            for withdrawn in data.get("breaches_withdrawn", ()):
                tally.add(self.breach_withdrawals, str(withdrawn))
        elif kind == "escalated":
            tally.add(self.escalations)
        elif kind in ("notified", "notify_failed"):
            tally.add(self.notify_outcomes, str(data.get("channel", "")), kind)

    # ------------------------------------------------------------ exposition

    def exposition(self) -> bytes:
        if self.shared is not None:
            self.shared.write()
        return generate_latest(self._exposed)


def _dispatch_of(
    session: Session, data: dict[str, Any], added: dict[str, Dispatch]
) -> Dispatch | None:
    """The dispatch an event is about, as this session holds it (it just added or changed it)."""
    dispatch_id = data.get("dispatch_id")
    if not isinstance(dispatch_id, str):
        return None
    if dispatch_id in added:
        return added[dispatch_id]
    found = session.identity_map.get(identity_key(Dispatch, dispatch_id))
    return found if isinstance(found, Dispatch) else None


class _LiveState(Collector):
    """States read when Prometheus scrapes: open sockets by role, the fan-out listener, the
    database pools, and how far the host clock is from the server's time."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def collect(self) -> Iterator[Metric]:
        sockets = GaugeMetricFamily("dispatch_websocket_connections", SOCKETS_HELP, labels=["role"])
        counts = self.runtime.hub.count_by_label()
        for role in sorted({*ROLES, *counts}):
            sockets.add_metric([role], counts.get(role, 0))
        yield sockets
        replayed = CounterMetricFamily("dispatch_replayed_messages", REPLAYED_HELP)
        replayed.add_metric([], self.runtime.hub.stats.replayed)
        yield replayed
        fanout = getattr(self.runtime, "fanout", None)
        connected = GaugeMetricFamily("dispatch_fanout_connected", FANOUT_CONNECTED_HELP)
        errors = CounterMetricFamily("dispatch_fanout_errors", FANOUT_ERRORS_HELP)
        if fanout is not None:
            connected.add_metric([], 1.0 if getattr(fanout, "connected", False) else 0.0)
            errors.add_metric([], float(getattr(fanout, "errors", 0)))
        yield connected
        yield errors
        yield self._connections()
        offset = GaugeMetricFamily("dispatch_clock_offset_seconds", OFFSET_HELP)
        offset.add_metric([], self.runtime.clock.offset_s())
        yield offset

    def _connections(self) -> GaugeMetricFamily:
        """The pools' connections: a writers' pool whose connections are all in use means
        units of work wait for one (DISPATCH_DB_POOL_SIZE)."""
        gauge = GaugeMetricFamily(
            "dispatch_db_connections", CONNECTIONS_HELP, labels=["pool", "state"]
        )
        for name, engine in self.runtime.pools().items():
            pool = engine.sync_engine.pool
            if isinstance(pool, QueuePool):
                gauge.add_metric([name, "in_use"], pool.checkedout())
                gauge.add_metric([name, "idle"], pool.checkedin())
        return gauge


class _SharedState:
    """What _LiveState reads at scrape, written instead to the workers' shared files, each with
    the multiprocess mode that makes the whole server's value of it: sockets and connections
    summed over the live workers, the listener the lowest of theirs (0 when any is down), the
    clock each worker's own (a ``pid`` label); the counters summed, a restarted worker's
    counts kept."""

    def __init__(self, runtime: Runtime, registry: CollectorRegistry) -> None:
        self.runtime = runtime
        r = registry
        self.sockets = Gauge(
            "dispatch_websocket_connections",
            SOCKETS_HELP,
            ["role"],
            multiprocess_mode="livesum",
            registry=r,
        )
        self.replayed = Counter("dispatch_replayed_messages", REPLAYED_HELP, registry=r)
        self.fanout_connected = Gauge(
            "dispatch_fanout_connected",
            FANOUT_CONNECTED_HELP,
            multiprocess_mode="livemin",
            registry=r,
        )
        self.fanout_errors = Counter("dispatch_fanout_errors", FANOUT_ERRORS_HELP, registry=r)
        self.connections = Gauge(
            "dispatch_db_connections",
            CONNECTIONS_HELP,
            ["pool", "state"],
            multiprocess_mode="livesum",
            registry=r,
        )
        self.offset = Gauge(
            "dispatch_clock_offset_seconds", OFFSET_HELP, multiprocess_mode="liveall", registry=r
        )
        # What the counters were written up to, from the hub's and the listener's own counts.
        self._replayed = 0
        self._fanout_errors = 0
        # Made, the gauges above already read 0 in this worker's files: written at once, or a
        # scrape before the first pass of share_states would hear, from a worker still
        # starting, that its listener is down.
        self.write()

    def write(self) -> None:
        runtime = self.runtime
        counts = runtime.hub.count_by_label()
        for role in sorted({*ROLES, *counts}):
            self.sockets.labels(role).set(counts.get(role, 0))
        replayed = runtime.hub.stats.replayed
        self.replayed.inc(replayed - self._replayed)
        self._replayed = replayed
        fanout = getattr(runtime, "fanout", None)
        if fanout is not None:
            self.fanout_connected.set(1.0 if getattr(fanout, "connected", False) else 0.0)
            errors = int(getattr(fanout, "errors", 0))
            self.fanout_errors.inc(errors - self._fanout_errors)
            self._fanout_errors = errors
        for name, engine in runtime.pools().items():
            pool = engine.sync_engine.pool
            if isinstance(pool, QueuePool):
                self.connections.labels(name, "in_use").set(pool.checkedout())
                self.connections.labels(name, "idle").set(pool.checkedin())
        self.offset.set(runtime.clock.offset_s())


def forget_dead_workers(directory: str) -> None:
    """Drop the states of workers that are gone (killed, restarted by the supervisor): their
    sockets and connections went with them. Their counts stay."""
    for file in Path(directory).glob("gauge_live*_*.db"):
        pid = int(file.stem.rsplit("_", 1)[1])
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]
        except PermissionError:
            pass  # alive, another user's


async def serve_metrics(request: Request) -> Response:
    metrics: Metrics = request.app.state.metrics
    return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
