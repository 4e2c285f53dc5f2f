"""Team leaders' phones: websocket clients that receive alerts, acknowledge them, accept after a
human delay and travel to the scene at walking, motorcycle or car speed, sending position fixes
on the way as the phone page does, so that the server records the arrival by geofence.

Clients run in worker processes (a Python websocket client costs tens of microseconds of CPU per
message, so one process saturates long before a server does). A worker talks to its parent over
a pipe: ``ready`` once its sockets are connected, then ``stop``, then its results.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import multiprocessing
import random
import resource
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Literal

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from dispatch.background import Background
from geo.geodesy import wgs84_geod

log = logging.getLogger(__name__)

Mode = Literal["simulate", "measure"]
TRY_AGAIN_LATER = 1013
# Close codes a client reads (docs/delivery.md, docs/api.md): the server restarting, the token
# refused, and the login ended (logged out, the account disabled, the password reset, ended by
# an administrator): after those no reconnect brings the token back.
RESTARTING = 1012
POLICY = 1008
LOGIN_ENDED = frozenset({4001, 4002, 4003, 4004})
REFUSED = LOGIN_ENDED | {POLICY}
# Frames whose seq is the mailbox's (welcome, resync) or the socket's (pong), not a message's.
CONTROL_FRAMES = ("welcome", "resync", "pong")
CONNECT_ATTEMPTS = 8
# Real-world seconds between position fixes on the way: the phone page's POSITION_EVERY_MS.
POSITION_EVERY_S = 4.0
# A phone's GPS outdoors (metres, 1 sigma): well within the server's geofence accuracy.
FIX_ACCURACY_M = 8.0
# How a journey ended: a fix recorded the arrival, the travel time ran out without one, or the
# incident was closed on the way.
Journey = Literal["geofence", "on_scene", "closed"]


@dataclass(frozen=True)
class Leader:
    user_id: str
    token: str
    team_id: str
    kind: str
    # Only one leader of a team accepts and goes; the others just receive and acknowledge.
    acts: bool = True
    # The team's name in the town (without the run's tag): with the run's seed and the
    # incident, what the leader's draws for an alert come from.
    team_key: str = ""


@dataclass(frozen=True)
class Behaviour:
    """How simulated people behave; every duration is in real-world seconds."""

    walk_mps: float = 1.4
    ride_mps: float = 8.3
    # Police cars in town traffic.
    drive_mps: float = 11.0
    # Streets are not straight lines.
    detour: float = 1.3
    # Seconds from the alert on screen to pressing accept: lognormal around this median.
    accept_median_s: float = 5.0
    accept_sigma: float = 0.6
    # Share of alerts a leader never answers (phone in a pocket, out of battery).
    miss_share: float = 0.05
    # Everything runs this many times faster than real life; the server's targets must match.
    speed: float = 1.0
    # The geofence radius of a server the simulation set itself: a fix from farther away can
    # record nothing, so only the first fix on the way and those within it (and a metre) are
    # sent, and the record is the one every fix would have left. At --speed 30 every fix
    # would be thirty phones' worth of requests, and the box's queue, counted thirty times,
    # would be the teams' time. None (a running server's radius is its own): every fix.
    fixes_within_m: float | None = None

    def may_record(self, left_m: float) -> bool:
        """Whether a fix this far from the scene could record the arrival."""
        return self.fixes_within_m is None or left_m <= self.fixes_within_m + 1.0

    def travel_s(self, kind: str, distance_m: float, rng: random.Random) -> float:
        """Fixed posts walk from their site, mobile teams ride from theirs; police are out on
        patrol somewhere in their zone, so they start nearer than their station."""
        if kind in ("fixed_post", "mobile"):
            return distance_m * self.detour / self.ground_mps(kind)
        return distance_m * rng.uniform(0.1, 1.0) * self.detour / self.ground_mps(kind)

    def ground_mps(self, kind: str) -> float:
        """The team's speed along the streets: on foot, on a motorcycle or in a car."""
        if kind == "fixed_post":
            return self.walk_mps
        if kind == "mobile":
            return self.ride_mps
        return self.drive_mps


@dataclass
class WorkerJob:
    ws_url: str
    base_url: str
    leaders: list[Leader]
    mode: Mode = "simulate"
    behaviour: Behaviour = field(default_factory=Behaviour)
    seed: int = 0
    # The run's seed, the same in every worker: a team's leader answers the same incident
    # alike in two runs of one seed, whichever worker plays him (see Phones.draws).
    run_seed: int = 0
    ack: bool = True
    # Handshakes in flight at once per worker: enough to connect quickly, few enough not to
    # swamp the server (each handshake reads the database twice).
    connect_concurrency: int = 16
    # As the pages do (live.js, DISPATCH_WS_CLIENT_PING_S): after this long with nothing heard
    # on its socket, a phone sends {"type": "ping"}, which the server answers with a pong; None:
    # never (a client that relies on the protocol's own pings alone).
    ping_after_s: float | None = None


@dataclass
class _Heard:
    """When a socket last heard anything (time.monotonic())."""

    at: float


@dataclass
class _Seq:
    """The last seq of a leader's mailbox his phone has (the resume point)."""

    last: int = 0


PING = json.dumps({"type": "ping"})


@dataclass(frozen=True)
class Receipt:
    """One alert as a phone received it (measure mode)."""

    tag: str
    user_id: str
    at: float  # time.monotonic(), shared by every process on the machine
    size: int


def start_workers(jobs: list[WorkerJob]) -> list[tuple[BaseProcess, Connection]]:
    context = multiprocessing.get_context("spawn")
    started: list[tuple[BaseProcess, Connection]] = []
    for job in jobs:
        parent, child = context.Pipe()
        process = context.Process(target=worker_main, args=(job, child), daemon=True)
        process.start()
        child.close()
        started.append((process, parent))
    return started


def worker_main(job: WorkerJob, pipe: Connection) -> None:
    # Ctrl-C reaches every process of the terminal's group: the parent stops the workers when
    # it has done what stopping takes (their results, the incidents closed).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    logging.basicConfig(level=logging.WARNING)
    try:
        result = asyncio.run(_worker(job, pipe))
    except Exception as error:  # reported to the parent, which decides what to do
        pipe.send(("error", repr(error)))
        return
    pipe.send(("done", result))


async def _worker(job: WorkerJob, pipe: Connection) -> dict[str, Any]:
    phones = Phones(job)
    await phones.connect_all()
    pipe.send(("ready", {"connected": phones.connected, "failed": phones.failed}))
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_reader(pipe.fileno(), stop.set)
    try:
        await stop.wait()
    finally:
        loop.remove_reader(pipe.fileno())
    pipe.recv()
    return await phones.finish()


def reconnect_delay(attempt: int, restarting: bool, rng: random.Random) -> float:
    """Seconds before coming back after a lost socket, as the pages wait (live.js): at once
    for a restarting server (1012), else from 0.5 s doubling up to 5 s; randomised in the
    upper half, so a town's phones do not all come back in the same millisecond."""
    base = 0.5 if restarting else min(5.0, 0.5 * 2**attempt)
    return rng.uniform(base / 2, base)


def refused_token(socket: ClientConnection) -> bool:
    """Whether the server closed the socket for its token (1008, or its login ended: 4001 to
    4004): nothing to come back with."""
    return socket.close_code in REFUSED


async def until(moment: float) -> None:
    """Sleep until ``moment`` of time.monotonic() (at once if it has passed)."""
    await asyncio.sleep(max(0.0, moment - time.monotonic()))


class Phones:
    """All the leaders one worker plays."""

    def __init__(self, job: WorkerJob) -> None:
        self.job = job
        self.rng = random.Random(job.seed)
        self.connected = 0
        self.failed = 0
        self.receipts: list[Receipt] = []
        # One payload per tag (measure mode), so a baseline can send the same bytes.
        self.samples: dict[str, str] = {}
        # "arrived" counts every arrival; "geofence" and "button" say how each was recorded;
        # "closed" the alerts a leader stopped answering because the incident was closed before
        # he was done (his next act refused 409: nothing recorded); "fixes" the position fixes
        # sent.
        self.acts_done: dict[str, int] = {
            "accepted": 0,
            "arrived": 0,
            "geofence": 0,
            "button": 0,
            "missed": 0,
            "closed": 0,
            "errors": 0,
            "fixes": 0,
        }
        # Page-like pings sent (``ping_after_s``) and the server's pongs heard.
        self.pings = 0
        self.pongs = 0
        # Sockets the server dropped (a restart, 1013 for a phone too slow, a lost line), and
        # connections made again after them, resuming (simulate mode).
        self.drops = 0
        self.resumed = 0
        # The alerts each acting leader has taken up, by dispatch: one the server sends again
        # (after a resync, "again": true) is the same alert, answered once.
        self._taken: set[str] = set()
        self._sockets: list[ClientConnection] = []
        self._tasks = Background()
        self._http: httpx.AsyncClient | None = None

    async def connect_all(self) -> None:
        if self.job.mode == "simulate":
            self._http = httpx.AsyncClient(base_url=self.job.base_url, timeout=30)
        gate = asyncio.Semaphore(self.job.connect_concurrency)

        async def one(leader: Leader) -> None:
            for attempt in range(CONNECT_ATTEMPTS):
                async with gate:
                    try:
                        socket = await self._open(leader)
                        break
                    except ConnectionClosed as error:
                        # 1013: the server sheds handshakes while busy; phones back off, retry.
                        busy = error.rcvd is not None and error.rcvd.code == TRY_AGAIN_LATER
                        if not busy or attempt == CONNECT_ATTEMPTS - 1:
                            self._failed(leader, error)
                            return
                    except (OSError, TimeoutError, InvalidHandshake) as error:
                        self._failed(leader, error)
                        return
                await asyncio.sleep(self.rng.uniform(0.5, 1.5) * 2 ** min(attempt, 4))
            self.connected += 1
            self._tasks.start(self._phone(leader, socket))

        await asyncio.gather(*(one(leader) for leader in self.job.leaders))

    async def _phone(self, leader: Leader, socket: ClientConnection) -> None:
        """One leader's phone for the whole run: its socket, and after the server drops it
        (a restart, 1013, a blip) a new one resuming from the last seq it had, as the pages
        do; a phone that did not come back would leave every later alert of its team
        unanswered, counted as the layout's breach."""
        seq = _Seq()
        attempt = 0
        while True:
            self._sockets.append(socket)
            heard = _Heard(time.monotonic())
            pinging = None
            if self.job.ping_after_s is not None:
                pinging = asyncio.create_task(
                    self._ping_when_quiet(socket, heard, self.job.ping_after_s)
                )
            try:
                await self._listen(leader, socket, heard, seq)
            finally:
                if pinging is not None:
                    pinging.cancel()
            # Measuring, a dropped socket stays dropped: its missing receipts are the figure.
            if self.job.mode != "simulate":
                return
            self.drops += 1
            if refused_token(socket):
                log.warning(
                    "leader %s: token refused (%s), not coming back",
                    leader.user_id,
                    socket.close_code,
                )
                return
            restarting = socket.close_code == RESTARTING
            while True:
                attempt += 1
                await asyncio.sleep(reconnect_delay(attempt, restarting, self.rng))
                try:
                    socket = await self._open(leader, seq.last)
                    break
                except ConnectionClosed as error:
                    if error.rcvd is not None and error.rcvd.code in REFUSED:
                        log.warning(
                            "leader %s: token refused (%s)", leader.user_id, error.rcvd.code
                        )
                        return
                except (OSError, TimeoutError, InvalidHandshake):
                    pass
                restarting = False
            attempt = 0
            self.resumed += 1

    def _failed(self, leader: Leader, error: BaseException) -> None:
        log.warning("leader %s could not connect: %r", leader.user_id, error)
        self.failed += 1

    async def _open(self, leader: Leader, resume_from: int = 0) -> ClientConnection:
        # Compression off, as the server has it: deflate costs memory and CPU on both ends.
        socket = await connect(
            self.job.ws_url, compression=None, open_timeout=60, ping_interval=None
        )
        hello = {"type": "hello", "token": leader.token, "resume_from": resume_from}
        await socket.send(json.dumps(hello))
        welcome = json.loads(await asyncio.wait_for(socket.recv(), 60))
        if welcome.get("type") != "welcome":
            await socket.close()
            raise ConnectionClosed(None, None)
        return socket

    async def _listen(
        self, leader: Leader, socket: ClientConnection, heard: _Heard, seq: _Seq
    ) -> None:
        """Until the socket closes: each message handled, its seq kept for a resume."""
        with contextlib.suppress(ConnectionClosed):
            async for raw in socket:
                at = heard.at = time.monotonic()
                text = raw if isinstance(raw, str) else raw.decode()
                message = json.loads(text)
                kind = message.get("type")
                if kind == "pong":
                    self.pongs += 1
                if kind == "resync":
                    # What it skipped cannot be replayed; an alert among it that still waits
                    # for the team comes again after it (docs/delivery.md), so the phone
                    # carries on from here with nothing to reload.
                    seq.last = int(message["seq"])
                elif kind not in CONTROL_FRAMES and isinstance(message.get("seq"), int):
                    seq.last = message["seq"]
                if kind != "alert":
                    continue
                if self.job.ack:
                    await socket.send(json.dumps({"type": "ack", "seq": message["seq"]}))
                if self.job.mode == "measure":
                    self._record(leader, message, text, at)
                elif leader.acts and self._take(leader, message["data"]):
                    self._tasks.start(self._respond(leader, message["data"]))

    def _take(self, leader: Leader, alert: dict[str, Any]) -> bool:
        """Whether the leader takes the alert up: not if he has this dispatch already."""
        key = f"{leader.user_id}|{alert['dispatch']['id']}"
        if key in self._taken:
            return False
        self._taken.add(key)
        return True

    async def _ping_when_quiet(
        self, socket: ClientConnection, heard: _Heard, after_s: float
    ) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                quiet_s = time.monotonic() - heard.at
                if quiet_s < after_s:
                    await asyncio.sleep(after_s - quiet_s)
                    continue
                await socket.send(PING)
                self.pings += 1
                # The pong is heard like any other message; until it comes, no second ping.
                heard.at = time.monotonic()

    def _record(self, leader: Leader, message: dict[str, Any], text: str, at: float) -> None:
        tag = str(message["data"]["incident"].get("description") or "")
        self.receipts.append(Receipt(tag, leader.user_id, at, len(text)))
        self.samples.setdefault(tag, text)

    async def _respond(self, leader: Leader, alert: dict[str, Any]) -> None:
        """Read the alert, accept after a while, and head for the scene with the phone sending
        fixes; the server records the arrival by geofence, or the leader presses arrive."""
        behaviour = self.job.behaviour
        dispatch = alert["dispatch"]
        incident = alert["incident"]
        headers = {"Authorization": f"Bearer {leader.token}"}
        assert self._http is not None
        rng = self.draws(leader, incident)
        if rng.random() < behaviour.miss_share:
            self.acts_done["missed"] += 1
            return
        # Each act at its moment from the alert's receipt, however long the one before took
        # to answer: sped up, a request's real time would count --speed times over.
        shown_at = time.monotonic() + rng.uniform(0.5, 3.0) / behaviour.speed
        accept_s = rng.lognormvariate(math.log(behaviour.accept_median_s), behaviour.accept_sigma)
        accept_at = shown_at + accept_s / behaviour.speed
        path = f"/api/v1/dispatches/{dispatch['id']}"
        try:
            await until(shown_at)
            if not await self._post(f"{path}/shown", headers, None):
                self.acts_done["closed"] += 1
                return
            await until(accept_at)
            if not await self._post(f"{path}/accept", headers, None):
                self.acts_done["closed"] += 1
                return
            self.acts_done["accepted"] += 1
            journey = await self._travel(
                leader, dispatch, incident["location"], headers, rng, accept_at
            )
            if journey == "closed":
                self.acts_done["closed"] += 1
                return
            if journey == "on_scene":
                location = incident["location"]
                body = {
                    "location": {"lon": location["lon"], "lat": location["lat"]},
                    "accuracy_m": FIX_ACCURACY_M,
                }
                if not await self._post(f"{path}/arrive", headers, body):
                    self.acts_done["closed"] += 1
                    return
            self.acts_done["arrived"] += 1
            self.acts_done["geofence" if journey == "geofence" else "button"] += 1
        except (httpx.HTTPError, RuntimeError) as error:
            log.warning("leader %s: %r", leader.user_id, error)
            self.acts_done["errors"] += 1

    def draws(self, leader: Leader, incident: dict[str, Any]) -> random.Random:
        """The leader's chances for one alert: whether he misses it, how long he takes, where
        he starts from. Drawn from the run's seed, his team's name in the town and the
        incident's number in the run, so two layouts compared on one seed differ by their
        teams alone: a team in both answers each incident the same way in both."""
        if not leader.team_key:
            return self.rng
        incident_key = incident.get("description") or incident["id"]
        return random.Random(f"{self.job.run_seed}|{leader.team_key}|{incident_key}")

    async def _travel(
        self,
        leader: Leader,
        dispatch: dict[str, Any],
        scene: dict[str, Any],
        headers: dict[str, str],
        rng: random.Random,
        began: float,
    ) -> Journey:
        """From the dispatch's distance on a random bearing straight towards the scene, covered
        in the travel time (streets' detour included) from ``began`` (the moment of accepting),
        with a fix at once and then every POSITION_EVERY_S until one records the arrival or
        the travel time is over."""
        behaviour = self.job.behaviour
        travel_s = behaviour.travel_s(leader.kind, float(dispatch["distance_m"]), rng)
        # Police start somewhere on patrol, nearer than the dispatch's distance: the straight
        # line is what the travel time covers at the team's speed, less the streets' detour.
        start_m = travel_s * behaviour.ground_mps(leader.kind) / behaviour.detour
        bearing = rng.uniform(0.0, 360.0)
        path = f"/api/v1/dispatches/{dispatch['id']}/position"
        every_s = POSITION_EVERY_S / behaviour.speed
        ticks = 0
        while True:
            # From the clock, not the count of fixes: a late fix is sent from where the team
            # is by then.
            on_way_s = (time.monotonic() - began) * behaviour.speed
            left_m = start_m * max(0.0, 1.0 - on_way_s / travel_s) if travel_s > 0 else 0.0
            if ticks == 0 or behaviour.may_record(left_m):
                lon, lat, _ = wgs84_geod().fwd(scene["lon"], scene["lat"], bearing, left_m)
                answer = await self._fix(leader, path, headers, lon, lat)
                if answer == "closed":
                    return "closed"
                if answer == "arrived":
                    return "geofence"
            if on_way_s >= travel_s:
                return "on_scene"
            ticks += 1
            # On the phone's timer, however long a fix took to answer.
            await until(began + ticks * every_s)

    async def _fix(
        self, leader: Leader, path: str, headers: dict[str, str], lon: float, lat: float
    ) -> Literal["arrived", "on_the_way", "closed"]:
        """One position fix. A refused or failed one is counted and the journey goes on, as
        the phone goes on with its next."""
        assert self._http is not None
        body = {"location": {"lon": lon, "lat": lat}, "accuracy_m": FIX_ACCURACY_M}
        self.acts_done["fixes"] += 1
        try:
            reply = await self._http.post(path, headers=headers, json=body)
        except httpx.HTTPError as error:
            log.warning("leader %s: %s: %r", leader.user_id, path, error)
            self.acts_done["errors"] += 1
            return "on_the_way"
        # 409: the incident was closed meanwhile; there is nowhere left to go.
        if reply.status_code == 409:
            return "closed"
        if reply.status_code >= 400:
            log.warning("leader %s: %s: %s", leader.user_id, path, reply.status_code)
            self.acts_done["errors"] += 1
            return "on_the_way"
        return "arrived" if reply.json()["arrived"] else "on_the_way"

    async def _post(self, path: str, headers: dict[str, str], body: Any) -> bool:
        """Whether the server recorded the act: False when the incident was closed meanwhile
        (409), as a real leader would find it; any other refusal is a RuntimeError."""
        assert self._http is not None
        reply = await self._http.post(path, headers=headers, json=body)
        if reply.status_code == 409:
            return False
        if reply.status_code >= 400:
            raise RuntimeError(f"{path}: {reply.status_code} {reply.text[:200]}")
        return True

    async def finish(self) -> dict[str, Any]:
        await self._tasks.cancel()
        await asyncio.gather(*(s.close() for s in self._sockets), return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()
        return {
            "connected": self.connected,
            "failed": self.failed,
            "receipts": [(r.tag, r.user_id, r.at, r.size) for r in self.receipts],
            "samples": self.samples,
            "acts": self.acts_done,
            "pings": self.pings,
            "pongs": self.pongs,
            "drops": self.drops,
            "resumed": self.resumed,
        }


def split(leaders: list[Leader], parts: int) -> list[list[Leader]]:
    parts = max(1, min(parts, len(leaders)))
    return [leaders[i::parts] for i in range(parts)]


class Crowd:
    """Worker processes playing every leader; connect, run, stop and collect."""

    def __init__(self, jobs: list[WorkerJob]) -> None:
        self.jobs = jobs
        self.workers: list[tuple[BaseProcess, Connection]] = []

    def start(self, on_progress: Callable[[str], None] = lambda _: None) -> dict[str, int]:
        self.workers = start_workers(self.jobs)
        totals = {"connected": 0, "failed": 0}
        for process, pipe in self.workers:
            # A worker that dies without a word (killed, out of memory) must not hang the run.
            while not pipe.poll(1.0):
                if not process.is_alive():
                    self.stop()
                    raise RuntimeError(f"a leader worker exited with {process.exitcode}")
            kind, payload = pipe.recv()
            if kind == "error":
                self.stop()
                raise RuntimeError(f"a leader worker failed: {payload}")
            totals["connected"] += payload["connected"]
            totals["failed"] += payload["failed"]
            on_progress(f"{totals['connected']} leaders connected")
        return totals

    def stop(self) -> list[dict[str, Any]]:
        results = []
        for _, pipe in self.workers:
            with contextlib.suppress(OSError, BrokenPipeError):
                pipe.send("stop")
        for process, pipe in self.workers:
            with contextlib.suppress(EOFError, OSError):
                if pipe.poll(120):
                    kind, payload = pipe.recv()
                    if kind == "done":
                        results.append(payload)
            process.join(10)
            if process.is_alive():
                process.kill()
        self.workers = []
        return results
