"""The team leader's page in a hand: every control thumb-sized, a pasted link kept on the
screen, the tab's mark of a new alert in the leader's language, and a device clock that agrees
with the server's shown without a sign."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from playwright.async_api import Browser, Page, expect

from tests.pages.conftest import Opened
from tests.pages.test_console_and_phone import away, open_phone
from tests.support import QINGXI, Account, World

# Android's and Apple's guidance for a control a thumb hits: 48 dp, 44 pt.
THUMB_PX = 48

SMALL_CONTROLS = """([root, least]) => Array.from(document.querySelectorAll(
        root + ' button, ' + root + ' summary, ' + root + ' input'))
    .filter((el) => el.checkVisibility())
    .map((el) => [el.id || el.className || el.textContent.trim(), el.getBoundingClientRect()])
    .filter(([, box]) => box.height < least || box.width < least)
    .map(([name, box]) => name + ' ' + Math.round(box.width) + 'x' + Math.round(box.height))"""


async def small_controls(page: Page, root: str) -> list[str]:
    found: list[str] = await page.evaluate(SMALL_CONTROLS, [root, THUMB_PX])
    return found


async def test_every_control_on_the_phone_is_thumb_sized(
    world: World, browser: Browser, contexts: Opened, artifacts: Path, backend: str
) -> None:
    post = await world.team("fixed_post")
    leader = await world.leader(post)
    phone = await open_phone(browser, contexts, world, leader, away(300))
    operator = await world.operator()
    await world.report(operator, category="fire")
    await world.report(operator, category="theft")
    alert = phone.locator("#alert")
    await expect(alert).to_be_visible()
    # The alert screen with another alert waiting: hide, next, accept, arrived.
    await expect(phone.locator("#alert-next")).to_be_visible()
    assert await small_controls(phone, "#alert") == []
    await phone.screenshot(path=artifacts / f"phone-thumbs-alert-{backend}.png")

    for _ in range(2):
        await phone.get_by_role("button", name="收起").click()
    await expect(alert).to_be_hidden()
    # The list: the language switch, sound, the help's summary, each row's button, logging out.
    await phone.locator(".help summary").click()
    assert await small_controls(phone, "body > header") == []
    assert await small_controls(phone, "#app") == []
    await phone.get_by_role("button", name="English").click()
    assert await small_controls(phone, "body > header") == []
    assert await small_controls(phone, "#app") == []


# What an operator pastes from a caller's WeChat: the Amap share link of the place, one word
# wider than a phone's screen or an incident's card.
LINK = "https://surl.amap.com/2Xk9aB3cD4eF5gH6iJ7kL8mN9oP0qR1sT2uV3wX4yZ"


async def report_with_a_link(world: World, by: Account) -> str:
    reply = await world.http.post(
        "/api/v1/incidents",
        json={
            "location": {"lon": QINGXI[0], "lat": QINGXI[1]},
            "category": "fight",
            "description": "报警人发来位置 " + LINK,
        },
        headers=by.headers,
    )
    assert reply.status_code == 201, reply.text
    incident_id: str = reply.json()["id"]
    return incident_id


async def test_a_link_pasted_into_the_description_stays_on_the_alert_screen(
    world: World, browser: Browser, contexts: Opened
) -> None:
    post = await world.team("fixed_post")
    leader = await world.leader(post)
    phone = await open_phone(browser, contexts, world, leader, away(300))
    await report_with_a_link(world, await world.operator())
    alert = phone.locator("#alert")
    line = alert.locator("#alert-info p", has_text=LINK[:20])
    await expect(line).to_be_visible()
    # Broken where it must be: nothing runs past the screen's edge, nothing scrolls sideways.
    spill = await alert.evaluate("(el) => el.scrollWidth - el.clientWidth")
    right = await line.evaluate(
        "(el) => { const r = document.createRange(); r.selectNodeContents(el);"
        " return r.getBoundingClientRect().right; }"
    )
    assert spill <= 0 and right <= 360, (spill, right)


async def test_a_new_alert_marks_the_tab_in_the_leaders_language(
    world: World, browser: Browser, contexts: Opened
) -> None:
    post = await world.team("fixed_post")
    leader = await world.leader(post)
    phone = await open_phone(browser, contexts, world, leader, away(300))
    await phone.get_by_role("button", name="English").click()
    # The page in the background (another app in front): the tab's title says an alert came.
    await phone.evaluate(
        """() => Object.defineProperty(document, 'visibilityState', { get: () => 'hidden' })"""
    )
    await world.report(await world.operator())
    await expect(phone.locator("#alert")).to_be_visible()
    await expect(phone).to_have_title("[New alert]")


async def test_a_clock_that_rounds_to_agreement_has_no_sign(
    world: World, browser: Browser, contexts: Opened
) -> None:
    post = await world.team("fixed_post")
    leader = await world.leader(post)
    phone = await open_phone(browser, contexts, world, leader, away(20))
    await world.report(await world.operator())
    await expect(phone.locator("#alert")).to_be_visible()
    # The phone's clock 30 ms behind the server's at the tap: they agree, to the tenth shown.
    await phone.clock.set_fixed_time(world.clock.now() - timedelta(milliseconds=30))
    await phone.get_by_role("button", name="已到场").click()
    arrival = phone.locator("#alert-arrival")
    await expect(arrival).to_contain_text("设备时钟与服务器一致（0.0 秒）")
    await expect(arrival).not_to_contain_text("-0.0")
