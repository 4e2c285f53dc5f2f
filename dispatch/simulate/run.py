"""A simulation run: a town, its leaders on their phones, incidents at a rate, the live chain and
the report at the end: with these teams, what share of incidents would meet 1 minute?"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from dispatch.config import DEFAULT_TARGETS, Settings
from dispatch.incidents.models import ArrivalSource, Category
from dispatch.reports.service import rank
from dispatch.simulate.leaders import (
    CONTROL_FRAMES,
    RESTARTING,
    Behaviour,
    Crowd,
    WorkerJob,
    reconnect_delay,
    refused_token,
    split,
    until,
)
from dispatch.simulate.seed import (
    SIMULATED_INCIDENT,
    Made,
    Seeded,
    retire_database,
    seed_api,
    seed_database,
    undo_api,
)
from dispatch.simulate.town import Town

CATEGORIES = [c.value for c in Category]
# The simulation's own server records an arrival as the server's defaults do: a fix within
# 50 m of the incident, of an accuracy within 30 m (the leaders' fixes claim 8 m).
GEOFENCE_M = 50.0
GEOFENCE_ACCURACY_M = 30.0
HOPS = ("delivered", "accepted", "arrived")
# The server's escalation delay (no tier-1 dispatch accepted this long after the report: the
# wider ring is alerted), in the town's seconds: its own server's is divided by --speed.
ESCALATION_AFTER_S: float = Settings.model_fields["escalation_after_s"].default


@dataclass
class Options:
    town: Town
    incidents: int = 30
    # Incidents per minute of simulated time.
    rate_per_min: float = 6.0
    behaviour: Behaviour = field(default_factory=Behaviour)
    seed: int = 1
    processes: int = 1
    # Own server: this database (a fresh SQLite file when None). External server: its URL.
    database_url: str | None = None
    url: str | None = None
    admin: str | None = None
    password: str | None = None
    keep_town: bool = False
    # Its own server's targets in the town's seconds (a running server keeps its own, which
    # the report reads from each incident's chain).
    targets: tuple[float, float, float] = DEFAULT_TARGETS
    port: int | None = None
    # Its own server's database connections, and the seeding's and the retiring's, give a host
    # unheard for this long up (DISPATCH_DB_HOST_TIMEOUT_S, which its server reads too).
    db_host_timeout_s: float = Settings.model_fields["db_host_timeout_s"].default


Say = Callable[[str], None]


def simulate(options: Options, say: Say = print) -> dict[str, Any]:
    """Run the whole simulation and return its report."""
    with tempfile.TemporaryDirectory(prefix="dispatch-sim-") as scratch:
        if options.url is None:
            return _with_own_server(options, Path(scratch), say)
        return asyncio.run(_with_external_server(options, say))


def _with_own_server(options: Options, scratch: Path, say: Say) -> dict[str, Any]:
    database_url = options.database_url or f"sqlite+aiosqlite:///{scratch / 'sim.db'}"
    secret = secrets.token_urlsafe(32)
    say(f"seeding {options.town.name}: {_describe(options.town)}")
    # One transaction: stopped part-way, it leaves nothing behind.
    dark_s = options.db_host_timeout_s
    seeded = asyncio.run(
        seed_database(database_url, options.town, secret=secret, host_timeout_s=dark_s)
    )
    try:
        return _serve_and_drive(options, scratch, database_url, secret, seeded, say)
    finally:
        # A database of the caller's outlives the run: its next run must not meet this town,
        # nor anyone use its accounts.
        if options.database_url is not None:
            teams = [] if options.keep_town else seeded.team_ids
            asyncio.run(retire_database(database_url, teams, seeded.user_ids, dark_s))
            if teams:
                say(f"retired the {len(teams)} simulated teams (--keep-town keeps them)")


def _serve_and_drive(
    options: Options, scratch: Path, database_url: str, secret: str, seeded: Seeded, say: Say
) -> dict[str, Any]:
    speed = options.behaviour.speed
    port = options.port or _free_port()
    scaled = ",".join(f"{t / speed:g}" for t in options.targets)
    env = {
        **os.environ,
        "DISPATCH_DATABASE_URL": database_url,
        "DISPATCH_SECRET_KEY": secret,
        "DISPATCH_SECRET_FILE": str(scratch / "secret.key"),
        "DISPATCH_CHAIN_TARGETS": scaled,
        "DISPATCH_ESCALATION_AFTER_S": f"{ESCALATION_AFTER_S / speed:g}",
        "DISPATCH_TIMER_POLL_S": str(min(1.0, 10.0 / speed)),
        # One simulated operator reports every incident, faster than any person would.
        "DISPATCH_REPORT_BURST": "100000",
        "DISPATCH_REPORT_PER_MIN": "100000",
        # The geofence the leaders' fixes are sent for (Behaviour.fixes_within_m).
        "DISPATCH_GEOFENCE_RADIUS_M": f"{GEOFENCE_M:g}",
        "DISPATCH_GEOFENCE_ACCURACY_M": f"{GEOFENCE_ACCURACY_M:g}",
    }
    log = scratch / "server.log"
    with log.open("wb") as handle:
        server = subprocess.Popen(
            [sys.executable, "-m", "dispatch", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            # Out of the terminal's reach: Ctrl-C stops the run, which closes its incidents
            # on this server and then stops it.
            process_group=0,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(server, base, log)
        say(
            f"server on {base} (targets {scaled} s, escalation after "
            f"{ESCALATION_AFTER_S / speed:g} s: real times / {speed:g})"
        )
        behaviour = replace(options.behaviour, fixes_within_m=GEOFENCE_M)
        return asyncio.run(_drive(replace(options, behaviour=behaviour), base, seeded, say))
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()


async def _with_external_server(options: Options, say: Say) -> dict[str, Any]:
    assert options.url is not None
    if not options.admin or options.password is None:
        raise SystemExit("simulating against a running server needs --admin and its password")
    base = options.url.rstrip("/")
    say(f"creating {options.town.name} on {base}: {_describe(options.town)}")
    made = Made()
    try:
        seeded = await seed_api(base, options.town, options.admin, options.password, made)
        return await _drive(options, base, seeded, say)
    finally:
        # Whatever the seeding got to, however the run ended: a simulated team left in service
        # would be alerted for the server's own incidents and count as its tier-1 cover.
        await _undo(base, options, made, say)


async def _undo(base: str, options: Options, made: Made, say: Say) -> None:
    assert options.admin is not None and options.password is not None
    try:
        retired, _ = await undo_api(
            base, options.admin, options.password, made, retire=not options.keep_town
        )
    except (httpx.HTTPError, RuntimeError) as error:
        # Said, not raised: the run's own error, if it has one, is the one to show.
        say(
            f"could not retire the simulated teams (sim-{made.run}) and disable their "
            f"leaders' accounts: {error or type(error).__name__}; retire them on the console"
        )
        return
    if retired:
        say(f"retired the {retired} simulated teams again (--keep-town keeps them)")


def _describe(town: Town) -> str:
    counts = town.counts()
    return (
        f"{counts['fixed_post']} fixed posts, {counts['mobile']} mobile teams, "
        f"{counts['patrol']} patrol, {counts['response']} response; {town.leader_count} leaders"
    )


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_ready(server: subprocess.Popen[bytes], base: str, log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the server stopped: {log.read_text()[-2000:]}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"the server did not become ready: {log.read_text()[-2000:]}")


# ---------------------------------------------------------------- the run


class Console:
    """The operator's view over the websocket: every incident's chain as it changes."""

    def __init__(self, speed: float, say: Say) -> None:
        self.speed = speed
        self.say = say
        self.numbers: dict[str, int] = {}
        self.chains: dict[str, dict[int, dict[str, Any]]] = {}
        # Each incident as last heard, its dispatches with it (the board's copy is whole).
        self.incidents: dict[str, dict[str, Any]] = {}
        self.changed = asyncio.Event()
        # Sockets the server dropped, and connections made again after them, resuming.
        self.drops = 0
        self.resumed = 0

    def number(self, incident_id: str, n: int) -> None:
        self.numbers[incident_id] = n
        for tier in self.chains.get(incident_id, {}).values():
            if tier["status"] != "pending":
                self._show(incident_id, tier)

    def update(self, incident: dict[str, Any]) -> None:
        if "dispatches" in incident:
            self.incidents[incident["id"]] = incident
        known = self.chains.setdefault(incident["id"], {})
        for tier in incident["chain"]:
            before = known.get(tier["tier"])
            known[tier["tier"]] = tier
            newly_settled = tier["status"] != "pending" and (
                before is None or before["status"] == "pending"
            )
            if newly_settled and incident["id"] in self.numbers:
                self._show(incident["id"], tier)
        self.changed.set()

    def _show(self, incident_id: str, tier: dict[str, Any]) -> None:
        n = self.numbers[incident_id]
        label = f"#{n:<4} tier {tier['tier']} ({_short(tier['target_s'] * self.speed)})"
        if tier["status"] == "met":
            self.say(f"{label}: met, on scene after {tier['elapsed_s'] * self.speed:.0f} s")
        elif tier["status"] == "breached":
            incident = self.incidents.get(incident_id)
            covered = tier["covered"] if incident is None else zone_covered(incident, tier["tier"])
            why = "no team's zone covers it" if not covered else "nobody on scene in time"
            self.say(f"{label}: BREACHED ({why})")
        else:
            self.say(f"{label}: {tier['status']}")

    def settled(self, incident_ids: list[str]) -> bool:
        for incident_id in incident_ids:
            chain = self.chains.get(incident_id)
            if chain is None or len(chain) < 3:
                return False
            if any(t["status"] == "pending" for t in chain.values()):
                return False
        return True

    def on_the_way(self, incident_ids: list[str]) -> bool:
        """Whether a team is on its way to a tier nobody has reached yet: accepted, not
        arrived (after the tier settled, its time on scene is still to come)."""
        for incident_id in incident_ids:
            incident = self.incidents.get(incident_id)
            if incident is None:
                continue
            waiting = {t["tier"] for t in incident["chain"] if t["elapsed_s"] is None}
            for d in incident["dispatches"]:
                if d["tier"] in waiting and d.get("accepted_at") and not d.get("arrived_at"):
                    return True
        return False

    async def listen(self, ws_url: str, base_url: str, token: str) -> None:
        """The board's messages for the whole run; after the server drops the socket (a
        restart, 1013, a blip), a new one resuming from the last seq, as the console page
        does: without it, what a tier came to after the drop was heard only at the end."""
        rng = random.Random()
        last = 0
        attempt = 0
        welcomed_before = False
        while True:
            socket = None
            welcomed = False
            try:
                socket = await connect(ws_url, compression=None, ping_interval=None)
                hello = {"type": "hello", "token": token, "resume_from": last}
                await socket.send(json.dumps(hello))
                async for raw in socket:
                    message = json.loads(raw)
                    kind = message["type"]
                    if kind == "welcome":
                        self.resumed += welcomed_before
                        welcomed = welcomed_before = True
                        attempt = 0
                    elif kind == "resync":
                        # What it skipped cannot be replayed: its incidents, read again.
                        last = int(message["seq"])
                        await self._reload(base_url, token)
                    elif kind not in CONTROL_FRAMES and isinstance(message.get("seq"), int):
                        if kind == "incident.updated":
                            self.update(message["data"])
                        last = max(last, message["seq"])
                        await socket.send(json.dumps({"type": "ack", "seq": last}))
            except (ConnectionClosed, OSError, TimeoutError, InvalidHandshake):
                pass
            finally:
                if socket is not None:
                    await socket.close()
            if socket is not None and refused_token(socket):
                self.say(f"the console's socket was refused its token ({socket.close_code})")
                return
            self.drops += welcomed
            attempt += 1
            restarting = socket is not None and socket.close_code == RESTARTING
            await asyncio.sleep(reconnect_delay(attempt, restarting, rng))

    async def _reload(self, base_url: str, token: str) -> None:
        """Every incident the run follows, as the server has it now."""
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            for incident_id in list(self.chains):
                with contextlib.suppress(httpx.HTTPError):
                    reply = await http.get(f"/api/v1/incidents/{incident_id}", headers=headers)
                    if reply.status_code == 200:
                        self.update(reply.json())


# Refusals that say when to try again: the server's limit on one user's reports (429), and a
# moment it cannot take a report (503, its database busy or away).
HELD_BACK = (429, 503)
# 503s in a row for one report before the run gives up: the server is not coming back soon.
MAX_UNAVAILABLE = 10


@dataclass
class Reports:
    """What a run has reported, as it goes: what its end closes, however the run ended."""

    ids: list[str] = field(default_factory=list)
    # The request of a report on the wire when the run was stopped: let finish, so that an
    # incident the server stored is closed with the others.
    in_flight: asyncio.Future[httpx.Response] | None = None
    # Times the server held a report back (HELD_BACK), and the seconds it asked for in all.
    held_back: int = 0
    held_back_s: float = 0.0
    # The gaps drawn between reports, in the town's seconds, and the longest target of a
    # chain the server set, in its seconds (a running server's are its own).
    drawn_s: float = 0.0
    longest_s: float = 0.0
    # Sockets the server dropped during the run (the phones', the console's), and how many
    # came back resuming: a drop a phone never came back from is a team that answers nothing.
    disconnects: dict[str, int] = field(default_factory=dict)
    # How long, in the server's seconds, the teams on the way were let go on after every tier
    # had settled: a tier nobody reached by then has its time on scene beyond the run's end.
    overtime_s: float = 0.0


async def _drive(options: Options, base: str, seeded: Seeded, say: Say) -> dict[str, Any]:
    behaviour = options.behaviour
    ws_url = base.replace("http://", "ws://").replace("https://", "wss://") + "/ws"
    jobs = [
        WorkerJob(
            ws_url,
            base,
            part,
            "simulate",
            behaviour,
            seed=options.seed * 1000 + i,
            run_seed=options.seed,
        )
        for i, part in enumerate(split(seeded.leaders, options.processes))
    ]
    crowd = Crowd(jobs)
    # In a thread; a run stopped meanwhile waits for it, as the workers it starts must be told
    # to stop once they are there.
    starting = asyncio.ensure_future(asyncio.to_thread(crowd.start))
    console = Console(behaviour.speed, say)
    listening: asyncio.Task[None] | None = None
    reports = Reports()
    started = time.monotonic()
    try:
        connected = await asyncio.shield(starting)
        say(f"{connected['connected']} leaders online ({connected['failed']} failed to connect)")
        listening = asyncio.create_task(console.listen(ws_url, base, seeded.operator_token))
        headers = {"Authorization": f"Bearer {seeded.operator_token}"}
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            finished = False
            try:
                await _report_all(options, http, headers, console, reports, say)
                # Every tier settles by its deadline at the latest: wait for that and a margin.
                deadline = time.monotonic() + reports.longest_s + 5.0
                while not console.settled(reports.ids) and time.monotonic() < deadline:
                    console.changed.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(console.changed.wait(), 1.0)
                # A tier breached with a team on its way has its time on scene still to come:
                # the teams go on until they arrive, for the longest target again at most (a
                # tier nobody reached by then is counted beyond the run's end).
                reports.overtime_s = reports.longest_s
                deadline = time.monotonic() + reports.longest_s
                while console.on_the_way(reports.ids) and time.monotonic() < deadline:
                    console.changed.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(console.changed.wait(), 1.0)
                incidents = [await _fetch(http, headers, i) for i in reports.ids]
                finished = True
            finally:
                # A run that stopped part-way (Ctrl-C, a refusal) leaves no incident open on the
                # server either: they are in its record, and open ones are on its console.
                await _close(http, headers, reports, say, finished=finished)
    finally:
        if listening is not None:
            listening.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed, OSError):
                await listening
        await asyncio.wait([starting])
        with contextlib.suppress(Exception, asyncio.CancelledError):
            starting.result()  # raised above if it was awaited; retrieved here if not
        results = await asyncio.to_thread(crowd.stop)
    acts: dict[str, int] = {}
    for result in results:
        for key, value in result["acts"].items():
            acts[key] = acts.get(key, 0) + value
    reports.disconnects = {
        "phones": sum(r["drops"] for r in results),
        "phones_resumed": sum(r["resumed"] for r in results),
        "console": console.drops,
        "console_resumed": console.resumed,
    }
    report = summarise(options, incidents, acts, time.monotonic() - started, reports)
    for line in report["lines"]:
        say(line)
    return report


async def _report_all(
    options: Options,
    http: httpx.AsyncClient,
    headers: dict[str, str],
    console: Console,
    reports: Reports,
    say: Say,
) -> None:
    behaviour = options.behaviour
    rng = random.Random(options.seed)
    gap_s = 60.0 / options.rate_per_min
    # Each report at its moment on one timeline: slept after each answer instead, the gaps
    # would add every report's round trip, --speed times over, and the rate come out lower
    # than asked.
    report_at = time.monotonic()
    for n in range(1, options.incidents + 1):
        await until(report_at)
        lon, lat = options.town.incident_point(rng)
        body = {
            "location": {"lon": lon, "lat": lat},
            "category": rng.choice(CATEGORIES),
            "description": f"{SIMULATED_INCIDENT} #{n}",
        }
        incident, held_s = await _report(http, headers, body, n, reports, say)
        # Held back, the rest of the timeline waits with it: the gaps stay as drawn.
        report_at += held_s
        reports.ids.append(incident["id"])
        reports.longest_s = max(reports.longest_s, *(t["target_s"] for t in incident["chain"]))
        console.update(incident)
        console.number(incident["id"], n)
        teams = len(incident["dispatches"])
        say(f"#{n:<4} reported ({body['category']}), {teams} teams alerted")
        if n < options.incidents:
            gap = rng.expovariate(1.0) * gap_s
            reports.drawn_s += gap
            report_at += gap / behaviour.speed


async def _report(
    http: httpx.AsyncClient,
    headers: dict[str, str],
    body: dict[str, Any],
    n: int,
    reports: Reports,
    say: Say,
) -> tuple[dict[str, Any], float]:
    """Report one incident: sent again with its key when the server says when to (Retry-After
    on 429 or 503), as a console does. Its incident, and the seconds it was held back."""
    # The same key each time: a report the server stored and whose answer was lost is
    # answered with that incident, not stored twice.
    keyed = {**headers, "Idempotency-Key": secrets.token_hex(16)}
    held_s = 0.0
    unavailable = 0
    while True:
        # Shielded: a run stopped meanwhile lets the request finish, to close what it made.
        reports.in_flight = asyncio.ensure_future(
            http.post("/api/v1/incidents", json=body, headers=keyed)
        )
        reply = await asyncio.shield(reports.in_flight)
        reports.in_flight = None
        if reply.status_code == 201:
            incident: dict[str, Any] = reply.json()
            return incident, held_s
        wait_s = _retry_after(reply)
        unavailable = unavailable + 1 if reply.status_code == 503 else 0
        if wait_s is None or unavailable > MAX_UNAVAILABLE:
            raise RuntimeError(f"reporting failed: {reply.status_code} {reply.text[:300]}")
        reports.held_back += 1
        reports.held_back_s += wait_s
        held_s += wait_s
        why = "its report limit" if reply.status_code == 429 else "busy"
        say(f"#{n:<4} held back by the server ({reply.status_code}, {why}): again in {wait_s:g} s")
        await asyncio.sleep(wait_s)


def _retry_after(reply: httpx.Response) -> float | None:
    """The seconds a refusal asks the client to wait (Retry-After), if it is one that does."""
    if reply.status_code not in HELD_BACK:
        return None
    try:
        wait_s = float(reply.headers.get("Retry-After", ""))
    except ValueError:
        return None
    return wait_s if math.isfinite(wait_s) and wait_s >= 0 else None


async def _close(
    http: httpx.AsyncClient,
    headers: dict[str, str],
    reports: Reports,
    say: Say,
    *,
    finished: bool,
) -> None:
    """Close every incident the run reported (and the one on the wire when it stopped, if the
    server stored it); one that cannot be closed is said, not raised."""
    if reports.in_flight is not None:
        with contextlib.suppress(Exception):
            reply = await asyncio.wait_for(reports.in_flight, 30)
            if reply.status_code == 201:
                reports.ids.append(reply.json()["id"])
    left = 0
    for incident_id in reports.ids:
        try:
            reply = await http.post(f"/api/v1/incidents/{incident_id}/close", headers=headers)
        except httpx.HTTPError:
            left += 1
            continue
        # 409: closed already.
        left += reply.status_code not in (200, 409)
    if left:
        say(f"could not close {left} of the incidents the run reported: close them on the console")
    elif not finished and reports.ids:
        say(f"the run stopped: closed the {len(reports.ids)} incidents it reported")


async def _fetch(http: httpx.AsyncClient, headers: dict[str, str], incident_id: str) -> Any:
    reply = await http.get(f"/api/v1/incidents/{incident_id}", headers=headers)
    reply.raise_for_status()
    return reply.json()


# ---------------------------------------------------------------- the report


def summarise(
    options: Options,
    incidents: list[dict[str, Any]],
    acts: dict[str, int],
    wall_s: float,
    reports: Reports | None = None,
) -> dict[str, Any]:
    """Shares of incidents meeting each tier, time on scene, and the hops, in real seconds;
    ``reports``: how the run reported them (the gaps it drew, how the server held it back)."""
    speed = options.behaviour.speed
    total = len(incidents)
    tiers: dict[str, Any] = {}
    lines = ["", f"Report: {total} incidents in {options.town.name} ({_describe(options.town)})"]
    if options.town.incident_places:
        lines.append(f"  at the places of {len(options.town.incident_places)} past incidents")
    reports = reports or Reports()
    rates = _rates(options, incidents, reports.drawn_s)
    targets = _targets(incidents, speed, options.targets)
    if rates["achieved"] is not None:
        drawn = "" if rates["drawn"] is None else f"its random gaps {rates['drawn']:.1f}/min, "
        lines.append(
            f"  reported at {rates['achieved']:.1f}/min by the server's record "
            f"({drawn}asked {options.rate_per_min:g}/min)"
        )
    held_back = {"times": reports.held_back, "s": round(reports.held_back_s, 1)}
    dropped = reports.disconnects
    if dropped.get("phones") or dropped.get("console"):
        lines.append(
            f"  sockets the server dropped: {dropped['phones']} of the phones' "
            f"({dropped['phones_resumed']} came back), {dropped['console']} of the console's "
            f"({dropped['console_resumed']} came back)"
        )
    if reports.held_back:
        lines.append(
            f"  the server held reports back {reports.held_back} times, "
            f"{reports.held_back_s:g} s in all (Retry-After)"
        )
    for tier in (1, 2, 3):
        rows = [t for i in incidents for t in i["chain"] if t["tier"] == tier]
        # Covered: a team of the tier was alerted from its own zone, not only from the
        # escalation's wider ring (the server's ``covered`` is any team alerted).
        covered = sum(1 for i in incidents if zone_covered(i, tier))
        met = sum(1 for t in rows if t["status"] == "met")
        # Time on scene, of every incident a team of the tier was alerted to: one nobody of the
        # tier reached by the run's end counts as beyond it, not left out.
        alerted = [t for t in rows if t["covered"] or t["elapsed_s"] is not None]
        on_scene = [math.inf if t["elapsed_s"] is None else t["elapsed_s"] * speed for t in alerted]
        arrivals = sum(1 for t in alerted if t["elapsed_s"] is not None)
        entry = {
            "target_s": targets[tier],
            "covered": covered,
            "met": met,
            "breached": sum(1 for t in rows if t["status"] == "breached"),
            "met_share": met / total if total else 0.0,
            "met_share_of_covered": met / covered if covered else 0.0,
            "on_scene_median_s": _finite(statistics.median(on_scene) if on_scene else None),
            "on_scene_p90_s": _finite(_p90(on_scene)),
            "on_scene_alerted": len(alerted),
            "on_scene_arrivals": arrivals,
            "on_scene_beyond": len(alerted) - arrivals,
        }
        tiers[str(tier)] = entry
        beyond = (
            f", {entry['on_scene_beyond']} not by the run's end" if entry["on_scene_beyond"] else ""
        )
        lines.append(
            f"  tier {tier} ({_short(targets[tier])}): covered {_pct(covered, total)}, "
            f"met {_pct(met, total)} of all ({_pct(met, covered)} of covered), "
            f"on scene median {_on_scene(entry, 'on_scene_median_s')}, "
            f"p90 {_on_scene(entry, 'on_scene_p90_s')} "
            f"(of {len(alerted)} alerted: {arrivals} on scene{beyond})"
        )
    hops = _hops(incidents, speed)
    dispatches = [d for i in incidents for d in i["dispatches"]]
    counts = {
        "dispatches": len(dispatches),
        **{
            hop: sum(1 for d in dispatches if d.get(f"{hop}_at") and not d.get(f"{hop}_implied"))
            for hop in HOPS
        },
    }
    lines.append(
        "  hops (median, all tiers, in the town's seconds): "
        + ", ".join(f"{k} {v:.1f} s" if v is not None else f"{k} -" for k, v in hops.items())
    )
    # How the server recorded each arrival: the phones' fixes (geofence) or the arrive button.
    sources = {
        source.value: sum(1 for d in dispatches if d.get("arrival_source") == source.value)
        for source in ArrivalSource
    }
    lines.append(
        f"  leaders: {acts.get('accepted', 0)} accepted, {acts.get('arrived', 0)} arrived "
        f"({acts.get('geofence', 0)} by geofence, {acts.get('button', 0)} by button), "
        f"{acts.get('missed', 0)} missed, {acts.get('closed', 0)} stopped by the close, "
        f"{acts.get('errors', 0)} errors"
    )
    share = tiers["1"]["met_share"]
    lines.append(f"With these teams, {share:.0%} of incidents would meet {_long(targets[1])}.")
    return {
        "town": options.town.name,
        "teams": options.town.counts(),
        "leaders": options.town.leader_count,
        "incidents": total,
        "speed": speed,
        "wall_s": round(wall_s, 1),
        # How long the teams on their way went on after every tier had settled, in the town's
        # seconds: a tier nobody reached by then is on scene "beyond the run's end".
        "overtime_s": round(reports.overtime_s * speed, 1),
        "rate_per_min": rates,
        "held_back": held_back,
        "disconnects": dropped,
        "tiers": tiers,
        "hops_median_s": hops,
        "dispatch_counts": counts,
        "arrival_sources": sources,
        "leader_actions": acts,
        "lines": lines,
        "incident_ids": [i["id"] for i in incidents],
        "incident_outcomes": [_outcome(i) for i in incidents],
    }


def compared(first: dict[str, Any], second: dict[str, Any]) -> list[str]:
    """Two reports side by side: each tier's share met and covered, and its median time on
    scene, with the second's difference from the first."""
    names = [first["town"], second["town"]]
    if names[0] == names[1]:
        names = ["first", "second"]
    width = max(12, *(_shown_width(n) + 2 for n in names))

    def row(label: str, a: str, b: str, change: str) -> str:
        return f"  {label:<26}{_padded(a, width)}{_padded(b, width)}{change}"

    lines = [
        "",
        f"Compared on the same {first['incidents']} incidents:",
        row("", names[0], names[1], "change"),
    ]
    for tier in ("1", "2", "3"):
        a, b = first["tiers"][tier], second["tiers"][tier]
        target = _short(a["target_s"])
        for label, key in ((f"met ({target})", "met_share"), ("covered", None)):
            share_a = a[key] if key else a["covered"] / first["incidents"]
            share_b = b[key] if key else b["covered"] / second["incidents"]
            change = f"{round((share_b - share_a) * 100):+d} points"
            lines.append(row(f"tier {tier} {label}", f"{share_a:.0%}", f"{share_b:.0%}", change))
        median_a, median_b = a["on_scene_median_s"], b["on_scene_median_s"]
        change = "-"
        if median_a is not None and median_b is not None:
            change = f"{round(median_b - median_a):+d} s"
        label = f"tier {tier} on scene median"
        shown_a, shown_b = (_on_scene(x, "on_scene_median_s") for x in (a, b))
        lines.append(row(label, shown_a, shown_b, change))
    return lines


def _shown_width(text: str) -> int:
    """Columns a terminal gives ``text``: two for a Chinese character."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _padded(text: str, width: int) -> str:
    return text + " " * max(1, width - _shown_width(text))


def _on_scene(entry: dict[str, Any], key: str) -> str:
    """A tier's time on scene as the report shows it: seconds; "beyond the run" where the
    incidents at that rank had nobody of the tier on scene by the run's end; "-" for none."""
    value = entry[key]
    if value is not None:
        return f"{value:.0f} s"
    return "beyond the run" if entry.get("on_scene_alerted") else "-"


def _finite(value: float | None) -> float | None:
    return None if value is None or math.isinf(value) else value


def zone_covered(incident: dict[str, Any], tier: int) -> bool:
    """Whether a team of ``tier`` covers the incident's place: one was alerted from its own
    zone (ring 0). The server's ``covered`` also counts the escalation's wider ring."""
    return any(d["tier"] == tier and d.get("ring", 0) == 0 for d in incident["dispatches"])


def _outcome(incident: dict[str, Any]) -> dict[str, Any]:
    """Where an incident was and how each tier came out there ("uncovered" where no team of
    the tier covers the place): the places a layout leaves short, for a map."""
    return {
        "id": incident["id"],
        "lon": incident["location"]["lon"],
        "lat": incident["location"]["lat"],
        "tiers": {
            str(t["tier"]): t["status"] if zone_covered(incident, t["tier"]) else "uncovered"
            for t in incident["chain"]
        },
    }


def _hops(incidents: list[dict[str, Any]], speed: float) -> dict[str, float | None]:
    from datetime import datetime

    spans: dict[str, list[float]] = {hop: [] for hop in HOPS}
    for incident in incidents:
        for d in incident["dispatches"]:
            alerted = datetime.fromisoformat(d["alerted_at"])
            for hop in HOPS:
                # A hop an arrival implied took no time of its own.
                if d.get(f"{hop}_at") and not d.get(f"{hop}_implied"):
                    at = datetime.fromisoformat(d[f"{hop}_at"])
                    spans[hop].append((at - alerted).total_seconds())
    # All in the town's seconds, as every other figure: the network's and the server's real
    # time counts --speed times over there, in delivery as in the accept and arrival after it.
    return {
        f"alert→{hop}": (statistics.median(v) * speed if v else None) for hop, v in spans.items()
    }


def _rates(
    options: Options, incidents: list[dict[str, Any]], drawn_s: float | None
) -> dict[str, float | None]:
    """Incidents a minute of the town's time: asked for, drawn (the random gaps around the
    asked rate the run drew, what it meant to report at) and achieved (from the times the
    server recorded the reports at, scaled back by --speed)."""
    from datetime import datetime

    gaps = len(incidents) - 1
    drawn = gaps * 60.0 / drawn_s if gaps > 0 and drawn_s else None
    achieved = None
    if gaps > 0:
        times = sorted(datetime.fromisoformat(i["reported_at"]) for i in incidents)
        span_s = (times[-1] - times[0]).total_seconds() * options.behaviour.speed
        achieved = gaps * 60.0 / span_s if span_s > 0 else None
    return {
        "asked": options.rate_per_min,
        "drawn": None if drawn is None else round(drawn, 2),
        "achieved": None if achieved is None else round(achieved, 2),
    }


def _targets(
    incidents: list[dict[str, Any]], speed: float, otherwise: tuple[float, float, float]
) -> dict[int, float]:
    """Each tier's target in the town's seconds, as the server set it on the chains (every
    tier row carries it): a running server's are its own. Should it have changed while the run
    went on (a restart with new settings), the most incidents' target."""
    targets = {}
    for tier in (1, 2, 3):
        rows = [t for i in incidents for t in i["chain"] if t["tier"] == tier]
        seen = Counter(round(t["target_s"] * speed, 2) for t in rows)
        targets[tier] = seen.most_common(1)[0][0] if seen else otherwise[tier - 1]
    return targets


def _short(seconds: float) -> str:
    """A target as the report's labels give it: "1 min", "90 s"."""
    # A sped-up server's targets are the real ones divided and written to six digits.
    seconds = round(seconds, 2)
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def _long(seconds: float) -> str:
    """A target in words: "1 minute", "3 seconds"."""
    seconds = round(seconds, 2)
    if seconds >= 60 and seconds % 60 == 0:
        minutes = seconds / 60
        return f"{minutes:g} minute" + ("" if minutes == 1 else "s")
    return f"{seconds:g} second" + ("" if seconds == 1 else "s")


def _p90(values: list[float]) -> float | None:
    """The nearest-rank 90th percentile, the reports' rule (the ceil(0.9 n)-th value)."""
    if not values:
        return None
    return sorted(values)[rank(90, len(values)) - 1]


def _pct(part: int, whole: int) -> str:
    return f"{part / whole:.0%}" if whole else "-"
