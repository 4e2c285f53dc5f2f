"""An incident's coordinates read as the report form takes them: longitude first, each named,
on the console's card and on the leader's alert, in both languages."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, Page, expect

from geo.crs import CRS, in_china, to_wgs84
from tests.pages.conftest import Opened
from tests.pages.test_console_and_phone import (
    SCENE,
    away,
    card,
    open_console,
    open_phone,
    sent_report,
)
from tests.pages.test_console_operator import open_incidents
from tests.support import World


async def test_the_card_and_the_alert_name_longitude_and_latitude_in_the_forms_order(
    world: World, browser: Browser, contexts: Opened
) -> None:
    team = await world.team("fixed_post", *SCENE)
    leader = await world.leader(team)
    phone = await open_phone(browser, contexts, world, leader, away(300, at=SCENE))
    console = await open_console(browser, contexts, world)
    incident = await world.report(await world.operator(), *SCENE)

    meta = card(console, incident["id"]).locator(".incident-head .meta")
    await expect(meta).to_contain_text("经度 114.161200，纬度 22.849000（WGS84）")
    alert = phone.locator("#alert")
    await expect(alert).to_be_visible()
    await expect(alert).to_contain_text("坐标（WGS84）：经度 114.161200，纬度 22.849000")

    await console.get_by_role("button", name="English").click()
    await expect(meta).to_contain_text("lon 114.161200, lat 22.849000 (WGS84)")
    await phone.get_by_role("button", name="收起").click()
    await phone.get_by_role("button", name="English").click()
    await phone.get_by_role("button", name="Open").click()
    await expect(alert).to_contain_text("Coordinates (WGS84): lon 114.161200, lat 22.849000")


async def paste(page: Page, field: str, text: str) -> None:
    """``text`` pasted into ``field`` as the operator does it: copied, then Ctrl+V."""
    await page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    await page.evaluate("text => navigator.clipboard.writeText(text)", text)
    await page.locator(field).fill("")
    await page.locator(field).focus()
    await page.keyboard.press("Control+V")


async def test_a_pair_pasted_into_either_field_fills_both_in_the_right_order_and_says_so(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """A pair copied whole (AMap: lon first; Google, Apple, Tencent and WeChat: lat first; with
    a full-width comma, spaces or 。) had to be split and retyped by hand; pasted into either
    field it now fills both in the right order, and the form says what it did and asks to check
    the system."""
    post = await world.team("fixed_post", *SCENE)
    console = await open_console(browser, contexts, world)
    lon, lat = console.locator("#lon"), console.locator("#lat")
    note, problem = console.locator("#point-note"), console.locator("#point-error")
    await console.locator("#crs").select_option("wgs84")
    for field, text, order in [
        ("#lon", "114.1612,22.849", "原文经度在前"),
        ("#lat", "22.849, 114.1612", "原文纬度在前"),
        ("#lon", "22.849，114.1612", "原文纬度在前"),
        ("#lat", "22。849 ， 114。1612", "原文纬度在前"),
        ("#lon", "114.1612 22.849", "原文经度在前"),
    ]:
        await lon.fill("")
        await lat.fill("")
        await paste(console, field, text)
        await expect(lon).to_have_value("114.1612")
        await expect(lat).to_have_value("22.849")
        await expect(note).to_contain_text("已将一对坐标分开填入：经度 114.1612，纬度 22.849")
        await expect(note).to_contain_text(order)
        await expect(note).to_contain_text("请核对坐标系")
        await expect(problem).to_be_hidden()
        await expect(console.locator("#coverage")).to_contain_text(post["name"])

    await console.get_by_role("button", name="English").click()
    await expect(note).to_contain_text("The pair was split: longitude 114.1612, latitude 22.849")
    await expect(note).to_contain_text("It gave the longitude first")
    await console.get_by_role("button", name="中文").click()

    # Typed whole into one field, it is split when the operator leaves the field, never while
    # typing ("114.1612,2" is not yet the pair); meanwhile the form says what it will do.
    await lon.fill("")
    await lat.fill("")
    await lat.fill("22.849,114.1612")
    await expect(problem).to_contain_text("纬度栏里是一对坐标：离开此栏（按 Tab）即分开填入")
    await expect(lat).to_have_value("22.849,114.1612")
    await lat.press("Tab")
    await expect(lon).to_have_value("114.1612")
    await expect(lat).to_have_value("22.849")
    await expect(problem).to_be_hidden()

    incident_id = await sent_report(console)
    stored = await world.incident(await world.operator(), incident_id)
    assert stored["location"] == {"lon": 114.1612, "lat": 22.849}


async def test_degrees_minutes_and_seconds_are_read_and_shown_as_decimal_degrees(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """Degrees, minutes and seconds from a phone's GPS app, or degrees and minutes, were refused
    as not a number and had to be worked out by hand; they are read, each field saying the
    decimal degrees it read, and a pair of them fills both fields by their N and E."""
    post = await world.team("fixed_post", *SCENE)
    console = await open_console(browser, contexts, world)
    lon, lat = console.locator("#lon"), console.locator("#lat")
    note, problem = console.locator("#point-note"), console.locator("#point-error")
    await console.locator("#crs").select_option("wgs84")

    await lon.fill("114°09'40.32\"E")
    await lat.fill("北纬22度50分56.4秒")
    await expect(problem).to_be_hidden()
    await expect(note).to_contain_text("经度 114°09'40.32\"E 读作 114.161200")
    await expect(note).to_contain_text("纬度 北纬22度50分56.4秒 读作 22.849000")
    await expect(console.locator("#coverage")).to_contain_text(post["name"])
    await lat.fill("22°50.94′")
    await expect(note).to_contain_text("纬度 22°50.94′ 读作 22.849000")
    await console.get_by_role("button", name="English").click()
    await expect(note).to_contain_text("Latitude 22°50.94′ read as 22.849000")
    await console.get_by_role("button", name="中文").click()

    # Minutes or seconds of 60 and more are a typo, not a position.
    await lat.fill("22°50'60\"N")
    await expect(problem).to_contain_text("纬度不是完整的数字")

    # The pair in one text, latitude first as GPS apps write it, in either field.
    await paste(console, "#lon", "22°50'56.4\"N 114°09'40.32\"E")
    await expect(lon).to_have_value("114.1612")
    await expect(lat).to_have_value("22.849")
    await expect(note).to_contain_text("先后按原文注明的 N/E 或经度/纬度")

    # A latitude marked N pasted into the longitude field goes to the empty latitude field.
    await lat.fill("")
    await paste(console, "#lon", "22°50'56.4\"N")
    await expect(lat).to_have_value("22°50'56.4\"N")
    await expect(lon).to_have_value("")
    await expect(note).to_contain_text("22°50'56.4\"N 是纬度，已从经度栏移到纬度栏")
    # With the latitude field taken, it stays and is refused, never sent as a longitude.
    await lon.fill("N22.849")
    await expect(problem).to_contain_text("经度栏里是纬度（N22.849）：请填到纬度栏")
    await console.get_by_role("button", name="派警").click()
    await expect(console.locator("#report-result")).to_be_empty()
    # Each field holding the other's value by its mark: the same swap button puts them right.
    await lat.fill("E114.1612")
    await expect(problem).to_contain_text("纬度栏里是经度（E114.1612）：请填到经度栏")
    await console.get_by_role("button", name="对调经纬度").click()
    await expect(lon).to_have_value("E114.1612")
    await expect(lat).to_have_value("N22.849")
    await expect(problem).to_be_hidden()
    await expect(console.locator("#coverage")).to_contain_text(post["name"])


async def test_a_swapped_or_unordered_pair_is_never_sent_by_a_guess(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """A latitude of China typed in the longitude field and a longitude in the latitude field
    was refused only as a latitude past 90 (or, for the far west, sent to the Arctic); it is
    named as swapped, nothing is sent, and one button swaps them. A pair that does not show
    which is which is left as it is, with the reason, and is not split by a guess."""
    post = await world.team("fixed_post", *SCENE)
    console = await open_console(browser, contexts, world)
    lon, lat = console.locator("#lon"), console.locator("#lat")
    note, problem = console.locator("#point-note"), console.locator("#point-error")
    swap = console.get_by_role("button", name="对调经纬度")
    await console.locator("#crs").select_option("wgs84")

    await lon.fill("22.849")
    await lat.fill("114.1612")
    await expect(problem).to_contain_text(
        "经度和纬度似乎填反了：经度栏 22.849 像纬度，纬度栏 114.1612 像经度"
    )
    await expect(lon).to_have_attribute("aria-invalid", "true")
    await expect(lat).to_have_attribute("aria-invalid", "true")
    await expect(console.locator("#coverage")).to_be_empty()
    await console.get_by_role("button", name="派警").click()
    await expect(console.locator("#report-result")).to_be_empty()
    # Kashgar's latitude 39.47 and longitude 75.99 swapped: a legal point in the Barents Sea.
    await lon.fill("39.47")
    await lat.fill("75.99")
    await expect(problem).to_contain_text("似乎填反了")
    await console.get_by_role("button", name="English").click()
    await expect(problem).to_contain_text("Longitude and latitude look swapped")
    await expect(console.get_by_role("button", name="Swap longitude and latitude")).to_be_visible()
    await console.get_by_role("button", name="中文").click()
    await lon.fill("22.849")
    await lat.fill("114.1612")
    await swap.click()
    await expect(lon).to_have_value("114.1612")
    await expect(lat).to_have_value("22.849")
    await expect(note).to_contain_text("已对调经度和纬度")
    await expect(problem).to_be_hidden()
    await expect(swap).to_be_hidden()
    await expect(console.locator("#coverage")).to_contain_text(post["name"])

    # Two numbers neither of which is a longitude of China: which is which is not guessed.
    await lat.fill("")
    await paste(console, "#lon", "48.85, 2.35")
    await expect(lon).to_have_value("48.85, 2.35")
    await expect(lat).to_have_value("")
    await expect(problem).to_contain_text("粘贴的两个数 48.85 和 2.35 看不出哪个是经度、哪个是纬度")
    await lon.press("Tab")
    await expect(lon).to_have_value("48.85, 2.35")
    await console.get_by_role("button", name="English").click()
    await expect(problem).to_contain_text("do not show which is the longitude")
    await console.get_by_role("button", name="中文").click()
    await console.get_by_role("button", name="派警").click()
    await expect(console.locator("#report-result")).to_be_empty()
    assert await open_incidents(world) == []


async def test_a_map_link_pasted_into_either_field_fills_both_and_sets_its_system(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """A share link from AMap, Baidu, Tencent, WeChat, OpenStreetMap, Google or a geo: URI was
    refused as not a number, and the operator had to dig the two numbers out of it, in the
    right order, and guess the system; pasted into either field it now fills both, sets the
    system its map uses (GCJ-02 for AMap, Tencent and Google in mainland China, BD-09 for Baidu
    unless coord_type says otherwise, WGS84 for OpenStreetMap and geo:) and says what it read."""
    gcj02 = to_wgs84(*SCENE, CRS.GCJ02)
    post = await world.team("fixed_post", *gcj02)
    console = await open_console(browser, contexts, world)
    lon, lat, crs = console.locator("#lon"), console.locator("#lat"), console.locator("#crs")
    note, problem = console.locator("#point-note"), console.locator("#point-error")
    coverage = console.locator("#coverage")
    for field, link, system, said in [
        (
            "#lat",
            "https://uri.amap.com/marker?position=114.1612,22.849&name=现场",
            "gcj02",
            "已从高德链接读取（GCJ-02）",
        ),
        (
            "#lon",
            "【高德地图】现场 https://www.amap.com/?p=B0FFFAB6J2,22.849,114.1612,现场,某路1号",
            "gcj02",
            "已从高德链接读取（GCJ-02）",
        ),
        (
            "#lon",
            "https://ditu.amap.com/regeo?lng=114.1612&lat=22.849&name=现场",
            "gcj02",
            "已从高德链接读取（GCJ-02）",
        ),
        (
            "#lon",
            "https://apis.map.qq.com/uri/v1/marker?marker=coord:22.849,114.1612;title:现场;addr:某路&referer=x",
            "gcj02",
            "已从腾讯链接读取（GCJ-02）",
        ),
        (
            "#lat",
            '<msg><location x="22.849" y="114.1612" scale="16" poiname="现场" /></msg>',
            "gcj02",
            "已从微信位置消息读取（GCJ-02）",
        ),
        (
            "#lon",
            "https://api.map.baidu.com/marker?location=22.849,114.1612&title=现场&coord_type=gcj02&output=html",
            "gcj02",
            "已从百度链接读取（GCJ-02）",
        ),
        (
            "#lat",
            "https://www.openstreetmap.org/?mlat=22.849&mlon=114.1612#map=17/22.849/114.1612",
            "wgs84",
            "已从OpenStreetMap 链接读取（WGS84）",
        ),
        (
            "#lon",
            "https://maps.google.com/?q=22.849,114.1612",
            "gcj02",
            "已从谷歌地图链接读取（GCJ-02）",
        ),
        ("#lat", "geo:22.849,114.1612?z=17", "wgs84", "已从geo: 链接读取（WGS84）"),
        (
            "#lon",
            "https://api.map.baidu.com/marker?location=22.849,114.1612&title=现场&content=某路&output=html",
            "bd09",
            "已从百度链接读取（BD-09）",
        ),
    ]:
        await lon.fill("")
        await lat.fill("")
        await crs.select_option("wgs84" if system != "wgs84" else "gcj02")
        await paste(console, field, link)
        await expect(lon).to_have_value("114.1612")
        await expect(lat).to_have_value("22.849")
        await expect(crs).to_have_value(system)
        await expect(note).to_contain_text(said + "：经度 114.1612，纬度 22.849")
        await expect(problem).to_be_hidden()
        if system == "gcj02":
            await expect(coverage).to_contain_text(post["name"])

    await console.get_by_role("button", name="English").click()
    await expect(note).to_contain_text(
        "Read from a Baidu link (BD-09): longitude 114.1612, latitude 22.849"
    )
    await console.get_by_role("button", name="中文").click()
    incident_id = await sent_report(console)
    stored = await world.incident(await world.operator(), incident_id)
    bd09 = to_wgs84(*SCENE, CRS.BD09)
    assert stored["location"]["lon"] == pytest.approx(bd09[0], abs=1e-6)
    assert stored["location"]["lat"] == pytest.approx(bd09[1], abs=1e-6)

    # Typed into a field, the link is read when the operator leaves it; a system then chosen
    # by hand is the operator's, and what the link said of it goes.
    await lon.fill("")
    await lat.fill("")
    await lon.fill("https://uri.amap.com/marker?position=114.1612,22.849")
    await expect(problem).to_contain_text("经度栏里是地图链接：离开此栏（按 Tab）即读出坐标")
    await lon.press("Tab")
    await expect(lon).to_have_value("114.1612")
    await expect(crs).to_have_value("gcj02")
    await expect(note).to_contain_text("已从高德链接读取（GCJ-02）")
    await crs.select_option("wgs84")
    await expect(note).to_be_hidden()


async def test_a_google_link_in_mainland_china_is_read_as_gcj02_as_the_server_bounds_china(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """Google's road map and places in mainland China are in GCJ-02 whichever of its domains
    serves them, yet a google.com link was read as WGS84 and the incident sent some 600 m from
    the place near the Shenzhen border. A Google link whose point lies in the server's bounds
    of China (in_china) is now read as GCJ-02, and the form says why and to choose WGS84 for a
    point outside mainland China (Hong Kong lies inside those bounds); elsewhere Google's points
    stay WGS84, and a phone's geo: URI is WGS84 wherever it is."""
    await world.team("fixed_post", *SCENE)
    console = await open_console(browser, contexts, world)
    lon, lat, crs = console.locator("#lon"), console.locator("#lat"), console.locator("#crs")
    note, problem = console.locator("#point-note"), console.locator("#point-error")
    mainland = "谷歌地图在中国大陆的坐标为 GCJ-02"
    for link, (lon_text, lat_text) in [
        ("https://www.google.com/maps/search/22.849,+114.1612", ("114.1612", "22.849")),
        ("https://www.google.com.hk/maps?q=22.849,114.1612", ("114.1612", "22.849")),
        ("https://ditu.google.cn/maps?ll=22.849,114.1612", ("114.1612", "22.849")),
        (
            "https://www.google.com/maps/place/x/data=!4m2!3m1!1s0x0:0x0!3d22.849!4d114.1612",
            ("114.1612", "22.849"),
        ),
        # Edges of the server's bounds, and Tokyo, Paris and google.cn's own point outside them.
        ("https://www.google.com/maps?q=35.0,137.8347", ("137.8347", "35")),
        ("https://www.google.com/maps?q=35.0,137.8348", ("137.8348", "35")),
        ("https://www.google.com/maps?q=55.8272,120.0", ("120", "55.8272")),
        ("https://www.google.com/maps?q=35.6812,139.7671", ("139.7671", "35.6812")),
        ("https://ditu.google.cn/maps?q=48.8584,2.2945", ("2.2945", "48.8584")),
    ]:
        inside = in_china(float(lon_text), float(lat_text))
        system = "gcj02" if inside else "wgs84"
        await crs.select_option("wgs84" if inside else "gcj02")
        await paste(console, "#lon", link)
        await expect(lon).to_have_value(lon_text)
        await expect(lat).to_have_value(lat_text)
        await expect(crs).to_have_value(system)
        await expect(problem).to_be_hidden()
        if inside:
            await expect(note).to_contain_text("已从谷歌地图链接读取（GCJ-02）")
            await expect(note).to_contain_text(mainland)
            await expect(note).to_contain_text("点位若不在中国大陆，请改选 WGS84")
        else:
            await expect(note).to_contain_text("已从谷歌地图链接读取（WGS84）")
            await expect(note).not_to_contain_text(mainland)

    await paste(console, "#lat", "geo:22.849,114.1612?z=17")
    await expect(crs).to_have_value("wgs84")
    await expect(note).to_contain_text("已从geo: 链接读取（WGS84）")
    await expect(note).not_to_contain_text(mainland)

    await paste(console, "#lon", "https://maps.google.com/?q=22.849,114.1612")
    await expect(crs).to_have_value("gcj02")
    await console.get_by_role("button", name="English").click()
    await expect(note).to_contain_text("Read from a Google Maps link (GCJ-02)")
    await expect(note).to_contain_text("Google Maps gives points in mainland China in GCJ-02")
    await expect(note).to_contain_text("for a point outside mainland China, choose WGS84")
    await console.get_by_role("button", name="中文").click()
    incident_id = await sent_report(console)
    stored = await world.incident(await world.operator(), incident_id)
    gcj02 = to_wgs84(*SCENE, CRS.GCJ02)
    assert stored["location"]["lon"] == pytest.approx(gcj02[0], abs=1e-6)
    assert stored["location"]["lat"] == pytest.approx(gcj02[1], abs=1e-6)


async def test_a_link_without_a_point_to_trust_is_refused_and_nothing_is_guessed(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """A short link (read only by asking its map), a search, a link in Baidu's Mercator metres,
    a place's link that gives only the map's centre beside its panel and a link of a map whose
    order and system are not known fill nothing: the text stays, the form says why, the system
    is left as it was, and nothing is sent."""
    await world.team("fixed_post", *SCENE)
    console = await open_console(browser, contexts, world)
    lon, lat, crs = console.locator("#lon"), console.locator("#lat"), console.locator("#crs")
    problem = console.locator("#point-error")
    await crs.select_option("wgs84")
    for text, said in [
        (
            "【高德地图】我在这里 https://surl.amap.com/1a2B3c",
            "经度栏里是短链接，本页无法打开它读出坐标",
        ),
        ("https://www.amap.com/search?query=青溪小学", "经度栏里的高德链接没有可读的地点坐标"),
        (
            "https://api.map.baidu.com/marker?location=2556789.5,12706789.1&coord_type=bd09mc",
            "经度栏里的百度链接用的坐标系（bd09mc）不能读",
        ),
        (
            "https://www.google.com/maps/place/Qingxi/@22.849,114.1612,17z",
            "经度栏里的谷歌地图链接没有可读的地点坐标",
        ),
        (
            "https://maps.example.com/?lat=22.849&lon=114.1612",
            "经度栏里的链接不是能读的地图链接",
        ),
    ]:
        await lat.fill("")
        await paste(console, "#lon", text)
        await expect(problem).to_contain_text(said)
        await expect(lon).to_have_value(text)
        await expect(lat).to_have_value("")
        await expect(crs).to_have_value("wgs84")
        await lon.press("Tab")
        await expect(lon).to_have_value(text)
        await console.get_by_role("button", name="派警").click()
        await expect(console.locator("#report-result")).to_be_empty()
    await console.get_by_role("button", name="English").click()
    await expect(problem).to_contain_text(
        "The link in Longitude is not a map link that can be read"
    )
    assert await open_incidents(world) == []


async def test_whole_numbers_either_side_of_a_comma_are_read_by_the_ranges_of_china_and_said(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """114,22 was read silently as the longitude 114.22; a comma between two numbers of a
    pasted pair is two values in Chinese usage, so a longitude and a latitude of China either
    side of it fill both fields, the form saying so and what to type for the decimal. Where the
    ranges of China show no pair (114,1612) the comma is the decimal point, and the form says
    that too."""
    await world.team("fixed_post", *SCENE)
    console = await open_console(browser, contexts, world)
    lon, lat = console.locator("#lon"), console.locator("#lat")
    note = console.locator("#point-note")
    await console.locator("#crs").select_option("wgs84")

    await paste(console, "#lon", "114,22")
    await expect(lon).to_have_value("114")
    await expect(lat).to_have_value("22")
    await expect(note).to_contain_text("已将一对坐标分开填入：经度 114，纬度 22")
    await expect(note).to_contain_text(
        "原文 114,22 的逗号两边读作两个数；若是小数 114.22，请改用小数点"
    )
    await lon.fill("")
    await lat.fill("")
    await paste(console, "#lat", "22,114")
    await expect(lon).to_have_value("114")
    await expect(lat).to_have_value("22")
    await expect(note).to_contain_text("原文纬度在前")

    await lon.fill("114,1612")
    await lat.fill("22.849")
    await expect(console.locator("#point-error")).to_be_hidden()
    await expect(note).to_contain_text("经度 114,1612 读作 114.161200（逗号当作小数点）")
    await console.get_by_role("button", name="English").click()
    await expect(note).to_contain_text(
        "Longitude 114,1612 read as 114.161200 (the comma taken as the decimal point)"
    )
