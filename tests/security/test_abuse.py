"""Abuse: capped bodies, bounded strings and zones, NUL refused, reports limited per user, and
one account's flood does not hold up another's alerts."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from tests.support import QINGXI, World


async def test_a_declared_body_over_the_cap_is_refused_before_it_is_read(world: World) -> None:
    admin = await world.admin()
    cap = world.runtime.settings.max_body_bytes
    body = json.dumps({"name": "x" * cap, "kind": "mobile"}).encode()
    reply = await world.http.post("/api/v1/teams", content=body, headers=admin.headers)
    assert reply.status_code == 413
    assert reply.json() == {
        "error": "too_large",
        "detail": f"the request body is larger than {cap} bytes",
        "field": "body",
    }


async def test_a_streamed_body_is_counted_as_it_arrives(world: World) -> None:
    admin = await world.admin()
    port = int(world.base_url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        "POST /api/v1/teams HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {admin.token}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    writer.write(head.encode())
    chunk = b"x" * 8192
    # No Content-Length: the cap is found by counting. The server may hang up mid-stream.
    with contextlib.suppress(ConnectionError):
        for _ in range(64):
            writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            await writer.drain()
    answer = await asyncio.wait_for(reader.read(4096), 10)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:100]
    assert b'"error": "too_large"' in answer
    # Under the cap, the same route answers as always.
    ok = await world.http.post("/api/v1/teams", json={"name": "x"}, headers=admin.headers)
    assert ok.status_code == 422


async def test_file_uploads_have_their_own_larger_cap(world: World) -> None:
    admin = await world.admin()
    big = b"x" * (world.runtime.settings.max_body_bytes * 2)
    reply = await world.http.post("/api/v1/villages/import", content=big, headers=admin.headers)
    # Not refused for its size: refused as what it is, not GeoJSON.
    assert reply.status_code == 422
    world.runtime.settings.max_upload_bytes = 1000
    reply = await world.http.post("/api/v1/villages/import", content=big, headers=admin.headers)
    assert reply.status_code == 413


async def test_text_with_nul_characters_is_refused_with_422(world: World) -> None:
    admin = await world.admin()
    team = await world.team()
    refused = [
        await world.http.post(
            "/api/v1/teams",
            content=b'{"name": "a\\u0000b", "kind": "mobile", "location": {"lon": 1, "lat": 1}}',
            headers={**admin.headers, "content-type": "application/json"},
        ),
        await world.http.get("/api/v1/teams/a%00b", headers=admin.headers),
        await world.http.get(
            "/api/v1/rosters/members", params={"group_name": "a\x00b"}, headers=admin.headers
        ),
        await world.http.post("/api/v1/auth/token", data={"username": "a\x00", "password": "p"}),
    ]
    for reply, field in zip(refused, ["name", "path", "group_name", "username"], strict=True):
        assert reply.status_code == 422, reply.text
        assert reply.json()["error"] == "invalid_input"
        assert reply.json()["field"] == field
        assert reply.json()["detail"].startswith(f"{field}: text must not contain NUL")
    zone = b'{"type": "Polygon", "coordinates": [], "n": ["", "a\\u0000"]}'
    nested = await world.http.post(
        "/api/v1/teams",
        content=b'{"name": "x", "zone": ' + zone + b"}",
        headers={**admin.headers, "content-type": "application/json"},
    )
    assert nested.status_code == 422 and nested.json()["field"] == "zone.n.1"
    # A backslash written out is no NUL.
    fine = await world.http.patch(
        f"/api/v1/teams/{team['id']}",
        content=b'{"name": "a\\\\u0000b"}',
        headers={**admin.headers, "content-type": "application/json"},
    )
    assert fine.status_code == 200 and fine.json()["name"] == "a\\u0000b"


def body_strings(schema: dict[str, Any]) -> list[str]:
    """Every string a request body can carry that has no length bound, by JSON pointer."""
    components = schema["components"]["schemas"]
    loose: list[str] = []
    seen: set[str] = set()

    def walk(node: Any, where: str) -> None:
        if not isinstance(node, dict):
            return
        ref = node.get("$ref")
        if ref is not None:
            name = ref.rsplit("/", 1)[-1]
            if name not in seen:
                seen.add(name)
                walk(components[name], name)
            return
        if node.get("type") == "string" and not (
            "maxLength" in node or "enum" in node or "const" in node or "format" in node
        ):
            if node.get("pattern", "").endswith("$"):
                return
            loose.append(where)
        for key in ("properties",):
            for prop, child in node.get(key, {}).items():
                walk(child, f"{where}.{prop}")
        for key in ("items", "additionalProperties"):
            walk(node.get(key), f"{where}[]")
        for key in ("anyOf", "oneOf", "allOf"):
            for child in node.get(key, []):
                walk(child, where)

    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {})
            for media in content.values():
                walk(media.get("schema"), f"{method.upper()} {path}")
    return sorted(set(loose))


async def test_every_string_in_a_request_body_is_bounded(world: World) -> None:
    schema = (await world.http.get("/openapi.json")).json()
    assert body_strings(schema) == []


async def test_long_strings_are_refused_naming_the_field(world: World) -> None:
    operator = await world.operator()
    reply = await world.http.post(
        "/api/v1/incidents",
        json={
            "location": {"lon": QINGXI[0], "lat": QINGXI[1]},
            "category": "fight",
            "description": "x" * 2001,
        },
        headers=operator.headers,
    )
    assert reply.status_code == 422
    assert reply.json()["fields"][0]["field"] == "description"


async def test_zones_are_bounded_in_vertices_and_bytes(world: World) -> None:
    admin = await world.admin()
    limit = world.runtime.settings.max_zone_vertices
    lon, lat = QINGXI
    ring = [[lon + 0.001 * (n % 7), lat + 0.000001 * n] for n in range(limit + 1)]
    ring.append(ring[0])
    body = {
        "name": "大区",
        "kind": "patrol",
        "location": {"lon": lon, "lat": lat},
        "zone": {"type": "Polygon", "coordinates": [ring]},
    }
    encoded = json.dumps(body).encode()
    cap = world.runtime.settings.max_body_bytes
    assert len(encoded) > cap  # the zone's vertices alone pass the body cap
    headers = {**admin.headers, "Content-Type": "application/json"}
    # Over the byte cap: 413, before the vertices are counted.
    reply = await world.http.post("/api/v1/teams", content=encoded, headers=headers)
    assert reply.status_code == 413
    assert reply.json() == {
        "error": "too_large",
        "detail": f"the request body is larger than {cap} bytes",
        "field": "body",
    }
    # With room for the bytes, the vertices are what is refused.
    world.runtime.settings.max_body_bytes = 10 * 1024 * 1024
    reply = await world.http.post("/api/v1/teams", content=encoded, headers=headers)
    assert reply.status_code == 422
    assert reply.json()["field"] == "zone" and str(limit) in reply.json()["detail"]


async def test_reports_are_limited_per_user_and_the_flood_starves_no_one(world: World) -> None:
    team = await world.team()
    leader = await world.leader(team)
    phone = await world.connect(leader)
    flooder = await world.operator()
    colleague = await world.operator()
    settings = world.runtime.settings
    body = {"location": {"lon": QINGXI[0], "lat": QINGXI[1]}, "category": "other"}

    async def report(by: Any) -> Any:
        return await world.http.post("/api/v1/incidents", json=body, headers=by.headers)

    replies = await asyncio.gather(*(report(flooder) for _ in range(settings.report_burst + 10)))
    codes = sorted(r.status_code for r in replies)
    assert codes == [201] * settings.report_burst + [429] * 10
    refused = next(r for r in replies if r.status_code == 429)
    assert refused.headers["retry-after"] == "2"
    assert refused.json()["error"] == "rate_limited"

    # The colleague's report goes through at once, and its alert reaches the leader.
    mine = await report(colleague)
    assert mine.status_code == 201
    alerts = []
    while len(alerts) < settings.report_burst + 1:
        message = await phone.next_of("alert")
        alerts.append(message["data"]["incident"]["id"])
    assert mine.json()["id"] in alerts
    await phone.close()

    # The bucket refills with time: 30 a minute is one every 2 s.
    assert (await report(flooder)).status_code == 429
    world.clock.advance(2)
    assert (await report(flooder)).status_code == 201
    assert (await report(flooder)).status_code == 429


async def test_a_reporters_token_comes_due_to_the_microsecond(world: World) -> None:
    # One report a second, none saved up: the bucket is checked and spent by the report's last
    # statement, in SQL on both backends, and must agree with the rule to the microsecond
    # wherever the report times fall within their seconds.
    await world.team()
    operator = await world.operator()
    settings = world.runtime.settings
    settings.report_burst, settings.report_per_min = 1, 60
    body = {"location": {"lon": QINGXI[0], "lat": QINGXI[1]}, "category": "other"}

    async def report() -> int:
        reply = await world.http.post("/api/v1/incidents", json=body, headers=operator.headers)
        return reply.status_code

    assert await report() == 201
    for shift in (0.0, 0.250001, 0.5, 0.749999, 0.999998):
        world.clock.advance(shift)
        assert await report() == 429
        world.clock.advance(0.999999 - shift)
        assert await report() == 429
        world.clock.advance(0.000001)
        assert await report() == 201


async def test_a_body_that_is_not_json_is_a_400_naming_the_body(world: World) -> None:
    operator = await world.operator()
    for broken in (b"{bad", b'{"location": {"lon": 114.16,', b"\xff\xfe"):
        reply = await world.http.post(
            "/api/v1/incidents",
            content=broken,
            headers={**operator.headers, "content-type": "application/json"},
        )
        assert reply.status_code == 400, reply.text
        assert reply.json()["error"] == "bad_request"
        assert reply.json()["field"] == "body"
        assert reply.json()["detail"].startswith("body: not valid JSON")


async def test_true_and_false_are_not_numbers_and_nothing_is_written(world: World) -> None:
    operator = await world.operator()
    admin = await world.admin()
    before = (await world.http.get("/api/v1/incidents", headers=operator.headers)).json()
    teams_before = (await world.http.get("/api/v1/teams", headers=admin.headers)).json()
    location = {"lon": QINGXI[0], "lat": QINGXI[1]}
    for body, url, who, field in [
        (
            {"location": {**location, "lon": True}, "category": "fight"},
            "incidents",
            operator,
            "location.lon",
        ),
        (
            {"location": {**location, "lat": False}, "category": "fight"},
            "incidents",
            operator,
            "location.lat",
        ),
        (
            {"name": "t", "kind": "mobile", "location": {**location, "lat": False}},
            "teams",
            admin,
            "location.lat",
        ),
        (
            {"name": "t", "kind": "mobile", "location": location, "radius_m": True},
            "teams",
            admin,
            "radius_m",
        ),
    ]:
        reply = await world.http.post(f"/api/v1/{url}", json=body, headers=who.headers)
        assert reply.status_code == 422, (body, reply.text)
        assert reply.json()["fields"][0]["field"] == field
    assert (await world.http.get("/api/v1/incidents", headers=operator.headers)).json() == before
    assert (await world.http.get("/api/v1/teams", headers=admin.headers)).json() == teams_before


def named(reply: Any) -> str:
    """The field an error answer names: its ``field``, or the first of its ``fields``."""
    body = reply.json()
    field: str = body["field"] if "field" in body else body["fields"][0]["field"]
    return field


# JSON allows any number of digits: 400 of them make an integer no float can hold.
NO_FLOAT = "9" * 400


async def test_a_number_no_float_can_hold_is_a_422_naming_the_coordinate(world: World) -> None:
    admin = await world.admin()
    operator = await world.operator()
    team = await world.team()
    leader = await world.leader(team)
    dispatch_id = (await world.report(operator))["dispatches"][0]["id"]
    lon, lat = QINGXI
    ring = f"[[{lon}, {lat}], [{NO_FLOAT}, {lat}], [{lon}, {lat + 0.01}], [{lon}, {lat}]]"
    site = f'"location": {{"lon": {lon}, "lat": {lat}}}'
    patrol = f'"name": "p", "kind": "patrol", {site}'
    # (where, who, the JSON body as sent, the field the answer names)
    cases = [
        (
            "/api/v1/teams",
            admin,
            f'{{{patrol}, "zone": {{"type": "Polygon", "coordinates": [{ring}]}}}}',
            "zone",
        ),
        (
            "/api/v1/teams",
            admin,
            f'{{{patrol}, "zone": {{"type": "Polygon", "crs": "gcj02", "coordinates": [{ring}]}}}}',
            "zone",
        ),
        ("/api/v1/teams", admin, f'{{{patrol}, "radius_m": {NO_FLOAT}}}', "radius_m"),
        (
            "/api/v1/teams",
            admin,
            f'{{"name": "m", "kind": "mobile", "location": {{"lon": {NO_FLOAT}, "lat": {lat}}}}}',
            "location.lon",
        ),
        (
            "/api/v1/incidents",
            operator,
            f'{{"category": "fight", "location": {{"lon": {lon}, "lat": -{NO_FLOAT}}}}}',
            "location.lat",
        ),
        (
            "/api/v1/incidents",
            operator,
            f'{{"category": "fight", "location": {{"lon": 1e400, "lat": {lat}, "crs": "bd09"}}}}',
            "location.lon",
        ),
        (
            f"/api/v1/dispatches/{dispatch_id}/position",
            leader,
            f'{{"accuracy_m": 5, "location": {{"lon": {NO_FLOAT}, "lat": {lat}}}}}',
            "location.lon",
        ),
    ]
    for url, who, body, field in cases:
        reply = await world.http.post(
            url, content=body, headers={**who.headers, "content-type": "application/json"}
        )
        assert reply.status_code == 422, (url, body[:80], reply.text)
        assert named(reply) == field, reply.text
    for query, field in (
        ({"lon": NO_FLOAT, "lat": str(lat)}, "lon"),
        ({"lon": str(lon), "lat": "1e400", "crs": "gcj02"}, "lat"),
    ):
        reply = await world.http.get(
            "/api/v1/teams/covering", params=query, headers=operator.headers
        )
        assert reply.status_code == 422, reply.text
        assert named(reply) == field, reply.text
    teams = (await world.http.get("/api/v1/teams", headers=admin.headers)).json()
    assert [t["id"] for t in teams] == [team["id"]], "nothing refused was written"


async def test_a_body_json_cannot_hold_is_a_400_naming_the_body(world: World) -> None:
    operator = await world.operator()
    admin = await world.admin()
    location = f'"location": {{"lon": {QINGXI[0]}, "lat": {QINGXI[1]}}}'
    for body, reason in [
        (b"[" * 100_000, "nested too deeply"),
        (b'{"category": "fight", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}", "nested too deeply"),
        # More digits than Python turns into a number (4300).
        (
            f'{{"category": "fight", {location}, "n": {"9" * 5000}}}'.encode(),
            "a number has more than 4300 digits",
        ),
    ]:
        for url, who in (("/api/v1/incidents", operator), ("/api/v1/teams", admin)):
            reply = await world.http.post(
                url, content=body, headers={**who.headers, "content-type": "application/json"}
            )
            assert reply.status_code == 400, reply.text
            assert reply.json() == {
                "error": "bad_request",
                "detail": f"body: not valid JSON ({reason})",
                "field": "body",
            }
    incidents = await world.http.get("/api/v1/incidents", headers=operator.headers)
    assert incidents.json() == []


async def test_a_broken_form_is_a_400_naming_the_body_and_why(world: World) -> None:
    """Every error of the form parsers is answered as a broken JSON body is: 400, ``field``
    body, and the parser's reason, where Starlette's texts ("Missing boundary in multipart.")
    came without a field. Nothing is written: no audit row, no failure counted."""
    admin = await world.admin()
    part = b"--zz\r\nContent-Disposition: form-data\r\n\r\nx\r\n--zz--\r\n"
    many = "&".join(f"f{n}=1" for n in range(1001)).encode()
    for content_type, body, reason in [
        ("multipart/form-data", b"garbage", "Missing boundary in multipart"),
        ("multipart/form-data; boundary=zz", b"garbage", "Invalid multipart data"),
        ("multipart/form-data; boundary=zz", part, 'field "name" must be provided'),
        ("application/x-www-form-urlencoded", many, "Too many fields"),
    ]:
        reply = await world.http.post(
            "/api/v1/auth/token", content=body, headers={"content-type": content_type}
        )
        assert reply.status_code == 400, (content_type, reply.text)
        answer = reply.json()
        assert answer["error"] == "bad_request" and answer["field"] == "body", reply.text
        assert answer["detail"].startswith("body: not a valid form ("), reply.text
        assert reason in answer["detail"], reply.text
    trail = await world.http.get("/api/v1/audit", headers=admin.headers)
    assert {e["action"] for e in trail.json()["items"]} <= {"issue_token"}
