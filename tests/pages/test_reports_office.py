"""The report page as the office that assesses response times reads it: every word in the
language chosen (the exclusions' reasons, the downloads' file names), advice that fits the
failure, and a team's long name kept inside its chart."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from playwright.async_api import Browser, Page, expect

from dispatch.schemas import DISPLAY_TZ
from tests.pages.conftest import Opened, ask_report, desk_context, log_in
from tests.support import World

# A name as long as the town's teams' can get (a unit, a place, a shift).
LONG_NAME = "清溪镇大利村与银湖工业区交界处三中工业园东门外侧临时驻点应急联防队第二组夜间值守小分队"


async def a_day_nobody_came(world: World) -> tuple[str, str]:
    """A fixed post alone (tiers 2 and 3 uncovered) and an incident nobody came to, its
    clocks run out; the local date it happened on."""
    await world.team("fixed_post", name=LONG_NAME)
    incident = await world.report(await world.operator())
    world.clock.advance(301)
    # The day it was reported on, which the clocks running out may have left (at 23:55 on).
    reported = datetime.fromisoformat(incident["reported_at"]).astimezone(DISPLAY_TZ)
    return reported.date().isoformat(), incident["id"]


async def open_report(browser: Browser, contexts: Opened, world: World, day: str) -> Page:
    page = await (await desk_context(browser, contexts, {"width": 1366, "height": 768})).new_page()
    await log_in(page, world.base_url + "/console/reports", await world.account("auditor"))
    await expect(page.locator("#app")).to_have_attribute("data-state", "ready")
    await ask_report(page, day)
    return page


async def test_an_uncovered_tiers_reason_is_written_in_the_pages_language(
    world: World, browser: Browser, contexts: Opened
) -> None:
    day, incident_id = await a_day_nobody_came(world)
    page = await open_report(browser, contexts, world, day)
    uncovered = page.locator(f'#exclusions tr[data-incident-id="{incident_id}"][data-tier="2"]')
    await expect(uncovered.locator("td").last).to_have_text("此处无该梯队覆盖（无人到场）")
    # A tier nobody reached has no times: a dash, not a dash with a unit after it.
    card = page.locator('.tier-card[data-tier="1"] .tier-card-line').last
    await expect(card).to_have_text("P50 — · P90 — · 最大 —")

    await page.get_by_role("button", name="English").click()
    # Not the Chinese full-width brackets around the English words.
    await expect(uncovered.locator("td").last).to_have_text(
        "No team of this tier covers the place (Nobody arrived)"
    )
    await expect(card).to_have_text("P50 — · P90 — · Max —")


async def test_a_report_the_server_could_not_answer_asks_for_the_same_filters_again(
    world: World, browser: Browser, contexts: Opened
) -> None:
    day, _ = await a_day_nobody_came(world)
    page = await open_report(browser, contexts, world, day)
    status = page.locator("#status")

    # The server out of reach: nothing is wrong with the filters, so nothing says to change them.
    await page.route("**/api/v1/reports/**", lambda route: route.abort())
    await page.get_by_role("button", name="查询").click()
    await expect(page.locator("#app")).to_have_attribute("data-state", "failed")
    await expect(status).to_contain_text("报表生成失败：无法连接服务器")
    await expect(status).to_contain_text("请稍后再按「查询」")
    await expect(status).not_to_contain_text("修改条件")
    await page.get_by_role("button", name="English").click()
    await expect(status).to_contain_text("press Show again shortly")
    await page.get_by_role("button", name="中文").click()

    # Refused by the server for what was asked (an end before the start): change the filters.
    await page.unroute("**/api/v1/reports/**")
    await ask_report(page, day, "2000-01-01", state="failed")
    await expect(status).to_contain_text("起始日期不能晚于截止日期")
    await expect(status).to_contain_text("请修改条件后重新查询")


async def test_a_date_the_page_cannot_ask_for_is_named_and_nothing_is_sent(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """A date field takes a year of five digits (a key held down types 20255), and 9999-12-31,
    whose next day (the end the page asks for) no date can be. The page names the field and
    the dates it takes, sends nothing, and clears the figures of the period before, as for a
    period the server refuses."""
    day, _ = await a_day_nobody_came(world)
    page = await open_report(browser, contexts, world, day)
    status = page.locator("#status")
    to = page.locator("#to")
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/reports/" in r.url else None)

    await to.evaluate("(el) => { el.value = '20255-12-01'; }")
    await page.get_by_role("button", name="查询").click()
    await expect(page.locator("#app")).to_have_attribute("data-state", "failed")
    await expect(status).to_have_text(
        "报表生成失败：截止日期超出范围：应在 2000-01-01 到 2099-12-31 之间。"
        "此前的统计结果已清除，请修改条件后重新查询。"
    )
    await expect(to).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#result")).to_be_hidden()
    await page.get_by_role("button", name="English").click()
    await expect(status).to_contain_text(
        "End date is out of range: it must lie between 2000-01-01 and 2099-12-31"
    )
    await page.get_by_role("button", name="中文").click()

    await to.fill("9999-12-31")
    await page.get_by_role("button", name="查询").click()
    await expect(status).to_contain_text("截止日期超出范围")
    assert asked == []

    await to.fill(day)
    await page.get_by_role("button", name="查询").click()
    await expect(page.locator("#app")).to_have_attribute("data-state", "ready")
    await expect(to).not_to_have_attribute("aria-invalid", "true")
    assert asked


async def download_name(page: Page, link: str) -> str:
    async with page.expect_download() as download:
        await page.locator(link).click()
    return (await download.value).suggested_filename


async def test_downloads_are_named_in_the_pages_language(
    world: World, browser: Browser, contexts: Opened
) -> None:
    day, _ = await a_day_nobody_came(world)
    page = await open_report(browser, contexts, world, day)
    stamp = r"-\d{8}-\d{4}"
    assert re.fullmatch("响应时间报表" + stamp + r"\.csv", await download_name(page, "#dl-csv"))
    assert re.fullmatch(
        "未到场清单" + stamp + r"\.csv", await download_name(page, "#dl-exclusions")
    )
    assert re.fullmatch("响应时间报表" + stamp + r"\.xlsx", await download_name(page, "#dl-xlsx"))

    await page.get_by_role("button", name="English").click()
    names = [await download_name(page, link) for link in ("#dl-csv", "#dl-exclusions", "#dl-xlsx")]
    assert re.fullmatch("response-times" + stamp + r"\.csv", names[0]), names
    assert re.fullmatch("exclusions" + stamp + r"\.csv", names[1]), names
    assert re.fullmatch("response-times" + stamp + r"\.xlsx", names[2]), names


async def test_a_failed_download_stays_said_through_a_language_switch(
    world: World, browser: Browser, contexts: Opened
) -> None:
    day, _ = await a_day_nobody_came(world)
    page = await open_report(browser, contexts, world, day)
    status = page.locator("#status")
    await page.route("**/api/v1/reports/response-times?*format=csv*", lambda r: r.abort())
    await page.locator("#dl-csv").click()
    await expect(status).to_have_text("下载失败：无法连接服务器，请检查网络")
    await expect(status).to_have_class(re.compile(r"\berror\b"))
    await page.get_by_role("button", name="English").click()
    await expect(status).to_have_text("Download failed: Cannot reach the server; check the network")
    await expect(status).to_have_class(re.compile(r"\berror\b"))

    # A download that goes through says no more of it.
    await page.unroute("**/api/v1/reports/response-times?*format=csv*")
    await download_name(page, "#dl-csv")
    await expect(status).to_contain_text("Generated")
    await page.get_by_role("button", name="中文").click()
    await expect(status).to_contain_text("已生成")


async def test_a_download_refused_for_an_expired_login_signs_the_page_out_saying_so(
    world: World, browser: Browser, contexts: Opened
) -> None:
    day, _ = await a_day_nobody_came(world)
    page = await open_report(browser, contexts, world, day)
    world.clock.advance(world.runtime.settings.token_ttl_s + 1)
    await page.locator("#dl-csv").click()
    await expect(page.locator("#login")).to_be_visible()
    await expect(page.locator("#login-error")).to_have_text("登录已过期，请重新登录")


async def test_a_long_team_name_stays_inside_the_per_team_chart(
    world: World, browser: Browser, contexts: Opened
) -> None:
    day, _ = await a_day_nobody_came(world)
    page = await open_report(browser, contexts, world, day)
    chart = page.locator("#chart-teams")
    labels_drawn = await chart.get_attribute("data-labels")
    assert labels_drawn is not None
    labels: list[str] = json.loads(labels_drawn)
    assert len(labels) == 1
    # Cut, with "…": the whole name is in the data table under the chart.
    label = labels[0]
    assert label.endswith("…") and LONG_NAME.startswith(label[:-1]) and len(label) > 8, label
    await expect(page.locator("#data-teams tbody tr").first).to_contain_text(LONG_NAME)

    # Drawn in Chart.js's font, the label fits the half of the chart its axis may take, with
    # room left for the axis title beside it: nothing runs past the canvas's left edge.
    fits: dict[str, Any] = await chart.evaluate(
        """(canvas, label) => {
            const ctx = document.createElement('canvas').getContext('2d');
            ctx.font = "12px 'Helvetica Neue', 'Helvetica', 'Arial', sans-serif";
            return { width: ctx.measureText(label).width, half: canvas.clientWidth / 2 };
        }""",
        label,
    )
    assert fits["width"] + 30 <= fits["half"], fits


async def test_a_tier_at_its_deadlines_very_instant_is_not_said_to_have_it_ahead(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """Nobody there at tier 1's deadline, to the microsecond: pending, a team arriving now still
    meeting it. Its reason said the deadline was still ahead (时限未到), which it no longer is."""
    await world.team("fixed_post", name="A驻点队")
    incident = await world.report(await world.operator())
    world.clock.advance(60)  # tier 1's deadline, to the microsecond
    reported = datetime.fromisoformat(incident["reported_at"]).astimezone(DISPLAY_TZ)
    page = await open_report(browser, contexts, world, reported.date().isoformat())
    row = page.locator(f'#exclusions tr[data-incident-id="{incident["id"]}"][data-tier="1"]')
    await expect(row.locator("td").last).to_have_text("时限未过")
    await page.get_by_role("button", name="English").click()
    await expect(row.locator("td").last).to_have_text("The deadline has not passed")
