"""A real headless Chromium (Debian's), driven by Playwright, against the real server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Request,
    async_playwright,
    expect,
)

from dispatch.pages.service import PAGES, STATIC_DIR
from tests.conftest import clock_start
from tests.support import Account, World

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # The console's breach alarm is audible without waiting for a click.
    "--autoplay-policy=no-user-gesture-required",
]
PHONE = {"width": 360, "height": 740}
DESK = {"width": 1440, "height": 900}
# Clicks and waits fail after this; expect() assertions keep Playwright's own 5 s.
TIMEOUT_MS = 10_000


def check_prerequisites() -> None:
    for page in PAGES.values():
        assert (STATIC_DIR / page).exists(), (
            f"{STATIC_DIR / page} is missing: build the pages with "
            "`npm --prefix web ci && npm --prefix web run build` (scripts/setup does it)"
        )
    assert Path(CHROMIUM).exists(), "install Debian's chromium: apt-get install -y chromium"


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    check_prerequisites()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


class Opened(list[BrowserContext]):
    """The contexts a test opened, and what went wrong inside their pages."""

    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []

    def watch(self, context: BrowserContext) -> None:
        self.append(context)
        context.on("weberror", lambda error: self.problems.append(f"uncaught: {error.error}"))
        context.on("console", self._console)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            self.problems.append(message.text)


@pytest.fixture
async def contexts(browser: Browser) -> AsyncIterator[Opened]:
    """Contexts a test opens; closed afterwards. The pages must neither throw nor hit the CSP."""
    opened = Opened()
    yield opened
    for context in opened:
        await context.close()
    assert opened.problems == []


async def on_the_servers_clock(context: BrowserContext) -> None:
    """With DISPATCH_TEST_CLOCK_START, the browser's clock starts where the test servers' do
    (and runs on from there): a page compares the server's times with its own clock (the
    reports' default period), and the host's now would be another day."""
    start = clock_start()
    if start is not None:
        await context.clock.set_system_time(start)


async def desk_context(
    browser: Browser, opened: Opened, viewport: dict[str, int] = DESK
) -> BrowserContext:
    context = await browser.new_context(viewport=viewport, locale="zh-CN")
    context.set_default_timeout(TIMEOUT_MS)
    await on_the_servers_clock(context)
    opened.watch(context)
    return context


async def phone_context(
    browser: Browser, opened: Opened, position: tuple[float, float]
) -> BrowserContext:
    lon, lat = position
    context = await browser.new_context(
        viewport=PHONE,
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        locale="zh-CN",
        geolocation={"longitude": lon, "latitude": lat, "accuracy": 10},
        permissions=["geolocation"],
    )
    context.set_default_timeout(TIMEOUT_MS)
    await on_the_servers_clock(context)
    opened.watch(context)
    return context


async def close_phone(page: Page, world: World, leader: Account) -> None:
    """Close the leader's only page and wait until the server has seen its socket go: a page
    being torn down still takes messages for a moment after ``close()`` returns (and keeps
    their seq on the device), so an alert meant to come while it is away must wait for this."""
    await page.close()
    deadline = asyncio.get_running_loop().time() + 5.0
    while world.runtime.hub.is_connected(leader.id):
        assert asyncio.get_running_loop().time() < deadline, "the server kept the page's socket"
        await asyncio.sleep(0.01)


async def log_in(page: Page, url: str, account: Account) -> None:
    await page.goto(url)
    await sign_in(page, account)


async def sign_in(page: Page, account: Account) -> None:
    """Through the login form the page shows."""
    await page.get_by_label("用户名").fill(account.name)
    await page.get_by_label("密码").fill(account.password)
    await page.get_by_role("button", name="登录").click()


async def ask_report(
    page: Page,
    start: str,
    end: str | None = None,
    *,
    choose: Mapping[str, str] | None = None,
    button: str = "查询",
    state: str = "ready",
) -> None:
    """On the report page: the period's dates (Beijing time, the last one included; ``end``
    the same day as ``start`` unless given), the filters and grouping in ``choose`` (a select's
    id, its value), a press of ``button`` (Show in English), and the wait until the page has
    the answer in ``state`` (failed for a period refused). The click sets the page loading at
    once, so a state left by the report before does not pass for this one's."""
    await page.locator("#from").fill(start)
    await page.locator("#to").fill(end or start)
    for field, value in (choose or {}).items():
        await page.locator(f"#{field}").select_option(value)
    await page.get_by_role("button", name=button).click()
    await expect(page.locator("#app")).to_have_attribute("data-state", state)


def open_list(url: str) -> bool:
    """Whether ``url`` asks for the open incidents, as the console and the phone do, a page at
    a time (``status=open&limit=…&before=…``)."""
    return "/api/v1/incidents?status=open" in url


def queries_to(page: Page, path: str) -> list[dict[str, list[str]]]:
    """The query of each request ``page`` makes to ``path`` from now on, parsed, in order."""
    asked: list[dict[str, list[str]]] = []

    def note(request: Request) -> None:
        if urlparse(request.url).path == path:
            asked.append(parse_qs(urlparse(request.url).query))

    page.on("request", note)
    return asked
