"""A line that died without a word: the pages find out by themselves, say so, and catch up.

The pages reach the server through a proxy that can fall silent, passing nothing and closing
nothing; TCP would notice only after many minutes. The pages ping when they have heard nothing
for a while and give a socket up when not even the pong comes (here in fractions of a second).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Browser, Page, WebSocket, expect

from dispatch.config import Settings
from tests.conftest import RunningServer
from tests.pages.conftest import Opened, desk_context, log_in, phone_context
from tests.pages.test_console_and_phone import SECOND, away, card
from tests.support import SilentProxy, World


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"ws_client_ping_s": 0.4, "ws_client_timeout_s": 1.5, "page_request_timeout_s": 3.0}
    )


@pytest.fixture
async def proxy(server: RunningServer) -> AsyncIterator[SilentProxy]:
    running = SilentProxy(server.port)
    await running.start()
    yield running
    await running.close()


class Frames:
    """What a page's websockets carried, as Chromium saw it."""

    def __init__(self, page: Page) -> None:
        self.sockets: list[WebSocket] = []
        self.sent: list[dict[str, Any]] = []
        self.received: list[dict[str, Any]] = []
        page.on("websocket", self._opened)

    def _opened(self, socket: WebSocket) -> None:
        self.sockets.append(socket)
        socket.on("framesent", lambda payload: self.sent.append(json.loads(payload)))
        socket.on("framereceived", lambda payload: self.received.append(json.loads(payload)))

    def of(self, kind: str, frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [f for f in frames if f.get("type") == kind]


async def wait_until(page: Page, condition: Any, what: str) -> None:
    """Give the page's event loop turns until ``condition()`` holds (Playwright's events come
    between them)."""
    for _ in range(200):
        if condition():
            return
        await page.wait_for_timeout(50)
    raise AssertionError(f"never: {what}")


async def test_a_phone_on_a_silently_dead_line_reconnects_and_rings_for_what_came_meanwhile(
    world: World, proxy: SilentProxy, browser: Browser, contexts: Opened
) -> None:
    post = await world.team("fixed_post")
    leader = await world.leader(post)
    operator = await world.operator()
    page = await (await phone_context(browser, contexts, away(300))).new_page()
    frames = Frames(page)
    await log_in(page, proxy.url + "/m", leader)
    conn = page.locator("#conn")
    await expect(conn).to_have_attribute("data-state", "live")

    # A quiet line that works: pings are answered and the socket stays as it was.
    await wait_until(page, lambda: len(frames.of("pong", frames.received)) >= 3, "three pongs")
    pings = frames.of("ping", frames.sent)
    assert len(pings) >= 3 and all(ping == {"type": "ping"} for ping in pings)
    assert len(frames.sockets) == 1
    await expect(conn).to_have_attribute("data-state", "live")

    # The line dies without a word: nothing closes, nothing comes. The page says so.
    proxy.fall_silent()
    await expect(conn).to_have_attribute("data-state", "reconnecting")
    await expect(conn).to_contain_text("正在重连")
    # It gave the dead socket up and tries others (which, still silent, get nowhere).
    await wait_until(page, lambda: len(frames.sockets) >= 2, "a second socket")

    incident = await world.report(operator, category="robbery")
    await expect(page.locator("#alert")).to_be_hidden()

    # The line comes back: the page reconnects with resume, rings and acknowledges.
    proxy.speak()
    await expect(page.locator("#alert")).to_contain_text("抢劫抢夺", timeout=20 * SECOND)
    await expect(conn).to_have_attribute("data-state", "live")
    await world.wait_for(operator, incident["id"], lambda i: i["dispatches"][0]["delivered_at"])


async def test_a_console_on_a_silently_dead_line_reconnects_and_shows_what_came_meanwhile(
    world: World, proxy: SilentProxy, browser: Browser, contexts: Opened
) -> None:
    await world.team("fixed_post")
    operator = await world.operator()
    page = await (await desk_context(browser, contexts)).new_page()
    await log_in(page, proxy.url + "/console", operator)
    conn = page.locator("#conn")
    await expect(conn).to_have_attribute("data-state", "live")

    proxy.fall_silent()
    await expect(conn).to_have_attribute("data-state", "reconnecting")
    incident = await world.report(operator, category="fire")
    proxy.speak()
    await expect(card(page, incident["id"])).to_contain_text("火情", timeout=20 * SECOND)
    await expect(conn).to_have_attribute("data-state", "live")
    await expect(page.locator("#feed")).to_contain_text("已重新连接")


async def test_an_accept_tapped_on_a_line_that_died_is_given_up_and_sent_again_on_a_new_one(
    world: World, proxy: SilentProxy, browser: Browser, contexts: Opened
) -> None:
    """The phone moved to another network as the leader tapped 接警: the connection the tap
    went out on is dead for good, nothing answers and nothing resets it. Given up after the
    page's time for an answer, the tap is sent again over a new connection; waiting on the dead
    one, it stayed unsent until TCP gave up, many minutes later."""
    post = await world.team("fixed_post")
    leader = await world.leader(post)
    operator = await world.operator()
    page = await (await phone_context(browser, contexts, away(300))).new_page()
    await log_in(page, proxy.url + "/m", leader)
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    incident = await world.report(operator)
    await expect(page.locator("#alert")).to_be_visible()

    proxy.fall_silent()
    await page.get_by_role("button", name="接警").click()
    await expect(page.locator("#accept")).to_have_text("接警待发送")
    # The new network works; the tap's connection and the page's others stay dead.
    proxy.speak(reset_dead=False)
    await world.wait_for(
        operator, incident["id"], lambda i: i["dispatches"][0]["accepted_at"], timeout=30
    )
    await expect(page.locator("#accept")).to_contain_text("已接警", timeout=20 * SECOND)
