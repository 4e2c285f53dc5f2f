"""A report written while a village is deleted."""

from __future__ import annotations

import httpx
from sqlalchemy import func, select

from dispatch.incidents.models import Incident
from tests.rosters.races import while_writing
from tests.support import QINGXI, World
from tests.villages.test_villages import SHANGYUAN, collection, feature, import_villages

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
