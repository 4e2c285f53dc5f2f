"""The duty book reloaded from the tables after a change: the reload a lost COMMIT asks for a
second time, a second after it, may come after the server began to stop."""

from __future__ import annotations

import asyncio

from dispatch.rosters.book import Duties, DutyBook


async def test_a_change_heard_once_closed_reads_nothing() -> None:
    """Once closed (the database about to go) a change starts no reload, which would retry
    against the closed database for as long as the process lived; the book is still set aside,
    never older than the last change heard of."""
    loads: list[Duties] = []

    async def load() -> Duties:
        loads.append({})
        return loads[-1]

    book = DutyBook(load)
    book.changed()
    await asyncio.sleep(0.05)
    assert len(loads) == 1 and book.current() is loads[0]
    await book.close()
    book.changed()
    await asyncio.sleep(0.05)
    assert len(loads) == 1
    assert book.current() is None
