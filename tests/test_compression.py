"""Answers compressed for clients that accept gzip: a city's lists of teams are megabytes of
JSON, while an incident's 201 and the other small answers go out as they are, and so do the
websockets and the workbooks (already zipped)."""

from __future__ import annotations

import gzip
import json
from datetime import timedelta

from websockets.asyncio.client import connect

from dispatch.app import COMPRESS_MIN_BYTES
from tests.pages.test_console_city import city_teams
from tests.reports.test_report_exactness import breached_unanswered, store
from tests.support import World

GZIP = {"accept-encoding": "gzip"}
IDENTITY = {"accept-encoding": "identity"}
# Teams of about 300 bytes of JSON each: a list above the threshold.
TEAMS = 2 * COMPRESS_MIN_BYTES // 300
# Incidents without an arrival: an XLSX and a CSV of exclusions above the threshold.
EXPORTED = 400


async def test_a_large_answer_is_gzipped_for_a_client_that_accepts_it(world: World) -> None:
    """A console at 19 000 teams downloaded 6 MB of them, as it was built."""
    await city_teams(world, TEAMS)
    operator = await world.operator()
    url = f"{world.base_url}/api/v1/teams?limit=1000"
    async with world.http.stream("GET", url, headers={**operator.headers, **GZIP}) as reply:
        assert reply.status_code == 200
        wire = b"".join([chunk async for chunk in reply.aiter_raw()])
    assert reply.headers["content-encoding"] == "gzip"
    assert "accept-encoding" in reply.headers["vary"].lower()
    teams = json.loads(gzip.decompress(wire))
    assert len(teams) == TEAMS
    assert len(wire) * 3 < len(json.dumps(teams))

    plain = await world.http.get(url, headers={**operator.headers, **IDENTITY})
    assert plain.status_code == 200
    assert "content-encoding" not in plain.headers
    assert plain.json() == teams
    assert int(plain.headers["content-length"]) > COMPRESS_MIN_BYTES
    # A client that says nothing of encodings gets the plain answer too.
    bare = await world.http.get(url, headers={**operator.headers, "accept-encoding": ""})
    assert "content-encoding" not in bare.headers
    assert bare.json() == teams


async def test_an_incidents_201_and_small_answers_are_not_compressed(world: World) -> None:
    """The report-to-alert path is the one that counts: its answer is some kilobytes, below
    the threshold, and goes out as the route wrote it."""
    team = await world.team("fixed_post")
    operator = await world.operator()
    incident = await world.report(operator, headers=GZIP)
    for url in (f"/api/v1/incidents/{incident['id']}", f"/api/v1/teams/{team['id']}"):
        one = await world.http.get(url, headers={**operator.headers, **GZIP})
        assert one.status_code == 200
        assert "content-encoding" not in one.headers
        assert 0 < int(one.headers["content-length"]) < COMPRESS_MIN_BYTES
    report = await world.http.post(
        "/api/v1/incidents",
        json={"location": team["location"], "category": "fight"},
        headers={**operator.headers, **GZIP},
    )
    assert report.status_code == 201, report.text
    assert "content-encoding" not in report.headers
    assert len(report.content) == int(report.headers["content-length"])


async def test_websockets_are_not_compressed_whatever_the_client_accepts(world: World) -> None:
    team = await world.team("fixed_post")
    leader = await world.leader(team)
    operator = await world.operator()
    async with connect(
        world.ws_url, compression=None, additional_headers={"Accept-Encoding": "gzip"}
    ) as ws:
        assert ws.response is not None
        assert "Content-Encoding" not in ws.response.headers
        await ws.send(json.dumps({"type": "hello", "token": leader.token, "resume_from": 0}))
        assert json.loads(await ws.recv())["type"] == "welcome"
        incident = await world.report(operator)
        alert = json.loads(await ws.recv())
        assert alert["type"] == "alert"
        assert alert["data"]["incident"]["id"] == incident["id"]


async def test_a_workbook_is_sent_as_it_is_and_a_large_csv_compressed(world: World) -> None:
    """An XLSX is a zip already: gzip would spend the server's time for nothing. The CSV of a
    month's exclusions is text, and comes gzipped."""
    world.long_logins()
    team = await world.team("fixed_post")
    operator = await world.operator()
    now = world.clock.now()
    cases = [
        breached_unanswered(team["id"], now - timedelta(days=3, minutes=n)) for n in range(EXPORTED)
    ]
    await store(world, cases, operator.id)
    auditor = await world.account("auditor")
    url = "/api/v1/reports/response-times"
    period = {"from": (now - timedelta(days=5)).date().isoformat()}
    exports = (
        ({**period, "format": "xlsx"}, None),
        ({**period, "format": "csv", "part": "exclusions"}, "gzip"),
    )
    for params, encoding in exports:
        headers = {**auditor.headers, **GZIP}
        async with world.http.stream("GET", url, params=params, headers=headers) as reply:
            assert reply.status_code == 200
            wire = b"".join([chunk async for chunk in reply.aiter_raw()])
        assert reply.headers.get("content-encoding") == encoding, params
        content = wire if encoding is None else gzip.decompress(wire)
        assert len(content) > COMPRESS_MIN_BYTES, params
        if encoding is None:
            assert content[:2] == b"PK"
        else:
            assert len(wire) * 3 < len(content)
            assert content.decode("utf-8-sig").count("\n") > EXPORTED
