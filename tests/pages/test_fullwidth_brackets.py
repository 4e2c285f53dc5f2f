"""Chinese text is bracketed full-width, （…）, as the rest of the Chinese interface is (坐标
（WGS84）, 超时警报（2 起）), never with ASCII ( ): a tier's time taken on the console and the
phone (已到场 08:37:12（18 秒）), the console's count of open incidents, and the report page's
labels and outcomes (村（社区）, 取消（不判定）). English keeps its ASCII brackets."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.async_api import Browser, expect

from tests.pages.conftest import Opened
from tests.pages.test_console_and_phone import away, card, card_on_phone, open_console, open_phone
from tests.pages.test_record_escalation import close, report_of_the_day
from tests.support import World

I18N = Path(__file__).parents[2] / "web" / "src" / "shared" / "i18n.js"
ENTRY = re.compile(r"^\s*'([\w.]+)':\s*(?:\n\s*)?('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")", re.M)


def entries(language: str) -> dict[str, str]:
    """The page's words in ``language`` (zh or en), by key, as i18n.js holds them."""
    source = I18N.read_text(encoding="utf-8")
    start = source.index(f"const {language} = {{")
    block = source[start : source.index("\n};", start)]
    return {key: value[1:-1] for key, value in ENTRY.findall(block)}


def test_every_chinese_string_brackets_full_width_and_every_english_one_ascii() -> None:
    zh, en = entries("zh"), entries("en")
    assert len(zh) > 500 and len(en) > 500, (len(zh), len(en))
    ascii_in_chinese = {k: v for k, v in zh.items() if "(" in v or ")" in v}
    assert ascii_in_chinese == {}
    full_width_in_english = {k: v for k, v in en.items() if "（" in v or "）" in v}
    assert full_width_in_english == {}


async def test_the_pages_bracket_chinese_full_width_and_english_ascii(
    world: World, browser: Browser, contexts: Opened
) -> None:
    post = await world.team("fixed_post", name="甲驻点队")
    leader = await world.leader(post)
    await world.leader(await world.team("patrol", radius_m=3000, name="乙巡逻车"))
    console = await open_console(browser, contexts, world)
    phone = await open_phone(browser, contexts, world, leader, away(20))
    operator = await world.operator()
    incident = await world.report(operator)
    world.clock.advance(18)
    assert await world.arrive(incident, post, leader) == 200

    met = re.compile(r"^已到场 \d\d:\d\d:\d\d（18 秒）$")
    tier1 = card(console, incident["id"]).locator('.tier[data-tier="1"] .tier-state')
    await expect(tier1).to_have_text(met)
    on_phone = card_on_phone(phone, incident["id"]).locator('.tier[data-tier="1"] .tier-state')
    await expect(on_phone).to_have_text(met)
    count = console.locator("#incidents-title")
    await expect(count).to_have_text("未结警情（1）")

    await console.get_by_role("button", name="English").click()
    await expect(tier1).to_have_text(re.compile(r"^on scene \d\d:\d\d:\d\d \(18 s\)$"))
    await expect(count).to_have_text("Open incidents (1)")
    await phone.get_by_role("button", name="English").click()
    await expect(on_phone).to_have_text(re.compile(r"^on scene \d\d:\d\d:\d\d \(18 s\)$"))

    # Closed before tier 2's three minutes: its patrol is cancelled, not judged.
    await close(world, operator, incident)
    report = await report_of_the_day(browser, contexts, world, incident)
    await expect(report.locator('label:has(#village) [data-i18n="rep.village"]')).to_have_text(
        "村（社区）"
    )
    await expect(report.locator("#dl-xlsx")).to_have_text("下载 Excel（XLSX）")
    row = report.locator(f'#exclusions tr[data-incident-id="{incident["id"]}"][data-tier="2"]')
    await row.get_by_role("button", name=incident["id"]).click()
    record = report.locator("#record")
    await expect(record).to_have_attribute("data-state", "ready")
    await expect(record.locator(".record-dispatch", has_text="乙巡逻车")).to_contain_text(
        "取消（不判定）"
    )
    await report.get_by_role("button", name="English").click()
    await expect(report.locator('[data-i18n="rep.village"]')).to_have_text("Village / community")
    await expect(report.locator("#dl-xlsx")).to_have_text("Download Excel (XLSX)")
    await expect(record.locator(".record-dispatch", has_text="乙巡逻车")).to_contain_text(
        "Cancelled (not judged)"
    )
