"""The phone page says what went wrong in the leader's language."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from tests.pages.conftest import Opened, desk_context, log_in
from tests.pages.test_console_and_phone import SECOND, away, open_phone
from tests.support import World


async def test_a_tap_that_never_reaches_the_server_is_kept_and_said_in_chinese(
    world: World, browser: Browser, contexts: Opened
) -> None:
    post = await world.team("fixed_post")
    leader = await world.leader(post)
    phone = await open_phone(browser, contexts, world, leader, away(300))
    await world.report(await world.operator())
    await expect(phone.locator("#alert")).to_be_visible()

    await phone.route("**/accept", lambda route: route.abort())
    await phone.get_by_role("button", name="接警").click()
    await expect(phone.locator("#alert-outbox")).to_contain_text("接警未发出", timeout=15 * SECOND)
    await expect(phone.locator("#alert-outbox")).to_contain_text("连上服务器后自动补发")
    await expect(phone.locator("#accept")).to_have_text("接警待发送")


async def test_an_operator_on_the_phone_page_is_named_by_role(
    world: World, browser: Browser, contexts: Opened
) -> None:
    page = await (await desk_context(browser, contexts, {"width": 360, "height": 740})).new_page()
    await log_in(page, world.base_url + "/m", await world.operator())
    await expect(page.locator("#login-error")).to_have_text(
        "此账号（值班员）不能使用本页面 — 此页面供队长使用"
    )
