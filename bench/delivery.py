"""Delivery figures for docs/delivery.md: restart recovery, reconnect storms, cross-process latency.

Run: ``.venv/bin/python -m bench.delivery [--sockets 1000] [--incidents 20]``. Prints a table and
writes var/bench/delivery.json. Real server processes on 127.0.0.1, real sockets.

1. kill -9 to ready: how long a killed server takes to serve again (migrations checked, coverage
   index loaded, overdue deadlines fired).
2. Reconnect storm: N sockets connected, the server restarted (SIGTERM: every socket gets 1012),
   K incidents reported while they were away; then all N reconnect at once with resume_from.
   Time from the server being ready until each socket has caught up (p50/p99/max, and all).
3. Cross-process latency (PostgreSQL): incidents reported to process A, alerts received by a
   leader connected to process B, against the same leader connected to A in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bench.common import (
    UNLIMITED_REPORTS,
    Served,
    percentile,
    raise_fd_limit,
    say,
    scratch_postgres,
    serve_dispatch,
    sqlalchemy_url,
    work_dir,
)

QINGXI = {"lon": 114.159, "lat": 22.847}
LEADERS = 20


async def _token(http: httpx.AsyncClient, name: str, password: str) -> str:
    reply = await http.post("/api/v1/auth/token", data={"username": name, "password": password})
    reply.raise_for_status()
    token: str = reply.json()["access_token"]
    return token


def _add_admin(env: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "-m", "dispatch", "users", "add", "chief", "--role", "admin"],
        input="admin-password\n",
        text=True,
        env={**os.environ, **env},
        check=True,
        capture_output=True,
    )


async def _town(served: Served) -> tuple[str, list[str]]:
    """One fixed-post team at Qingxi with LEADERS leaders; returns the operator's and the
    leaders' tokens."""
    async with httpx.AsyncClient(base_url=served.base_url, timeout=30) as http:
        admin = {"Authorization": f"Bearer {await _token(http, 'chief', 'admin-password')}"}
        team = {"name": "驻点队", "kind": "fixed_post", "location": QINGXI}
        team_id = (await http.post("/api/v1/teams", json=team, headers=admin)).json()["id"]
        users = [("duty", "operator", None)] + [
            (f"leader{n}", "leader", team_id) for n in range(LEADERS)
        ]
        for name, role, team in users:
            body = {"name": name, "password": f"{role}-password", "role": role, "team_id": team}
            (await http.post("/api/v1/users", json=body, headers=admin)).raise_for_status()
        operator = await _token(http, "duty", "operator-password")
        leaders = [await _token(http, f"leader{n}", "leader-password") for n in range(LEADERS)]
    return operator, leaders


class Phone:
    def __init__(self, token: str) -> None:
        self.token = token
        self.last_seq = 0
        self.retries = 0
        self.connection: ClientConnection | None = None

    async def connect(self, ws_url: str) -> int:
        """Connect as the pages do: on a refusal (1013, server busy) back off and try again."""
        for attempt in range(20):
            try:
                self.connection = await connect(ws_url, compression=None, open_timeout=60)
                hello = {"type": "hello", "token": self.token, "resume_from": self.last_seq}
                await self.connection.send(json.dumps(hello))
                welcome = json.loads(await self.connection.recv())
            except (ConnectionClosed, OSError):
                self.retries += 1
                await asyncio.sleep(random.uniform(0.2, 1.0) * (attempt + 1))
                continue
            latest: int = welcome["seq"]
            return latest
        raise RuntimeError("could not connect after 20 attempts")

    async def read_until(self, seq: int, ws_url: str) -> None:
        """Read in order up to ``seq``; when told to come back (1013), resume as a page does."""
        while self.last_seq < seq:
            assert self.connection is not None
            try:
                message = json.loads(await self.connection.recv())
            except ConnectionClosed:
                self.retries += 1
                await self.connect(ws_url)
                continue
            if message["seq"] != self.last_seq + 1:
                raise AssertionError(f"gap: {self.last_seq} then {message['seq']}")
            self.last_seq = message["seq"]

    async def drain_until_closed(self) -> None:
        assert self.connection is not None
        with contextlib.suppress(Exception):
            while True:
                message = json.loads(await self.connection.recv())
                self.last_seq = message["seq"]


async def _report(base_url: str, operator: str, count: int) -> list[float]:
    """Report ``count`` incidents one after another; the wall time of each POST."""
    headers = {"Authorization": f"Bearer {operator}"}
    body = {"location": QINGXI, "category": "fight"}
    sent = []
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        for n in range(count):
            sent.append(time.perf_counter())
            reply = await http.post(
                "/api/v1/incidents", json=body, headers={**headers, "Idempotency-Key": f"k{n}"}
            )
            reply.raise_for_status()
    return sent


async def restart_and_storm(
    env: dict[str, str], work: Path, sockets: int, incidents: int
) -> dict[str, Any]:
    _add_admin(env)
    served = serve_dispatch(env, work, "storm")
    operator, leaders = await _town(served)
    phones = [Phone(leaders[n % LEADERS]) for n in range(sockets)]
    await asyncio.gather(*(p.connect(served.ws_url) for p in phones))
    await _report(served.base_url, operator, 1)
    await asyncio.gather(*(p.read_until(1, served.ws_url) for p in phones))

    # kill -9, then time the way back to ready.
    served.process.send_signal(signal.SIGKILL)
    served.process.wait(10)
    await asyncio.gather(*(p.drain_until_closed() for p in phones))
    started = time.perf_counter()
    served = serve_dispatch(env, work, "storm-after-kill")
    kill_to_ready_s = time.perf_counter() - started
    await _report(served.base_url, operator, incidents)

    # A deploy: SIGTERM closes every socket with 1012; all come back at once.
    await asyncio.gather(*(p.connect(served.ws_url) for p in phones))
    served.stop()
    await asyncio.gather(*(p.drain_until_closed() for p in phones))
    served = serve_dispatch(env, work, "storm-after-restart")
    ready = time.perf_counter()
    caught_up: list[float] = []

    async def come_back(phone: Phone) -> None:
        latest = await phone.connect(served.ws_url)
        await phone.read_until(latest, served.ws_url)
        caught_up.append(time.perf_counter() - ready)

    await asyncio.gather(*(come_back(p) for p in phones))
    served.stop()
    return {
        "sockets": sockets,
        "messages_each": incidents,
        "kill9_to_ready_s": kill_to_ready_s,
        "storm_p50_s": percentile(caught_up, 50),
        "storm_p99_s": percentile(caught_up, 99),
        "storm_all_s": max(caught_up),
        "storm_reconnect_retries": sum(p.retries for p in phones),
    }


async def cross_process(env: dict[str, str], work: Path, incidents: int) -> dict[str, Any]:
    _add_admin(env)
    a = serve_dispatch(env, work, "a")
    b = serve_dispatch(env, work, "b")
    try:
        operator, leaders = await _town(a)
        figures = {}
        for name, served in (("same_process", a), ("other_process", b)):
            phone = Phone(leaders[0])
            phone.last_seq = await phone.connect(served.ws_url)
            sent = await _timed_reports(a.base_url, operator, phone, incidents, name)
            figures[f"{name}_p50_ms"] = percentile(sent, 50)
            figures[f"{name}_p99_ms"] = percentile(sent, 99)
            assert phone.connection is not None
            await phone.connection.close()
        return figures
    finally:
        a.stop()
        b.stop()


async def _timed_reports(
    base_url: str, operator: str, phone: Phone, count: int, phase: str
) -> list[float]:
    """POST one incident at a time; milliseconds from sending to the alert's arrival."""
    assert phone.connection is not None
    headers = {"Authorization": f"Bearer {operator}"}
    body = {"location": QINGXI, "category": "fight"}
    latencies = []
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        for n in range(count):
            # Each report carries its own tag, unique across phases: a late alert of an
            # earlier report, or one replayed from the earlier phase on connecting (the same
            # leader, resuming from 0), is not taken for this one's.
            tagged = {**body, "description": f"latency-{phase}-{n}"}
            sent = time.perf_counter()
            post = asyncio.create_task(http.post("/api/v1/incidents", json=tagged, headers=headers))
            while True:
                message = json.loads(await phone.connection.recv())
                incident = message["data"].get("incident") or {}
                if (
                    message["type"] == "alert"
                    and incident.get("description") == tagged["description"]
                ):
                    break
            latencies.append((time.perf_counter() - sent) * 1000)
            (await post).raise_for_status()
            await asyncio.sleep(0.05)
    return latencies


async def _on_postgres(run: Callable[[dict[str, str]], Awaitable[dict[str, Any]]]) -> Any:
    async with scratch_postgres("bench_delivery") as dsn:
        return await run({"DISPATCH_DATABASE_URL": sqlalchemy_url(dsn)})


async def main(args: argparse.Namespace) -> dict[str, Any]:
    raise_fd_limit()
    results: dict[str, Any] = {}
    root = Path(args.work)
    for backend in ("sqlite", "postgresql"):
        with work_dir(root, f"delivery-{backend}") as work:
            base = {
                "DISPATCH_SECRET_FILE": str(work / "secret.key"),
                "DISPATCH_ESCALATION_AFTER_S": "3600",
                **UNLIMITED_REPORTS,
            }

            async def storm(
                env: dict[str, str], work: Path = work, base: dict[str, str] = base
            ) -> dict[str, Any]:
                return await restart_and_storm({**base, **env}, work, args.sockets, args.incidents)

            if backend == "sqlite":
                url = f"sqlite+aiosqlite:///{work / 'dispatch.db'}"
                results[backend] = await storm({"DISPATCH_DATABASE_URL": url})
            else:
                results[backend] = await _on_postgres(storm)

    with work_dir(root, "delivery-cross") as work:
        base = {"DISPATCH_SECRET_FILE": str(work / "secret.key"), **UNLIMITED_REPORTS}

        async def cross(env: dict[str, str]) -> dict[str, Any]:
            return await cross_process({**base, **env}, work, args.latency_incidents)

        results["cross_process_postgresql"] = await _on_postgres(cross)
    return results


def _print(results: dict[str, Any]) -> None:
    say(f"{'figure':<44} {'value':>12}")
    for group, figures in results.items():
        for name, value in figures.items():
            shown = f"{value:.3f}" if isinstance(value, float) else str(value)
            say(f"{group + '.' + name:<44} {shown:>12}")


def cli() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.delivery", description=__doc__)
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--incidents", type=int, default=20, help="reported while away")
    parser.add_argument("--latency-incidents", type=int, default=200)
    parser.add_argument("--work", default="var/bench/work")
    parser.add_argument("--out", default="var/bench/delivery.json")
    args = parser.parse_args()
    results = asyncio.run(main(args))
    _print(results)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    cli()
