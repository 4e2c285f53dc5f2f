"""The villages' index reloaded from the tables: after a COMMIT whose outcome is unknown, and
on the other processes' announcements."""

from __future__ import annotations

import asyncio

from dispatch.villages.index import VillageIndex, Villages


async def test_a_reload_asked_for_once_closed_reads_nothing() -> None:
    """The second reload of a lost COMMIT comes a second after it, perhaps after the server
    began to stop: it no longer reads (and, the database gone, retries for ever)."""
    loads: list[VillageIndex] = []

    async def load() -> VillageIndex:
        loads.append(VillageIndex())
        return loads[-1]

    villages = Villages(load)
    villages.reload_soon()
    await asyncio.sleep(0.05)
    assert len(loads) == 1 and villages.index is loads[0]
    await villages.close()
    villages.reload_soon()
    await asyncio.sleep(0.05)
    assert len(loads) == 1


async def test_a_reload_that_read_before_an_index_was_put_in_place_reads_again() -> None:
    """Its read may be older than the index this process's own change put in place meanwhile:
    it is not put over it, the tables are read again."""
    reading = asyncio.Event()
    go_on = asyncio.Event()
    reads: list[VillageIndex] = []

    async def load() -> VillageIndex:
        reads.append(VillageIndex())
        if len(reads) == 1:
            reading.set()
            await go_on.wait()
        return reads[-1]

    villages = Villages(load)
    reload = asyncio.create_task(villages.reload())
    await reading.wait()
    changed = VillageIndex()
    villages.replace(changed)
    go_on.set()
    await reload
    assert len(reads) == 2
    assert villages.index is reads[1]
