"""What the console says of its own report at once: green for who was alerted, red for where
nobody was. A report at a point no team covers alerted nobody: its box is red, as a failure
is, and says what to do, in the operator's language; a report that alerted teams stays green,
and the tiers nobody covers are set apart on red within it. A team dispatched with no enabled
leader account was alerted in name only: it is not counted among the teams notified but named
on red, with what to do, and a report whose every team is such reads red as one that reached
nobody."""

from __future__ import annotations

from playwright.async_api import Browser, Locator, Page, expect

from tests.incidents.test_nobody_alerted import disable
from tests.pages.conftest import Opened
from tests.pages.test_accessibility import AXE
from tests.pages.test_console_and_phone import away, open_console, report_on_console
from tests.support import QINGXI, World

GREEN = "rgb(209, 250, 229)"  # --met-bg: a report that went out
RED = "rgb(255, 232, 232)"  # --breach-bg: nobody there
BREACH = "rgb(153, 27, 27)"  # --breach


async def background(page: Page, selector: str) -> str:
    colour: str = await page.locator(selector).evaluate(
        "el => getComputedStyle(el).backgroundColor"
    )
    return colour


async def contrast_problems(page: Page) -> list[str]:
    """What axe finds of the result box's text under 7:1 (WCAG's enhanced contrast)."""
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        await page.evaluate(AXE.read_text(encoding="utf-8"))
    found: list[dict[str, object]] = await page.evaluate(
        "async () => (await axe.run('#report-result', {"
        "  resultTypes: ['violations'],"
        "  runOnly: ['color-contrast', 'color-contrast-enhanced'],"
        "})).violations"
    )
    return [str(v["id"]) for v in found]


async def reads_red(console: Page, advice: str) -> Locator:
    """The report's result as a failure: red, 没有通知到任何队伍, and what to do (``advice``)."""
    result = console.locator("#report-result")
    await expect(result).to_have_attribute("data-alerted", "none")
    assert await background(console, "#report-result") == RED
    title = result.locator(".result-title")
    await expect(title).to_have_text("没有通知到任何队伍")
    assert await title.evaluate("el => getComputedStyle(el).color") == BREACH
    await expect(result.locator(".advice")).to_have_text(advice)
    return result


async def test_a_report_that_alerted_nobody_reads_red_not_as_a_success(
    world: World, browser: Browser, contexts: Opened
) -> None:
    await world.team("fixed_post", *QINGXI)
    console = await open_console(browser, contexts, world)
    # 5 km away: no team's zone reaches it.
    await report_on_console(console, *away(5000))
    result = await reads_red(
        console,
        "警情已记录，但此处没有任何队伍覆盖，无人收到警报：请用电台或电话调派警力，"
        "或在警情卡片上按「加派队伍」",
    )
    await expect(result.locator(".uncovered")).to_have_text(
        "无覆盖梯队：一梯队 应急联防队、二梯队 巡逻警力、三梯队 处突警力"
    )

    await console.locator("#lang").click()
    await expect(result.locator(".result-title")).to_have_text("No team was alerted")
    await expect(result.locator(".advice")).to_have_text(
        "The incident is recorded, but no team covers this point and nobody received the "
        "alert: radio or call a team, or press Add team on the incident's card"
    )
    assert await background(console, "#report-result") == RED
    assert await contrast_problems(console) == []


async def test_a_report_that_alerted_a_team_stays_green_with_its_gaps_on_red(
    world: World, browser: Browser, contexts: Opened
) -> None:
    # Tier 1 alone covers the point: tiers 2 and 3 are nobody's.
    await world.leader(await world.team("fixed_post", *QINGXI, name="甲驻点队"))
    console = await open_console(browser, contexts, world)
    await report_on_console(console, *QINGXI)
    result = console.locator("#report-result")
    await expect(result).to_have_attribute("data-alerted", "some")
    await expect(result.locator(".result-title")).to_have_text("已派警：通知 1 支队伍")
    assert await background(console, "#report-result") == GREEN
    gaps = result.locator(".uncovered")
    await expect(gaps).to_have_text("无覆盖梯队：二梯队 巡逻警力、三梯队 处突警力")
    assert await background(console, "#report-result .uncovered") == RED
    await expect(result.locator(".advice")).to_have_count(0)
    assert await contrast_problems(console) == []

    # Every tier covered: green, nothing on red.
    for kind in ("patrol", "response"):
        await world.leader(await world.team(kind, *QINGXI, radius_m=3000))
    await report_on_console(console, *QINGXI)
    await expect(result).to_have_attribute("data-alerted", "all")
    await expect(result.locator(".result-title")).to_have_text("已派警：通知 3 支队伍")
    await expect(result.locator(".uncovered")).to_have_count(0)
    assert await background(console, "#report-result") == GREEN


UNREACHED_ZH = "三号巡逻车（二梯队）无人接收警报：该队无可用队长账号，请用电台联系或加派其他队伍"
UNREACHED_EN = (
    "三号巡逻车 (Tier 2): Nobody received the alert: the team has no active leader account; "
    "radio it or add another team"
)


async def test_a_team_dispatched_whose_alert_reached_nobody_is_named_on_red_not_counted(
    world: World, browser: Browser, contexts: Opened
) -> None:
    # Every tier covered, every team with a leader: all alerted, green, nothing on red.
    await world.leader(await world.team("fixed_post", *QINGXI, name="甲驻点队"))
    patrol = await world.team("patrol", *QINGXI, radius_m=3000, name="三号巡逻车")
    patrol_leader = await world.leader(patrol)
    await world.leader(await world.team("response", *QINGXI, radius_m=3000, name="处突一队"))
    console = await open_console(browser, contexts, world)
    await report_on_console(console, *QINGXI)
    result = console.locator("#report-result")
    await expect(result).to_have_attribute("data-alerted", "all")
    await expect(result.locator(".result-title")).to_have_text("已派警：通知 3 支队伍")
    await expect(result.locator(".alerted li")).to_have_count(3)
    await expect(result.locator(".unreached")).to_have_count(0)
    assert await background(console, "#report-result") == GREEN

    # The patrol's only leader disabled: dispatched, but its alert reached nobody. Two teams
    # were notified; the patrol is named apart on red, with what to do.
    await disable(world, patrol_leader)
    await report_on_console(console, *QINGXI)
    await expect(result).to_have_attribute("data-alerted", "some")
    await expect(result.locator(".result-title")).to_have_text("已派警：通知 2 支队伍")
    await expect(result.locator(".alerted li")).to_have_count(2)
    await expect(result.locator(".alerted")).not_to_contain_text("三号巡逻车")
    unreached = result.locator(".unreached")
    await expect(unreached.locator("li")).to_have_text([UNREACHED_ZH])
    assert await background(console, "#report-result") == GREEN
    assert await background(console, "#report-result .unreached") == RED
    assert await unreached.evaluate("el => getComputedStyle(el).color") == BREACH
    await expect(result.locator(".uncovered")).to_have_count(0)
    assert await contrast_problems(console) == []

    await console.locator("#lang").click()
    await expect(result.locator(".result-title")).to_have_text("Dispatched: 2 teams alerted")
    await expect(unreached.locator("li")).to_have_text([UNREACHED_EN])
    assert await background(console, "#report-result .unreached") == RED
    assert await contrast_problems(console) == []


async def test_a_report_whose_every_team_alerted_nobody_reads_red_and_names_them(
    world: World, browser: Browser, contexts: Opened
) -> None:
    # A fixed post with no leader account at all, a patrol whose only leader is disabled, and
    # no tier-3 team: two teams dispatched, nobody alerted.
    await world.team("fixed_post", *QINGXI, name="甲驻点队")
    patrol = await world.team("patrol", *QINGXI, radius_m=3000, name="三号巡逻车")
    await disable(world, await world.leader(patrol))
    console = await open_console(browser, contexts, world)
    await report_on_console(console, *QINGXI)
    result = await reads_red(
        console,
        "警情已记录，但派出的队伍均无可用队长账号，无人收到警报：请用电台或电话联系这些队伍，"
        "或在警情卡片上按「加派队伍」",
    )
    await expect(result.locator(".alerted")).to_have_count(0)
    await expect(result.locator(".unreached li")).to_have_text(
        [
            "甲驻点队（一梯队）无人接收警报：该队无可用队长账号，请用电台联系或加派其他队伍",
            UNREACHED_ZH,
        ]
    )
    await expect(result.locator(".uncovered")).to_have_text("无覆盖梯队：三梯队 处突警力")
    assert await contrast_problems(console) == []

    await console.locator("#lang").click()
    await expect(result.locator(".result-title")).to_have_text("No team was alerted")
    await expect(result.locator(".advice")).to_have_text(
        "The incident is recorded, but no team dispatched has an active leader account and "
        "nobody received the alert: radio or call these teams, or press Add team on the "
        "incident's card"
    )
    await expect(result.locator(".unreached li")).to_have_text(
        [
            "甲驻点队 (Tier 1): Nobody received the alert: the team has no active leader "
            "account; radio it or add another team",
            UNREACHED_EN,
        ]
    )
    assert await background(console, "#report-result") == RED
    assert await contrast_problems(console) == []
