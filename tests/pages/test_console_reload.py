"""An operator who reloads the console (F5) in the middle of an incident: in headless Chromium
against the real server."""

from __future__ import annotations

import json

from playwright.async_api import Browser, expect

from tests.pages.conftest import Opened, desk_context, log_in, sign_in
from tests.pages.test_console_and_phone import SECOND, card, open_console
from tests.support import World


async def test_a_console_reloaded_mid_incident_keeps_its_feed_and_its_late_only_filter(
    world: World, browser: Browser, contexts: Opened
) -> None:
    await world.leader(await world.team("fixed_post"))
    operator = await world.operator()
    console = await open_console(browser, contexts, world)
    late = await world.report(operator, category="theft")
    world.clock.advance(61)
    late_only = console.locator("#late-only")
    await expect(late_only).to_have_text("超时未到场 1 起", timeout=10 * SECOND)
    fresh = await world.report(operator, category="fire")
    await expect(card(console, fresh["id"])).to_have_count(1)
    await late_only.click()
    await expect(late_only).to_have_attribute("aria-pressed", "true")
    await expect(card(console, fresh["id"])).to_have_count(0)
    feed = console.locator("#feed li")
    # Reported, breached, a wider ring that found nobody, reported.
    await expect(feed).to_have_count(4)
    await expect(feed.first).to_contain_text("新警情：火情")
    before = await feed.all_inner_texts()

    await console.reload()
    await expect(console.locator("#conn")).to_have_attribute("data-state", "live")
    # The same list, filtered as it was, and the same lines, the breach listed once.
    await expect(card(console, late["id"])).to_have_count(1)
    await expect(late_only).to_have_attribute("aria-pressed", "true")
    await expect(card(console, fresh["id"])).to_have_count(0)
    await expect(feed).to_have_text(before)

    # It carries on from there, and says the lines from before the reload in English too.
    world.clock.advance(1)
    await world.report(operator, category="fight")
    await expect(feed).to_have_count(5)
    await expect(feed.first).to_contain_text("新警情：打架斗殴")
    await console.get_by_role("button", name="English").click()
    await expect(feed.nth(1)).to_contain_text("New incident: Fire")
    await expect(feed.nth(2)).to_contain_text("Breach: Tier 1")
    await expect(feed.nth(3)).to_contain_text("Wider ring (1000 m): Theft")
    await expect(feed.nth(4)).to_contain_text("New incident: Theft")

    # Shown all again by the operator, it stays so through the next reload.
    await late_only.click()
    await expect(card(console, fresh["id"])).to_have_count(1)
    await console.reload()
    await expect(console.locator("#conn")).to_have_attribute("data-state", "live")
    await expect(card(console, fresh["id"])).to_have_count(1)
    await expect(late_only).to_have_attribute("aria-pressed", "false")


async def test_an_operator_whose_session_ended_finds_his_feed_again_as_he_signs_back_in(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """A session the server ended (his token expired mid-incident) is not a sign-out of his
    own: signed in again, the operator finds his feed and his late-only filter as they were.
    Only 退出 forgets them."""
    await world.leader(await world.team("fixed_post"))
    operator = await world.operator()
    console = await (await desk_context(browser, contexts)).new_page()
    await log_in(console, world.base_url + "/console", operator)
    await expect(console.locator("#conn")).to_have_attribute("data-state", "live")
    await world.report(operator, category="theft")
    world.clock.advance(61)
    late_only = console.locator("#late-only")
    await expect(late_only).to_have_text("超时未到场 1 起", timeout=10 * SECOND)
    await late_only.click()
    feed = console.locator("#feed li")
    await expect(feed).to_have_count(3)
    before = await feed.all_inner_texts()

    # The server ends the console's session (as an admin's reset would, or its expiry).
    kept = await console.evaluate("localStorage.getItem('dispatch.console.token')")
    token = json.loads(kept)["token"]
    ended = await world.http.post(
        "/api/v1/auth/logout", headers={"Authorization": f"Bearer {token}"}
    )
    assert ended.status_code == 204, ended.text
    await expect(console.locator("#login")).to_be_visible(timeout=10 * SECOND)
    await expect(feed).to_have_count(0)
    await sign_in(console, operator)
    await expect(console.locator("#conn")).to_have_attribute("data-state", "live")
    await expect(feed).to_have_text(before)
    await expect(late_only).to_have_attribute("aria-pressed", "true")

    await console.get_by_role("button", name="退出").click()
    await sign_in(console, operator)
    await expect(console.locator("#conn")).to_have_attribute("data-state", "live")
    await expect(feed).to_have_count(0)
    await expect(late_only).to_have_attribute("aria-pressed", "false")
