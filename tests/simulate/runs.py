"""``dispatch simulate`` run as from a terminal, for the tests that stop it with Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import signal
import sys


async def started_in_a_terminal(*args: str) -> asyncio.subprocess.Process:
    """``dispatch simulate`` as from a terminal: a process group of its own, which Ctrl-C
    reaches as a whole (the run and its leaders' workers)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dispatch", "simulate", *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,
    )  # fmt: skip
    return process


async def ctrl_c_after(process: asyncio.subprocess.Process, line_starts: str) -> str:
    """Press Ctrl-C once a line starting so is printed; all the run printed."""
    assert process.stdout is not None
    seen: list[str] = []
    async with asyncio.timeout(120):
        while not seen or not seen[-1].startswith(line_starts):
            line = (await process.stdout.readline()).decode()
            assert line, "".join(seen)
            seen.append(line)
    os.killpg(process.pid, signal.SIGINT)
    rest, _ = await asyncio.wait_for(process.communicate(), 90)
    return "".join(seen) + rest.decode()
