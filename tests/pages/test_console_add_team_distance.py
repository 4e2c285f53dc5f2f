"""The 加派 dialog's distance of a team is the one its dispatch then shows on the incident's
card, to the metre: the server's geodesic distance from the team's site (on the WGS-84
ellipsoid), not one on a sphere, which due north at 22.8° reads 446 m for 444 m."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from geo.geodesy import distance_m
from tests.pages.conftest import Opened
from tests.pages.test_console_and_phone import away, card, open_console
from tests.support import QINGXI, World


async def test_the_dialog_and_the_card_show_the_same_metres_for_a_team(
    world: World, browser: Browser, contexts: Opened
) -> None:
    covering = await world.team("fixed_post")  # tier 1 covered: no wider ring is looked for
    # Due north: a sphere of the Earth's mean radius reads this 446 m, the ellipsoid 444 m.
    north = await world.team("fixed_post", *away(444.4, 0), name="北门驻点队")
    east = await world.team("mobile", *away(1234.56, 90), name="东门机动队")
    for team in (north, east):
        await world.leader(team)
    geodesic = distance_m(*QINGXI, north["location"]["lon"], north["location"]["lat"])
    assert round(geodesic) == 444
    console = await open_console(browser, contexts, world)
    incident = await world.report(await world.operator())
    assert [d["team_id"] for d in incident["dispatches"]] == [covering["id"]]

    shown = card(console, incident["id"])
    await shown.get_by_role("button", name="加派队伍").click()
    dialog = console.locator("#add-team")
    options = dialog.locator("#add-team-select option")
    await expect(options).to_have_count(2)
    await expect(options.nth(0)).to_have_text("北门驻点队 · 一梯队 · 444 米")
    await expect(options.nth(1)).to_have_text("东门机动队 · 一梯队 · 1.23 公里")

    await dialog.locator("#add-team-select").select_option(north["id"])
    await dialog.get_by_role("button", name="加派", exact=True).click()
    await expect(dialog).to_be_hidden()
    added = shown.locator(".dispatch", has_text="北门驻点队")
    await expect(added.locator(".dispatch-head .meta")).to_have_text("一梯队 · 444 米")
    dispatched = await world.incident(await world.operator(), incident["id"])
    added_dispatch = [d for d in dispatched["dispatches"] if d["team_id"] == north["id"]]
    assert [round(d["distance_m"]) for d in added_dispatch] == [444]

    await shown.get_by_role("button", name="加派队伍").click()
    await expect(options).to_have_count(1)
    await expect(options.nth(0)).to_have_text("东门机动队 · 一梯队 · 1.23 公里")
    assert east["id"] == await options.nth(0).get_attribute("value")
