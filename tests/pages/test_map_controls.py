"""The map's own controls (Leaflet's zoom buttons and, over base tiles, its attribution) on the
console and on the phone, read as the rest of the pages are: named in the page's language, and
at the enhanced contrast (AAA) in both languages."""

from __future__ import annotations

import base64

import pytest
from playwright.async_api import Browser, BrowserContext, Page, Route, expect

from dispatch.config import Settings
from tests.pages.conftest import Opened, desk_context, log_in
from tests.pages.test_accessibility import (
    AXE,
    alerted_phone,
    assert_aaa_in_both_languages,
    assert_in_both_languages,
    switch_to,
)
from tests.support import World

# A blank tile (PNG, 1x1, white): base tiles are drawn, none is fetched from outside.
TILE = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8/5+hHgAHggJ/PchI7wAAAABJRU5ErkJggg=="
)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "tile_url": "http://tiles.invalid/{z}/{x}/{y}.png",
            "tile_attribution": "© 高德地图 AutoNavi",
        }
    )


async def over_the_darkest_tiles(page: Page) -> None:
    """Behind the controls, black where the map was: axe cannot see into a tile (an image) or
    the zones' canvas, and passes text over one by unjudged, and a city's tiles may be as dark
    as that (a night style, a satellite view). What is drawn over the map must be read over
    any of them."""
    await page.evaluate(
        """() => {
          const all = (selector) => document.querySelectorAll(selector);
          for (const pane of all('.leaflet-map-pane')) pane.style.display = 'none';
          for (const map of all('.leaflet-container')) map.style.background = '#000';
        }"""
    )


# axe's own colour reckoning (the engine of its contrast rule) over each piece of the map
# controls' text: the rule itself passes the attribution by, unjudged, for the flag drawn in
# Leaflet's link (an image among the text).
CONTROLS_BELOW_AAA = """() => {
  axe.setup(document);
  const color = axe.commons.color;
  const faint = [];
  const texts = document.querySelectorAll(
    '.leaflet-control-attribution, .leaflet-control-attribution a, .leaflet-control-zoom span');
  for (const el of texts) {
    if (!el.checkVisibility() || !el.textContent.trim()) continue;
    const fg = color.getForegroundColor(el);
    const bg = color.getBackgroundColor(el, []);
    const ratio = fg && bg ? color.getContrast(bg, fg) : 0;
    if (ratio < 7) {
      faint.push(ratio.toFixed(2) + ':1 ' + (fg && fg.toHexString()) + ' on '
        + (bg && bg.toHexString()) + ' ' + el.outerHTML.slice(0, 80));
    }
  }
  axe.teardown();
  return faint;
}"""


async def controls_below_aaa(page: Page) -> list[str]:
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        await page.evaluate(AXE.read_text(encoding="utf-8"))
    faint: list[str] = await page.evaluate(CONTROLS_BELOW_AAA)
    return faint


async def meets_aaa(page: Page, state: str) -> None:
    await over_the_darkest_tiles(page)
    await assert_in_both_languages(page, state, controls_below_aaa)
    await assert_aaa_in_both_languages(page, state)


async def blank_tiles(context: BrowserContext) -> None:
    async def tile(route: Route) -> None:
        await route.fulfill(status=200, content_type="image/png", body=TILE)

    await context.route("http://tiles.invalid/**", tile)


async def test_the_consoles_zoom_buttons_and_attribution_are_named_and_meet_aaa(
    world: World, browser: Browser, contexts: Opened
) -> None:
    await world.team("fixed_post")
    context = await desk_context(browser, contexts)
    await blank_tiles(context)
    console = await context.new_page()
    await log_in(console, world.base_url + "/console", await world.operator())
    await expect(console.locator("#conn")).to_have_attribute("data-state", "live")
    attribution = console.locator("#map .leaflet-control-attribution")
    await expect(attribution).to_contain_text("高德地图")
    await expect(console.get_by_role("button", name="放大")).to_be_visible()
    await expect(console.get_by_role("button", name="缩小")).to_be_visible()
    leaflet = attribution.get_by_role("link", name="Leaflet")
    await expect(leaflet).to_have_attribute("title", "Leaflet：开源交互地图库")
    await meets_aaa(console, "the console's map controls")
    await switch_to(console, "en")
    await expect(console.get_by_role("button", name="Zoom in")).to_be_visible()
    await expect(console.get_by_role("button", name="Zoom out")).to_be_visible()
    await expect(leaflet).to_have_attribute("title", "A JavaScript library for interactive maps")


async def test_the_phones_map_attribution_meets_aaa(
    world: World, browser: Browser, contexts: Opened
) -> None:
    phone = await alerted_phone(world, browser, contexts, blank_tiles)
    await expect(phone.locator("#alert")).to_be_visible()
    await expect(phone.locator(".leaflet-control-attribution").first).to_contain_text("高德地图")
    await meets_aaa(phone, "the phone's map over base tiles")


async def test_the_phones_map_titles_leaflets_link_in_the_language_switched_to(
    world: World, browser: Browser, contexts: Opened
) -> None:
    phone = await alerted_phone(world, browser, contexts, blank_tiles)
    await expect(phone.locator("#alert")).to_be_visible()
    attribution = phone.locator("#alert-map .leaflet-control-attribution")
    await expect(attribution).to_contain_text("高德地图")
    leaflet = attribution.get_by_role("link", name="Leaflet")
    await expect(leaflet).to_have_attribute("title", "Leaflet：开源交互地图库")
    await switch_to(phone, "en")
    await expect(leaflet).to_have_attribute("title", "A JavaScript library for interactive maps")
    await switch_to(phone, "zh")
    await expect(leaflet).to_have_attribute("title", "Leaflet：开源交互地图库")
