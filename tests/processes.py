"""Real server processes for tests: started with the CLI, stopped with real signals."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import free_port
from tests.support import tls_context


async def cli(env: dict[str, str], *args: str, stdin: str = "") -> str:
    """Run one ``dispatch`` command; awaited, so an in-process server keeps serving meanwhile.

    A blocking call here would freeze the test's own event loop: a write that server had
    begun (its startup purge, say) would hold SQLite's lock until the command gave up.
    """
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dispatch",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(child.communicate(stdin.encode()), timeout=60)
    assert child.returncode == 0, err.decode()
    return out.decode().strip()


def server_env(database_url: str, folder: Path, **settings: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DISPATCH_DATABASE_URL": database_url,
        "DISPATCH_SECRET_FILE": str(folder / "secret.key"),
        "DISPATCH_TIMER_POLL_S": "0.2",
        "DISPATCH_ARGON2_TIME_COST": "1",
        "DISPATCH_ARGON2_MEMORY_KIB": "1024",
    }
    env.update({f"DISPATCH_{k.upper()}": v for k, v in settings.items()})
    return env


class ServerProcess:
    """``dispatch serve`` in a child process; its output goes to a log file."""

    def __init__(
        self, env: dict[str, str], log: Path, port: int | None = None, args: tuple[str, ...] = ()
    ) -> None:
        self.env = env
        self.args = args
        self.port = port or free_port()
        self.log = log
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws"
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        return [sys.executable, "-m", "dispatch", "serve", "--port", str(self.port), *self.args]

    async def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.command(),
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        async with httpx.AsyncClient(base_url=self.base_url, verify=tls_context()) as client:
            for _ in range(400):
                try:
                    if (await client.get("/readyz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                assert self.process.poll() is None, self.output()
                await asyncio.sleep(0.05)
        raise AssertionError(f"server never became ready:\n{self.output()}")

    def kill(self) -> None:
        """kill -9: no shutdown, no flush, nothing but what was committed survives."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def terminate(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(20)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
