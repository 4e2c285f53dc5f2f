"""The console as an operator works it: typed coordinates, the coverage preview, errors in the
operator's language, the breach alarm (its button, and breaches in a gap too old to replay),
arrivals recorded on a team's behalf, and the layout of a 1280x720 screen."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Locator, Page, WebSocketRoute, expect

from alerts import store as mailboxes
from dispatch.clock import ManualClock
from dispatch.config import Settings
from geo.crs import CRS, from_wgs84
from tests.conftest import RunningServer
from tests.notifiers.receiver import HeldReceiver, Receiver
from tests.pages.conftest import Opened, desk_context, log_in
from tests.pages.test_console_and_phone import (
    GEOD,
    SECOND,
    away,
    card,
    card_on_phone,
    open_console,
    open_phone,
    sent_report,
)
from tests.rosters.test_duty import add_members, advance_to, put_duty
from tests.support import QINGXI, Account, World

# The draft marker (dashed, amber): the point of the report form on the map.
DRAFT = '#map path.leaflet-interactive[fill="#fbbf24"]'


async def open_incidents(world: World) -> list[dict[str, Any]]:
    reply = await world.http.get(
        "/api/v1/incidents?status=open", headers=(await world.operator()).headers
    )
    assert reply.status_code == 200
    incidents: list[dict[str, Any]] = reply.json()
    return incidents


async def test_a_coordinate_that_is_not_one_whole_number_is_refused_and_named(
    world: World, browser: Browser, contexts: Opened
) -> None:
    team = await world.team("fixed_post")
    console = await open_console(browser, contexts, world)
    lon, lat = console.locator("#lon"), console.locator("#lat")
    problem = console.locator("#point-error")

    # Stray letters after the number: parseFloat would have read 114.16 and sent it 700 m off.
    await lon.fill(f"{QINGXI[0]:.2f}abc")
    await lat.fill(f"{QINGXI[1]:.6f}")
    await console.get_by_role("button", name="派警").click()
    await expect(lon).to_have_attribute("aria-invalid", "true")
    await expect(lat).not_to_have_attribute("aria-invalid", "true")
    await expect(problem).to_be_visible()
    await expect(problem).to_contain_text("经度不是完整的数字")
    await expect(console.locator("#report-result")).to_be_empty()
    await expect(console.locator("#coverage")).to_be_empty()
    await expect(console.locator(DRAFT)).to_have_count(0)

    # Two points, a second decimal point, a latitude past the pole: refused the same way.
    for bad_lon, bad_lat, field, words in [
        ("114.16.12", f"{QINGXI[1]:.6f}", "#lon", "经度不是完整的数字"),
        (f"{QINGXI[0]:.6f}", "95", "#lat", "纬度超出范围：应在 -90 到 90 之间"),
        (f"{QINGXI[0]:.6f}", "22,85,1", "#lat", "纬度不是完整的数字"),
    ]:
        await lon.fill(bad_lon)
        await lat.fill(bad_lat)
        await console.get_by_role("button", name="派警").click()
        await expect(console.locator(field)).to_have_attribute("aria-invalid", "true")
        await expect(problem).to_contain_text(words)
    assert await open_incidents(world) == []

    # Said again in English.
    await console.get_by_role("button", name="English").click()
    await expect(problem).to_contain_text("Latitude is not a valid number")
    await console.get_by_role("button", name="中文").click()

    # What a Chinese keyboard gives, the full stop 。 and full-width digits, is the number meant:
    # the preview shows the team at once, and the report goes out to the very point.
    full_width = str.maketrans("0123456789.", "０１２３４５６７８９。")
    await lon.fill(f"{QINGXI[0]:.6f}".replace(".", "。"))
    await lat.fill(f"{QINGXI[1]:.6f}".translate(full_width))
    await expect(lon).not_to_have_attribute("aria-invalid", "true")
    await expect(problem).to_be_hidden()
    await expect(console.locator("#coverage")).to_contain_text(team["name"])
    incident_id = await sent_report(console)
    stored = await world.incident(await world.operator(), incident_id)
    _, _, off = GEOD.inv(*QINGXI, stored["location"]["lon"], stored["location"]["lat"])
    assert off < 0.2


async def test_the_coverage_preview_follows_typing_and_the_coordinate_system(
    world: World, browser: Browser, contexts: Opened
) -> None:
    post = await world.team("fixed_post")
    console = await open_console(browser, contexts, world)
    coverage = console.locator("#coverage")
    draft = console.locator(DRAFT)

    # Typed, not clicked: the list and the marker come without pressing anything.
    await console.locator("#crs").select_option("wgs84")
    await console.locator("#lon").fill(f"{QINGXI[0]:.6f}")
    await console.locator("#lat").fill(f"{QINGXI[1]:.6f}")
    await expect(coverage).to_contain_text("此处覆盖：1 支联防队")
    await expect(coverage).to_contain_text(post["name"])
    await expect(draft).to_have_count(1)
    before = await draft.bounding_box()
    assert before is not None

    # The same numbers read as Baidu's BD-09 are a point about 1 km away: nobody covers it, and
    # the marker moves there.
    await console.locator("#crs").select_option("bd09")
    await expect(coverage).to_contain_text("此处无任何联防队覆盖")
    await expect(coverage).not_to_contain_text(post["name"])
    await expect(draft).to_have_count(1)
    after = await draft.bounding_box()
    assert after is not None
    assert abs(after["x"] - before["x"]) + abs(after["y"] - before["y"]) > 20

    # The site's own coordinates in GCJ-02, typed as read off Amap: covered again.
    gcj = from_wgs84(*QINGXI, CRS.GCJ02)
    await console.locator("#crs").select_option("gcj02")
    await console.locator("#lon").fill(f"{gcj[0]:.6f}")
    await console.locator("#lat").fill(f"{gcj[1]:.6f}")
    await expect(coverage).to_contain_text(post["name"])

    # Something that is not a number: no list, no marker, the field marked.
    await console.locator("#lat").fill("22.8x")
    await expect(coverage).to_be_empty()
    await expect(draft).to_have_count(0)
    await expect(console.locator("#lat")).to_have_attribute("aria-invalid", "true")


async def test_errors_are_said_in_the_operators_language(
    world: World, browser: Browser, contexts: Opened
) -> None:
    await world.team("fixed_post")
    context = await desk_context(browser, contexts)
    page = await context.new_page()

    # A wrong password, in Chinese.
    operator = await world.operator()
    await page.goto(world.base_url + "/console")
    await page.get_by_label("用户名").fill(operator.name)
    await page.get_by_label("密码").fill("not-the-password")
    await page.get_by_role("button", name="登录").click()
    await expect(page.locator("#login-error")).to_have_text("登录失败：用户名或密码错误")
    await page.get_by_role("button", name="English").click()
    await expect(page.locator("#login-error")).to_have_text(
        "Login failed: The user name or password is wrong"
    )
    await page.get_by_role("button", name="中文").click()

    # A user name pasted with a zero-width space: named, in the operator's language.
    await page.get_by_label("用户名").fill(operator.name + "\u200b")
    await page.get_by_role("button", name="登录").click()
    await expect(page.locator("#login-error")).to_have_text(
        "登录失败：用户名含有不显示的字符（U+200B，如零宽空格），多半是复制粘贴带进来的：请删掉后重新输入"
    )
    await page.get_by_role("button", name="English").click()
    await expect(page.locator("#login-error")).to_have_text(
        "Login failed: User name holds a character that shows nothing (U+200B, such as a"
        " zero-width space), usually pasted in with the text: delete it and type it again"
    )
    await page.get_by_role("button", name="中文").click()

    # A leader on the console: the role in words, not its code, and where his page is.
    leader = await world.leader(await world.team("mobile"))
    await log_in(page, world.base_url + "/console", leader)
    await expect(page.locator("#login-error")).to_have_text(
        "此账号（队长）不能使用本页面 — 队长请用手机打开 /m（队长接警）"
    )
    await page.get_by_role("button", name="English").click()
    await expect(page.locator("#login-error")).to_have_text(
        "This account (team leader) cannot use this page"
        " — team leaders open /m (Team leader) on their phones"
    )
    await page.get_by_role("button", name="中文").click()

    # The server out of reach: every try fails, and the operator reads why in Chinese.
    await log_in(page, world.base_url + "/console", operator)
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    await page.route("**/api/v1/incidents", lambda route: route.abort())
    await page.locator("#lon").fill(f"{QINGXI[0]:.6f}")
    await page.locator("#lat").fill(f"{QINGXI[1]:.6f}")
    await page.get_by_role("button", name="派警").click()
    result = page.locator("#report-result")
    await expect(result).to_have_attribute("data-state", "error", timeout=15 * SECOND)
    await expect(result.locator(".reason")).to_have_text("原因：无法连接服务器，请检查网络")
    assert "Failed to fetch" not in (await result.text_content() or "")
    await page.get_by_role("button", name="English").click()
    await expect(result.locator(".reason")).to_have_text(
        "Reason: Cannot reach the server; check the network"
    )


async def test_the_alarm_button_is_readable_on_the_red_banner(
    world: World, browser: Browser, contexts: Opened, artifacts: Path, backend: str
) -> None:
    await world.team("fixed_post")
    console = await open_console(browser, contexts, world)
    await world.report(await world.operator())
    world.clock.advance(61)
    alarm = console.locator("#alarm")
    await expect(alarm).to_be_visible(timeout=10 * SECOND)
    button = console.get_by_role("button", name="确认并静音")
    colours = await button.evaluate(
        """(el) => {
            const style = getComputedStyle(el);
            return [style.color, style.backgroundColor];
        }"""
    )
    text, ground = (rgb(c) for c in colours)
    assert contrast(text, ground) >= 4.5, colours
    await alarm.screenshot(path=artifacts / f"console-alarm-{backend}.png")


async def test_the_alarm_button_keeps_its_words_on_one_line_beside_many_breaches(
    world: World, browser: Browser, contexts: Opened
) -> None:
    await world.team("fixed_post")
    operator = await world.operator()
    console = await open_console(browser, contexts, world)
    for i in range(8):
        await world.report(operator, *away(20 + 8 * i, azimuth=40 * i), category="theft")
        world.clock.advance(1)
    world.clock.advance(60)
    alarm = console.locator("#alarm")
    await expect(alarm).to_have_attribute("data-count", "8", timeout=10 * SECOND)
    for width in (1440, 1024):
        await console.set_viewport_size({"width": width, "height": 900})
        button = console.get_by_role("button", name="确认并静音")
        # One line box for its words, none of them cut off: not 确认并 over 静音, nor a column.
        lines, overflow = await button.evaluate(
            """(el) => {
                const range = document.createRange();
                range.selectNodeContents(el);
                return [range.getClientRects().length, el.scrollWidth - el.clientWidth];
            }"""
        )
        assert (lines, overflow) == (1, 0), (width, lines, overflow)
        # The list beside it gives way: it wraps (and scrolls within the banner), never runs
        # out sideways.
        text = await console.locator("#alarm-text").evaluate(
            "(el) => [el.scrollWidth - el.clientWidth, getComputedStyle(el).overflowY]"
        )
        assert text == [0, "auto"], text


async def test_the_banner_names_every_breach_it_silences(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """A fight and, 10 s later, a fire both go unanswered. The fire breaches before the
    operator has acknowledged the fight: the banner names both, as 确认并静音 acknowledges
    both. A breach after that is named alone."""
    await world.team("fixed_post")
    operator = await world.operator()
    console = await open_console(browser, contexts, world)
    await world.report(operator, category="fight")
    world.clock.advance(10)
    await world.report(operator, category="fire")
    world.clock.advance(51)
    banner = console.locator("#alarm-text")
    await expect(banner).to_contain_text("打架斗殴", timeout=10 * SECOND)
    world.clock.advance(10)
    await expect(banner).to_contain_text("火情", timeout=10 * SECOND)
    await expect(banner).to_contain_text("超时警报（2 起）")
    await expect(banner).to_contain_text("打架斗殴")
    await console.get_by_role("button", name="English").click()
    await expect(banner).to_contain_text("Breach alarm (2 incidents)")
    await expect(banner).to_contain_text("Fight")
    await expect(banner).to_contain_text("Fire")
    await console.get_by_role("button", name="中文").click()

    await console.get_by_role("button", name="确认并静音").click()
    await expect(console.locator("#alarm")).to_be_hidden()
    await world.report(operator, category="theft")
    world.clock.advance(61)
    await expect(banner).to_contain_text("盗窃", timeout=10 * SECOND)
    await expect(banner).not_to_contain_text("打架斗殴")
    await expect(banner).not_to_contain_text("火情")
    await expect(banner).not_to_contain_text("2 起")


async def test_the_banner_counts_incidents_as_the_late_count_does(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """One incident whose tier 1 and tier 2 both breach: one incident late, two tiers."""
    await world.team("fixed_post")
    await world.team("patrol", radius_m=3000)
    operator = await world.operator()
    console = await open_console(browser, contexts, world)
    await world.report(operator, category="theft")
    world.clock.advance(181)
    alarm = console.locator("#alarm")
    await expect(alarm).to_have_attribute("data-count", "2", timeout=10 * SECOND)
    banner = console.locator("#alarm-text")
    await expect(banner).to_contain_text("超时警报（1 起，2 个梯队）：")
    await expect(console.locator("#late-only")).to_have_text("超时未到场 1 起")
    await console.get_by_role("button", name="English").click()
    await expect(banner).to_contain_text("Breach alarm (1 incident, 2 tiers): ")
    await expect(console.locator("#late-only")).to_have_text("Late, nobody on scene: 1")


async def test_escalations_say_what_they_did_and_the_alarm_names_a_breach_once(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """A mobile team on duty from 20:00, the only tier-1 team near, reported to at 19:59:50:
    the ring drawn at once finds nobody (it is off duty), and at 20:00 it comes on duty and is
    alerted. Neither reads as a wider ring that added 0 teams."""
    world.long_logins()
    mobile = await world.team("mobile", name="城东巡防队")
    await add_members(world, mobile, 1, 2)
    reply = await put_duty(
        world, mobile, start="20:00", end="08:00", rotation_start="2026-01-05", units=[1]
    )
    assert reply.status_code == 200, reply.text
    operator = await world.operator()
    # Before the console opens, so that it learns the server's day from its welcome: opened
    # first, after 19:59:50 of the real day, it went on thinking it was the day before and
    # dated the breach (12-08 20:00:50).
    advance_to(world, 19, 59, 50)
    console = await open_console(browser, contexts, world)
    feed = console.locator("#feed")

    incident = await world.report(operator, category="fight")
    await expect(feed).to_contain_text("扩大范围（1000 米）：打架斗殴，范围内没有可加派的队伍")
    world.clock.advance(10)
    await escalated_twice(world, operator, incident["id"])
    await expect(feed).to_contain_text("覆盖此处的队伍上岗：打架斗殴，加派 1 支队伍 城东巡防队")
    await expect(feed).not_to_contain_text("加派 0 支队伍")

    world.clock.advance(60)
    banner = console.locator("#alarm-text")
    await expect(banner).to_have_text(
        re.compile(r"^超时警报：一梯队 应急联防队，打架斗殴 \d\d:\d\d:\d\d$"), timeout=10 * SECOND
    )
    await console.get_by_role("button", name="English").click()
    await expect(banner).to_have_text(
        re.compile(r"^Breach alarm: Tier 1 joint-defence teams, Fight \d\d:\d\d:\d\d$")
    )
    await expect(feed).to_contain_text("Wider ring (1000 m): Fight, no more team found within it")
    await expect(feed).to_contain_text(
        "A covering team came on duty: Fight, 1 more team 城东巡防队"
    )


async def escalated_twice(world: World, by: Account, incident_id: str) -> None:
    for _ in range(250):
        reply = await world.http.get(f"/api/v1/incidents/{incident_id}/events", headers=by.headers)
        if sum(e["type"] == "escalated" for e in reply.json()) >= 2:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the team coming on duty was never alerted")


@contextlib.asynccontextmanager
async def server_seeking_leaders(
    settings: Settings, clock: ManualClock, sms: Receiver, hook: Receiver, tries: int
) -> AsyncIterator[World]:
    """A server that texts (``sms``) and calls a webhook (``hook``) for a leader whose phone did
    not acknowledge an alert in 15 s, trying each up to ``tries`` times, a second apart."""
    await sms.start()
    await hook.start()
    configured = Settings(
        **settings.model_dump()
        | {
            "sms_gateway_url": sms.url,
            "webhook_url": hook.url,
            "webhook_secret": "webhook-secret-for-tests",
            "notify_backoff_s": 1.0,
            "notify_max_attempts": tries,
        }
    )
    server = RunningServer(configured, clock)
    await server.start()
    world = World(server.app, f"http://127.0.0.1:{server.port}", clock)
    try:
        yield world
    finally:
        await world.close()
        await server.stop()
        await sms.stop()
        await hook.stop()


@pytest.fixture
async def notifying(
    settings: Settings, clock: ManualClock
) -> AsyncIterator[tuple[World, Receiver, Receiver]]:
    """A server that texts a leader whose phone did not acknowledge an alert in 15 s (a gateway
    that keeps failing, twice) and calls a webhook (which answers)."""
    sms = Receiver(((500, {"error": "gateway down"}),))
    hook = Receiver()
    async with server_seeking_leaders(settings, clock, sms, hook, tries=2) as world:
        yield world, sms, hook


async def leader_with_a_phone_number(world: World) -> Account:
    """The leader of a fixed post (三中驻点队), whose mobile number the admin has entered."""
    post = await world.team("fixed_post", name="三中驻点队")
    leader = await world.leader(post)
    admin = await world.admin()
    reply = await world.http.put(
        f"/api/v1/users/{leader.id}/phone", json={"phone": "13800138000"}, headers=admin.headers
    )
    assert reply.status_code == 200, reply.text
    return leader


async def notified(world: World, by: Account, incident_id: str, done: int) -> None:
    """Wait until ``done`` of the incident's notifications have ended, or their attempts are
    on record: each try's outcome is recorded after its receiver has answered."""
    for _ in range(250):
        reply = await world.http.get(
            f"/api/v1/incidents/{incident_id}/notifications", headers=by.headers
        )
        records = reply.json()
        if sum(n["status"] != "pending" or len(n["attempts"]) for n in records) >= done:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the notifications never got so far")


async def test_the_console_shows_what_came_of_each_leaders_text_and_webhook(
    notifying: tuple[World, Receiver, Receiver], browser: Browser, contexts: Opened
) -> None:
    """The server texts and calls out for a leader whose phone did not acknowledge the alert:
    the operator sees per leader what came of each, as it happens, after a reload, and in
    English."""
    world, sms, hook = notifying
    leader = await leader_with_a_phone_number(world)
    operator = await world.operator()
    console = await open_console(browser, contexts, world)
    feed = console.locator("#feed")

    failing = await world.report(operator, category="fight")
    world.clock.advance(15)
    await hook.wait_for(1)
    await sms.wait_for(1)
    await notified(world, operator, failing["id"], 2)
    world.clock.advance(1)
    notes = card(console, failing["id"]).locator(".notifications")
    await expect(notes).to_contain_text("短信发送失败（尝试 2 次）", timeout=10 * SECOND)
    # One line for the leader, each channel's outcome on it.
    await expect(notes.locator("li")).to_have_count(1)
    await expect(notes.locator("li")).to_contain_text(f"{leader.name}：")
    await expect(notes.locator('.notification[data-channel="webhook"]')).to_have_text(
        re.compile(r"^Webhook已发送 \d\d:\d\d:\d\d$")
    )
    news = f"外部通知 {leader.name}（三中驻点队）："
    await expect(feed).to_contain_text(news + "短信发送失败（尝试 2 次）")
    await expect(feed).to_contain_text(news + "Webhook已发送")

    # Accepted between two tries: the text is stopped, and the card says so.
    answered = await world.report(operator, category="fire")
    world.clock.advance(15)
    await notified(world, operator, answered["id"], 2)
    accept = f"/api/v1/dispatches/{answered['dispatches'][0]['id']}/accept"
    reply = await world.http.post(accept, headers=leader.headers)
    assert reply.status_code == 200, reply.text
    world.clock.advance(1)
    stopped = card(console, answered["id"]).locator('.notification[data-channel="sms"]')
    await expect(stopped).to_have_text("短信已停止", timeout=10 * SECOND)

    # Read from the record after a reload; and in English.
    await console.reload()
    await expect(console.locator("#conn")).to_have_attribute("data-state", "live")
    await expect(notes).to_contain_text("短信发送失败（尝试 2 次）")
    await expect(notes).to_contain_text("Webhook已发送")
    await expect(stopped).to_have_text("短信已停止")
    await console.get_by_role("button", name="English").click()
    await expect(notes).to_contain_text(f"{leader.name}: ")
    await expect(notes).to_contain_text("SMS failed after 2 attempts")
    await expect(notes).to_contain_text("Webhook sent")
    await expect(stopped).to_have_text("SMS stopped")


@pytest.fixture
async def seeking(
    settings: Settings, clock: ManualClock
) -> AsyncIterator[tuple[World, Receiver, HeldReceiver]]:
    """A server whose SMS gateway keeps failing (three tries) and whose webhook holds its
    answer until released."""
    sms = Receiver(((500, {"error": "gateway down"}),))
    hook = HeldReceiver()
    async with server_seeking_leaders(settings, clock, sms, hook, tries=3) as world:
        yield world, sms, hook


async def test_the_console_shows_at_once_whom_the_phone_did_not_reach_and_how_he_is_sought(
    seeking: tuple[World, Receiver, HeldReceiver], browser: Browser, contexts: Opened
) -> None:
    """15 s after the alert, with no gateway's answer yet, the dispatch's card says the
    leader is being sought by text and webhook; each failed try is counted as it comes, not
    only once the last has failed after the tier's minute; the same after a reload and in
    English."""
    world, sms, hook = seeking
    leader = await leader_with_a_phone_number(world)
    operator = await world.operator()
    console = await open_console(browser, contexts, world)
    incident = await world.report(operator, category="fight")
    dispatch = card(console, incident["id"]).locator(
        f'[data-dispatch-id="{incident["dispatches"][0]["id"]}"]'
    )
    notes = dispatch.locator(".notifications")

    world.clock.advance(15)
    await hook.wait_for(1)
    await expect(notes.locator("li")).to_contain_text(f"{leader.name}：", timeout=10 * SECOND)
    await expect(notes.locator('.notification[data-channel="webhook"]')).to_have_text(
        "Webhook发送中"
    )
    # The feed says it once for the leader, however many channels seek him.
    unreached = console.locator("#feed li", has_text="未确认接收：")
    await expect(unreached).to_have_text(
        re.compile(
            rf"未确认接收：{leader.name}（三中驻点队）的手机未确认告警，正在通过其他渠道联系$"
        )
    )
    await notified(world, operator, incident["id"], 1)
    sms_note = notes.locator('.notification[data-channel="sms"]')
    await expect(sms_note).to_have_text("短信发送失败 1 次，重试中")
    world.clock.advance(1)
    await notified(world, operator, incident["id"], 2)
    await expect(sms_note).to_have_text("短信发送失败 2 次，重试中")
    assert len(sms.requests) == 2
    # The webhook's receiver still holds its answer: nothing has ended.
    assert not hook.release.is_set()

    await console.reload()
    await expect(console.locator("#conn")).to_have_attribute("data-state", "live")
    await expect(sms_note).to_have_text("短信发送失败 2 次，重试中")
    await expect(notes.locator('.notification[data-channel="webhook"]')).to_have_text(
        "Webhook发送中"
    )
    await expect(unreached).to_have_count(1)
    await console.get_by_role("button", name="English").click()
    await expect(console.locator("#feed")).to_contain_text(
        f"Not acknowledged: the phone of {leader.name} (三中驻点队) did not acknowledge the alert"
    )
    await expect(sms_note).to_have_text("SMS failed 2 times, retrying")
    await expect(notes.locator('.notification[data-channel="webhook"]')).to_have_text(
        "Webhook being sent"
    )
    hook.release.set()
    await expect(notes.locator('.notification[data-channel="webhook"]')).to_have_text(
        re.compile(r"^Webhook sent \d\d:\d\d:\d\d$"), timeout=10 * SECOND
    )


def rgb(css: str) -> tuple[float, float, float]:
    r, g, b = (float(n) for n in re.findall(r"[\d.]+", css)[:3])
    return r, g, b


def contrast(a: tuple[float, float, float], b: tuple[float, float, float]) -> float:
    """WCAG 2 contrast ratio of two sRGB colours."""

    def luminance(colour: tuple[float, float, float]) -> float:
        def linear(c: float) -> float:
            c /= 255
            return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

        r, g, b = (linear(c) for c in colour)
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    light, dark = sorted((luminance(a), luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


class Gate:
    """The console's websocket passed through to the server, or refused while closed."""

    def __init__(self) -> None:
        self.closed = False
        self.current: WebSocketRoute | None = None

    async def handle(self, ws: WebSocketRoute) -> None:
        if self.closed:
            await ws.close(code=1011, reason="gate closed")
            return
        self.current = ws
        ws.connect_to_server()

    async def shut(self) -> None:
        self.closed = True
        if self.current is not None:
            await self.current.close(code=1011, reason="gate closed")


async def test_breaches_in_a_gap_too_old_to_replay_raise_the_alarm_after_the_reload(
    world: World, browser: Browser, contexts: Opened
) -> None:
    await world.team("fixed_post")
    operator = await world.operator()
    gate = Gate()
    context = await desk_context(browser, contexts)
    await context.route_web_socket(re.compile(r"/ws$"), gate.handle)
    console = await context.new_page()
    await log_in(console, world.base_url + "/console", operator)
    conn = console.locator("#conn")
    await expect(conn).to_have_attribute("data-state", "live")

    # A breach seen live and silenced by the operator.
    silenced = await world.report(operator, category="fight")
    world.clock.advance(61)
    await expect(console.locator("#alarm")).to_be_visible(timeout=10 * SECOND)
    await console.get_by_role("button", name="确认并静音").click()
    await expect(console.locator("#alarm")).to_be_hidden()
    # One still running when the line goes.
    missed = await world.report(operator, category="fire")
    await expect(card(console, missed["id"])).to_have_count(1)

    await gate.shut()
    await expect(conn).to_have_attribute("data-state", "reconnecting")
    world.clock.advance(61)
    await world.wait_for(operator, missed["id"], lambda i: i["chain"][0]["status"] == "breached")
    # The messages of the gap are gone, as after the retention window: only a reload can tell.
    async with world.runtime.transaction() as session:
        await mailboxes.purge_before(session, world.clock.now() + timedelta(seconds=1))
    gate.closed = False

    await expect(conn).to_have_attribute("data-state", "live", timeout=20 * SECOND)
    feed = console.locator("#feed")
    await expect(feed).to_contain_text("已重新连接，已重新加载全部数据")
    await expect(feed).not_to_contain_text("补收")
    await expect(console.locator("#alarm")).to_be_visible()
    await expect(console.locator("#alarm-text")).to_contain_text("火情")
    await expect(console.locator("#alarm-text")).not_to_contain_text("打架斗殴")
    await expect(card(console, missed["id"]).locator('.tier[data-tier="1"]')).to_have_attribute(
        "data-status", "breached"
    )
    # The silenced breach is listed once, from when it happened: not raised again.
    await expect(feed.locator("li.feed-breach", has_text="打架斗殴")).to_have_count(1)
    assert (await world.incident(operator, silenced["id"]))["chain"][0]["status"] == "breached"


def breached(incident: dict[str, Any]) -> bool:
    return bool(incident["chain"][0]["status"] == "breached")


async def test_a_breach_replayed_after_a_short_outage_raises_the_alarm(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """The line drops (a server restart, Wi-Fi) 20 s into a fire and a fight and comes back two
    minutes later, the messages still in the mailbox. The replay brings both tier-1 breaches:
    the fire's, with nobody on scene yet, raises the alarm however long ago it happened, as
    after a gap too old to replay; the fight's, whose team arrived late meanwhile, has nothing
    left to do and is only listed."""
    team = await world.team("fixed_post")
    leader = await world.leader(team)
    operator = await world.operator()
    gate = Gate()
    context = await desk_context(browser, contexts)
    await context.route_web_socket(re.compile(r"/ws$"), gate.handle)
    console = await context.new_page()
    await log_in(console, world.base_url + "/console", operator)
    conn = console.locator("#conn")
    await expect(conn).to_have_attribute("data-state", "live")
    fire = await world.report(operator, category="fire")
    fight = await world.report(operator, category="fight")
    await expect(card(console, fight["id"])).to_have_count(1)

    world.clock.advance(20)
    await gate.shut()
    await expect(conn).to_have_attribute("data-state", "reconnecting")
    world.clock.advance(45)  # both tier-1 deadlines pass while the console is away
    for incident in (fire, fight):
        await world.wait_for(operator, incident["id"], breached)
    reply = await world.http.post(
        f"/api/v1/dispatches/{fight['dispatches'][0]['id']}/arrive", headers=leader.headers
    )
    assert reply.status_code == 200, reply.text
    world.clock.advance(60)  # back two minutes after the drop
    gate.closed = False

    await expect(conn).to_have_attribute("data-state", "live", timeout=20 * SECOND)
    feed = console.locator("#feed")
    await expect(feed).to_contain_text("补收")
    await expect(console.locator("#alarm")).to_be_visible()
    await expect(console.locator("#alarm-text")).to_contain_text("火情")
    await expect(console.locator("#alarm-text")).not_to_contain_text("打架斗殴")
    await expect(feed.locator("li.feed-breach", has_text="打架斗殴")).to_have_count(1)
    await expect(console.locator("#late-only")).to_contain_text("超时未到场 1 起")


async def test_a_console_opened_while_an_incident_is_late_raises_the_alarm(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """The console is opened (or reloaded) while a fight's tier 1 is past its deadline with
    nobody on scene: the alarm sounds for it as it would have live. A fire whose team arrived
    late is on record as breached, but nothing is left to do about it: no alarm. Once the
    operator has acknowledged, a reload does not sound again for it."""
    team = await world.team("fixed_post")
    leader = await world.leader(team)
    operator = await world.operator()
    fight = await world.report(operator, category="fight")
    fire = await world.report(operator, category="fire")
    world.clock.advance(61)
    for incident in (fight, fire):
        await world.wait_for(operator, incident["id"], breached)
    reply = await world.http.post(
        f"/api/v1/dispatches/{fire['dispatches'][0]['id']}/arrive", headers=leader.headers
    )
    assert reply.status_code == 200, reply.text

    console = await open_console(browser, contexts, world)
    alarm = console.locator("#alarm")
    await expect(alarm).to_be_visible()
    await expect(console.locator("#alarm-text")).to_contain_text("打架斗殴")
    await expect(console.locator("#alarm-text")).not_to_contain_text("火情")
    await expect(console.locator("#feed li.feed-breach")).to_have_count(1)
    await console.get_by_role("button", name="确认并静音").click()
    await expect(alarm).to_be_hidden()

    await console.reload()
    await expect(console.locator("#conn")).to_have_attribute("data-state", "live")
    # Drawn once the list is in, which is when the page judges it.
    await expect(console.locator("#late-only")).to_contain_text("超时未到场 1 起")
    await expect(alarm).to_be_hidden()
    # The feed is the one from before the reload, its breach line listed once, not again.
    await expect(console.locator("#feed li.feed-breach")).to_have_count(1)


async def test_an_operator_records_an_arrival_reported_by_radio(
    world: World, browser: Browser, contexts: Opened
) -> None:
    post = await world.team("fixed_post")
    operator = await world.operator()
    console = await open_console(browser, contexts, world)
    incident = await world.report(operator, *away(20))
    row = card(console, incident["id"]).locator(f'.dispatch:has-text("{post["name"]}")')
    button = row.get_by_role("button", name="代报到场")
    await expect(button).to_be_visible()

    # Said no to: nothing is recorded.
    async def dismiss(dialog: Any) -> None:
        await dialog.dismiss()

    console.once("dialog", dismiss)
    await button.click()
    await asyncio.sleep(0.3)
    assert (await world.incident(operator, incident["id"]))["dispatches"][0]["arrived_at"] is None

    world.clock.advance(40)
    messages: list[str] = []

    async def accept(dialog: Any) -> None:
        messages.append(dialog.message)
        await dialog.accept()

    console.once("dialog", accept)
    await button.click()
    tier1 = card(console, incident["id"]).locator('.tier[data-tier="1"]')
    await expect(tier1).to_have_attribute("data-status", "met")
    await expect(row.locator(".arrival")).to_contain_text("到场方式：值班员")
    await expect(row.get_by_role("button", name="代报到场")).to_have_count(0)
    assert post["name"] in messages[0]
    stored = await world.incident(operator, incident["id"])
    assert stored["dispatches"][0]["arrival_source"] == "operator"
    assert stored["chain"][0]["status"] == "met"
    # The radio says nothing of the phone: no delivery nor accept shown, the arrival counted
    # from the alert.
    for hop in ("delivered", "shown", "accepted"):
        await expect(row.locator(f'[data-hop="{hop}"]')).not_to_have_class(re.compile("hop-"))
    await expect(row.locator('.hop-done[data-hop="arrived"] .hop-latency')).to_have_text("+40 秒")


FOCUSED = """() => {
  const el = document.activeElement;
  const card = el.closest('article.incident');
  return [el.tagName, el.className, card ? card.dataset.incidentId : null];
}"""


async def test_the_keyboard_stays_on_a_cards_button_while_the_card_is_drawn_again(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """An operator tabs to 代报到场 of a team on the radio; meanwhile the team's phone accepts
    and the card is drawn again: the focus is still on 代报到场, so his Enter records the
    arrival. While it is being recorded the button keeps the focus, and once the arrival is in
    (the button gone) the keyboard stays on the card, not thrown back to the top of the page."""
    team = await world.team("fixed_post")
    leader = await world.leader(team)
    operator = await world.operator()
    console = await open_console(browser, contexts, world)
    incident = await world.report(operator)
    dispatch_id = incident["dispatches"][0]["id"]
    button = card(console, incident["id"]).locator(".record-arrival")
    await button.focus()

    reply = await world.http.post(
        f"/api/v1/dispatches/{dispatch_id}/accept", json={}, headers=leader.headers
    )
    assert reply.status_code == 200, reply.text
    accepted = card(console, incident["id"]).locator('.hop-done[data-hop="accepted"]')
    await expect(accepted).to_have_count(1)
    assert await console.evaluate(FOCUSED) == ["BUTTON", "record-arrival", incident["id"]]

    # The arrival held on its way to the server, to look at the card meanwhile.
    release = asyncio.Event()

    async def hold(route: Any) -> None:
        await release.wait()
        await route.continue_()

    await console.route(f"**/api/v1/dispatches/{dispatch_id}/arrive", hold)
    console.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await console.keyboard.press("Enter")
    await expect(button).to_have_attribute("aria-disabled", "true")
    assert await console.evaluate(FOCUSED) == ["BUTTON", "record-arrival", incident["id"]]
    release.set()
    tier1 = card(console, incident["id"]).locator('.tier[data-tier="1"]')
    await expect(tier1).to_have_attribute("data-status", "met")
    await expect(button).to_have_count(0)
    assert await console.evaluate(FOCUSED) == ["ARTICLE", "incident", incident["id"]]


async def arrived_without_accepting(
    world: World, browser: Browser, contexts: Opened, after_s: float
) -> tuple[Page, Account, dict[str, Any], Locator]:
    """A fixed post's leader taps 到场 ``after_s`` after the report, without 接警 first, the
    console watching: the console, the leader, the incident and the post's row on its card."""
    post = await world.team("fixed_post")
    leader = await world.leader(post)
    console = await open_console(browser, contexts, world)
    incident = await world.report(await world.operator(), *away(20))
    row = card(console, incident["id"]).locator(f'.dispatch:has-text("{post["name"]}")')
    await expect(row).to_be_visible()
    world.clock.advance(after_s)
    dispatch_id = incident["dispatches"][0]["id"]
    reply = await world.http.post(
        f"/api/v1/dispatches/{dispatch_id}/arrive", headers=leader.headers
    )
    assert reply.status_code == 200
    return console, leader, incident, row


async def test_hops_a_leaders_arrival_stood_for_are_shown_as_implied(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """The leader taps "arrived" without accepting and before his phone acked: the console
    says the accept and the delivery were implied by the arrival, measures no latency to them,
    and does not announce an accept; the phone's ack, when it comes, is shown as the delivery."""
    console, leader, _, row = await arrived_without_accepting(world, browser, contexts, 50)
    await expect(row.locator('.hop-done[data-hop="arrived"] .hop-latency')).to_have_text("+50 秒")
    for hop in ("delivered", "accepted"):
        implied = row.locator(f'.hop-implied[data-hop="{hop}"]')
        await expect(implied).to_have_text(re.compile("由到场推定"))
        await expect(implied.locator("time, .hop-latency")).to_have_count(0)
    await expect(console.locator("#feed")).to_contain_text("到场")
    await expect(console.locator("#feed")).not_to_contain_text("接警：")

    world.clock.advance(7)
    phone = await world.connect(leader)
    await phone.ack((await phone.next_of("alert"))["seq"])
    delivered = row.locator('.hop-done[data-hop="delivered"]')
    await expect(delivered.locator(".hop-latency")).to_have_text("+57 秒")
    await expect(row.locator('.hop-implied[data-hop="accepted"]')).to_have_count(1)
    await expect(row.locator('.hop-done[data-hop="arrived"] .hop-latency')).to_have_text("+50 秒")
    await phone.close()


async def test_times_of_a_minute_or_more_read_in_minutes_and_seconds(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """An arrival 187.3 s after the report: 3 分 08 秒, where 188 秒 left the operator to
    divide (whole seconds rounded up, as the console shows times since an event from 10 s
    on)."""
    console, _, incident, row = await arrived_without_accepting(world, browser, contexts, 187.3)
    latency = row.locator('.hop-done[data-hop="arrived"] .hop-latency')
    await expect(latency).to_have_text("+3 分 08 秒")
    tiers = card(console, incident["id"]).locator(".tier")
    await expect(tiers.nth(0)).to_have_attribute("data-status", "breached")
    await expect(tiers.nth(0)).to_contain_text(re.compile(r"超时，\S+（3 分 08 秒）到场"))
    await console.get_by_role("button", name="English").click()
    await expect(latency).to_have_text("+3 min 08 s")
    await expect(tiers.nth(0)).to_contain_text(re.compile(r"on scene \S+ \(3 min 08 s\)"))


async def test_a_tier_met_in_59_6_seconds_never_reads_as_a_minute(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """A post arrives 59.6 s after the report (by radio, so the arrival is counted from the
    alert): in time, and read so on the console and the phone, 59 秒, where rounded up it read
    1 分 00 秒 as if on the minute (the report page reads 59.6 秒)."""
    console, leader, incident, row = await arrived_without_accepting(world, browser, contexts, 59.6)
    tier1 = card(console, incident["id"]).locator('.tier[data-tier="1"]')
    await expect(tier1).to_have_attribute("data-status", "met")
    await expect(tier1).to_contain_text("（59 秒）")
    await expect(row.locator('.hop-done[data-hop="arrived"] .hop-latency')).to_have_text("+59 秒")
    phone = await open_phone(browser, contexts, world, leader, away(20))
    on_phone = card_on_phone(phone, incident["id"]).locator('.tier[data-tier="1"]')
    await expect(on_phone).to_contain_text("（59 秒）")


async def test_the_live_list_is_in_view_on_a_1280x720_screen(
    world: World, browser: Browser, contexts: Opened, artifacts: Path, backend: str
) -> None:
    await world.team("fixed_post")
    await world.team("mobile", *away(200, 200))
    page = await (await desk_context(browser, contexts, {"width": 1280, "height": 720})).new_page()
    await log_in(page, world.base_url + "/console", await world.operator())
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    # The form at its fullest: a preview and a report's result under it.
    await page.locator("#lon").fill(f"{QINGXI[0]:.6f}")
    await page.locator("#lat").fill(f"{QINGXI[1]:.6f}")
    await expect(page.locator("#coverage")).to_contain_text("此处覆盖")
    incident_id = await sent_report(page)
    first = card(page, incident_id)
    await expect(first).to_be_in_viewport()
    box = await first.bounding_box()
    assert box is not None and box["y"] + 120 < 720, box
    assert await _page_overflows(page) is False
    await page.screenshot(path=artifacts / f"console-1280x720-{backend}.png")


async def _page_overflows(page: Page) -> bool:
    wide: bool = await page.evaluate(
        "() => document.documentElement.scrollWidth > document.documentElement.clientWidth"
    )
    return wide


async def test_an_invisible_character_pasted_into_the_description_is_named_in_words(
    world: World, browser: Browser, contexts: Opened
) -> None:
    await world.team("fixed_post")
    console = await open_console(browser, contexts, world)
    await console.locator("#lon").fill(f"{QINGXI[0]:.6f}")
    await console.locator("#lat").fill(f"{QINGXI[1]:.6f}")
    # A right-to-left mark copied in with a message: invisible, and refused by the server.
    await console.locator("#description").fill("东门打架\u200f两人受伤")
    await console.get_by_role("button", name="派警").click()
    result = console.locator("#report-result")
    await expect(result).to_have_attribute("data-state", "error")
    await expect(result).to_contain_text("简要情况")
    await expect(result.locator(".reason")).to_have_text(
        "原因：简要情况含有看不见的控制字符（U+200F），多半是复制粘贴带进来的：请删掉后重新输入"
    )
    await console.get_by_role("button", name="English").click()
    await expect(result.locator(".reason")).to_have_text(
        "Reason: Description holds an invisible control character (U+200F), usually pasted in"
        " with the text: delete it and type it again"
    )
    assert await open_incidents(world) == []


async def test_a_name_too_long_for_the_server_is_said_in_words(
    world: World, browser: Browser, contexts: Opened
) -> None:
    page = await (await desk_context(browser, contexts)).new_page()
    await page.goto(world.base_url + "/console")
    # Pasted into the user name: more than the server takes (64), which it refuses with 422.
    await page.get_by_label("用户名").fill("值班员" * 30)
    await page.get_by_label("密码").fill("whatever-it-is")
    await page.get_by_role("button", name="登录").click()
    await expect(page.locator("#login-error")).to_have_text("登录失败：用户名过长：最多 64 个字符")
    await page.get_by_role("button", name="English").click()
    await expect(page.locator("#login-error")).to_have_text(
        "Login failed: User name is too long: at most 64 characters"
    )


async def test_a_latitude_that_is_not_a_number_is_shown_a_latitude_to_copy(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """Each field's refusal shows a value of its own kind to copy: a latitude's is a latitude
    (22.849, 22°50′56.4″N), not the longitude 114.1612 an operator would type into it."""
    await world.team("fixed_post")
    console = await open_console(browser, contexts, world)
    problem = console.locator("#point-error")
    await console.locator("#lon").fill(f"{QINGXI[0]:.6f}")
    await console.locator("#lat").fill("22.85abc")
    await console.get_by_role("button", name="派警").click()
    await expect(problem).to_have_text("纬度不是完整的数字：应如 22.849，或度分秒如 22°50′56.4″N")
    await console.get_by_role("button", name="English").click()
    await expect(problem).to_have_text(
        "Latitude is not a valid number: type it as 22.849,"
        " or in degrees, minutes and seconds as 22°50′56.4″N"
    )
    await console.get_by_role("button", name="中文").click()

    # The longitude's stays a longitude.
    await console.locator("#lon").fill("114.16abc")
    await console.locator("#lat").fill(f"{QINGXI[1]:.6f}")
    await console.get_by_role("button", name="派警").click()
    await expect(problem).to_have_text(
        "经度不是完整的数字：应如 114.1612，或度分秒如 114°09′40.3″E"
    )
    assert await open_incidents(world) == []


async def test_an_incident_cards_buttons_keep_their_words_on_one_line(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """定位, 加派队伍 and 结案 each read on one line, on a wide screen as on a laptop's: the
    加派 dialog's width once applied to the card's 加派队伍 button too, which took the card's
    width and left 定 over 位 and 结 over 案 beside it."""
    await world.team("fixed_post")
    console = await open_console(browser, contexts, world)
    incident = await world.report(await world.operator())
    shown = card(console, incident["id"])
    for width, height in ((1920, 1080), (1440, 900), (1280, 720)):
        await console.set_viewport_size({"width": width, "height": height})
        for name in ("定位", "加派队伍", "结案"):
            button = shown.get_by_role("button", name=name, exact=True)
            lines, overflow = await button.evaluate(
                """(el) => {
                    const range = document.createRange();
                    range.selectNodeContents(el);
                    return [range.getClientRects().length, el.scrollWidth - el.clientWidth];
                }"""
            )
            assert (lines, overflow) == (1, 0), (width, name, lines, overflow)
    # The dialog keeps its own width.
    await shown.get_by_role("button", name="加派队伍").click()
    dialog = console.locator("#add-team")
    await expect(dialog).to_be_visible()
    box = await dialog.bounding_box()
    assert box is not None and 400 < box["width"] <= 32 * 16 + 1, box
