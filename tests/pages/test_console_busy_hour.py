"""The console in a busy hour, as an operator lives it: a dozen incidents open at once and some
of their tiers late, an incident closed by another operator while this one is on it, teams
accepting and arriving (one arriving without accepting), the language switch in the middle of
it all, and the main actions by keyboard alone; with not one error in the page's console nor a
request that failed, throughout."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

from playwright.async_api import Browser, Locator, Page, Request, Response, expect

from tests.pages.conftest import DESK, TIMEOUT_MS, Opened, log_in, on_the_servers_clock
from tests.pages.test_console_and_phone import SECOND, away, card
from tests.support import Account, World

SHANGHAI = timezone(timedelta(hours=8))
CJK = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")


class Watched:
    """What went wrong in a page: console errors, requests that failed or were answered 4xx/5xx."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        page.on("requestfailed", self._failed)
        page.on("response", self._answered)

    def _failed(self, request: Request) -> None:
        self.errors.append(f"failed: {request.method} {request.url} {request.failure}")

    def _answered(self, response: Response) -> None:
        if response.status >= 400:
            self.errors.append(f"{response.status}: {response.request.method} {response.url}")


async def console_in(
    browser: Browser, contexts: Opened, world: World, operator: Account, zone: str = "UTC"
) -> tuple[Page, Watched]:
    """A console signed in as ``operator``, its device's clock in time zone ``zone``."""
    context = await browser.new_context(viewport=DESK, locale="zh-CN", timezone_id=zone)
    context.set_default_timeout(TIMEOUT_MS)
    await on_the_servers_clock(context)
    contexts.watch(context)
    page = await context.new_page()
    watched = Watched(page)
    await log_in(page, world.base_url + "/console", operator)
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    return page, watched


def shanghai(iso: str) -> str:
    return datetime.fromisoformat(iso).astimezone(SHANGHAI).strftime("%H:%M:%S")


async def reported(world: World, operator: Account, n: int) -> dict[str, Any]:
    """The ``n``th incident of the hour, half a second after the one before."""
    world.clock.advance(0.5)
    return await world.report(operator, *away(10 + n))


async def two_late(
    world: World, operator: Account, console: Page
) -> tuple[dict[str, Any], dict[str, Any], Locator]:
    """A fight and a fire reported by ``operator``, both past their first tier's deadline with
    nobody there: the incidents, and ``console``'s alarm banner once it names the two."""
    fight = await reported(world, operator, 0)
    fire = await world.report(operator, *away(12), category="fire")
    world.clock.advance(61)
    alarm = console.locator("#alarm")
    await expect(alarm).to_contain_text("超时警报（2 起）", timeout=10 * SECOND)
    return fight, fire, alarm


async def listed(console: Page) -> list[str]:
    ids: list[str] = await console.locator("article.incident").evaluate_all(
        "(cards) => cards.map((c) => c.dataset.incidentId)"
    )
    return ids


async def test_a_dozen_open_incidents_some_late_each_breach_shown_once_in_shanghai_time(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """Twelve incidents, six reported 30 s before the other six; at 65 s the first six have
    their tier 1 late: each card shows it once, with the breach's Shanghai time on a console
    whose device is set to New York; the feed lists each breach once; the list keeps its order
    as news comes; an escalation names the teams it added."""
    await world.leader(await world.team("fixed_post"))
    # Outside the post's 100 m, inside the 1000 m ring alerted when nobody accepts in time.
    ring = await world.team("fixed_post", *away(600), name="银湖东门驻点队")
    # Each team with a leader to alert: a team without one adds a line of its own to the feed.
    await world.leader(ring)
    operator = await world.operator()
    console, watched = await console_in(browser, contexts, world, operator, "America/New_York")
    first = [await reported(world, operator, n) for n in range(6)]
    world.clock.advance(27)
    second = [await reported(world, operator, n) for n in range(6, 12)]
    await expect(console.locator("article.incident")).to_have_count(12)
    # The escalation of the first six (20 s without an accept) added the ring's team.
    feed = console.locator("#feed")
    await expect(feed.locator("li", has_text="扩大范围（1000 米）")).to_have_count(6)
    await expect(feed.locator("li", has_text=ring["name"])).to_have_count(6)
    order = await listed(console)
    # Newest first.
    assert order == [i["id"] for i in reversed(first + second)]

    world.clock.advance(35)
    # The device's clock is set too (the page measures the server's time again on a jump).
    await console.context.clock.set_system_time(world.clock.now())
    for incident in first:
        tier = card(console, incident["id"]).locator('.tier[data-tier="1"]')
        await expect(tier).to_have_attribute("data-status", "breached", timeout=10 * SECOND)
    await expect(console.locator("#late-only")).to_have_text("超时未到场 6 起")
    for incident in first:
        stored = await world.incident(operator, incident["id"])
        at = shanghai(stored["chain"][0]["breached_at"])
        tier = card(console, incident["id"]).locator('.tier[data-tier="1"]')
        await expect(tier.locator(".tier-state")).to_have_text(f"超时 {at}")
        await expect(card(console, incident["id"]).locator(".tier-breached")).to_have_count(1)
    for incident in second:
        tier = card(console, incident["id"]).locator('.tier[data-tier="1"]')
        await expect(tier).to_have_attribute("data-status", "pending")
        await expect(tier.locator(".tier-clock")).to_have_text(re.compile(r"^0:2\d$"))
    # Each breach once in the feed, once in the banner.
    await expect(feed.locator("li.feed-breach")).to_have_count(6)
    await expect(console.locator("#alarm")).to_contain_text("超时警报（6 起）")
    assert await listed(console) == order, "live"

    # The list's order is the same however the console came by it: reloaded, it reads alike.
    await console.reload()
    await expect(console.locator("article.incident")).to_have_count(12)
    assert await listed(console) == order, "reloaded"
    await expect(feed.locator("li.feed-breach")).to_have_count(6)
    await expect(console.locator("#alarm")).to_contain_text("超时警报（6 起）")
    assert watched.errors == []


FOCUSED = """() => {
  const el = document.activeElement;
  const card = el && el.closest('article.incident');
  return [el ? el.tagName : null, card ? card.dataset.incidentId : null];
}"""


async def test_an_incident_closed_by_another_operator_leaves_the_keyboard_in_the_list(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """This operator's keyboard is on 定位 of an incident in the middle of the list when a
    colleague, at his own console, closes it: the card goes, the feed says so once, and the
    keyboard is on the card that took its place, not thrown back to the top of the page."""
    await world.leader(await world.team("fixed_post"))
    operator, colleague = await world.operator(), await world.operator()
    console, watched = await console_in(browser, contexts, world, operator)
    other, other_watched = await console_in(browser, contexts, world, colleague)
    incidents = [await reported(world, operator, n) for n in range(5)]
    await expect(console.locator("article.incident")).to_have_count(5)
    await expect(other.locator("article.incident")).to_have_count(5)
    # Newest first: the third reported is in the middle, the second below it.
    middle, below = incidents[2], incidents[1]
    await card(console, middle["id"]).get_by_role("button", name="定位").focus()

    other.once("dialog", lambda dialog: dialog.accept())
    await card(other, middle["id"]).get_by_role("button", name="结案").click()
    await expect(card(other, middle["id"])).to_have_count(0)
    await expect(card(console, middle["id"])).to_have_count(0)
    await expect(console.locator("#feed li", has_text="已结案：打架斗殴")).to_have_count(1)
    assert await console.evaluate(FOCUSED) == ["ARTICLE", below["id"]]
    # The next Tab goes on inside that card.
    await console.keyboard.press("Tab")
    assert await console.evaluate(FOCUSED) == ["BUTTON", below["id"]]

    # Both close the same one: the colleague while this operator's 结案 asks to be sure. It is
    # closed once, said once, and this operator is told of no error.
    same = incidents[4]

    async def closed_meanwhile(dialog: Any) -> None:
        await card(other, same["id"]).get_by_role("button", name="结案").click()
        await expect(card(other, same["id"])).to_have_count(0)
        await dialog.accept()

    other.once("dialog", lambda dialog: dialog.accept())
    console.once("dialog", closed_meanwhile)
    await card(console, same["id"]).get_by_role("button", name="结案").click()
    await expect(card(console, same["id"])).to_have_count(0)
    await expect(console.locator("#feed li", has_text="已结案：打架斗殴")).to_have_count(2)
    await expect(other.locator("#feed li", has_text="已结案：打架斗殴")).to_have_count(2)
    await expect(console.locator("#feed li.feed-breach")).to_have_count(0)
    assert watched.errors == [] and other_watched.errors == []


async def test_a_late_incident_answered_under_the_late_filter_leaves_the_keyboard_in_the_list(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """The list shows the late incidents alone; the operator records by keyboard the arrival
    a team reported by radio: its incident is late no more and leaves the list, and the
    keyboard goes to the late incident that took its place."""
    await world.team("fixed_post")
    operator = await world.operator()
    console, watched = await console_in(browser, contexts, world, operator)
    late = [await reported(world, operator, n) for n in range(3)]
    world.clock.advance(61)
    for incident in late:
        tier = card(console, incident["id"]).locator('.tier[data-tier="1"]')
        await expect(tier).to_have_attribute("data-status", "breached", timeout=10 * SECOND)
    running = await reported(world, operator, 3)
    await expect(card(console, running["id"])).to_be_visible()
    await console.locator("#late-only").click()
    await expect(console.locator("article.incident")).to_have_count(3)

    # The middle one of the three (newest first).
    button = card(console, late[1]["id"]).get_by_role("button", name="代报到场")
    await button.focus()
    console.once("dialog", lambda dialog: dialog.accept())
    await console.keyboard.press("Enter")
    await expect(card(console, late[1]["id"])).to_have_count(0)
    await expect(console.locator("#late-only")).to_have_text("超时未到场 2 起")
    assert await console.evaluate(FOCUSED) == ["ARTICLE", late[0]["id"]]
    assert watched.errors == []


async def test_teams_accepting_then_arriving_and_one_arriving_without_accepting(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """One team accepts and then arrives; another arrives without accepting: each acceptance
    and each arrival is one line in the feed, the met tiers turn green with their times, and the
    accept the arrival stood for reads 由到场推定, never 接警."""
    post = await world.team("fixed_post", name="post-a")
    patrol = await world.team("patrol", name="patrol-b", radius_m=2000)
    post_leader, patrol_leader = await world.leader(post), await world.leader(patrol)
    operator = await world.operator()
    console, watched = await console_in(browser, contexts, world, operator)
    incident = await world.report(operator, *away(20))
    others = [await reported(world, operator, n) for n in range(3)]
    feed = console.locator("#feed")
    one = card(console, incident["id"])
    await expect(one).to_be_visible()
    post_dispatch = next(d["id"] for d in incident["dispatches"] if d["team_id"] == post["id"])

    world.clock.advance(5)
    reply = await world.http.post(
        f"/api/v1/dispatches/{post_dispatch}/accept", json={}, headers=post_leader.headers
    )
    assert reply.status_code == 200, reply.text
    await expect(feed.locator("li", has_text="接警：post-a")).to_have_count(1)
    world.clock.advance(30)
    assert await world.arrive(incident, post, post_leader) == 200
    await expect(feed.locator("li", has_text="到场：post-a（按钮）")).to_have_count(1)
    tier1 = one.locator('.tier[data-tier="1"]')
    await expect(tier1).to_have_attribute("data-status", "met")
    await expect(tier1.locator(".tier-state")).to_contain_text("36 秒")

    world.clock.advance(60)
    assert await world.arrive(incident, patrol, patrol_leader) == 200
    await expect(feed.locator("li", has_text="到场：patrol-b（按钮）")).to_have_count(1)
    row = one.locator('.dispatch:has-text("patrol-b")')
    await expect(row.locator('.hop-implied[data-hop="accepted"]')).to_have_text(
        re.compile("由到场推定")
    )
    await expect(one.locator('.tier[data-tier="2"]')).to_have_attribute("data-status", "met")
    await expect(feed.locator("li", has_text="接警：patrol-b")).to_have_count(0)
    # The news of one incident moved no other card.
    assert await listed(console) == [i["id"] for i in reversed(others)] + [incident["id"]]
    await expect(feed.locator("li", has_text="接警：")).to_have_count(1)
    await expect(feed.locator("li", has_text="到场：")).to_have_count(2)
    assert watched.errors == []


async def test_the_language_switch_in_the_middle_of_an_incident(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """In the middle of an incident (a tier late, a team added by the wider ring, one accepted,
    one on scene), English: no Chinese is left on screen but the switch back, and every time
    reads as it did, in Shanghai's time on a device set to London's."""
    post = await world.team("fixed_post", name="post-a")
    await world.team("fixed_post", *away(600), name="ring-c")
    patrol = await world.team("patrol", name="patrol-b", radius_m=2000)
    operator = await world.operator()
    console, watched = await console_in(browser, contexts, world, operator, "Europe/London")
    incident = await world.report(operator, *away(20), category="fire")
    await expect(card(console, incident["id"])).to_be_visible()
    patrol_leader = await world.leader(patrol)
    patrol_dispatch = next(d["id"] for d in incident["dispatches"] if d["team_id"] == patrol["id"])
    reply = await world.http.post(
        f"/api/v1/dispatches/{patrol_dispatch}/accept", json={}, headers=patrol_leader.headers
    )
    assert reply.status_code == 200, reply.text
    world.clock.advance(61)
    one = card(console, incident["id"])
    await expect(one.locator('.tier[data-tier="1"]')).to_have_attribute(
        "data-status", "breached", timeout=10 * SECOND
    )
    assert await world.arrive(incident, post, await world.leader(post)) == 200
    await expect(one.locator('.tier[data-tier="1"]')).to_contain_text("超时，")
    await expect(one.locator('.dispatch:has-text("ring-c") .ring')).to_have_text("扩大范围")
    times = await console.locator("time").all_inner_texts()
    stored = await world.incident(operator, incident["id"])
    assert shanghai(stored["reported_at"]) in await one.inner_text()

    await console.get_by_role("button", name="English").click()
    await expect(one.locator("h3")).to_have_text("Fire")
    text = await console.locator("body").inner_text()
    left = [line for line in text.splitlines() if CJK.search(line) and line.strip() != "中文"]
    assert left == [], left
    assert await console.title() and not CJK.search(await console.title())
    # Nor in what is said of a control rather than shown: titles, names, placeholders.
    said = await console.evaluate(
        """() => Array.from(document.querySelectorAll('[title], [aria-label], [placeholder]'))
            .filter((el) => el.getClientRects().length)
            .flatMap((el) => ['title', 'aria-label', 'placeholder'].map((a) => el.getAttribute(a)))
            .filter(Boolean)"""
    )
    assert [words for words in said if CJK.search(words)] == [], said
    assert await console.locator("time").all_inner_texts() == times
    assert shanghai(stored["reported_at"]) in await one.inner_text()

    await console.get_by_role("button", name="中文").click()
    await expect(one.locator("h3")).to_have_text("火情")
    assert watched.errors == []


async def test_report_open_and_close_by_keyboard_while_news_comes(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """Report by keyboard alone, open (定位) the incident and close it, while other incidents'
    news redraws the list: the keyboard stays where it is through the news, and once the
    incident is closed it is on the list, not at the top of the page."""
    await world.team("fixed_post")
    operator = await world.operator()
    console, watched = await console_in(browser, contexts, world, operator)
    older = [await reported(world, operator, n) for n in range(3)]
    await expect(console.locator("article.incident")).to_have_count(3)

    world.clock.advance(0.5)
    await console.locator("#category").focus()
    await console.keyboard.press("ArrowDown")
    await console.keyboard.press("Tab")  # the coordinate system, WGS84
    await console.keyboard.press("Tab")
    lon, lat = away(15)
    await console.keyboard.type(f"{lon:.7f}")
    await console.keyboard.press("Tab")
    await console.keyboard.type(f"{lat:.7f}")
    await console.keyboard.press("Enter")
    result = console.locator("#report-result")
    await expect(result).to_have_attribute("data-incident-id", re.compile(r".+"))
    mine = await result.get_attribute("data-incident-id")
    assert mine is not None
    mine_card = card(console, mine)
    await expect(mine_card).to_be_visible()

    # To its 定位 by Tab alone.
    for _ in range(40):
        await console.keyboard.press("Tab")
        if await console.evaluate(FOCUSED) == ["BUTTON", mine]:
            break
    assert await console.evaluate("document.activeElement.textContent") == "定位"
    await console.keyboard.press("Enter")

    # News of the others redraws the list: a new report above, an arrival below.
    newer = await reported(world, operator, 4)
    await expect(card(console, newer["id"])).to_be_visible()
    assert (
        await world.arrive(older[0], {"id": older[0]["dispatches"][0]["team_id"]}, operator) == 200
    )
    await expect(card(console, older[0]["id"]).locator('.tier[data-tier="1"]')).to_have_attribute(
        "data-status", "met"
    )
    assert await console.evaluate(FOCUSED) == ["BUTTON", mine]

    # 加派队伍, then 结案.
    await console.keyboard.press("Tab")
    assert await console.evaluate("document.activeElement.textContent") == "加派队伍"
    await console.keyboard.press("Tab")
    assert await console.evaluate("document.activeElement.textContent") == "结案"
    console.once("dialog", lambda dialog: dialog.accept())
    await console.keyboard.press("Enter")
    await expect(mine_card).to_have_count(0)
    # The card below it (the newest of those reported before) has the keyboard now.
    assert await console.evaluate(FOCUSED) == ["ARTICLE", older[2]["id"]]
    assert watched.errors == []


async def test_the_list_keeps_its_scroll_place_as_news_comes(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """Scrolled down a list of a dozen to one incident, the operator keeps it where it is on
    screen as a new incident comes in above it and a card above it grows (an arrival)."""
    await world.team("fixed_post")
    operator = await world.operator()
    console, watched = await console_in(browser, contexts, world, operator)
    incidents = [await reported(world, operator, n) for n in range(12)]
    await expect(console.locator("article.incident")).to_have_count(12)
    watching = card(console, incidents[3]["id"])
    place = """(card) => {
        const box = card.closest('.incidents-card');
        const top = card.getBoundingClientRect().top - box.getBoundingClientRect().top;
        return [box.scrollTop > 0, top];
    }"""
    await watching.evaluate(
        "(card) => { const box = card.closest('.incidents-card');"
        " box.scrollTop += card.getBoundingClientRect().top - box.getBoundingClientRect().top; }"
    )
    before = await watching.evaluate(place)
    assert before[0], "the list does not scroll"

    newer = await reported(world, operator, 12)
    await expect(card(console, newer["id"])).to_be_visible()
    above = incidents[8]
    assert await world.arrive(above, {"id": above["dispatches"][0]["team_id"]}, operator) == 200
    await expect(card(console, above["id"]).locator(".arrival")).to_be_visible()
    after = await watching.evaluate(place)
    assert abs(after[1] - before[1]) < 2, (before, after)
    assert watched.errors == []


async def test_breaches_that_came_while_the_network_was_down_are_shown_once(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """The control room's network drops for the minute in which four tiers go late, a team
    arrives, a colleague reports a fire and closes one of the four; back, the console replays
    what it missed: each breach is in the feed once, the banner names those still late, and
    the arrival, the new incident and the close are listed once each, as the breaches are
    (a screen reader told at once how many messages were caught up), and not again on a
    reload."""
    await world.leader(await world.team("fixed_post"))
    operator = await world.operator()
    console, watched = await console_in(browser, contexts, world, operator)
    incidents = [await reported(world, operator, n) for n in range(4)]
    await expect(console.locator("article.incident")).to_have_count(4)
    await console.context.set_offline(True)
    await expect(console.locator("#conn")).to_have_attribute("data-state", "offline")
    world.clock.advance(61)
    for incident in incidents:
        await world.wait_for(
            operator, incident["id"], lambda i: i["chain"][0]["status"] == "breached"
        )
    first = incidents[0]
    assert await world.arrive(first, {"id": first["dispatches"][0]["team_id"]}, operator) == 200
    # A colleague reports a fire and closes the last of the four meanwhile.
    colleague = await world.operator()
    fire = await world.report(colleague, *away(30), category="fire")
    closed = await world.http.post(
        f"/api/v1/incidents/{incidents[3]['id']}/close", headers=colleague.headers
    )
    assert closed.status_code == 200, closed.text
    watched.errors.clear()  # what failed while the network was down
    await console.context.set_offline(False)
    await console.context.clock.set_system_time(world.clock.now())
    await expect(console.locator("#conn")).to_have_attribute("data-state", "live")

    feed = console.locator("#feed")
    await expect(feed.locator("li.feed-breach")).to_have_count(4)
    await expect(console.locator("#late-only")).to_have_text("超时未到场 2 起")
    await expect(console.locator("#alarm")).to_contain_text("超时警报（2 起）")
    for incident in incidents[:3]:
        await expect(card(console, incident["id"]).locator(".tier-breached")).to_have_count(1)
    await expect(card(console, fire["id"])).to_be_visible()
    await expect(card(console, incidents[3]["id"])).to_have_count(0)
    news = ["到场：", "新警情：火情", "已结案：打架斗殴"]
    for words in news:
        await expect(feed.locator("li", has_text=words)).to_have_count(1)
    # Said at once by the line of what was caught up, not one by one.
    await expect(feed.locator("li").first).to_contain_text("已重新连接，补收")
    await expect(console.locator("#said")).to_contain_text("已重新连接，补收")

    # Reloaded, the feed is as it was: nothing listed again.
    lines = await feed.locator("li").count()
    await console.reload()
    await expect(console.locator("#conn")).to_have_attribute("data-state", "live")
    await expect(console.locator("article.incident")).to_have_count(4)
    await expect(feed.locator("li")).to_have_count(lines)
    for words in news:
        await expect(feed.locator("li", has_text=words)).to_have_count(1)
    assert watched.errors == []


async def test_a_record_open_in_the_history_follows_an_arrival_and_a_close_at_another_console(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """The operator has an open incident's record open (历史警情 → 查看记录) when its team
    arrives and a colleague, at his own console, closes it: the record says so, as the row
    above it does, rather than 未结案 and nobody on scene."""
    team = await world.team("fixed_post")
    operator, colleague = await world.operator(), await world.operator()
    console, watched = await console_in(browser, contexts, world, operator)
    other, other_watched = await console_in(browser, contexts, world, colleague)
    fire = await world.report(operator, *away(20), category="fire")
    await expect(card(other, fire["id"])).to_be_visible()

    await console.get_by_role("button", name="历史警情").click()
    row = console.locator(f'#history-list tr[data-incident-id="{fire["id"]}"]')
    await row.get_by_role("button", name="查看记录").click()
    record = console.locator("#history-record")
    await expect(record).to_have_attribute("data-state", "ready")
    await expect(record).to_contain_text("未结案")

    world.clock.advance(30)
    assert await world.arrive(fire, team, await world.leader(team)) == 200
    await expect(row.locator('td[data-tier="1"]')).to_have_attribute("data-outcome", "met")
    await expect(record.locator("table").first).to_contain_text("达标")
    other.once("dialog", lambda dialog: dialog.accept())
    await card(other, fire["id"]).get_by_role("button", name="结案").click()
    await expect(row).to_have_attribute("data-status", "closed")
    stored = await world.incident(operator, fire["id"])
    await expect(record).to_contain_text(f"{shanghai(stored['closed_at'])} 结案")
    await expect(record).not_to_contain_text("未结案")
    assert watched.errors == [] and other_watched.errors == []


async def test_the_alarm_lets_go_of_an_incident_closed_at_another_console(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """Two incidents late, the banner naming both and the siren sounding; a colleague closes
    one at his console: the banner names the other alone; he closes that one too: the banner
    goes and the siren stops, with nothing for this operator to acknowledge."""
    await world.team("fixed_post")
    operator, colleague = await world.operator(), await world.operator()
    console, watched = await console_in(browser, contexts, world, operator)
    fight, fire, alarm = await two_late(world, operator, console)
    await expect(alarm).to_have_attribute("data-sounding", "true")

    for incident in (fight, fire):
        reply = await world.http.post(
            f"/api/v1/incidents/{incident['id']}/close", headers=colleague.headers
        )
        assert reply.status_code == 200, reply.text
        await expect(card(console, incident["id"])).to_have_count(0)
        if incident is fight:
            await expect(alarm).to_have_attribute("data-count", "1")
            await expect(alarm).to_contain_text("火情")
            await expect(alarm).not_to_contain_text("打架斗殴")
    await expect(alarm).to_be_hidden()
    # The siren stopped: the tab's title, marked while it sounds, is not any more.
    await expect(console).not_to_have_title(re.compile("⚠"))
    assert watched.errors == []


async def test_the_alarm_lets_go_of_a_tier_whose_team_has_arrived(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """Two incidents' tier 1 late, the banner naming both; the team of one arrives (late): the
    banner names the other alone; the other's arrives too: the banner goes and the siren stops.
    Both stay on record as breached, in the feed and on the cards."""
    team = await world.team("fixed_post")
    leader = await world.leader(team)
    operator = await world.operator()
    console, watched = await console_in(browser, contexts, world, operator)
    fight, fire, alarm = await two_late(world, operator, console)

    assert await world.arrive(fight, team, leader) == 200
    tier = card(console, fight["id"]).locator('.tier[data-tier="1"]')
    await expect(tier).to_contain_text("超时，")
    await expect(alarm).to_have_attribute("data-count", "1")
    await expect(alarm).to_contain_text("火情")
    await expect(alarm).not_to_contain_text("打架斗殴")
    assert await world.arrive(fire, team, leader) == 200
    await expect(alarm).to_be_hidden()
    await expect(console).not_to_have_title(re.compile("⚠"))
    await expect(console.locator("#feed li.feed-breach")).to_have_count(2)
    await expect(console.locator(".tier-breached")).to_have_count(2)
    assert watched.errors == []
