"""The phone page says what went wrong in the leader's language."""

from __future__ import annotations

import json
import re
from typing import Any

from playwright.async_api import Browser, Route, expect

from tests.pages.conftest import Opened, desk_context, log_in, phone_context
from tests.pages.test_console_and_phone import SECOND, away, open_phone
from tests.support import World

# What the server answers an arrival whose fix is coarser than it takes (over 100 km).
COARSE_FIX_REFUSED = {
    "error": "invalid_input",
    "detail": "accuracy_m: Input should be less than or equal to 100000",
    "fields": [{"field": "accuracy_m", "message": "Input should be less than or equal to 100000"}],
}


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


def arrived(incident: dict[str, Any]) -> bool:
    return incident["dispatches"][0]["arrived_at"] is not None


async def test_an_arrival_tapped_with_a_fix_coarser_than_the_server_takes_goes_without_it(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """A phone whose only fix is a coarse one (accuracy 150 km: GPS off, indoors, a cell
    tower's guess) taps 已到场. The server takes no fix coarser than 100 km: the arrival goes
    without the fix, and is recorded."""
    post = await world.team("fixed_post")
    leader = await world.leader(post)
    operator = await world.operator()
    lon, lat = away(300)
    context = await phone_context(browser, contexts, (lon, lat))
    await context.set_geolocation({"longitude": lon, "latitude": lat, "accuracy": 150_000})
    phone = await context.new_page()
    await log_in(phone, world.base_url + "/m", leader)
    await expect(phone.locator("#conn")).to_have_attribute("data-state", "live")
    incident = await world.report(operator)
    await expect(phone.locator("#alert")).to_be_visible()

    async with phone.expect_request("**/arrive") as sent:
        await phone.get_by_role("button", name="已到场").click()
    body = (await sent.value).post_data_json
    assert "location" not in body and "accuracy_m" not in body and body["device_time"], body
    stored = await world.wait_for(operator, incident["id"], arrived)
    assert stored["dispatches"][0]["arrival_distance_m"] is None
    await expect(phone.locator("#arrive")).to_have_text(re.compile(r"^已到场 \d\d:\d\d:\d\d$"))
    await expect(phone.locator("#alert-outbox")).to_be_hidden()


async def test_an_arrival_whose_fix_the_server_refuses_is_sent_again_without_it(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """The server refuses the fix an arrival carries (422 naming accuracy_m: a tap kept on the
    phone by an older page, a limit changed): the arrival is what counts, the fix an extra. It
    is sent again at once without the fix and recorded, and nothing says the tap was refused."""
    post = await world.team("fixed_post")
    leader = await world.leader(post)
    operator = await world.operator()
    phone = await open_phone(browser, contexts, world, leader, away(300))
    incident = await world.report(operator)
    await expect(phone.locator("#alert")).to_be_visible()
    bodies: list[dict[str, Any]] = []

    async def refuse_the_first(route: Route) -> None:
        bodies.append(route.request.post_data_json)
        if len(bodies) == 1:
            await route.fulfill(
                status=422, content_type="application/json", body=json.dumps(COARSE_FIX_REFUSED)
            )
        else:
            await route.continue_()

    await phone.route("**/arrive", refuse_the_first)
    await phone.get_by_role("button", name="已到场").click()
    stored = await world.wait_for(operator, incident["id"], arrived)
    assert stored["dispatches"][0]["arrival_source"] == "button"
    assert [("location" in b, "accuracy_m" in b, "device_time" in b) for b in bodies] == [
        (True, True, True),
        (False, False, True),
    ]
    await expect(phone.locator("#arrive")).to_have_text(re.compile(r"^已到场 \d\d:\d\d:\d\d$"))
    await expect(phone.locator("#alert-outbox")).to_be_hidden()
    await expect(phone.locator("#outbox")).to_be_hidden()
