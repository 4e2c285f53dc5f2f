"""The console of a city: thousands of teams come a page at a time and are drawn on one canvas,
and the incidents and the live feed never wait for them."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs, urlparse

from playwright.async_api import Browser, Locator, Page, Request, Route, expect

from dispatch.db import new_id
from dispatch.teams import service as teams_service
from dispatch.teams.models import Team
from tests.pages.conftest import Opened, desk_context, log_in, open_list, queries_to
from tests.pages.test_console_and_phone import card, card_on_phone, open_phone
from tests.support import QINGXI, World

# More than the console asks for at once (its page is 1000 teams).
CITY_TEAMS = 1200


async def city_teams(world: World, count: int) -> None:
    """``count`` fixed posts on a grid around the town, written at once as a city's seeding
    writes them (through the API they would take minutes)."""
    now = world.clock.now()
    teams = [
        Team(
            id=new_id(),
            name=f"驻点队{n:05d}",
            kind="fixed_post",
            tier=1,
            lon=QINGXI[0] + 0.004 * (n % 40 - 20),
            lat=QINGXI[1] + 0.004 * (n // 40 - 15),
            radius_m=100.0,
            zone=None,
            created_at=now,
            updated_at=now,
            retired_at=None,
            revision=0,
            former_names=[],
        )
        for n in range(count)
    ]
    async with world.runtime.transaction() as session:
        session.add_all(teams)
        await session.flush()
        await teams_service.stamp_all(session, teams)


async def test_a_citys_teams_come_a_page_at_a_time_and_are_drawn_on_one_canvas(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """Two thousand and more SVG paths (a zone and a site each) made every drag, zoom and new
    incident a second's stall; one answer of every team was megabytes."""
    await city_teams(world, CITY_TEAMS)
    page = await (await desk_context(browser, contexts)).new_page()
    asked = queries_to(page, "/api/v1/teams")
    await log_in(page, world.base_url + "/console", await world.operator())
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    await expect(page.locator("#map")).to_have_attribute("data-teams", str(CITY_TEAMS))
    overlay = page.locator("#map .leaflet-overlay-pane")
    assert await overlay.locator("canvas").count() == 1
    assert await overlay.locator("path").count() == 0
    assert "after" not in asked[0] and "offset" not in asked[0]
    # The next page after the first one's last team.
    operator = await world.operator()
    first = await world.http.get("/api/v1/teams", params={"limit": 1000}, headers=operator.headers)
    assert [query.get("after") for query in asked[1:]] == [[first.json()[-1]["id"]]]
    assert all(int(query["limit"][0]) <= 2000 for query in asked)


async def test_teams_retired_while_the_map_reads_a_city_skip_none(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """The next page was asked for at the count already read: two teams retired while the
    first page was on its way moved two of the next page's into the first, and the map never
    drew them. Each page now starts after the last team of the one before."""
    await city_teams(world, CITY_TEAMS)
    admin = await world.admin()
    listed = await world.http.get("/api/v1/teams", headers=admin.headers)
    order = [t["id"] for t in listed.json()]
    page = await (await desk_context(browser, contexts)).new_page()
    asked: list[dict[str, list[str]]] = []

    async def retire_meanwhile(route: Route) -> None:
        answer = await route.fetch()
        query = parse_qs(urlparse(route.request.url).query)
        asked.append(query)
        if len(asked) == 1:
            # The first page's last team too: the cursor names a team retired since.
            for team_id in (order[10], order[999]):
                reply = await world.http.delete(f"/api/v1/teams/{team_id}", headers=admin.headers)
                assert reply.status_code == 204, reply.text
        await route.fulfill(response=answer)

    await page.route(lambda url: urlparse(url).path == "/api/v1/teams", retire_meanwhile)
    await log_in(page, world.base_url + "/console", await world.operator())
    # Every team once: the first page's as it read them, the two retired included.
    await expect(page.locator("#map")).to_have_attribute("data-teams", str(CITY_TEAMS))
    assert [query.get("after") for query in asked] == [None, [order[999]]]


async def test_an_incidents_card_and_the_live_feed_do_not_wait_for_the_teams(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """A city's teams take seconds to come and draw: the open incidents are listed, and new
    ones arrive live, while the map is still waiting for them."""
    await world.team("fixed_post")
    operator = await world.operator()
    await world.report(operator)
    page = await (await desk_context(browser, contexts)).new_page()
    release = asyncio.Event()

    async def held(route: Route) -> None:
        await release.wait()
        await route.continue_()

    await page.route(lambda url: urlparse(url).path == "/api/v1/teams", held)
    await log_in(page, world.base_url + "/console", operator)
    await expect(page.locator("article.incident")).to_have_count(1)
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    await world.report(operator)
    await expect(page.locator("article.incident")).to_have_count(2)
    sites = page.locator("#map .leaflet-overlay-pane path.leaflet-interactive")
    assert await sites.count() == 2, "the incidents' markers, no team's site yet"

    release.set()
    # The team's zone and site join the two markers.
    await expect(page.locator("#map .leaflet-overlay-pane path")).to_have_count(4)


async def test_a_citys_small_zones_are_drawn_only_when_zoomed_in(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """Zoomed out over a city, its tens of thousands of 100 m and 500 m zones are specks under
    their sites' dots, and filling them took most of a second each time the map moved: they
    are drawn from the zoom where they are wider than a dot."""
    await city_teams(world, CITY_TEAMS)
    page = await (await desk_context(browser, contexts)).new_page()
    await log_in(page, world.base_url + "/console", await world.operator())
    map_box = page.locator("#map")
    await expect(map_box).to_have_attribute("data-teams", str(CITY_TEAMS))
    # Fitted to the city's 16 km: zoomed out.
    await expect(map_box).to_have_attribute("data-small-zones", "hidden")
    zoom_in = page.locator(".leaflet-control-zoom-in")
    zoom_out = page.locator(".leaflet-control-zoom-out")
    # From the fitted zoom (10 to 12) two out, then five in: 13 at least.
    for button in [zoom_out] * 2 + [zoom_in] * 5:
        await zoomed(page, button)
    await expect(map_box).to_have_attribute("data-small-zones", "shown")
    for _ in range(3):
        await zoomed(page, zoom_out)
    await expect(map_box).to_have_attribute("data-small-zones", "hidden")


async def zoomed(page: Page, button: Locator) -> None:
    """A press of a zoom button, once the map has zoomed (its scale bar says so): a press
    while the map is still zooming is not taken."""
    scale = page.locator(".leaflet-control-scale-line")
    before = await scale.text_content()
    await button.click()
    await expect(scale).not_to_have_text(before or "")


async def test_an_incident_reported_while_the_list_is_on_its_way_stays_listed(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """A console opening (or resyncing) reads the open incidents over HTTP while the live feed
    already brings new ones: a list read before a report committed, answered after the report
    came live (a city's list is large and slow), took the new incident off the console."""
    operator = await world.operator()
    await world.report(operator)
    page = await (await desk_context(browser, contexts)).new_page()
    lists = 0
    read = asyncio.Event()
    release = asyncio.Event()

    async def late(route: Route) -> None:
        nonlocal lists
        lists += 1
        # Read by the server now, before the next report; answered once released.
        answer = await route.fetch()
        read.set()
        await release.wait()
        await route.fulfill(response=answer)

    await page.route(open_list, late)
    await log_in(page, world.base_url + "/console", operator)
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    await read.wait()
    await world.report(operator, category="fire")
    await expect(page.locator("#feed")).to_contain_text("新警情：火情")
    await expect(page.locator("article.incident")).to_have_count(1)

    async with page.expect_request_finished(lambda request: open_list(request.url)):
        release.set()
    # The late list read, and the list drawn again after it: the first incident and the fire.
    await page.evaluate(SETTLED)
    await expect(page.locator("article.incident")).to_have_count(2)
    await expect(page.locator("#incident-count")).to_have_text("（2）")
    assert lists == 1, "the console opening asks for the open incidents once"


async def test_the_console_asks_for_the_open_incidents_once_as_it_opens(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """A console read the open incidents, then opened its websocket, whose welcome a fresh
    console's resync follows (the operators' mailbox is shared: a new reader starts at its
    latest message), and read them all again: twice the list's pages, a city's megabytes, at
    every console opened. The list is now asked for once the socket is welcomed, and a resync
    finds it read after the welcome and asks for nothing more."""
    await world.team("fixed_post")
    operator = await world.operator()
    reported = [await world.report(operator) for _ in range(3)]
    page = await (await desk_context(browser, contexts)).new_page()
    asked: list[str] = []

    def note(request: Request) -> None:
        if open_list(request.url):
            asked.append(request.url)

    page.on("request", note)
    await log_in(page, world.base_url + "/console", operator)
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    await expect(page.locator("article.incident")).to_have_count(3)
    for incident in reported:
        await expect(card(page, incident["id"])).to_have_count(1)
    # Whatever the resync would have asked for has been asked by now.
    await page.evaluate(SETTLED)
    await asyncio.sleep(1)
    assert len(asked) == 1, asked
    assert "before=" not in asked[0], asked

    # A reconnect past what can be replayed still reloads the list: the gap is read again.
    await world.report(operator, category="fire")
    await expect(page.locator("article.incident")).to_have_count(4)


# A promise that resolves once the page has run what was queued and drawn two frames since.
SETTLED = """() => new Promise((done) =>
    setTimeout(() => requestAnimationFrame(() => requestAnimationFrame(done)), 0))"""


# More open incidents than one page of the list (the API's 200), as a city's control room can
# hold; each operator's rate allows 30 reports at once.
OPEN_INCIDENTS = 205


async def test_every_open_incident_is_listed_on_the_console_and_the_phone_past_one_page(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """The console and the phone asked for the open incidents once, and the list's first page
    is its newest 200: the older open incidents were missing from both, and a late tier among
    them raised no alarm on the console."""
    team = await world.team("fixed_post")
    leader = await world.leader(team)
    operators = [await world.operator() for _ in range(OPEN_INCIDENTS // 30 + 1)]
    reported = [await world.report(operators[n // 30]) for n in range(OPEN_INCIDENTS)]
    oldest = reported[0]["id"]

    console = await (await desk_context(browser, contexts)).new_page()
    await log_in(console, world.base_url + "/console", await world.operator())
    await expect(console.locator("#conn")).to_have_attribute("data-state", "live")
    await expect(console.locator("article.incident")).to_have_count(OPEN_INCIDENTS)
    await expect(card(console, oldest)).to_have_count(1)

    phone = await open_phone(browser, contexts, world, leader, QINGXI)
    await expect(phone.locator("#incidents article.incident")).to_have_count(OPEN_INCIDENTS)
    await expect(card_on_phone(phone, oldest)).to_have_count(1)
