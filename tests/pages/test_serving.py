"""How the pages and their bundles are served: settings in the page, caching, safe headers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from dispatch.config import Settings
from dispatch.pages.service import PAGES, PagesNotBuilt, render_page
from tests.pages.conftest import Opened, phone_context
from tests.support import QINGXI, World


def page_config(html: str) -> dict[str, object]:
    match = re.search(r'<script id="dispatch-config" type="application/json">(.*?)</script>', html)
    assert match, "the page carries its settings"
    config: dict[str, object] = json.loads(match.group(1))
    return config


async def test_pages_carry_the_map_settings_and_a_strict_policy(world: World) -> None:
    for path, bundle in (("/console", "console-"), ("/m", "phone-")):
        reply = await world.http.get(path)
        assert reply.status_code == 200
        assert reply.headers["content-type"].startswith("text/html")
        assert reply.headers["cache-control"] == "no-cache"
        policy = reply.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy
        config = page_config(reply.text)
        assert config["tile_url"] is None and config["tile_crs"] == "wgs84"
        assert config["chain_targets"] == [60.0, 180.0, 300.0]
        # How the page looks after its websocket: a ping after 20 s of silence, 10 s for it.
        assert (config["live_ping_s"], config["live_timeout_s"]) == (20.0, 10.0)
        assert config["request_timeout_s"] == 15.0
        scripts = re.findall(r'<script src="(/static/assets/[^"]+\.js)"', reply.text)
        assert len(scripts) == 1 and bundle in scripts[0]
        asset = await world.http.get(scripts[0], headers={"accept-encoding": "gzip"})
        assert asset.status_code == 200
        assert asset.headers["content-encoding"] == "gzip"
        assert "immutable" in asset.headers["cache-control"]
        # Nothing is fetched from elsewhere at run time: no CDN, no web fonts.
        assert "http" not in reply.text
        styles = re.findall(r"href=\"(/static/assets/[^\"]+\.css)\"", reply.text)
        assert len(styles) == 1
        assert "http" not in (await world.http.get(styles[0])).text


async def test_the_servers_address_alone_lists_the_pages_for_a_person(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """What scripts/demo and uvicorn print is the server's address: opened as it is, it was the
    API's 404 in JSON. It lists the pages, in both languages, each link a thumb's size on a
    phone, under the pages' strict policy (a violation fails the test: the contexts fixture)."""
    page = await (await phone_context(browser, contexts, QINGXI)).new_page()
    reply = await page.goto(world.base_url + "/")
    assert reply is not None and reply.status == 200
    assert reply.headers["cache-control"] == "no-cache"
    await expect(page.locator("body")).not_to_contain_text("not_found")
    links = page.get_by_role("link")
    await expect(links).to_have_count(3)
    for link in await links.all():
        box = await link.bounding_box()
        assert box is not None and box["height"] >= 48 and box["width"] >= 48, box
    await page.get_by_role("link", name=re.compile("队长接警")).click()
    await expect(page).to_have_url(world.base_url + "/m")
    await expect(page.get_by_label("用户名")).to_be_visible()


async def test_a_missing_asset_is_404(world: World) -> None:
    reply = await world.http.get("/static/assets/nothing-here.js")
    assert reply.status_code == 404


def test_unbuilt_pages_are_reported_not_crashed(tmp_path: Path) -> None:
    with pytest.raises(PagesNotBuilt):
        render_page("console", Settings(), static_dir=tmp_path)


async def test_a_page_not_built_is_a_503_that_says_when_to_look_again(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As every 503 of the server, with Retry-After, declared so in the schema."""
    schema = (await world.http.get("/openapi.json")).json()
    for page, path in (("console", "/console"), ("reports", "/console/reports"), ("phone", "/m")):
        declared = schema["paths"][path]["get"]["responses"]["503"]
        assert declared["headers"]["Retry-After"]["schema"] == {"type": "integer"}, path
        monkeypatch.setitem(PAGES, page, "not-built-yet.html")
        reply = await world.http.get(path)
        assert reply.status_code == 503 and "npm run build" in reply.text, path
        # Installed with pip, the build reaches the server only by installing it again.
        assert "<code>pip install .</code> again" in reply.text, path
        assert int(reply.headers["Retry-After"]) > 0, path


def test_tile_settings_reach_the_page_escaped(tmp_path: Path) -> None:
    (tmp_path / "m.html").write_text("<head><!--config--></head>", encoding="utf-8")
    settings = Settings(
        tile_url="https://webrd0{s}.is.autonavi.com/appmaptile?x={x}&y={y}&z={z}&style=8",
        tile_crs="gcj02",
        tile_subdomains="1234",
        tile_attribution="</script><script>alert(1)</script>高德",
    )
    html = render_page("phone", settings, static_dir=tmp_path)
    assert html.count("</script>") == 1, "the attribution cannot close the script element"
    config = page_config(html)
    assert config["tile_crs"] == "gcj02" and config["tile_subdomains"] == "1234"
    assert config["tile_attribution"] == "</script><script>alert(1)</script>高德"


def test_only_tile_systems_leaflet_can_draw_are_accepted() -> None:
    # Baidu's tiles use their own projection as well as BD-09 coordinates.
    with pytest.raises(ValueError, match="tile_crs"):
        Settings(tile_crs="bd09")
