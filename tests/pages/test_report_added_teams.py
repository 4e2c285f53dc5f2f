"""The report page says which teams were judged from their own alert: a team an operator added
by hand after its tier's deadline (人工加派) is not counted late for a deadline it was sent after,
and its line per team, its exclusion and its record say so, in Chinese and in English."""

from __future__ import annotations

from playwright.async_api import Browser, Locator, expect

from tests.pages.conftest import Opened, ask_report, desk_context, log_in
from tests.reports.test_added_dispatch_report import seed
from tests.support import World


async def test_the_page_marks_the_teams_judged_from_their_own_alert(
    world: World, browser: Browser, contexts: Opened
) -> None:
    seeded = await seed(world)
    local_day = seeded["period"]["from"]
    patrols = seeded["patrols"]
    page = await (await desk_context(browser, contexts)).new_page()
    await log_in(page, world.base_url + "/console/reports", await world.account("auditor"))
    await expect(page.locator("#app")).to_have_attribute("data-state", "ready")
    await ask_report(page, local_day, choose={"group-by": "team"})

    def line(name: str) -> Locator:
        return page.locator(f'#grouping tbody tr[data-key="{patrols[name]["id"]}"]')

    late, early = line("Late巡逻"), line("Early巡逻")
    await expect(late.locator("th")).to_contain_text("其中 1 次人工加派，自接警起算")
    await expect(late.locator('td[data-field="met"]')).to_have_text("1")
    await expect(late.locator('td[data-field="breached"]')).to_have_text("0")
    await expect(early.locator('td[data-field="breached"]')).to_have_text("1")
    await expect(early.locator(".from-alert")).to_have_count(0)

    # Never's own exclusion: closed before its own three minutes ran out.
    await page.locator("#team").select_option(patrols["Never巡逻"]["id"])
    await page.get_by_role("button", name="查询").click()
    await expect(page.locator("#app")).to_have_attribute("data-state", "ready")
    reason = page.locator("#exclusions tbody td:nth-child(7)")
    await expect(reason).to_have_text(["时限前结案，无人需到场（人工加派，自接警起算）"])
    await page.locator("#exclusions tbody .record-link").first.click()
    record = page.locator(f'.record-dispatch[data-team-id="{patrols["Never巡逻"]["id"]}"]')
    await expect(record).to_contain_text("人工加派 · 取消（不判定） · 自接警起算")

    await page.get_by_role("button", name="English").click()
    await expect(reason).to_have_text(
        ["Closed by the deadline; nobody had to come (added by hand: timed from its own alert)"]
    )
    await expect(record).to_contain_text("timed from its own alert")
    await page.locator("#team").select_option("")
    await page.get_by_role("button", name="Show").click()
    await expect(page.locator("#app")).to_have_attribute("data-state", "ready")
    await expect(late.locator("th")).to_contain_text("1 added by hand: timed from their own alert")
