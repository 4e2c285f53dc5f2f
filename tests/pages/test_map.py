"""The map under Chinese (GCJ-02) base tiles: overlays shifted, picked points converted back,
names in tooltips shown as typed."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Browser, expect

from dispatch.config import Settings
from tests.pages.conftest import Opened, desk_context, log_in
from tests.support import QINGXI, World


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # No tile URL (no network here), but the map is laid out as over Amap's GCJ-02 tiles.
    return settings.model_copy(update={"tile_crs": "gcj02", "map_zoom": 17})


async def test_clicking_a_zone_on_gcj02_tiles_reports_the_point_in_the_zone(
    world: World, browser: Browser, contexts: Opened
) -> None:
    team = await world.team("fixed_post")
    page = await (await desk_context(browser, contexts)).new_page()
    await log_in(page, world.base_url + "/console", await world.operator())
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    await expect(page.locator(".leaflet-control-scale-line")).to_have_text(re.compile(r"\d+ m"))
    assert await page.locator("#map.map-plain").count() == 1

    # The team's site as drawn: a small dot in the middle of its 100 m circle.
    site = page.locator("path.leaflet-interactive").last
    box = await site.bounding_box()
    assert box is not None
    await page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    await expect(page.locator("#crs")).to_have_value("gcj02")
    lon = float(await page.locator("#lon").input_value())
    assert abs(lon - QINGXI[0]) > 0.004, "the form holds the point in the tiles' system"
    await expect(page.locator("#coverage")).to_contain_text(team["name"])

    await page.get_by_role("button", name="派警").click()
    result = page.locator("#report-result")
    await expect(result).to_contain_text(team["name"])
    incident_id = await result.get_attribute("data-incident-id")
    assert incident_id is not None
    incident = await world.incident(await world.operator(), incident_id)
    # Back in WGS84 within a couple of pixels of the site (about a metre each at this zoom).
    assert incident["dispatches"][0]["distance_m"] < 5


async def test_a_team_name_that_looks_like_markup_reads_as_typed_in_its_tooltip(
    world: World, browser: Browser, contexts: Opened
) -> None:
    name = 'A<b id="bold">粗体</b>队'
    await world.team("fixed_post", name=name)
    page = await (await desk_context(browser, contexts)).new_page()
    await log_in(page, world.base_url + "/console", await world.operator())
    await expect(page.locator("#conn")).to_have_attribute("data-state", "live")

    await page.locator("path.leaflet-interactive").last.hover(force=True)
    tooltip = page.locator(".leaflet-tooltip")
    await expect(tooltip).to_have_text(name + " · 驻点式应急联防队")
    assert await tooltip.locator("#bold").count() == 0, "the name made no element of its own"
