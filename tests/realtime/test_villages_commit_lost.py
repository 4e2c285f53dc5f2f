"""Villages imported in a transaction whose COMMIT's answer is lost: the database committed
them, and the process that imported them tags its reports with them all the same."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.engine import make_url

from dispatch.villages.index import VILLAGES_CHANNEL
from tests.realtime.test_commit_lost import CommitAnswerLost, two_servers_one_through
from tests.support import QINGXI
from tests.villages.test_villages import (
    SHANGYUAN,
    SOUTH,
    WEST,
    XIAXIAN,
    collection,
    feature,
    import_villages,
    square,
)


@pytest.mark.parametrize("change", ["added", "redrawn"])
async def test_villages_whose_import_commit_answer_is_lost_tag_the_reports_of_its_own_process(
    postgres_only: str, change: str
) -> None:
    """The import committed; the process that made it tags reports from the villages as the
    tables hold them, as after a commit it heard the answer of. Before, it kept the index it
    had until the next village change: a report in a new village, or in the part a village's
    boundary grew by, had no village there (the other processes heard the announcement)."""
    url = make_url(postgres_only)
    proxy = CommitAnswerLost(url.host or "127.0.0.1", url.port or 5432, VILLAGES_CHANNEL)
    await proxy.start()
    through = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    # In 下仙社区, and in 上元村 once it is redrawn twice as wide.
    lon, lat = QINGXI[0] + 0.01, QINGXI[1]
    try:
        async with two_servers_one_through(through, postgres_only) as (a, b):
            operator = await a.operator()
            if change == "added":
                name, boundary = "下仙社区", XIAXIAN
            else:
                name, boundary = "上元村", square(WEST, SOUTH, 0.02)
                first = await import_villages(a, collection(feature(name, SHANGYUAN)))
                assert first.status_code == 200, first.text
            assert (await a.report(operator, lon, lat))["village_id"] is None

            proxy.armed = True
            reply = await import_villages(a, collection(feature(name, boundary)))
            assert proxy.cut.is_set(), "the import's COMMIT answer was not the one lost"
            assert reply.status_code == 503, reply.text
            assert "unknown" in reply.json()["detail"], reply.json()

            listed = await b.http.get("/api/v1/villages", headers=(await b.admin()).headers)
            village_id = next(v["id"] for v in listed.json() if v["name"] == name)
            # Reloaded at once, and again a second later (a COMMIT still being completed).
            deadline = asyncio.get_running_loop().time() + 10
            while a.runtime.villages.village_at(lon, lat) is None:
                assert asyncio.get_running_loop().time() < deadline, "the index was never reloaded"
                await asyncio.sleep(0.05)
            incident = await a.report(operator, lon, lat)
            assert incident["village_id"] == village_id
            assert (await b.report(operator, lon, lat))["village_id"] == village_id
    finally:
        await proxy.close()
