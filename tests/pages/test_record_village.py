"""An incident's record read after its village's boundary was imported again or deleted: the
record keeps the village the report was in, beside the one the reports count it in now, and says
when the boundaries moved it, and by whom; it no longer changes its place with nothing said."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from tests.pages.conftest import Opened
from tests.pages.test_record_escalation import (
    closed_once_tier_one_breached,
    local,
    open_record,
    report_of_the_day,
)
from tests.support import QINGXI, World
from tests.villages.test_villages import collection, feature, import_villages, square

LON, LAT = QINGXI
AROUND = square(LON - 0.005, LAT - 0.005, 0.01)


async def test_a_record_keeps_the_village_it_was_reported_in_and_says_how_it_moved(
    world: World, browser: Browser, contexts: Opened
) -> None:
    admin = await world.admin()
    assert (await import_villages(world, collection(feature("上元村", AROUND)))).status_code == 200
    operator = await world.operator()
    # No team covers the town: tier 1 breaches and the incident is listed among the exclusions.
    renamed = await world.report(operator)
    world.clock.advance(5)
    # The admin imports the boundary again under the village's new name, then deletes the old.
    reply = await import_villages(world, collection(feature("上元社区", AROUND)))
    assert reply.json()["created"] == ["上元社区"], reply.text
    villages = (await world.http.get("/api/v1/villages", headers=admin.headers)).json()
    old = next(v["id"] for v in villages if v["name"] == "上元村")
    reply = await world.http.delete(f"/api/v1/villages/{old}", headers=admin.headers)
    assert reply.status_code == 204, reply.text
    world.clock.advance(5)
    # Then shrinks the new one away from the town centre: the incident is in no village now.
    gone = await world.report(operator)
    reply = await import_villages(
        world, collection(feature("上元社区", square(LON + 0.01, LAT, 0.005)))
    )
    assert reply.status_code == 200, reply.text
    world.clock.advance(61)
    await closed_once_tier_one_breached(world, operator, (renamed, gone))
    page = await report_of_the_day(browser, contexts, world, renamed)
    record = await open_record(page, renamed)
    facts = record.locator(".record-facts")
    await expect(facts).to_contain_text("（接报时：上元村）")
    moves = record.locator('.record-events li[data-type="village_changed"]')
    await expect(moves).to_have_text(
        [
            f"{local(renamed, 5)} 村（社区）边界调整：由 上元村 改为 上元社区（{admin.name}）",
            f"{local(renamed, 10)} 村（社区）边界调整：由 上元社区 改为 未划入村（社区）"
            f"（{admin.name}）",
        ]
    )
    await page.get_by_role("button", name="English").click()
    await expect(facts).to_contain_text(" (reported in 上元村)")
    await expect(moves.first).to_have_text(
        f"{local(renamed, 5)} Village boundaries changed: from 上元村 to 上元社区 ({admin.name})"
    )
    await page.get_by_role("button", name="中文").click()

    # Reported in 上元社区 after the rename, and then the boundary left it.
    record = await open_record(page, gone)
    await expect(record.locator(".record-facts")).to_contain_text("（接报时：上元社区）")
    await expect(record.locator('.record-events li[data-type="village_changed"]')).to_have_text(
        [f"{local(gone, 0)} 村（社区）边界调整：由 上元社区 改为 未划入村（社区）（{admin.name}）"]
    )
