"""What every benchmark shares: statistics, result rows, processes, databases, the fd limit."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
from sqlalchemy.engine import make_url

# The server the benchmarks' databases are made on, and how they reach it: its scratch
# databases are reached the same way (a DSN with ``?host=/var/run/postgresql``: its socket).
PG_ADMIN_DSN = os.environ.get("DISPATCH_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
HOST = "127.0.0.1"


# ---------------------------------------------------------------- statistics


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class Figure:
    """The median of several repetitions and their spread (min and max)."""

    median: float
    low: float
    high: float
    reps: int

    @staticmethod
    def of(values: Iterable[float]) -> Figure:
        values = [v for v in values if v == v]
        if not values:
            nan = float("nan")
            return Figure(nan, nan, nan, 0)
        return Figure(statistics.median(values), min(values), max(values), len(values))

    def show(self, unit: str) -> str:
        if self.reps == 0:
            return "-"
        text = f"{_number(self.median)} {unit}".strip()
        if self.reps > 1 and self.high > self.low:
            text += f" ({_number(self.low)}-{_number(self.high)})"
        return text


def _number(value: float) -> str:
    if value != value:
        return "nan"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


@dataclass
class Row:
    """One line of the table: our figure beside its baseline, with the target it must meet."""

    benchmark: str
    case: str
    metric: str
    unit: str
    ours: Figure
    baseline: Figure | None = None
    # ours / baseline, computed per repetition, then the median and spread of those.
    ratio: Figure | None = None
    target: str = ""
    met: bool | None = None
    note: str = ""

    def cells(self) -> list[str]:
        status = "" if self.met is None else ("met" if self.met else "MISSED")
        return [
            self.benchmark,
            self.case,
            self.metric,
            self.ours.show(self.unit),
            self.baseline.show(self.unit) if self.baseline else "",
            self.ratio.show("x") if self.ratio else "",
            self.target,
            status,
        ]


HEADER = ["benchmark", "case", "metric", "ours", "baseline", "ratio", "target", ""]


def ratios(ours: Sequence[float], baseline: Sequence[float]) -> Figure:
    """Ours over the baseline, repetition by repetition: the two lists pair up one to one, or
    the figures are not comparable (ValueError, not a ratio of the wrong pairs)."""
    if len(ours) != len(baseline):
        raise ValueError(
            f"{len(ours)} repetitions of ours against {len(baseline)} of the baseline: "
            "their ratios would pair the wrong ones"
        )
    return Figure.of(o / b for o, b in zip(ours, baseline, strict=True) if b)


def markdown_table(rows: Sequence[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for row in rows:
        lines.append("| " + " | ".join(c.replace("|", "/") for c in row.cells()) + " |")
    return "\n".join(lines)


def text_table(rows: Sequence[Row]) -> str:
    table = [HEADER, *(row.cells() for row in rows)]
    widths = [max(len(r[i]) for r in table) for i in range(len(HEADER))]
    out = []
    for n, r in enumerate(table):
        out.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def rows_json(rows: Sequence[Row]) -> list[dict[str, Any]]:
    return [asdict(row) for row in rows]


@dataclass
class Report:
    """Everything a run produced: rows for the table, notes, and raw figures for the JSON."""

    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)

    def note(self, text: str) -> None:
        print(f"  note: {text}", flush=True)
        self.notes.append(text)


def say(text: str) -> None:
    print(text, flush=True)


# ---------------------------------------------------------------- processes and limits


def raise_fd_limit() -> int:
    """Lift the soft open-files limit to the hard one; children inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else 1 << 20
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def rss_kib(pid: int) -> int:
    """Resident memory of one process."""
    rss: int = psutil.Process(pid).memory_info().rss
    return rss // 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    return _cpu_of(psutil.Process(pid))


def tree_cpu_seconds(pid: int) -> float:
    """CPU time a process and every process below it have used so far: a server started with
    ``--workers`` does its work in the children it spawned."""
    root = psutil.Process(pid)
    return sum(_cpu_or_gone(p) for p in [root, *root.children(recursive=True)])


def database_cpu_s() -> float:
    """CPU time that PostgreSQL's processes on this machine have used so far."""
    # By the process's name: a command line that merely mentions "postgresql" (this one's)
    # is not the database.
    return sum(
        _cpu_or_gone(p) for p in psutil.process_iter(["name"]) if p.info["name"] == "postgres"
    )


def _cpu_of(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _cpu_or_gone(process: psutil.Process) -> float:
    try:
        return _cpu_of(process)
    except psutil.NoSuchProcess:
        return 0.0  # ended since it was listed


@dataclass(frozen=True)
class BoxCpu:
    """The whole box's CPU time so far, every core, in seconds. On a shared virtual machine
    the host runs other guests on our cores: the time it took from us is "steal", and a figure
    measured while much was stolen is the host's hour, not the code's."""

    total: float
    stolen: float
    # Idle and waiting for input or output: nothing of the box's own ran.
    idle: float

    @staticmethod
    def read() -> BoxCpu:
        t = psutil.cpu_times()
        # The guest columns are already counted in user and nice: not added again.
        total = t.user + t.nice + t.system + t.idle + t.iowait + t.irq + t.softirq + t.steal
        return BoxCpu(total=total, stolen=t.steal, idle=t.idle + t.iowait)

    def stolen_share_since(self, before: BoxCpu) -> float:
        """The share of the box's CPU time the host took between ``before`` and this."""
        total = self.total - before.total
        return (self.stolen - before.stolen) / total if total else 0.0

    def busy_cores_since(self, before: BoxCpu) -> float:
        """How many of the box's cores its own processes kept busy between ``before`` and
        this, on average: neither idle nor taken by the host."""
        total = self.total - before.total
        if not total:
            return 0.0
        busy = total - (self.idle - before.idle) - (self.stolen - before.stolen)
        return busy / total * (os.cpu_count() or 1)


def stolen_since(before: BoxCpu) -> float:
    return BoxCpu.read().stolen_share_since(before)


class BoxProbe:
    """A fixed piece of Python work, timed in this process: a JSON document of some 24 KB
    parsed, and every 50th of 200k small dicts read, some megabytes walked. Steal is only the
    time the host took outright; other guests also slow the box through the caches and memory
    they share with it (the same work took 1.1 ms in one hour and 2.8 ms in another, with 1-2 %
    stolen), and this shows that."""

    def __init__(self) -> None:
        self._document = json.dumps(
            [{"id": n, "name": f"team {n}", "lonlat": [114.0 + n / 1e4, 22.8]} for n in range(400)]
        )
        self._objects = [{"n": n, "text": str(n)} for n in range(200_000)]

    def once_ms(self) -> float:
        began = time.perf_counter()
        json.loads(self._document)
        sum(1 for item in self._objects[::50] if item["n"])
        return (time.perf_counter() - began) * 1000

    def back_to_back_ms(self, times: int = 40) -> float:
        """The median of ``times`` runs one right after another (the first few, cold, left
        out): the box's speed at this moment, to set beside a run's figures."""
        for _ in range(5):
            self.once_ms()
        return statistics.median(self.once_ms() for _ in range(times))


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    base_url: str
    port: int
    log: Path

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http://", "ws://") + "/ws"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_process(
    argv: Sequence[str], env: Mapping[str, str], log: Path, port: int
) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as handle:
        return subprocess.Popen(
            list(argv), env=dict(env), stdout=handle, stderr=subprocess.STDOUT, cwd=os.getcwd()
        )


def wait_http(process: subprocess.Popen[bytes], url: str, log: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"server exited with {process.returncode}: {log.read_text()[-2000:]}"
            )
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"server not ready at {url}: {log.read_text()[-2000:]}")


# ---------------------------------------------------------------- plain HTTP/1.1 clients

# A report's POST is written to the socket as bytes built beforehand and its answer read off the
# stream. A full HTTP client library builds, sends and parses at a cost of its own (httpx added
# 1.5 ms at the median to a report's round trip on this box): inside the timed span on the
# client's side, and on two cores beside the server under test.


def post_request(path: str, body: Mapping[str, Any], token: str | None) -> bytes:
    """A POST of ``body`` as JSON, ready to write to a kept-alive connection."""
    payload = json.dumps(body).encode()
    head = [
        f"POST {path} HTTP/1.1",
        f"Host: {HOST}",
        "Content-Type: application/json",
        f"Content-Length: {len(payload)}",
    ]
    if token:
        head.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + payload


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One HTTP/1.1 response with a Content-Length: its status and body."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    return int(head[9:12]), await reader.readexactly(length)


async def open_kept_alive(
    port: int,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return reader, writer


class KeptAlive:
    """Kept-alive connections to one server, each carrying one request at a time; a request
    takes the idle one used last or opens another.

    The server closes a connection left idle past its keep-alive time (uvicorn: 5 s). A request
    written as that close crosses it gets no answer, not a byte: it was never read, so it is
    sent again on a new connection, as HTTP clients do for a request on a reused connection. A
    failure on a new connection is the server's and is raised."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._all: list[asyncio.StreamWriter] = []
        # Requests sent again after a reused connection turned out closed.
        self.resent = 0

    async def send(self, request: bytes) -> tuple[int, bytes, float, float]:
        """Status, body, the monotonic time the request was written (the connection already
        open) and the seconds until its answer was read."""
        while self._idle:
            reader, writer = self._idle.pop()
            if reader.at_eof() or writer.is_closing():
                continue  # closed by the server while idle
            try:
                return await self._exchange(reader, writer, request)
            except asyncio.IncompleteReadError as error:
                # Not a byte of the status line (readuntil's error, expected None) came: the
                # request was never read. An answer cut short is the server's failure.
                if error.partial or error.expected is not None:
                    raise
                self.resent += 1
            except ConnectionResetError:
                self.resent += 1
        reader, writer = await open_kept_alive(self.port)
        self._all.append(writer)
        return await self._exchange(reader, writer, request)

    async def _exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
    ) -> tuple[int, bytes, float, float]:
        began = time.monotonic()
        writer.write(request)
        status, body = await read_response(reader)
        elapsed = time.monotonic() - began
        self._idle.append((reader, writer))
        return status, body, began, elapsed

    async def close(self) -> None:
        for writer in self._all:
            writer.close()
        for writer in self._all:
            with contextlib.suppress(OSError):
                await writer.wait_closed()


# One operator reports every incident of a benchmark: lift the per-user report limit, which
# guards against a runaway client, not against load (its bucket is still taken per request).
UNLIMITED_REPORTS = {"DISPATCH_REPORT_BURST": "1000000", "DISPATCH_REPORT_PER_MIN": "1000000"}


def town_env(url: str, secret: str, work: Path) -> dict[str, str]:
    """The settings ``dispatch serve`` runs a seeded town with in the benchmarks: its database,
    the seed's secret, and escalation and deadlines an hour away. The benchmarks' leaders never
    accept, so every incident would escalate 20 s on and its wider ring's alerts, tagged with
    the same incident, would count as late receipts of the report; and a repetition's reports
    would breach a minute later, during the next one, adding the timer's work to its figures."""
    return {
        "DISPATCH_DATABASE_URL": url,
        "DISPATCH_SECRET_KEY": secret,
        "DISPATCH_SECRET_FILE": str(work / "secret.key"),
        "DISPATCH_ESCALATION_AFTER_S": "3600",
        "DISPATCH_CHAIN_TARGETS": "3600,3600,3600",
    }


@contextlib.contextmanager
def serve_bare(dsn: str, work: Path, workers: int = 1) -> Iterator[Served]:
    """The intake benchmark's bare endpoint (``bench/bare_intake.py``) on a free loopback
    port, with as many processes, until the block ends."""
    port = free_port()
    log = work / "bare.log"
    argv = [sys.executable, "-m", "bench.bare_intake", "--port", str(port), "--dsn", dsn]
    process = start_process([*argv, "--workers", str(workers)], os.environ, log, port)
    served = Served(process, f"http://{HOST}:{port}", port, log)
    try:
        wait_http(process, f"{served.base_url}/openapi.json", log)
        yield served
    finally:
        served.stop()


def serve_dispatch(env: Mapping[str, str], work: Path, name: str, workers: int = 1) -> Served:
    """`dispatch serve` as operators run it, on a free loopback port."""
    port = free_port()
    log = work / f"{name}.log"
    argv = [sys.executable, "-m", "dispatch", "serve", "--host", HOST, "--port", str(port)]
    argv += ["--workers", str(workers)]
    process = start_process(argv, {**os.environ, **UNLIMITED_REPORTS, **env}, log, port)
    base = f"http://{HOST}:{port}"
    try:
        wait_http(process, base + "/readyz", log)
    except BaseException:
        process.kill()
        raise
    return Served(process, base, port, log)


# ---------------------------------------------------------------- databases


@contextlib.asynccontextmanager
async def scratch_postgres(prefix: str) -> AsyncIterator[str]:
    """A PostgreSQL database of its own, dropped afterwards; yields its asyncpg DSN."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield database_dsn(PG_ADMIN_DSN, name)
    finally:
        admin = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def database_dsn(dsn: str, name: str) -> str:
    """``dsn`` naming the database ``name`` instead, on the same server reached the same way."""
    return make_url(dsn).set(database=name).render_as_string(hide_password=False)


def sqlalchemy_url(dsn: str) -> str:
    return dsn.replace("postgresql://", "postgresql+asyncpg://", 1)


@contextlib.contextmanager
def work_dir(root: Path, name: str) -> Iterator[Path]:
    path = root / f"{name}-{uuid.uuid4().hex[:6]}"
    path.mkdir(parents=True, exist_ok=True)
    try:
        yield path
    finally:
        if not os.environ.get("DISPATCH_BENCH_KEEP"):
            shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def profiled(folder: Path | None, pid: int, name: str, seconds: float) -> Iterator[None]:
    """Sample a process with py-spy while the block runs (when a folder is given)."""
    if folder is None:
        yield
        return
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{name}.txt"
    process = subprocess.Popen(
        [
            spy,
            "record",
            "-p",
            str(pid),
            "-d",
            str(int(seconds) + 1),
            "-r",
            "200",
            "--format",
            "raw",
            "-o",
            str(out),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        try:
            process.wait(int(seconds) + 30)
        except subprocess.TimeoutExpired:
            process.kill()
