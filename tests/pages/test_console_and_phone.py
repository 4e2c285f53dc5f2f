"""The operator's console and the team leader's phone page, end to end in headless Chromium."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, Page, expect
from pyproj import Geod

from dispatch.demo import DEMO_TEAMS
from dispatch.teams.models import TeamKind
from geo.crs import CRS, from_wgs84
from tests.conftest import RunningServer
from tests.pages.conftest import Opened, desk_context, log_in, phone_context
from tests.support import QINGXI, Account, World

GEOD = Geod(ellps="WGS84")
# Beside the demo town's industrial park: its fixed post, a mobile team and patrol police cover it.
SCENE = (114.1612, 22.849)
SECOND = 1000  # Playwright timeouts are in milliseconds.


def away(
    metres: float, azimuth: float = 60.0, at: tuple[float, float] = QINGXI
) -> tuple[float, float]:
    lon, lat, _ = GEOD.fwd(*at, azimuth, metres)
    return float(lon), float(lat)


async def open_console(browser: Browser, opened: Opened, world: World, height: int = 900) -> Page:
    page = await (await desk_context(browser, opened, {"width": 1440, "height": height})).new_page()
    await log_in(page, world.base_url + "/console", await world.operator())
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    return page


async def open_phone(
    browser: Browser,
    opened: Opened,
    world: World,
    leader: Account,
    position: tuple[float, float],
) -> Page:
    page = await (await phone_context(browser, opened, position)).new_page()
    await log_in(page, world.base_url + "/m", leader)
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    return page


async def report_on_console(
    console: Page, lon: float, lat: float, crs: str = "wgs84", category: str = "fight"
) -> str:
    await console.locator("#category").select_option(category)
    await console.locator("#crs").select_option(crs)
    await console.locator("#lon").fill(f"{lon:.7f}")
    await console.locator("#lat").fill(f"{lat:.7f}")
    await console.get_by_role("button", name="派警").click()
    result = console.locator("#report-result")
    await expect(result).to_have_attribute("data-incident-id", re.compile(r".+"))
    incident_id = await result.get_attribute("data-incident-id")
    assert incident_id is not None
    return incident_id


def card(console: Page, incident_id: str) -> Any:
    return console.locator(f'article.incident[data-incident-id="{incident_id}"]')


async def demo_town(world: World, *, without: TeamKind) -> dict[str, dict[str, Any]]:
    """The demo town's teams, by name, leaving one kind out so that its tier is uncovered."""
    teams = {}
    for spec in DEMO_TEAMS:
        if spec.kind != without:
            extra = {"radius_m": spec.radius_m} if spec.radius_m else {}
            teams[spec.name] = await world.team(
                spec.kind.value, spec.lon, spec.lat, name=spec.name, **extra
            )
    return teams


async def test_reported_on_console_accepted_and_arrived_on_phone_tier_1_met(
    world: World, browser: Browser, contexts: Opened, artifacts: Path, backend: str
) -> None:
    teams = await demo_town(world, without=TeamKind.RESPONSE)
    post = teams["三中工业园驻点应急联防队"]
    leader = await world.leader(post)
    # The leader is 300 m off: positions on the way never count as arrival, the button does.
    phone = await open_phone(browser, contexts, world, leader, away(300, at=SCENE))
    console = await open_console(browser, contexts, world, height=1080)

    incident_id = await report_on_console(console, *SCENE)
    result = console.locator("#report-result")
    for name in ("三中工业园驻点应急联防队", "清溪中心机动应急联防队", "清溪派出所巡逻警力"):
        await expect(result).to_contain_text(name)
    await expect(result.locator(".uncovered")).to_have_attribute("data-tiers", "3")
    incident = card(console, incident_id)
    await expect(incident.locator('.tier[data-tier="3"]')).to_contain_text("无覆盖")

    # The alert takes the phone's whole screen; receipt (ack) and display are both recorded.
    alert = phone.locator("#alert")
    await expect(alert).to_be_visible()
    await expect(alert).to_contain_text("打架斗殴")
    await expect(alert.locator(".distance")).to_contain_text("米")
    box = await alert.bounding_box()
    assert box is not None and box["width"] == 360 and box["height"] == 740
    operator = await world.operator()
    await world.wait_for(
        operator,
        incident_id,
        lambda i: i["dispatches"][0]["delivered_at"] and i["dispatches"][0]["shown_at"],
    )
    await phone.screenshot(path=artifacts / f"phone-{backend}.png")

    world.clock.advance(5.4)
    await phone.get_by_role("button", name="接警").click()
    await expect(phone.locator("#accept")).to_contain_text("已接警")
    world.clock.advance(38)
    await phone.get_by_role("button", name="已到场").click()
    await expect(phone.locator("#alert-arrival")).to_contain_text("到场方式：按钮")
    await expect(phone.locator('#alert .tier[data-tier="1"]')).to_have_attribute(
        "data-status", "met"
    )
    await phone.screenshot(path=artifacts / f"phone-arrived-{backend}.png", full_page=True)

    tier1 = incident.locator('.tier[data-tier="1"]')
    await expect(tier1).to_have_attribute("data-status", "met")
    await expect(tier1).to_contain_text("已到场")
    mine = incident.locator(f'.dispatch:has-text("{post["name"]}")')
    for hop in ("alerted", "delivered", "shown", "accepted", "arrived"):
        await expect(mine.locator(f'.hop-done[data-hop="{hop}"]')).to_have_count(1)
    await expect(mine.locator('[data-hop="arrived"] .hop-latency')).to_contain_text("38")
    await expect(mine.locator(".arrival")).to_contain_text("按钮")
    await expect(mine.locator(".arrival")).to_contain_text("设备时钟")

    stored = await world.incident(operator, incident_id)
    arrived = next(d for d in stored["dispatches"] if d["team_id"] == post["id"])
    assert arrived["arrival_source"] == "button"
    assert 290 < arrived["arrival_distance_m"] < 310
    assert stored["chain"][0]["status"] == "met"

    # A second incident nobody answers breaches; a reload keeps the login and the list.
    second = await world.report(operator, 114.1566, 22.8452, category="suspicious")
    world.clock.advance(61)
    await expect(card(console, second["id"]).locator('.tier[data-tier="1"]')).to_have_attribute(
        "data-status", "breached", timeout=10 * SECOND
    )
    await console.reload()
    await expect(console.locator("#conn")).to_have_attribute("data-state", "live")
    await expect(card(console, second["id"])).to_contain_text("超时")
    await expect(incident.locator('.tier[data-tier="1"]')).to_have_attribute("data-status", "met")
    # The picture in the docs: the breached incident's end above the met one in full.
    await incident.evaluate(
        "card => { card.parentElement.closest('.panel').scrollTop = card.offsetTop - 520; }"
    )
    await console.screenshot(path=artifacts / f"console-{backend}.png")


async def test_incident_left_alone_breaches_on_the_console_with_an_alarm(
    world: World, browser: Browser, contexts: Opened, artifacts: Path, backend: str
) -> None:
    await world.team("fixed_post")
    await world.team("mobile", *away(200, 200))
    operator = await world.operator()
    console = await open_console(browser, contexts, world)
    # Typed in GCJ-02, as read off a Chinese web map; the server stores it in WGS84.
    point = away(30)
    incident_id = await report_on_console(console, *from_wgs84(*point, CRS.GCJ02), crs="gcj02")
    stored = await world.incident(operator, incident_id)
    assert GEOD.inv(*point, stored["location"]["lon"], stored["location"]["lat"])[2] < 0.05
    assert len(stored["dispatches"]) == 2

    tier1 = card(console, incident_id).locator('.tier[data-tier="1"]')
    await expect(tier1).to_have_attribute("data-status", "pending")
    await expect(tier1.locator(".tier-clock")).to_have_text(re.compile(r"^0:\d\d$"))
    world.clock.advance(61)
    await expect(tier1).to_have_attribute("data-status", "breached", timeout=10 * SECOND)
    await expect(tier1).to_contain_text("超时")
    await expect(console.locator("#alarm")).to_be_visible()
    await expect(console.locator("#alarm")).to_have_attribute("data-sounding", "true")
    await expect(console.locator("#feed")).to_contain_text("超时：梯队1 应急联防队")
    await expect(card(console, incident_id)).to_have_class(re.compile("incident-breached"))
    await console.screenshot(path=artifacts / f"console-breached-{backend}.png")

    await console.get_by_role("button", name="确认并静音").click()
    await expect(console.locator("#alarm")).to_be_hidden()
    console.on("dialog", lambda dialog: dialog.accept())
    await card(console, incident_id).get_by_role("button", name="结案").click()
    await expect(card(console, incident_id)).to_have_count(0)
    closed = await world.incident(operator, incident_id)
    assert closed["status"] == "closed"


async def test_phone_records_arrival_by_geofence_while_on_the_way(
    world: World, browser: Browser, contexts: Opened, backend: str
) -> None:
    post = await world.team("fixed_post")
    leader = await world.leader(post)
    phone = await open_phone(browser, contexts, world, leader, away(20))
    operator = await world.operator()
    incident = await world.report(operator)

    await expect(phone.locator("#alert")).to_be_visible()
    # Large system fonts: everything grows, nothing is cut off or pushed out sideways.
    await phone.evaluate("document.documentElement.style.fontSize = '150%'")
    overflow = await phone.evaluate(
        """() => Array.from(document.querySelectorAll('#alert button, #alert p'))
            .filter(el => el.scrollWidth > el.clientWidth + 1
                       || el.scrollHeight > el.clientHeight + 1)
            .map(el => el.id || el.textContent)"""
    )
    assert overflow == []
    assert await phone.evaluate("document.getElementById('alert').scrollWidth") <= 360
    world.clock.advance(9)
    await phone.get_by_role("button", name="接警").click()
    # No tap on "arrived": the positions sent every few seconds bring the team inside 50 m.
    await expect(phone.locator("#alert-arrival")).to_contain_text("电子围栏", timeout=15 * SECOND)
    await expect(phone.locator("#arrive")).to_be_disabled()
    stored = await world.incident(operator, incident["id"])
    d = stored["dispatches"][0]
    assert d["arrival_source"] == "geofence"
    assert 19 < d["arrival_distance_m"] < 21
    assert d["arrival_accuracy_m"] == 10
    assert d["arrival_device_time"] is not None


async def test_phone_stays_logged_in_and_gets_missed_alerts_on_return(
    world: World, browser: Browser, contexts: Opened, backend: str
) -> None:
    post = await world.team("fixed_post")
    leader = await world.leader(post)
    phone = await open_phone(browser, contexts, world, leader, away(300))
    context = phone.context
    await phone.close()

    operator = await world.operator()
    incident = await world.report(operator, category="robbery")
    missed = await world.incident(operator, incident["id"])
    assert missed["dispatches"][0]["delivered_at"] is None

    # Reopened later: no login form, the alert replayed from where the phone left off.
    again = await context.new_page()
    await again.goto(world.base_url + "/m")
    await expect(again.locator("#login")).to_be_hidden()
    await expect(again.locator("#missed")).to_contain_text("漏收 1 条")
    await expect(again.locator("#alert")).to_contain_text("抢劫抢夺")
    await world.wait_for(operator, incident["id"], lambda i: i["dispatches"][0]["delivered_at"])

    # Escape puts the alert away; English is then chosen and remembered on the device.
    await again.keyboard.press("Escape")
    await expect(again.locator("#alert")).to_be_hidden()
    await again.get_by_role("button", name="English").click()
    await expect(again.locator("#missed")).to_contain_text("1 alerts missed")
    await expect(again.locator("#accept")).to_have_text("Accept")  # hidden, translated too
    await again.reload()
    await expect(again.locator("#title")).to_have_text("1-3-5 Team leader")


async def test_console_survives_a_server_restart_and_resumes(
    world: World, server: RunningServer, browser: Browser, contexts: Opened
) -> None:
    await world.team("fixed_post")
    operator = await world.operator()
    console = await open_console(browser, contexts, world)
    conn = console.locator("#conn")

    await server.stop()
    await expect(conn).to_have_attribute("data-state", "reconnecting")
    await expect(conn).to_contain_text("正在重连")
    # The same address, as after a deploy: the page must find its way back by itself.
    restarted = RunningServer(server.settings, server.clock)
    restarted.port = restarted.server.config.port = server.port
    await restarted.start()
    try:
        incident = await world.report(operator, category="fire")
        await expect(conn).to_have_attribute("data-state", "live", timeout=20 * SECOND)
        await expect(console.locator("#feed")).to_contain_text("已重新连接")
        await expect(card(console, incident["id"])).to_contain_text("火情")
    finally:
        await restarted.stop()
