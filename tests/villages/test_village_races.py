"""A report written while a village is deleted."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import event, func, select

from dispatch.clock import ManualClock
from dispatch.incidents.models import Incident
from tests.conftest import server_settings, world_serving
from tests.rosters.races import while_writing
from tests.support import QINGXI, World
from tests.villages.test_villages import (
    SHANGYUAN,
    SOUTH,
    WEST,
    XIAXIAN,
    collection,
    feature,
    import_villages,
)

LON, LAT = QINGXI


async def report(world: World, headers: dict[str, str]) -> httpx.Response:
    return await world.http.post(
        "/api/v1/incidents",
        json={"location": {"lon": LON, "lat": LAT}, "category": "fight"},
        headers={**headers, "Idempotency-Key": "report-during-a-village-delete"},
    )


async def test_a_report_tagged_with_a_village_deleted_meanwhile_is_sent_again_not_lost(
    world: World, backend: str
) -> None:
    """Tagged from the index before the delete committed, the report's insert waits on the
    village's row and then finds it gone (PostgreSQL): it was a 500, an operator's report
    lost. It is a 503 that writes nothing, and the page's resend is tagged anew."""
    operator, admin = await world.operator(), await world.admin()
    reply = await import_villages(world, collection(feature("上元村", SHANGYUAN)))
    assert reply.status_code == 200, reply.text
    (village,) = (await world.http.get("/api/v1/villages", headers=admin.headers)).json()

    deleted, reported = await while_writing(
        world,
        "DELETE FROM villages",
        lambda: world.http.delete(f"/api/v1/villages/{village['id']}", headers=admin.headers),
        lambda: report(world, operator.headers),
    )
    assert deleted.status_code == 204, deleted.text
    if backend == "postgresql":
        assert reported.status_code == 503, reported.text
        assert reported.json()["error"] == "try_again"
        assert reported.headers["retry-after"] == "1"
        async with world.runtime.transaction(read=True) as session:
            assert await session.scalar(select(func.count()).select_from(Incident)) == 0
        reported = await report(world, operator.headers)
    # (On SQLite the delete and the report take turns: the report comes after it.)
    assert reported.status_code == 201, reported.text
    assert reported.json()["village_id"] is None


async def test_the_villages_read_after_a_lost_report_is_not_put_over_a_newer_index(
    postgres_only: str, clock: ManualClock
) -> None:
    """After the 503 this process reads the villages anew. 下仙村, deleted while that read was
    under way, had its index put in place when the delete committed: the read begun before
    it, which still held 下仙村, was put over it, and reports on its ground were tagged with a
    village that no longer existed. The villages are read again instead."""
    async with world_serving(server_settings(postgres_only), clock) as world:
        # No announcement reloads the index behind the report's back: what is in place after
        # the 503 is what the report's path and the delete put there.
        assert world.runtime.fanout is not None
        await world.runtime.fanout.stop()
        operator, admin = await world.operator(), await world.admin()
        body = collection(feature("上元村", SHANGYUAN), feature("下仙村", XIAXIAN))
        reply = await import_villages(world, body)
        assert reply.status_code == 200, reply.text
        listed = (await world.http.get("/api/v1/villages", headers=admin.headers)).json()
        ids = {village["name"]: village["id"] for village in listed}
        in_xiaxian = (WEST + 0.015, SOUTH + 0.005)
        assert world.runtime.villages.village_at(*in_xiaxian) == ids["下仙村"]

        failed: list[bool] = []
        read_after: list[str] = []
        deleted_meanwhile: list[httpx.Response] = []

        def lost(_context: Any) -> None:
            failed.append(True)

        async def delete_xiaxian(_dbapi_connection: Any) -> None:
            deleted_meanwhile.append(
                await world.http.delete(f"/api/v1/villages/{ids['下仙村']}", headers=admin.headers)
            )

        def read(connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
            # The first read of the villages once the report failed: it has its rows.
            if failed and not read_after and "FROM villages" in statement:
                read_after.append(statement)
                connection.connection.dbapi_connection.run_async(delete_xiaxian)

        engines = {world.runtime.engine.sync_engine, world.runtime.read_engine.sync_engine}
        event.listen(world.runtime.engine.sync_engine, "handle_error", lost)
        for engine in engines:
            event.listen(engine, "after_cursor_execute", read)
        try:
            deleted, reported = await while_writing(
                world,
                "DELETE FROM villages",
                lambda: world.http.delete(
                    f"/api/v1/villages/{ids['上元村']}", headers=admin.headers
                ),
                lambda: report(world, operator.headers),
            )
        finally:
            event.remove(world.runtime.engine.sync_engine, "handle_error", lost)
            for engine in engines:
                event.remove(engine, "after_cursor_execute", read)
        assert deleted.status_code == 204, deleted.text
        assert reported.status_code == 503, reported.text
        assert [r.status_code for r in deleted_meanwhile] == [204]
        assert world.runtime.villages.village_at(*in_xiaxian) is None
