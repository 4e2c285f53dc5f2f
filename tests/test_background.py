"""Background tasks: held while they run, cancelled and awaited together when their part closes."""

from __future__ import annotations

import asyncio

from dispatch.background import Background


async def test_cancel_stops_what_still_runs_and_waits_for_it_whatever_the_others_raised() -> None:
    background = Background()
    stopped = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()

    async def fails_as_it_stops() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise RuntimeError("a reload that failed as it was stopped") from None

    background.start(forever(), name="forever")
    background.start(fails_as_it_stops())
    await asyncio.sleep(0)
    await background.cancel()
    assert stopped.is_set()
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "forever"]


async def test_a_task_is_held_until_it_ends() -> None:
    background = Background()
    ran: list[str] = []

    async def once() -> None:
        await asyncio.sleep(0)
        ran.append("done")

    background.start(once(), name="once")
    assert [t.get_name() for t in background._tasks] == ["once"]
    for _ in range(3):
        await asyncio.sleep(0)
    assert ran == ["done"]
    assert not background._tasks


async def test_nothing_starts_once_cancelled() -> None:
    ran: list[str] = []

    async def late() -> None:
        ran.append("late")

    background = Background()
    await background.cancel()
    background.start(late())
    await asyncio.sleep(0)
    assert ran == []
