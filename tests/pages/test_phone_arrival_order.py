"""An arrival tapped while its acceptance is still on its way goes the moment the acceptance's
answer comes: it waits for that answer, not for the next turn of the phone's kept taps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from playwright.async_api import Browser, Request, expect

from tests.pages.conftest import Opened, log_in, phone_context
from tests.pages.test_console_and_phone import away
from tests.pages.test_phone_alerts import held
from tests.support import World


async def test_an_arrival_behind_a_slow_acceptance_goes_with_its_answer_not_the_outbox_turn(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """接警 is held on a slow line; 已到场 tapped meanwhile waits for its answer. The page's
    timers stand still from the arrival's tap on, so the kept taps' turn (every 5 s) never
    comes: the arrival reaches the server all the same, right after the acceptance, and the
    acceptance is recorded as tapped, not implied by the arrival."""
    post = await world.team("fixed_post")
    leader = await world.leader(post)
    operator = await world.operator()
    phone = await (await phone_context(browser, contexts, away(300))).new_page()
    await phone.clock.install()
    await log_in(phone, world.base_url + "/m", leader)
    await expect(phone.locator("#conn")).to_have_attribute("data-state", "live")
    incident = await world.report(operator)
    await expect(phone.locator("#alert")).to_be_visible()
    released = await held(phone, "**/accept")
    sent: list[str] = []

    def track(request: Request) -> None:
        if request.method == "POST" and "/api/v1/dispatches/" in request.url:
            sent.append(request.url.rsplit("/", 1)[1])

    phone.on("request", track)
    await phone.get_by_role("button", name="接警").click()
    await expect(phone.locator("#accept")).to_have_text("接警发送中…")
    await phone.clock.pause_at(datetime.now(UTC) + timedelta(seconds=2))
    await phone.evaluate("setTimeout(() => { window.__ticked = true; }, 0)")
    await phone.get_by_role("button", name="已到场").click()
    await expect(phone.locator("#alert-outbox")).to_contain_text("到场发送中")
    stored = await world.incident(operator, incident["id"])
    assert stored["dispatches"][0]["arrived_at"] is None
    assert sent == ["accept"]
    world.clock.advance(1)
    released.set()
    stored = await world.wait_for(
        operator, incident["id"], lambda i: i["dispatches"][0]["arrived_at"]
    )
    dispatch = stored["dispatches"][0]
    assert sent == ["accept", "arrive"]
    # No timer of the page ran meanwhile, the kept taps' turn among them.
    assert await phone.evaluate("window.__ticked === undefined")
    assert not dispatch["accepted_implied"]
    assert datetime.fromisoformat(dispatch["accepted_at"]) <= datetime.fromisoformat(
        dispatch["arrived_at"]
    )
