"""What a screen reader says by itself, unasked: the text that changes in the pages' live
regions (aria-live, role alert, status, log), counted as it changes in real Chromium. An
operator or a leader working with a screen reader hears each of these; a region written again
every second, or every position reply, talks over everything else."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from playwright.async_api import Browser, Page, expect

from tests.pages.conftest import Opened
from tests.pages.test_accessibility import switch_to
from tests.pages.test_console_and_phone import (
    SECOND,
    away,
    card,
    open_console,
    open_phone,
    report_on_console,
)
from tests.support import QINGXI, World

# Records, per live region and per batch of DOM changes (what the browser hands its
# accessibility tree at once), the text that came into it: added nodes and changed text in a
# region shown, and a role=alert region coming into view. A region's own politeness is its
# aria-live, or its role's (alert assertive; status and log polite; timer and marquee off).
LISTEN = """() => {
  if (window.__said) return;
  const said = (window.__said = []);
  const ROLES = {
    alert: 'assertive', status: 'polite', log: 'polite', timer: 'off', marquee: 'off',
  };
  const region = (node) => {
    for (let el = node && node.nodeType === 1 ? node : node && node.parentElement; el;
         el = el.parentElement) {
      const live = el.getAttribute('aria-live');
      if (live) return live === 'off' ? null : [el, live];
      const role = el.getAttribute('role');
      if (role && Object.prototype.hasOwnProperty.call(ROLES, role)) {
        return ROLES[role] === 'off' ? null : [el, ROLES[role]];
      }
    }
    return null;
  };
  const shown = (el) =>
    !el.closest('[hidden], [aria-hidden="true"], [inert]') && el.checkVisibility();
  new MutationObserver((records) => {
    const heard = new Map();
    const hear = (el, live, text, whole) => {
      text = (text || '').replace(/\\s+/g, ' ').trim();
      if (!text) return;
      const entry = heard.get(el) || { live, parts: [] };
      // An alert coming into view is read whole, once, whatever changed in it meanwhile.
      if (whole) entry.whole = text;
      entry.parts.push(text);
      heard.set(el, entry);
    };
    for (const r of records) {
      if (r.type === 'attributes') {
        const el = r.target;
        if (el.getAttribute('role') === 'alert' && !el.hidden) {
          hear(el, 'assertive', el.textContent, true);
        }
        continue;
      }
      const found = region(r.target);
      if (!found) continue;
      if (r.type === 'characterData') hear(found[0], found[1], r.target.data);
      else for (const node of r.addedNodes) hear(found[0], found[1], node.textContent);
    }
    for (const [el, entry] of heard) {
      if (!shown(el)) continue;
      const text = entry.whole || entry.parts.join(' ');
      said.push({ region: el.id || el.className, live: entry.live, text });
    }
  }).observe(document.body, {
    subtree: true, childList: true, characterData: true, attributes: true,
    attributeFilter: ['hidden'],
  });
}"""


async def listen(page: Page) -> None:
    """Start counting what the page's live regions say, from now on."""
    await page.evaluate(LISTEN)


async def heard(page: Page, since: int = 0) -> list[dict[str, Any]]:
    """What the live regions said since ``listen`` (past the first ``since``): region, live
    (polite or assertive) and text, in order."""
    said: list[dict[str, Any]] = await page.evaluate("() => window.__said.slice()")
    return said[since:]


async def test_the_consoles_new_incident_is_said_once_and_a_late_tier_once_assertively(
    world: World, browser: Browser, contexts: Opened
) -> None:
    await world.leader(await world.team("fixed_post"))
    operator = await world.operator()
    console = await open_console(browser, contexts, world)
    await listen(console)
    first = await world.report(operator, category="fight")
    clock = card(console, first["id"]).locator('.tier[data-tier="1"] .tier-clock')
    await expect(clock).to_have_text(re.compile(r"^0:5\d$"))
    # The clocks tick for a few seconds: nothing of them is said.
    ticked = await clock.text_content()
    await expect(clock).not_to_have_text(ticked or "", timeout=3 * SECOND)
    await asyncio.sleep(1.5)
    said = await heard(console)
    assert [s["text"] for s in said] == ["新警情：打架斗殴（1 支队伍）"], said
    assert said[0]["live"] == "polite"

    # The tier goes late: the breach is said once, assertively, and not again by the feed.
    world.clock.advance(61)
    await expect(console.locator("#alarm")).to_be_visible(timeout=10 * SECOND)
    await asyncio.sleep(3)  # the siren repeats every 8 s; the clocks of the other tiers tick on
    late = await heard(console, len(said))
    breaches = [s for s in late if "超时" in s["text"]]
    assert [(s["live"], s["text"].count("打架斗殴")) for s in breaches] == [("assertive", 1)], late

    # A second incident goes late while the banner is up: only the new breach is said.
    second = await world.report(operator, category="fire")
    await expect(card(console, second["id"])).to_have_count(1)
    world.clock.advance(61)
    await expect(console.locator("#alarm")).to_have_attribute("data-count", "2")
    await asyncio.sleep(1.5)
    both = await heard(console, len(said) + len(late))
    breaches = [s for s in both if "超时" in s["text"]]
    assert len(breaches) == 1 and breaches[0]["live"] == "assertive", both
    assert "火情" in breaches[0]["text"] and "打架斗殴" not in breaches[0]["text"], both

    # The language switch says the page again on screen, not to the screen reader: neither
    # the banner nor the feed's lines are read out again.
    before = len(await heard(console))
    await switch_to(console, "en")
    await expect(console.locator("#alarm-text")).to_contain_text("Breach alarm (2 incidents)")
    await asyncio.sleep(1)
    again = [s for s in await heard(console, before) if s["region"] != "conn"]
    assert again == [], again


async def test_the_operators_own_report_is_said_once_by_its_result(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """What the console reports is said by its result (who was alerted, what is uncovered);
    its line in the feed, listed all the same, is not said a second time."""
    await world.leader(await world.team("fixed_post"))
    console = await open_console(browser, contexts, world)
    await listen(console)
    incident_id = await report_on_console(console, *QINGXI)
    await expect(card(console, incident_id)).to_have_count(1)
    await expect(console.locator("#feed li")).to_have_count(1)
    await asyncio.sleep(1.5)
    said = [s for s in await heard(console) if s["region"] != "conn"]
    assert len(said) == 1, said
    assert said[0]["region"] == "report-result", said
    # Another's report, heard live, is said by the feed as before.
    await world.report(await world.operator(), category="fire")
    await expect(console.locator("#feed li")).to_have_count(2)
    await asyncio.sleep(1.5)
    after = [s for s in await heard(console, len(said)) if s["region"] != "conn"]
    assert [s["text"] for s in after] == ["新警情：火情（1 支队伍）"], after


async def test_the_phones_distance_is_said_as_it_changes_not_with_every_position_reply(
    world: World, browser: Browser, contexts: Opened
) -> None:
    leader = await world.leader(await world.team("fixed_post"))
    phone = await open_phone(browser, contexts, world, leader, away(300))
    await world.report(await world.operator(), category="fire")
    await expect(phone.locator("#alert")).to_be_visible()
    replies: list[str] = []
    phone.on("response", lambda r: replies.append(r.url) if r.url.endswith("/position") else None)

    async def stand_at(metres: float) -> None:
        """The phone's fix moves ``metres`` from the scene; back when its next reply is in."""
        lon, lat = away(metres)
        sent = len(replies)
        await phone.context.set_geolocation({"longitude": lon, "latitude": lat, "accuracy": 10})
        for _ in range(120):
            if len(replies) > sent:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"no position reply in 12 s at {metres} m")

    await listen(phone)
    await phone.get_by_role("button", name="接警").click()
    line = phone.locator("#alert-position")
    await expect(line).to_have_text("正在上报位置：距现场 300 米（精度 10 米）")
    # A leader waiting at a gate, his fix wandering by a few metres: each reply shows on the
    # screen, and the screen reader says the distance once.
    for metres in (303, 297, 302):
        await stand_at(metres)
        await expect(line).to_have_text(f"正在上报位置：距现场 {metres} 米（精度 10 米）")
    distances = [s for s in await heard(phone) if "距现场" in s["text"]]
    assert [(s["live"], s["text"]) for s in distances] == [("polite", "距现场 300 米")], distances

    # On the way: 150 m nearer is said.
    said = len(await heard(phone))
    await stand_at(150)
    await expect(line).to_contain_text("距现场 150 米")
    assert [s["text"] for s in await heard(phone, said)] == ["距现场 150 米"]

    # Within the fence the server records the arrival: said once, the position line gone.
    said = len(await heard(phone))
    await stand_at(20)
    await expect(phone.locator("#alert-arrival")).to_contain_text("电子围栏")
    await asyncio.sleep(1)
    arrived = await heard(phone, said)
    assert len(arrived) == 1 and "已到场" in arrived[0]["text"], arrived
    assert "电子围栏" in arrived[0]["text"], arrived


async def test_the_phones_new_alert_is_described_and_the_one_waiting_said_once(
    world: World, browser: Browser, contexts: Opened
) -> None:
    leader = await world.leader(await world.team("fixed_post"))
    phone = await open_phone(browser, contexts, world, leader, away(300))
    await listen(phone)
    operator = await world.operator()
    await world.report(operator, category="fire")
    # The alert takes the focus to 接警 in a dialog named by what happened, and described by
    # where and when: what the screen reader reads as the alert comes up.
    dialog = phone.get_by_role("alertdialog")
    await expect(dialog).to_have_accessible_name("新警情 · 火情")
    await expect(dialog).to_have_accessible_description(re.compile(r"距本队 .* 接报"))
    await expect(phone.get_by_role("button", name="接警", exact=True)).to_be_focused()

    # A second alert while the first is read: said once, politely, however often the screen is
    # drawn again afterwards (both tiers going late, the clocks ticking).
    await world.report(operator, category="fight")
    waiting = phone.locator("#alert-waiting")
    await expect(waiting).to_be_visible()
    world.clock.advance(61)
    await expect(phone.locator('#alert .tier[data-tier="1"]')).to_have_attribute(
        "data-status", "breached", timeout=10 * SECOND
    )
    await asyncio.sleep(2)
    said = await heard(phone)
    assert [(s["live"], s["text"]) for s in said] == [("polite", "还有 1 条警情待接")], said
