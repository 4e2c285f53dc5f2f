"""Tasks a part of the server starts beside its requests, and stops when it closes."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


class Background:
    """The tasks started here that have not ended. Held until they end: the event loop keeps
    only a weak reference to a task, and one nothing else holds may be collected midway."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._cancelled = False

    def start(self, coroutine: Coroutine[Any, Any, None], name: str | None = None) -> None:
        """Run ``coroutine`` in a task of its own; none once cancelled (what is asked for as the
        server stops, a reload a second after a lost COMMIT say, would outlive the database)."""
        if self._cancelled:
            coroutine.close()
            return
        task = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def cancel(self) -> None:
        """Cancel those still running, start no more, and wait until they have ended, whatever
        they raise."""
        self._cancelled = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
