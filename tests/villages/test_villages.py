"""Villages: GeoJSON import, every incident tagged with its village, coverage with areas."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import pyproj
import shapely
from shapely.geometry import Polygon, shape

from tests.conftest import server_settings, two_servers_on
from tests.rosters.test_duty_freshness import serving, starting_while
from tests.support import QINGXI, World

LON, LAT = QINGXI
TO_UTM = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:32650", always_xy=True).transform


def square(west: float, south: float, size_deg: float) -> dict[str, Any]:
    ring = [
        [west, south],
        [west + size_deg, south],
        [west + size_deg, south + size_deg],
        [west, south + size_deg],
        [west, south],
    ]
    return {"type": "Polygon", "coordinates": [ring]}


def feature(name: str, geometry: dict[str, Any]) -> dict[str, Any]:
    return {"type": "Feature", "properties": {"name": name}, "geometry": geometry}


def collection(*features: dict[str, Any]) -> bytes:
    return json.dumps({"type": "FeatureCollection", "features": list(features)}).encode()


def utm_area(geometry: dict[str, Any]) -> float:
    """An independent check: the planar area in UTM 50N (scale error near Qingxi < 0.15 %)."""
    area: float = shapely.transform(shape(geometry), TO_UTM, interleaved=False).area
    return area


# Two villages side by side, 0.01 degree (about 1 km) squares; the town centre is in the first.
WEST, SOUTH = LON - 0.005, LAT - 0.005
SHANGYUAN = square(WEST, SOUTH, 0.01)
XIAXIAN = square(WEST + 0.01, SOUTH, 0.01)


async def import_villages(world: World, body: bytes, **params: str) -> Any:
    admin = await world.admin()
    return await world.http.post(
        "/api/v1/villages/import",
        content=body,
        params=params,
        headers={**admin.headers, "content-type": "application/geo+json"},
    )


async def test_import_tags_incidents_and_reimport_retags_them(world: World) -> None:
    operator = await world.operator()
    before = await world.report(operator, LON + 0.01, LAT)  # in 下仙, reported before import
    assert before["village_id"] is None

    reply = await import_villages(
        world, collection(feature("上元村", SHANGYUAN), feature("下仙社区", XIAXIAN))
    )
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"created": ["上元村", "下仙社区"], "updated": [], "retagged": 1}
    villages = {
        v["name"]: v
        for v in (await world.http.get("/api/v1/villages", headers=operator.headers)).json()
    }
    for name, geometry in (("上元村", SHANGYUAN), ("下仙社区", XIAXIAN)):
        expected = utm_area(geometry)
        assert abs(villages[name]["area_m2"] - expected) / expected < 0.0015
    shangyuan, xiaxian = villages["上元村"]["id"], villages["下仙社区"]["id"]

    assert (await world.incident(operator, before["id"]))["village_id"] == xiaxian
    inside = await world.report(operator)
    assert inside["village_id"] == shangyuan
    outside = await world.report(operator, LON, LAT + 0.02)
    assert outside["village_id"] is None
    # On the shared border both villages cover the point; the smaller one (here equal areas:
    # then the first by name, 上 U+4E0A before 下 U+4E0B) takes it, so the answer is one
    # village, always the same: in a process that reads the villages afresh too.
    border = await world.report(operator, WEST + 0.01, LAT)
    assert border["village_id"] == shangyuan
    await world.runtime.villages.reload()
    assert (await world.report(operator, WEST + 0.01, LAT))["village_id"] == shangyuan

    # 上元村 shrinks to its western half: the town centre falls out of every village.
    half = square(WEST, SOUTH, 0.004)
    reply = await import_villages(world, collection(feature("上元村", half)))
    assert reply.json()["updated"] == ["上元村"]
    assert (await world.incident(operator, inside["id"]))["village_id"] is None
    # New reports follow the new boundary at once.
    assert (await world.report(operator))["village_id"] is None
    assert (await world.report(operator, WEST + 0.002, LAT - 0.002))["village_id"] == shangyuan

    reply = await world.http.delete(
        f"/api/v1/villages/{xiaxian}", headers=(await world.admin()).headers
    )
    assert reply.status_code == 204
    assert (await world.incident(operator, before["id"]))["village_id"] is None
    assert (await world.report(operator, LON + 0.01, LAT))["village_id"] is None


async def test_bad_geojson_is_refused_whole(world: World) -> None:
    bad = collection(
        feature("上元村", SHANGYUAN),
        feature("", XIAXIAN),
        feature("坏村", {"type": "Polygon", "coordinates": [[[114.1, 22.8], [114.2, 22.8]]]}),
        feature("上元村", XIAXIAN),
        {"type": "Point"},
    )
    reply = await import_villages(world, bad)
    assert reply.status_code == 422
    body = reply.json()
    assert body["error"] == "file_rejected"
    fields = [p["field"] for p in body["problems"]]
    assert fields == [
        "features[1].properties.name",
        "features[2].geometry",
        "features[3].properties.name",
        "features[4]",
    ]
    assert "repeats features[0]" in body["problems"][2]["message"]
    listed = await world.http.get("/api/v1/villages", headers=(await world.admin()).headers)
    assert listed.json() == [], "nothing of a refused file is written"

    for body_bytes in (b"not json", b'{"type": "Feature"}', b"\x00\x01", json.dumps([]).encode()):
        reply = await import_villages(world, body_bytes)
        assert reply.status_code == 422, reply.text

    world.runtime.settings.max_upload_bytes = 100
    reply = await import_villages(world, collection(feature("上元村", SHANGYUAN)))
    assert reply.status_code == 413

    operator = await world.operator()
    reply = await world.http.post(
        "/api/v1/villages/import", content=collection(), headers=operator.headers
    )
    assert reply.status_code == 403


def assert_corners_kept(ring: list[list[float]], corners: list[list[float]]) -> None:
    """Each corner, in order, within 1e-6 degrees: edges drawn in GCJ-02 come back cut into
    pieces (every 0.001 degrees) so that they stay where they were drawn."""
    near = [
        corner
        for lon, lat in ring
        for corner in corners[:-1]
        if abs(lon - corner[0]) < 1e-6 and abs(lat - corner[1]) < 1e-6
    ]
    assert near == [*corners[:-1], corners[0]]


async def test_gcj02_boundaries_are_stored_in_wgs84(world: World) -> None:
    from geo.crs import CRS, from_wgs84

    shifted = [list(from_wgs84(x, y, CRS.GCJ02)) for x, y in SHANGYUAN["coordinates"][0]]
    reply = await import_villages(
        world,
        collection(feature("上元村", {"type": "Polygon", "coordinates": [shifted]})),
        crs="gcj02",
    )
    assert reply.status_code == 200, reply.text
    stored = (
        await world.http.get("/api/v1/villages", headers=(await world.admin()).headers)
    ).json()
    corners = stored[0]["boundary"]["coordinates"][0]
    assert_corners_kept(corners, SHANGYUAN["coordinates"][0])


async def test_coverage_of_a_village_and_of_the_town(world: World) -> None:
    await import_villages(
        world, collection(feature("上元村", SHANGYUAN), feature("下仙社区", XIAXIAN))
    )
    await world.team("fixed_post")  # 100 m circle at the town centre, inside 上元村
    await world.team("fixed_post", LON + 0.5, LAT)  # far away: counts nowhere
    await world.team("patrol", radius_m=3000)
    auditor = await world.account("auditor")
    villages = (await world.http.get("/api/v1/villages", headers=auditor.headers)).json()
    shangyuan = next(v for v in villages if v["name"] == "上元村")

    reply = await world.http.get(
        "/api/v1/coverage",
        params={"tier": 1, "village_id": shangyuan["id"]},
        headers=auditor.headers,
    )
    assert reply.status_code == 200, reply.text
    got = reply.json()
    boundary = utm_area(SHANGYUAN)
    # A 100 m geodesic circle: pi r^2 (the ellipsoid changes that by far less than 1 m^2 at this
    # size); the inscribed polygon loses at most perimeter x 0.01 m, about 6.3 m^2.
    circle = math.pi * 100**2
    assert got["zones"] == 1
    assert circle - 7 <= got["covered_area_m2"] <= circle
    assert abs(got["boundary_area_m2"] - boundary) / boundary < 0.0015
    assert got["uncovered_area_m2"] == round(got["boundary_area_m2"] - got["covered_area_m2"], 1)
    assert abs(got["covered_share"] - circle / got["boundary_area_m2"]) < 1e-4
    covered, uncovered = got["geojson"]["features"]
    assert covered["properties"]["part"] == "covered"
    assert uncovered["properties"]["part"] == "uncovered"
    hole = shape(uncovered["geometry"])
    assert isinstance(hole, Polygon) and len(hole.interiors) == 1, "the circle is a hole"
    assert not hole.contains(shape({"type": "Point", "coordinates": [LON, LAT]}))

    town = (await world.http.get("/api/v1/coverage?tier=1", headers=auditor.headers)).json()
    assert town["village_id"] is None and town["boundary_name"] == "全镇"
    assert abs(town["boundary_area_m2"] - (boundary + utm_area(XIAXIAN))) / boundary < 0.003
    assert town["covered_area_m2"] == got["covered_area_m2"]

    patrol = (await world.http.get("/api/v1/coverage?tier=2", headers=auditor.headers)).json()
    assert patrol["covered_share"] == 1.0 and patrol["uncovered_area_m2"] == 0

    leader = await world.leader(await world.team("fixed_post", LON + 0.3, LAT))
    assert (await world.http.get("/api/v1/coverage", headers=leader.headers)).status_code == 403


async def test_coverage_needs_a_boundary(world: World) -> None:
    operator = await world.operator()
    reply = await world.http.get("/api/v1/coverage?tier=1", headers=operator.headers)
    assert reply.status_code == 404
    assert "import" in reply.json()["detail"]
    reply = await world.http.get("/api/v1/coverage?tier=4", headers=operator.headers)
    assert reply.status_code == 422


async def test_a_boundary_wider_than_a_village_or_without_area_is_refused(world: World) -> None:
    world_square = {
        "type": "Polygon",
        "coordinates": [[[-180, -85], [180, -85], [180, 85], [-180, 85], [-180, -85]]],
    }
    county = square(WEST, SOUTH, 2.5)
    reply = await import_villages(
        world,
        collection(
            feature("上元村", SHANGYUAN), feature("全世界", world_square), feature("全县", county)
        ),
    )
    assert reply.status_code == 422, reply.text
    problems = reply.json()["problems"]
    assert [p["field"] for p in problems] == ["features[1].geometry", "features[2].geometry"]
    assert all("spans at most" in p["message"] for p in problems)
    listed = await world.http.get("/api/v1/villages", headers=(await world.admin()).headers)
    assert listed.json() == []


async def test_a_thousand_villages_import_in_one_file(world: World) -> None:
    operator = await world.operator()
    incident = await world.report(operator)
    # A 40 x 25 grid of 100 m squares around the town centre, the centre's square among them.
    west, south = LON - 0.02, LAT - 0.0125
    grid = [
        feature(f"村{i}-{j}", square(west + i * 0.001, south + j * 0.001, 0.001))
        for i in range(40)
        for j in range(25)
    ]
    reply = await import_villages(world, collection(*grid))
    assert reply.status_code == 200, reply.text
    assert len(reply.json()["created"]) == 1000
    assert reply.json()["retagged"] == 1
    tagged = await world.incident(operator, incident["id"])
    assert tagged["village_id"] is not None


async def test_a_crs_the_file_states_is_read_or_refused_never_ignored(world: World) -> None:
    from geo.crs import CRS, from_wgs84

    shifted = [list(from_wgs84(x, y, CRS.GCJ02)) for x, y in SHANGYUAN["coordinates"][0]]
    own = {"type": "Polygon", "coordinates": [shifted], "crs": "gcj02"}
    mercator = {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::3857"}}
    refused = json.loads(collection(feature("上元村", own)))
    refused["crs"] = mercator
    reply = await import_villages(world, json.dumps(refused).encode())
    assert reply.status_code == 422, reply.text
    assert [p["field"] for p in reply.json()["problems"]] == ["crs"]
    named = json.loads(collection(feature("下仙村", XIAXIAN)))
    named["crs"] = {"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}}
    assert (await import_villages(world, json.dumps(named).encode())).status_code == 200
    reply = await import_villages(world, collection(feature("上元村", own)))
    assert reply.status_code == 200, reply.text
    stored = (
        await world.http.get("/api/v1/villages", headers=(await world.admin()).headers)
    ).json()
    corners = next(v for v in stored if v["name"] == "上元村")["boundary"]["coordinates"][0]
    assert_corners_kept(corners, SHANGYUAN["coordinates"][0])


async def villages_listed(world: World) -> list[dict[str, Any]]:
    reply = await world.http.get("/api/v1/villages", headers=(await world.admin()).headers)
    listed: list[dict[str, Any]] = reply.json()
    return listed


async def test_a_file_json_cannot_hold_is_refused_naming_the_body(world: World) -> None:
    digits = json.dumps(
        {"type": "FeatureCollection", "features": [feature("上元村", square(12345.0, 22.8, 0.01))]}
    ).encode()
    for body, reason in [
        (b"[" * 100_000, "nested too deeply"),
        # More digits than Python turns into a number (4300).
        (digits.replace(b"12345.0", b"9" * 5000, 1), "a number has more than 4300 digits"),
    ]:
        reply = await import_villages(world, body)
        assert reply.status_code == 422, reply.text
        assert reply.json()["field"] == "body"
        assert reply.json()["detail"] == f"body: not a JSON document ({reason})"
    assert await villages_listed(world) == []


async def test_a_coordinate_no_float_can_hold_is_named(world: World) -> None:
    ring = [[114.15, 22.84], [10**400, 22.84], [114.16, 22.85], [114.15, 22.84]]
    beyond = {"type": "Polygon", "coordinates": [ring]}
    reply = await import_villages(
        world, collection(feature("上元村", SHANGYUAN), feature("下仙村", beyond))
    )
    assert reply.status_code == 422, reply.text
    assert reply.json()["problems"] == [
        {
            "row": None,
            "field": "features[1].geometry",
            "message": "coordinates[0][1]: lon must be within [-180, 180]",
        }
    ]
    assert await villages_listed(world) == []


async def test_names_no_database_can_store_are_refused_naming_them(world: World) -> None:
    # JSON escapes can spell half a surrogate pair (no character at all) and NUL (which
    # PostgreSQL refuses in text); an upload is not checked for NUL on its way in.
    reply = await import_villages(
        world,
        collection(
            feature("上元村", SHANGYUAN),
            feature("sur\ud800", XIAXIAN),
            feature("nul\u0000x", square(WEST + 0.02, SOUTH, 0.01)),
        ),
    )
    assert reply.status_code == 422, reply.text
    problems = reply.json()["problems"]
    assert [p["field"] for p in problems] == [
        "features[1].properties.name",
        "features[2].properties.name",
    ]
    assert "surrogate" in problems[0]["message"] and "NUL" in problems[1]["message"]
    assert await villages_listed(world) == []


async def test_the_same_file_imported_twice_at_once_creates_its_villages_once(
    world: World,
) -> None:
    """Imports take turns: each after the first finds the villages the first created and
    replaces their boundaries with the same ones."""
    names = ["上元村", "下仙社区", "中岭村"]
    file = collection(
        *(feature(name, square(WEST + 0.01 * i, SOUTH, 0.01)) for i, name in enumerate(names))
    )
    replies = await asyncio.gather(*(import_villages(world, file) for _ in range(8)))
    assert [r.status_code for r in replies] == [200] * 8, [r.text for r in replies]
    answers = [r.json() for r in replies]
    assert sorted(name for a in answers for name in a["created"]) == sorted(names)
    assert all(sorted(a["created"] + a["updated"]) == sorted(names) for a in answers)
    assert sorted(v["name"] for v in await villages_listed(world)) == sorted(names)


async def test_quick_reimports_leave_another_process_with_the_last_one(
    postgres_only: str,
) -> None:
    """The other process handles the announcements of quick imports side by side; however
    they interleave, the villages it ends up with are the last import's."""
    async with two_servers_on(server_settings(postgres_only)) as (a, b):
        centres = [(LON + 0.02 * n, LAT) for n in range(4)]
        for lon, lat in centres:
            body = collection(feature("上元村", square(lon - 0.005, lat - 0.005, 0.01)))
            reply = await import_villages(a, body)
            assert reply.status_code == 200, reply.text
        (village,) = await villages_listed(a)
        seen = b.runtime.villages
        for _ in range(300):
            if seen.village_at(*centres[-1]) == village["id"]:
                break
            await asyncio.sleep(0.01)
        assert seen.village_at(*centres[-1]) == village["id"]
        assert [seen.village_at(*c) for c in centres[:-1]] == [None, None, None]


async def test_villages_imported_while_another_process_starts_tag_its_reports(
    postgres_only: str,
) -> None:
    """The process loaded its villages as it started and listened only after: an import in
    between was never heard of, and its reports went untagged until some later change."""
    settings = server_settings(postgres_only)
    async with serving(settings) as a:
        operator = await a.operator()

        async def import_them() -> None:
            reply = await import_villages(a, collection(feature("上元村", SHANGYUAN)))
            assert reply.status_code == 200, reply.text

        async with starting_while(a, settings, "villages", import_them) as b:
            (village,) = await villages_listed(a)
            assert (await b.report(operator))["village_id"] == village["id"]


async def test_a_file_over_the_upload_cap_is_413_naming_the_body(world: World) -> None:
    body = collection(feature("银湖村", square(114.1, 22.9, 0.01)))
    world.runtime.settings.max_upload_bytes = len(body) - 1
    reply = await import_villages(world, body)
    assert reply.status_code == 413, reply.text
    assert reply.json()["error"] == "too_large" and reply.json()["field"] == "body"
    assert await villages_listed(world) == []


async def test_a_geojson_saved_in_gbk_is_read_with_its_chinese_names(world: World) -> None:
    """GIS tools on a Chinese Windows PC (an older QGIS or ArcGIS writing in the system's
    encoding) save GeoJSON in GBK: its names are read as they were written, as a roster CSV's
    are. Bytes that are neither UTF-8 nor GB18030 are still refused naming the body."""
    text = json.dumps(
        {"type": "FeatureCollection", "features": [feature("银湖村", square(114.1, 22.9, 0.01))]},
        ensure_ascii=False,
    )
    reply = await import_villages(world, text.encode("gbk"))
    assert reply.status_code == 200, reply.text
    assert [v["name"] for v in await villages_listed(world)] == ["银湖村"]
    reply = await import_villages(world, b'{"type": "FeatureCollection", "\xff\xff": 1}')
    assert reply.status_code == 422, reply.text
    assert reply.json()["field"] == "body"
    assert "neither UTF-8 nor GB18030" in reply.json()["detail"]


async def test_a_crs_asked_for_that_the_file_contradicts_is_refused_naming_where(
    world: World,
) -> None:
    """An admin who sends ?crs=gcj02 says the file's coordinates were copied from AMap; a file
    that states WGS 84 (QGIS writes CRS84 into every layer it saves) says otherwise. Either
    reading puts the villages some 600 m off if it is the wrong one, so neither is picked: the
    file is refused naming each place that contradicts the request, and nothing is written.
    A file that states what was asked, or states nothing, is read."""
    from geo.crs import CRS, from_wgs84

    shifted = [list(from_wgs84(x, y, CRS.GCJ02)) for x, y in SHANGYUAN["coordinates"][0]]
    crs84 = {"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}}
    qgis = json.loads(collection(feature("上元村", {"type": "Polygon", "coordinates": [shifted]})))
    qgis["crs"] = crs84
    reply = await import_villages(world, json.dumps(qgis).encode(), crs="gcj02")
    assert reply.status_code == 422, reply.text
    [problem] = reply.json()["problems"]
    assert problem["field"] == "crs"
    assert "wgs84" in problem["message"] and "?crs=gcj02" in problem["message"]
    own = {"type": "Polygon", "coordinates": [shifted], "crs": "bd09"}
    reply = await import_villages(world, collection(feature("上元村", own)), crs="gcj02")
    assert reply.status_code == 422, reply.text
    assert [p["field"] for p in reply.json()["problems"]] == ["features[0].geometry.crs"]
    assert await villages_listed(world) == []
    own["crs"] = "gcj02"
    reply = await import_villages(world, collection(feature("上元村", own)), crs="gcj02")
    assert reply.status_code == 200, reply.text
    corners = (await villages_listed(world))[0]["boundary"]["coordinates"][0]
    assert_corners_kept(corners, SHANGYUAN["coordinates"][0])


async def test_an_incident_is_said_with_its_villages_name_wherever_it_is_sent(
    world: World,
) -> None:
    """The console's card and the leader's phone label an incident by its village: the report's
    answer, the incident read back, the open list and the leader's alert carry its name (as
    the village is named now), null outside every village."""
    reply = await import_villages(world, collection(feature("上元村", SHANGYUAN)))
    assert reply.status_code == 200, reply.text
    operator = await world.operator()
    leader = await world.leader(await world.team("fixed_post", name="上元驻点队"))
    inside = await world.report(operator)
    assert inside["village_name"] == "上元村"
    outside = await world.report(operator, LON, LAT + 0.02)
    assert outside["village_name"] is None
    assert (await world.incident(operator, inside["id"]))["village_name"] == "上元村"
    listed = {i["id"]: i for i in await world.read("/api/v1/incidents", operator)}
    assert listed[inside["id"]]["village_name"] == "上元村"
    assert listed[outside["id"]]["village_name"] is None
    mine = {i["id"]: i for i in await world.read("/api/v1/incidents", leader)}
    assert mine[inside["id"]]["village_name"] == "上元村"

    # Imported again under its new name, the old one deleted: the incident is said by the new.
    await import_villages(world, collection(feature("上元社区", SHANGYUAN)))
    admin = await world.admin()
    old = next(
        v["id"]
        for v in (await world.http.get("/api/v1/villages", headers=admin.headers)).json()
        if v["name"] == "上元村"
    )
    assert (await world.http.delete(f"/api/v1/villages/{old}", headers=admin.headers)).is_success
    assert (await world.incident(operator, inside["id"]))["village_name"] == "上元社区"


async def test_a_file_in_cgcs2000_as_the_surveys_deliver_it_is_read_where_it_lies(
    world: World,
) -> None:
    """China's official boundaries (the land surveys' 村 boundaries) come in CGCS2000, which
    QGIS and GDAL write as EPSG:4490: centimetres from WGS 84, so read as it, not refused."""
    for name in ("urn:ogc:def:crs:EPSG::4490", "EPSG:4490"):
        document = json.loads(collection(feature("上元村", SHANGYUAN)))
        document["crs"] = {"type": "name", "properties": {"name": name}}
        reply = await import_villages(world, json.dumps(document).encode())
        assert reply.status_code == 200, reply.text
    stored = await villages_listed(world)
    assert stored[0]["boundary"]["coordinates"][0] == SHANGYUAN["coordinates"][0]
    # As with WGS 84's names: a request's ?crs= other than it is refused, naming the file's.
    reply = await import_villages(world, json.dumps(document).encode(), crs="gcj02")
    assert reply.status_code == 422, reply.text
    assert [p["field"] for p in reply.json()["problems"]] == ["crs"]


async def test_a_feature_without_a_name_is_told_where_the_name_is_read_from(world: World) -> None:
    """A land-survey export names its villages in a column of its own (XZQMC, 村名, …): the
    refusal says which properties a name is read from and which the feature has, so the
    admin knows which column to rename, rather than only that a name is wanted."""
    survey = {
        "type": "Feature",
        "properties": {"XZQMC": "上元村", "XZQDM": "441900113201"},
        "geometry": SHANGYUAN,
    }
    bare = {"type": "Feature", "properties": None, "geometry": XIAXIAN}
    numbered = {"type": "Feature", "properties": {"name": 12}, "geometry": XIAXIAN}
    reply = await import_villages(world, collection(survey, bare, numbered))
    assert reply.status_code == 422, reply.text
    problems = reply.json()["problems"]
    assert [p["field"] for p in problems] == [f"features[{i}].properties.name" for i in range(3)]
    assert problems[0]["message"] == (
        "no name: a village's name is read from properties.name (or 名称, NAME, Name); this "
        "feature's properties are XZQMC, XZQDM: rename the one that holds the name to name"
    )
    assert problems[1]["message"] == (
        "no name: a village's name is read from properties.name (or 名称, NAME, Name); this "
        "feature has no properties"
    )
    assert problems[2]["message"] == "the name must be text, not 12"
    assert await villages_listed(world) == []


async def test_the_village_names_come_without_their_boundaries(world: World) -> None:
    """A filter or a label needs a village's id and name: its boundary, megabytes for a city's
    villages, is left out."""
    reply = await import_villages(
        world, collection(feature("下仙社区", XIAXIAN), feature("上元村", SHANGYUAN))
    )
    assert reply.status_code == 200, reply.text
    leader = await world.leader(await world.team("fixed_post"))
    reply = await world.http.get("/api/v1/villages/names", headers=leader.headers)
    assert reply.status_code == 200, reply.text
    full = {v["name"]: v["id"] for v in await villages_listed(world)}
    # In the order of the full list: by name, 上 (U+4E0A) before 下 (U+4E0B).
    assert reply.json() == [
        {"id": full["上元村"], "name": "上元村"},
        {"id": full["下仙社区"], "name": "下仙社区"},
    ]
