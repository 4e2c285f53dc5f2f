"""The leader's phone after a resync (its gap past the server's retention): it reloads its
incidents, rings for an alert that went to this leader and is still unanswered, once, whether
the copy the server sends again comes before or after the reload, and a leader's other device
that rang for the alert already is not rung by the copy. In headless Chromium against the real
server, the phone's websocket passed through the test."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import timedelta
from typing import Any

from playwright.async_api import Browser, Page, Route, WebSocketRoute, expect

from alerts import store as mailboxes
from tests.pages.conftest import Opened, log_in, open_list, phone_context
from tests.pages.test_console_and_phone import SECOND, away, card_on_phone
from tests.rosters.test_duty import book_of, taking_turns
from tests.support import Account, World

MISSED_ONE = "离线期间漏收 1 条派警，已补收，待您处理"

# How many times the phone started ringing: each start sets the alert screen's data-ringing to
# "true" (a ring stopped first sets it "false"). Every change is seen, also two within one task:
# the value after each is the value before the next.
RINGS = """
window.__rings = 0;
new MutationObserver((records) => {
    records.forEach((record, i) => {
        const next = records[i + 1];
        const value = next ? next.oldValue : record.target.getAttribute('data-ringing');
        if (value === 'true') window.__rings += 1;
    });
}).observe(document, {
    subtree: true, attributes: true, attributeFilter: ['data-ringing'], attributeOldValue: true,
});
"""


class Line:
    """A phone's websocket passed through to the server: cut and restored at will, its acks
    lost on the way while ``losing_acks``, the server's copies of alerts held back while
    ``holding_copies``. What the phone acknowledged is seen here either way: the page
    acknowledges an alert before it acts on it, in the same task, so by the time its ack of a
    message is seen the page has handled it."""

    def __init__(self) -> None:
        self.up = True
        self.current: WebSocketRoute | None = None
        self.losing_acks = False
        self.holding_copies = False
        self.held: list[str | bytes] = []
        self.acked = 0
        self.copies: list[int] = []  # seqs of the copies sent again that reached this line
        self.copies_handled = 0

    async def handle(self, ws: WebSocketRoute) -> None:
        if not self.up:
            await ws.close(code=1011, reason="line down")
            return
        self.current = ws
        server = ws.connect_to_server()
        ws.on_message(lambda message: self.from_page(server, message))
        server.on_message(lambda message: self.from_server(ws, message))

    def from_page(self, server: WebSocketRoute, message: str | bytes) -> None:
        frame = json.loads(message)
        if frame.get("type") == "ack":
            self.acked = max(self.acked, frame["seq"])
            if self.losing_acks:
                return
        server.send(message)

    def from_server(self, ws: WebSocketRoute, message: str | bytes) -> None:
        frame = json.loads(message)
        if frame.get("type") == "alert" and frame["data"].get("again"):
            self.copies.append(frame["seq"])
            if self.holding_copies:
                self.held.append(message)
                return
        ws.send(message)

    def release(self) -> None:
        self.holding_copies = False
        assert self.current is not None
        for message in self.held:
            self.current.send(message)
        self.held = []

    async def cut(self, phone: Page) -> None:
        self.up = False
        if self.current is not None:
            await self.current.close(code=1011, reason="line down")
        await expect(phone.locator("#conn")).not_to_have_attribute("data-state", "live")

    async def restore(self, phone: Page) -> None:
        self.up = True
        await expect(phone.locator("#conn")).to_have_attribute(
            "data-state", "live", timeout=20 * SECOND
        )

    async def handled_copy(self) -> int:
        """Wait until the phone acknowledged the next copy sent again; its seq."""
        for _ in range(500):
            if len(self.copies) > self.copies_handled:
                seq = self.copies[self.copies_handled]
                if self.acked >= seq:
                    self.copies_handled += 1
                    return seq
            await asyncio.sleep(0.02)
        raise AssertionError(f"no copy handled: copies {self.copies}, acked {self.acked}")

    async def holding(self) -> None:
        """Wait until a copy is held back."""
        for _ in range(500):
            if self.held:
                return
            await asyncio.sleep(0.02)
        raise AssertionError("no copy came to hold back")


async def phone_on(
    browser: Browser, contexts: Opened, world: World, leader: Account, line: Line
) -> Page:
    context = await phone_context(browser, contexts, away(300))
    await context.add_init_script(RINGS)
    await context.route_web_socket(re.compile(r"/ws$"), line.handle)
    phone = await context.new_page()
    await log_in(phone, world.base_url + "/m", leader)
    await expect(phone.locator("#conn")).to_have_attribute("data-state", "live")
    return phone


async def rings(phone: Page) -> int:
    return int(await phone.evaluate("window.__rings"))


async def gap_past_retention(
    world: World, team: dict[str, Any], operator: Account, category: str = "fight"
) -> dict[str, Any]:
    """While the phones' lines are down: a test alert to each leader of the team, then an
    incident. The test alert is purged as past the retention window, so a phone that missed it
    is told to resync; the incident's alert is kept, and the resync skips it."""
    reply = await world.http.post(
        f"/api/v1/teams/{team['id']}/test-alert", headers=operator.headers
    )
    assert reply.status_code == 202, reply.text
    cutoff = world.clock.now() + timedelta(seconds=0.5)
    world.clock.advance(1)
    incident = await world.report(operator, category=category)
    async with world.runtime.transaction() as session:
        assert await mailboxes.purge_before(session, cutoff) > 0
    return incident


async def test_after_a_resync_an_off_turn_leader_is_not_shown_an_alert_he_was_never_sent(
    world: World, browser: Browser, contexts: Opened
) -> None:
    mobile, on_turn, off_turn = await taking_turns(world, "1380000700")
    await book_of(world)
    operator = await world.operator()
    lines = {on_turn.id: Line(), off_turn.id: Line()}
    phones = {
        leader.id: await phone_on(browser, contexts, world, leader, lines[leader.id])
        for leader in (on_turn, off_turn)
    }

    for leader in (on_turn, off_turn):
        await lines[leader.id].cut(phones[leader.id])
    incident = await gap_past_retention(world, mobile, operator)
    for leader in (on_turn, off_turn):
        await lines[leader.id].restore(phones[leader.id])

    # The leader the alert went to: missed while away, rung for once (its copy comes too).
    mine = phones[on_turn.id]
    await expect(mine.locator("#missed")).to_have_text(MISSED_ONE)
    await expect(mine.locator("#alert")).to_contain_text("打架斗殴")
    await lines[on_turn.id].handled_copy()
    assert await rings(mine) == 1

    # The off-turn leader's phone lists his team's incident, but no alert of it ever went to
    # him: nothing missed, nothing put up, no ring. (The list and the missed alerts are drawn
    # in one go after the reload.)
    theirs = phones[off_turn.id]
    await expect(card_on_phone(theirs, incident["id"])).to_have_count(1)
    await expect(theirs.locator("#missed")).to_be_hidden()
    await expect(theirs.locator("#alert")).to_be_hidden()
    assert await rings(theirs) == 0
    assert lines[off_turn.id].copies == [], "no alert to send him again"


async def test_an_alert_a_resync_skipped_rings_once_before_or_after_its_copy_comes(
    world: World, browser: Browser, contexts: Opened
) -> None:
    post = await world.team("fixed_post")
    leader = await world.leader(post)
    operator = await world.operator()
    line = Line()
    phone = await phone_on(browser, contexts, world, leader, line)
    missed = phone.locator("#missed")

    # The reload's list first, the copy after it.
    await line.cut(phone)
    line.holding_copies = True
    first = await gap_past_retention(world, post, operator, category="fight")
    await line.restore(phone)
    await expect(missed).to_have_text(MISSED_ONE)
    await expect(phone.locator("#alert-title")).to_contain_text("打架斗殴")
    assert await rings(phone) == 1
    await line.holding()
    line.release()
    await line.handled_copy()
    assert await rings(phone) == 1, "the copy of an alert rung for as missed rings no more"
    await expect(missed).to_have_text(MISSED_ONE)
    # Put away unanswered: it stays in the list.
    await phone.keyboard.press("Escape")
    await expect(phone.locator("#alert")).to_be_hidden()

    # The copy first, the reload's list after it: held back until the copy is handled.
    listed = asyncio.Event()

    async def list_later(route: Route) -> None:
        await listed.wait()
        await route.continue_()

    await phone.route(open_list, list_later)
    await line.cut(phone)
    second = await gap_past_retention(world, post, operator, category="fire")
    before = await rings(phone)
    await line.restore(phone)
    await line.handled_copy()
    listed.set()
    # Missed while away: the new one alone. The first was put up here before the gap, and is
    # neither said to be missed nor put up again.
    await expect(missed).to_have_text(MISSED_ONE)
    await expect(phone.locator("#alert-title")).to_contain_text("火情")
    await expect(phone.locator("#alert-waiting")).to_be_hidden()
    assert await rings(phone) == before + 1, "rung once, with the missed alerts"
    for incident in (first, second):
        await expect(card_on_phone(phone, incident["id"])).to_have_class("incident incident-new")


async def test_a_copy_sent_after_one_devices_resync_does_not_ring_the_leaders_other_devices(
    world: World, browser: Browser, contexts: Opened
) -> None:
    post = await world.team("fixed_post")
    leader = await world.leader(post)
    operator = await world.operator()
    lines = [Line(), Line(), Line()]
    rang, reopened, resyncs = [
        await phone_on(browser, contexts, world, leader, line) for line in lines
    ]

    # The third device is away. The others ring for the alert, and their lines go as they do:
    # their acks never reach the server. The second one's page is closed meanwhile.
    await lines[2].cut(resyncs)
    for line in lines[:2]:
        line.losing_acks = True
    incident = await gap_past_retention(world, post, operator)
    for phone in (rang, reopened):
        await expect(phone.locator("#alert-title")).to_contain_text("打架斗殴")
        assert await rings(phone) == 1
    for line, phone in zip(lines[:2], (rang, reopened), strict=True):
        await line.cut(phone)
        line.losing_acks = False
    context = reopened.context
    await reopened.close()

    # The third device's gap is past the retention: it resyncs, its reload puts the alert up as
    # missed, and the server sends the alert the resync skipped again. It never saw the alert:
    # it rings, once.
    await lines[2].restore(resyncs)
    await expect(resyncs.locator("#missed")).to_have_text(MISSED_ONE)
    await expect(resyncs.locator("#alert-title")).to_contain_text("打架斗殴")
    copy = await lines[2].handled_copy()
    assert await rings(resyncs) == 1

    # The first device comes back and is sent the copy: it rang for that alert already.
    await lines[0].restore(rang)
    assert await lines[0].handled_copy() == copy
    assert await rings(rang) == 1
    await expect(rang.locator("#missed")).to_be_hidden()
    await expect(rang.locator("#alert-title")).to_contain_text("打架斗殴")

    # So did the second, before its page was opened again: it lists the incident, and the copy
    # is no new alert to it.
    lines[1].up = True
    again = await context.new_page()
    await again.goto(world.base_url + "/m")
    await expect(again.locator("#conn")).to_have_attribute("data-state", "live")
    assert await lines[1].handled_copy() == copy
    await expect(card_on_phone(again, incident["id"])).to_have_class("incident incident-new")
    await expect(again.locator("#missed")).to_be_hidden()
    await expect(again.locator("#alert")).to_be_hidden()
    assert await rings(again) == 0


class CutMidReplay(Line):
    """A line that drops once more just after it passed the phone the first of the alerts
    replayed to it: what the server sent after that alert is lost with the line, and the
    phone's seq is past that alert, which never comes again."""

    def __init__(self) -> None:
        super().__init__()
        self.replayed_alerts_before_cut: int | None = None
        self.welcome_seq = 0
        self.dying: WebSocketRoute | None = None
        self.drop: asyncio.Future[None] | None = None

    def from_server(self, ws: WebSocketRoute, message: str | bytes) -> None:
        if ws is self.dying:
            return
        super().from_server(ws, message)
        frame = json.loads(message)
        if frame.get("type") == "welcome":
            self.welcome_seq = frame["seq"]
            return
        # Replayed: sent on the phone's current connection, no later than its welcome.
        replayed = ws is self.current and frame.get("seq", 0) <= self.welcome_seq
        if self.replayed_alerts_before_cut is None or frame.get("type") != "alert":
            return
        if not replayed:
            return
        self.replayed_alerts_before_cut -= 1
        if self.replayed_alerts_before_cut == 0:
            self.replayed_alerts_before_cut = None
            self.dying = ws
            self.drop = asyncio.ensure_future(self.drop_once_handled(ws, frame["seq"]))

    async def drop_once_handled(self, ws: WebSocketRoute, seq: int) -> None:
        # The page acknowledges an alert as it handles it: then its seq is past it.
        for _ in range(500):
            if self.acked >= seq:
                await ws.close(code=1011, reason="line down")
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"alert {seq} never acknowledged")


async def test_an_alert_replayed_before_the_line_dropped_again_still_rings(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """Two alerts came while the phone was away. Back, it is replayed the first, and the line
    drops again before the second: on the next connection it is replayed the second only. Both
    ring as missed once it is through, where the first was forgotten at the reconnect."""
    post = await world.team("fixed_post")
    leader = await world.leader(post)
    operator = await world.operator()
    line = CutMidReplay()
    phone = await phone_on(browser, contexts, world, leader, line)

    await line.cut(phone)
    first = await world.report(operator, category="fight")
    second = await world.report(operator, category="fire")
    line.replayed_alerts_before_cut = 1
    await line.restore(phone)
    await expect(phone.locator("#missed")).to_have_text(
        "离线期间漏收 2 条派警，已补收，待您处理", timeout=20 * SECOND
    )
    assert line.drop is not None
    await line.drop
    assert await rings(phone) == 1
    for incident in (first, second):
        await expect(card_on_phone(phone, incident["id"])).to_have_count(1)


async def test_the_missed_notice_stays_through_a_later_reconnect_until_the_alerts_are_answered(
    world: World, browser: Browser, contexts: Opened
) -> None:
    post = await world.team("fixed_post")
    leader = await world.leader(post)
    operator = await world.operator()
    line = Line()
    phone = await phone_on(browser, contexts, world, leader, line)
    missed = phone.locator("#missed")
    alert = phone.locator("#alert")

    await line.cut(phone)
    first = await world.report(operator, category="fight")
    world.clock.advance(1)
    await world.report(operator, category="fire")
    await line.restore(phone)
    await expect(missed).to_have_text("离线期间漏收 2 条派警，已补收，待您处理")
    # Both put away unanswered.
    await phone.keyboard.press("Escape")
    await expect(alert.locator("#alert-waiting")).to_be_hidden()
    await phone.keyboard.press("Escape")
    await expect(alert).to_be_hidden()

    # A brief drop with nothing new meanwhile: both still wait for him, and the notice says so.
    await line.cut(phone)
    await line.restore(phone)
    await phone.wait_for_timeout(500)
    await expect(missed).to_have_text("离线期间漏收 2 条派警，已补收，待您处理")

    # It counts down as they are answered, and goes with the last.
    dispatch = first["dispatches"][0]["id"]
    reply = await world.http.post(
        f"/api/v1/dispatches/{dispatch}/accept", json={}, headers=leader.headers
    )
    assert reply.status_code == 200, reply.text
    await expect(missed).to_have_text(MISSED_ONE)


async def test_a_reload_after_a_resync_that_fails_is_asked_for_again_until_it_comes(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """The server is too busy for the list the resync needs, twice: the phone says so, asks
    again by itself, and rings for the missed alert once the list comes."""
    post = await world.team("fixed_post")
    leader = await world.leader(post)
    operator = await world.operator()
    line = Line()
    phone = await phone_on(browser, contexts, world, leader, line)
    refused = 0

    async def busy_twice(route: Route) -> None:
        nonlocal refused
        if refused < 2:
            refused += 1
            await route.fulfill(
                status=503,
                headers={"retry-after": "1"},
                json={"error": "busy", "detail": "the server is busy"},
            )
            return
        await route.continue_()

    await phone.route(open_list, busy_twice)
    await line.cut(phone)
    await gap_past_retention(world, post, operator)
    await line.restore(phone)
    problem = phone.locator("#load-problem")
    await expect(problem).to_contain_text("正在自动重试")
    await expect(phone.locator("#missed")).to_have_text(MISSED_ONE, timeout=20 * SECOND)
    await expect(phone.locator("#alert-title")).to_contain_text("打架斗殴")
    await expect(problem).to_be_hidden()
    assert refused == 2
    assert await rings(phone) == 1
