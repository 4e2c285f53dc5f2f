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
from tests.pages.conftest import Opened, close_phone, desk_context, log_in, phone_context
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
    return await sent_report(console)


async def sent_report(console: Page) -> str:
    """Press 派警 and wait for the report to go out: the incident's id (not the one before's,
    still shown until the new one's answer comes)."""
    result = console.locator("#report-result")
    before = await result.get_attribute("data-incident-id")
    await console.get_by_role("button", name="派警").click()
    await expect(result).to_have_attribute("data-state", "ok")
    if before is not None:
        await expect(result).not_to_have_attribute("data-incident-id", before)
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
        "card => { card.closest('.incidents-card').scrollTop = card.offsetTop - 520; }"
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
    await expect(tier1.locator(".tier-clock")).to_have_text(re.compile(r"^(1:00|0:\d\d)$"))
    world.clock.advance(61)
    await expect(tier1).to_have_attribute("data-status", "breached", timeout=10 * SECOND)
    await expect(tier1).to_contain_text("超时")
    await expect(console.locator("#alarm")).to_be_visible()
    await expect(console.locator("#alarm")).to_have_attribute("data-sounding", "true")
    await expect(console.locator("#feed")).to_contain_text("超时：一梯队 应急联防队")
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
    await close_phone(phone, world, leader)

    operator = await world.operator()
    incident = await world.report(operator, category="robbery")
    missed = await world.incident(operator, incident["id"])
    assert missed["dispatches"][0]["delivered_at"] is None

    # Reopened later: no login form, the alert replayed from where the phone left off.
    again = await context.new_page()
    await again.goto(world.base_url + "/m")
    await expect(again.locator("#login")).to_be_hidden()
    await expect(again.locator("#missed")).to_have_text("离线期间漏收 1 条派警，已补收，待您处理")
    await expect(again.locator("#alert")).to_contain_text("抢劫抢夺")
    await world.wait_for(operator, incident["id"], lambda i: i["dispatches"][0]["delivered_at"])

    # Escape puts the alert away; English is then chosen and remembered on the device.
    await again.keyboard.press("Escape")
    await expect(again.locator("#alert")).to_be_hidden()
    await again.get_by_role("button", name="English").click()
    await expect(again.locator("#missed")).to_contain_text("1 alert missed while offline")
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


# Every visible text node, title and accessible name still holding Chinese once the names given
# (teams', from the data) are taken out of it; hidden elements (and tooltips fading out) do not
# count.
LEFT_IN_CHINESE = """(names) => {
    const chinese = /[\\u3000-\\u303f\\u3400-\\u9fff\\uff00-\\uffef]/;
    const bare = (text) => names.reduce((rest, name) => rest.split(name).join(''), text);
    const shown = (el) => el.checkVisibility({ visibilityProperty: true, opacityProperty: true });
    const found = [];
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        const el = node.parentElement;
        if (!el || !shown(el)) continue;
        if (chinese.test(bare(node.textContent))) found.push(node.textContent.trim());
    }
    for (const el of document.querySelectorAll('[title], [aria-label]')) {
        if (!shown(el)) continue;
        for (const name of ['title', 'aria-label']) {
            const value = el.getAttribute(name);
            if (value && chinese.test(bare(value))) found.push(name + ': ' + value);
        }
    }
    if (chinese.test(document.title)) found.push('document.title: ' + document.title);
    return found;
}"""

# The tooltips of everything drawn on the map (teams' sites, incidents), hovered one by one; a
# closed one fades out for a moment (opacity 0) before it leaves.
MAP_TOOLTIPS = """() => {
    const paths = Array.from(document.querySelectorAll('#map path.leaflet-interactive'));
    return paths.map((path) => {
        path.dispatchEvent(new MouseEvent('mouseover', { bubbles: true }));
        const tooltip = Array.from(document.querySelectorAll('#map .leaflet-tooltip'))
            .filter((el) => el.style.opacity !== '0')
            .pop();
        const text = tooltip ? tooltip.textContent : '';
        path.dispatchEvent(new MouseEvent('mouseout', { bubbles: true }));
        return text;
    });
}"""


async def test_console_says_everything_again_in_english_after_the_switch(
    world: World, browser: Browser, contexts: Opened
) -> None:
    teams = await demo_town(world, without=TeamKind.RESPONSE)
    names = list(teams)
    console = await open_console(browser, contexts, world)
    # Besides the teams' names, only the switch back may be in Chinese.
    allowed = [*names, "中文"]
    legend = console.locator(".legend")
    await expect(legend).to_contain_text("驻点式应急联防队")

    # Drawn in Chinese first: a preview, a report, a breach with its alarm and feed lines.
    incident_id = await report_on_console(console, *SCENE)
    await expect(console.locator("#feed")).to_contain_text("新警情")
    await console.locator("#map").click()
    await expect(console.locator("#coverage")).to_contain_text("此处")
    world.clock.advance(61)
    await expect(console.locator("#alarm")).to_be_visible(timeout=10 * SECOND)
    await expect(console.locator("#feed")).to_contain_text("超时")
    assert await console.evaluate(LEFT_IN_CHINESE, allowed) != []
    assert any("驻点式应急联防队" in text for text in await console.evaluate(MAP_TOOLTIPS))

    await console.get_by_role("button", name="English").click()
    for kind in ("Fixed-post team", "Mobile team", "Patrol police", "Response police"):
        await expect(legend).to_contain_text(kind)
    await expect(console.locator("#feed")).to_contain_text("New incident: Fight (3 teams)")
    await expect(console.locator("#feed")).to_contain_text("Breach: Tier 1 joint-defence teams")
    await expect(console.locator("#alarm-text")).to_contain_text("Breach alarm")
    await expect(console.locator("#coverage")).to_contain_text(
        re.compile("Covered here by|No team covers")
    )
    await expect(card(console, incident_id)).to_contain_text("Tier 3")
    assert await console.evaluate(LEFT_IN_CHINESE, allowed) == []
    assert await console.title() == "⚠ 1-3-5 Dispatch console"
    zoom_in = console.locator(".leaflet-control-zoom-in")
    await expect(zoom_in).to_have_attribute("title", "Zoom in")
    tooltips = await console.evaluate(MAP_TOOLTIPS)
    assert len(tooltips) > len(names)  # the teams' sites and the incident
    assert any(text.endswith("Fixed-post team") for text in tooltips)
    assert not [t for t in tooltips if re.search("[\u3400-\u9fff]", strip(t, names))]

    # And back: the same again in Chinese.
    await console.get_by_role("button", name="中文").click()
    await expect(legend).to_contain_text("巡逻警力")
    await expect(console.locator("#feed")).to_contain_text("新警情：打架斗殴（3 支队伍）")
    assert await console.title() == "⚠ 1-3-5 指挥调度台"


def strip(text: str, names: list[str]) -> str:
    for name in names:
        text = text.replace(name, "")
    return text


async def test_a_refused_report_is_an_error_in_the_operators_language_with_the_reason(
    world: World, browser: Browser, contexts: Opened
) -> None:
    await world.leader(await world.team("fixed_post"))
    console = await open_console(browser, contexts, world)
    # Typed as GCJ-02 but far outside China: the server refuses it with 422 and says why.
    body = {"location": {"lon": 2.35, "lat": 48.85, "crs": "gcj02"}, "category": "fight"}
    operator = await world.operator()
    refused = await world.http.post("/api/v1/incidents", json=body, headers=operator.headers)
    assert refused.status_code == 422
    detail = refused.json()["detail"]
    assert "gcj02" in detail

    await console.locator("#crs").select_option("gcj02")
    await console.locator("#lon").fill("2.35")
    await console.locator("#lat").fill("48.85")
    await console.get_by_role("button", name="派警").click()
    result = console.locator("#report-result")
    await expect(result.locator("p.error")).to_be_visible()
    red = await result.evaluate("el => getComputedStyle(el).backgroundColor")
    assert red == "rgb(255, 232, 232)"  # --breach-bg, not the green of a report that went out
    await expect(result).to_have_attribute("data-state", "error")
    await expect(result).to_have_attribute("data-status", "422")
    await expect(result.locator(".result-title")).to_have_text("派警失败，警情未发出")
    await expect(result).to_contain_text("请检查经纬度、坐标系、警情类别和简要情况")
    # The server's reason in the operator's words, not its English.
    await expect(result.locator(".reason")).to_have_text(
        "原因：坐标不在中国境内：GCJ-02、BD-09 坐标只用于中国境内，请检查坐标系和经纬度"
    )
    assert "派警失败：" not in (await result.text_content() or "")

    await console.get_by_role("button", name="English").click()
    await expect(result.locator(".result-title")).to_have_text(
        "Dispatch failed: the incident was not sent"
    )
    await expect(result).to_contain_text("Check the longitude, latitude")
    await expect(result.locator(".reason")).to_have_text(
        "Reason: The point is outside China: GCJ-02 and BD-09 coordinates are only used in China;"
        " check the coordinate system and the numbers"
    )
    assert await result.evaluate("el => getComputedStyle(el).backgroundColor") == red

    # A report that goes out afterwards is green again, and nothing of the error stays.
    await console.get_by_role("button", name="中文").click()
    await report_on_console(console, *QINGXI)
    await expect(result).to_have_attribute("data-state", "ok")
    await expect(result).not_to_have_attribute("data-status", re.compile(".*"))
    await expect(result).to_contain_text("已派警：通知 1 支队伍")
    green = await result.evaluate("el => getComputedStyle(el).backgroundColor")
    assert green == "rgb(209, 250, 229)"  # --met-bg


def card_on_phone(phone: Page, incident_id: str) -> Any:
    return phone.locator(f'#incidents article.incident[data-incident-id="{incident_id}"]')


async def test_phone_counts_as_missed_only_alerts_still_waiting_for_the_leader(
    world: World, browser: Browser, contexts: Opened
) -> None:
    post = await world.team("fixed_post")
    leader = await world.leader(post)
    operator = await world.operator()
    # Answered from another phone before this one was ever opened: accepted and on scene.
    done = await world.report(operator, category="fire")
    dispatch_id = done["dispatches"][0]["id"]
    for step in ("accept", "arrive"):
        reply = await world.http.post(
            f"/api/v1/dispatches/{dispatch_id}/{step}", headers=leader.headers
        )
        assert reply.status_code == 200, reply.text

    # A new device replays that alert, but nothing is waiting: nothing was missed.
    first = await open_phone(browser, contexts, world, leader, away(300))
    answered = card_on_phone(first, done["id"])
    await expect(answered).to_contain_text("已到场")
    await expect(first.locator("#missed")).to_be_hidden()
    await expect(first.locator("#alert")).to_be_hidden()

    # One more alert, answered by nobody yet: another new device counts that one only.
    waiting = await world.report(operator, category="robbery")
    second = await open_phone(browser, contexts, world, leader, away(300))
    missed = second.locator("#missed")
    await expect(missed).to_have_text("离线期间漏收 1 条派警，已补收，待您处理")
    await expect(second.locator("#alert")).to_contain_text("抢劫抢夺")
    await second.keyboard.press("Escape")
    await second.get_by_role("button", name="English").click()
    await expect(missed).to_have_text("1 alert missed while offline now awaits your answer")

    # Answered: no longer waiting, so no longer said to be.
    await card_on_phone(second, waiting["id"]).get_by_role("button").click()
    await second.get_by_role("button", name="Accept").click()
    await expect(second.locator("#accept")).to_contain_text("Accepted")
    await expect(missed).to_be_hidden()
    stored = await world.incident(operator, waiting["id"])
    assert stored["dispatches"][0]["accepted_at"] is not None


# What the phone sends and receives, in order: websocket frames both ways and HTTP requests.
WIRE_LOG = """
window.__wire = [];
const NativeSocket = window.WebSocket;
window.WebSocket = class extends NativeSocket {
    constructor(...args) {
        super(...args);
        this.addEventListener('message', (event) => {
            const m = JSON.parse(event.data);
            const incident = m.data && m.data.incident ? m.data.incident.id : null;
            window.__wire.push({ dir: 'in', type: m.type, seq: m.seq, incident });
        });
    }
    send(data) {
        const m = JSON.parse(data);
        window.__wire.push({ dir: 'out', type: m.type, seq: m.seq === undefined ? null : m.seq });
        return super.send(data);
    }
};
const nativeFetch = window.fetch;
window.fetch = function (input, init) {
    window.__wire.push({ dir: 'http', url: String(input && input.url ? input.url : input) });
    return nativeFetch.apply(this, arguments);
};
"""


def ack_then_shown(wire: list[dict[str, Any]], incident: dict[str, Any]) -> tuple[int, int]:
    """Where in the log the alert's ack and its shown report went out."""
    alert = next(
        e
        for e in wire
        if e["dir"] == "in" and e["type"] == "alert" and e["incident"] == incident["id"]
    )
    ack = next(
        i
        for i, e in enumerate(wire)
        if e["dir"] == "out" and e["type"] == "ack" and e["seq"] >= alert["seq"]
    )
    shown_url = f"/api/v1/dispatches/{incident['dispatches'][0]['id']}/shown"
    shown = next(
        i for i, e in enumerate(wire) if e["dir"] == "http" and e["url"].endswith(shown_url)
    )
    return ack, shown


async def test_phone_acknowledges_an_alert_before_reporting_it_shown(
    world: World, browser: Browser, contexts: Opened
) -> None:
    post = await world.team("fixed_post")
    leader = await world.leader(post)
    operator = await world.operator()
    context = await phone_context(browser, contexts, away(300))
    await context.add_init_script(WIRE_LOG)
    phone = await context.new_page()
    await log_in(phone, world.base_url + "/m", leader)
    await expect(phone.locator("#conn")).to_have_attribute("data-state", "live")

    # Live: the alert arrives while the page is open and goes on screen at once.
    live = await world.report(operator)
    await expect(phone.locator("#alert")).to_be_visible()
    await world.wait_for(operator, live["id"], lambda i: i["dispatches"][0]["shown_at"])
    ack, shown = ack_then_shown(await phone.evaluate("window.__wire"), live)
    assert ack < shown, await phone.evaluate("window.__wire")

    # Replayed: the alert came while the page was closed and goes on screen once caught up.
    await close_phone(phone, world, leader)
    replayed = await world.report(operator, category="theft")
    again = await context.new_page()
    await again.goto(world.base_url + "/m")
    await expect(again.locator("#alert")).to_contain_text("盗窃")
    await world.wait_for(operator, replayed["id"], lambda i: i["dispatches"][0]["shown_at"])
    ack, shown = ack_then_shown(await again.evaluate("window.__wire"), replayed)
    assert ack < shown, await again.evaluate("window.__wire")


async def test_a_clock_never_reads_more_than_its_tiers_target(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """A page takes the server's time from its welcome, and handles the welcome a moment after
    the server wrote it (a page busy opening, a slow line): its idea of the server's clock runs
    behind. An incident reported then came up as 1:06 on a one-minute clock, on the console and
    on the phone. A clock reads at most its tier's whole target: 1:00, 3:00, 5:00."""
    post = await world.team("fixed_post")
    leader = await world.leader(post)
    phone = await open_phone(browser, contexts, world, leader, away(300))
    console = await open_console(browser, contexts, world)
    # The server's clock moves on past what both pages made of it when they connected.
    world.clock.advance(10)
    incident = await world.report(await world.operator(), category="fight")

    targets = ["1:00", "3:00", "5:00"]
    await expect(card(console, incident["id"]).locator(".tier-clock")).to_have_text(targets)
    await expect(phone.locator("#alert")).to_be_visible()
    await expect(phone.locator("#alert-tiers .tier-clock")).to_have_text(targets)
