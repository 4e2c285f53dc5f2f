"""加派 on the console: an operator adds a team by hand to an open incident, picking it from
the teams nearest first; a refusal is said in the operator's language; the added team's
leader is alerted and told the control room added his team."""

from __future__ import annotations

import re
from typing import Any

from playwright.async_api import Browser, Locator, Page, expect

from tests.pages.conftest import Opened
from tests.pages.test_console_and_phone import away, card, open_console, open_phone
from tests.pages.test_record_escalation import (
    closed_once_tier_one_breached,
    open_record,
    report_of_the_day,
)
from tests.rosters.test_duty import add_members, advance_to, put_duty
from tests.support import World


async def choose_team_to_add(
    console: Page, incident_id: str, team: dict[str, Any]
) -> tuple[Locator, Locator]:
    """Open 加派 on the incident's card and choose the team in its dialog: the card and the
    dialog, the team chosen but not yet added."""
    shown = card(console, incident_id)
    await shown.get_by_role("button", name="加派队伍").click()
    dialog = console.locator("#add-team")
    await dialog.locator("#add-team-select").select_option(team["id"])
    return shown, dialog


async def test_an_operator_adds_a_team_by_hand_and_its_leader_is_alerted(
    world: World, browser: Browser, contexts: Opened
) -> None:
    world.long_logins()  # the clock moves to midday before the pages open
    covering = await world.team("fixed_post")
    near = await world.team("fixed_post", *away(800, 90), name="东门驻点队")
    off_duty = await world.team("mobile", *away(1200, 180), name="夜班机动队")
    patrol = await world.team("patrol", *away(3000, 270), radius_m=1000, name="三号巡逻车")
    await add_members(world, off_duty, 1, 2)
    today = world.clock.now().date().isoformat()
    reply = await put_duty(
        world, off_duty, start="20:00", end="08:00", rotation_start=today, units=[1]
    )
    assert reply.status_code == 200, reply.text
    advance_to(world, 12)
    leader = await world.leader(patrol)
    phone = await open_phone(browser, contexts, world, leader, away(2900, 270))
    console = await open_console(browser, contexts, world)
    operator = await world.operator()
    incident = await world.report(operator)
    assert [d["team_id"] for d in incident["dispatches"]] == [covering["id"]]

    shown = card(console, incident["id"])
    await shown.get_by_role("button", name="加派队伍").click()
    dialog = console.locator("#add-team")
    await expect(dialog).to_be_visible()
    options = dialog.locator("#add-team-select option")
    # Nearest first, with tier and distance; the team already dispatched is not offered.
    await expect(options).to_have_count(3)
    await expect(options.nth(0)).to_contain_text("东门驻点队 · 一梯队")
    await expect(options.nth(1)).to_contain_text("夜班机动队")
    await expect(options.nth(2)).to_contain_text("三号巡逻车 · 二梯队")
    assert near["id"] == await options.nth(0).get_attribute("value")

    # An off-duty team is refused, in Chinese; and in English.
    await dialog.locator("#add-team-select").select_option(off_duty["id"])
    await dialog.get_by_role("button", name="加派", exact=True).click()
    problem = dialog.locator("#add-team-error")
    await expect(problem).to_contain_text("加派失败：该队伍当前不在岗")
    await dialog.get_by_role("button", name="取消").click()
    await expect(dialog).to_be_hidden()
    await console.locator("#lang").click()
    await shown.get_by_role("button", name="Add team").click()
    await expect(dialog.locator("#add-team-title")).to_contain_text("Add a team")
    await dialog.locator("#add-team-select").select_option(off_duty["id"])
    await dialog.get_by_role("button", name="Add", exact=True).click()
    await expect(problem).to_contain_text("Could not add the team: This team is off duty now")
    await dialog.get_by_role("button", name="Cancel").click()
    await console.locator("#lang").click()
    await shown.get_by_role("button", name="加派队伍").click()
    await expect(problem).to_be_hidden()

    await dialog.locator("#add-team-select").select_option(patrol["id"])
    await dialog.locator("#add-team-note").fill("报警人要求巡逻车到场")
    await dialog.get_by_role("button", name="加派", exact=True).click()
    await expect(dialog).to_be_hidden()
    added = shown.locator(".dispatch", has_text="三号巡逻车")
    await expect(added.locator(".ring-operator")).to_have_text("人工加派")
    await expect(console.locator("#feed")).to_contain_text("已人工加派 三号巡逻车")

    await expect(phone.locator("#alert")).to_be_visible()
    note = phone.locator('#alert-info .ring-note[data-added-by="operator"]')
    await expect(note).to_contain_text("人工加派：指挥中心报警")

    # The record lists it in 处置经过: who added which team, and why; and marks the dispatch.
    world.clock.advance(61)
    await closed_once_tier_one_breached(world, operator, (incident,))
    report = await report_of_the_day(browser, contexts, world, incident)
    record = await open_record(report, incident)
    added_line = record.locator('.record-events li[data-type="team_added"]')
    # Named by the console's operator, who added it.
    await expect(added_line).to_contain_text(
        re.compile(r"operator-\w+ 人工加派 三号巡逻车（二梯队）：报警人要求巡逻车到场")
    )
    team_line = record.locator(f'.record-dispatch[data-team-id="{patrol["id"]}"]')
    await expect(team_line).to_contain_text("人工加派")


async def test_the_dialog_marks_a_team_without_an_enabled_leader_and_the_add_says_so(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """A team whose leader accounts are all disabled is marked in the dialog once chosen,
    before the add; it can still be added, and the feed says nobody got its alert."""
    await world.team("fixed_post")
    patrol = await world.team("patrol", *away(3000, 270), radius_m=1000, name="三号巡逻车")
    gone = await world.leader(patrol)
    admin = await world.admin()
    reply = await world.http.patch(
        f"/api/v1/users/{gone.id}", json={"disabled": True}, headers=admin.headers
    )
    assert reply.is_success, reply.text
    console = await open_console(browser, contexts, world)
    operator = await world.operator()
    incident = await world.report(operator)

    shown, dialog = await choose_team_to_add(console, incident["id"], patrol)
    warning = dialog.locator("#add-team-no-leader")
    await expect(warning).to_be_visible()
    await expect(warning).to_contain_text("无可用队长账号")
    await expect(dialog.locator("#add-team-select option")).to_contain_text(
        ["三号巡逻车 · 二梯队 · 3.00 公里 · 无可用队长账号"]
    )
    await dialog.get_by_role("button", name="取消").click()
    await console.locator("#lang").click()
    await shown.get_by_role("button", name="Add team").click()
    await expect(warning).to_contain_text("No active leader account")
    await expect(dialog.locator("#add-team-select option")).to_contain_text(["no active leader"])

    await dialog.get_by_role("button", name="Add", exact=True).click()
    await expect(dialog).to_be_hidden()
    await expect(shown.locator(".dispatch", has_text="三号巡逻车")).to_be_visible()
    await expect(console.locator("#feed")).to_contain_text(
        "三号巡逻车 added, but it has no active leader account: nobody got the alert"
    )
    await console.locator("#lang").click()
    await expect(console.locator("#feed")).to_contain_text(
        "已加派 三号巡逻车，但无可用队长账号：告警无人接收，请用电台联系"
    )
