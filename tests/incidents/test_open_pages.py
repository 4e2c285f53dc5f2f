"""The open incidents a page at a time, as the console and the phone read them all: each next
page starts after the last incident of the one before (``before``), so that incidents closed
between two pages, and incidents reported at the same instant, neither drop out of the list
nor come twice (a missed open incident is a late tier that raises no alarm)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from tests.incidents.test_history import field_of
from tests.support import QINGXI, Account, World

# Far from every team of these tests: reported there, an incident is dispatched to none.
NOWHERE = (QINGXI[0] + 0.5, QINGXI[1] + 0.5)


async def page_of(world: World, by: Account, **params: Any) -> list[dict[str, Any]]:
    page: list[dict[str, Any]] = await world.read("/api/v1/incidents", by, **params)
    return page


async def every_page(
    world: World,
    by: Account,
    limit: int,
    between: Callable[[list[dict[str, Any]]], Awaitable[None]] | None = None,
) -> list[str]:
    """Every open incident's id, a page at a time, each page after the last one's last
    incident; ``between`` is done after each full page, before the next is read."""
    ids: list[str] = []
    params: dict[str, Any] = {"status": "open", "limit": limit}
    while True:
        page = await page_of(world, by, **params)
        ids += [incident["id"] for incident in page]
        if len(page) < limit:
            return ids
        assert len(ids) == len(set(ids)), f"a page repeats one read already: {ids}"
        if between is not None:
            await between(page)
        params["before"] = page[-1]["id"]


async def close(world: World, by: Account, incident_id: str) -> None:
    reply = await world.http.post(f"/api/v1/incidents/{incident_id}/close", headers=by.headers)
    assert reply.status_code == 200, reply.text


async def test_incidents_closed_between_pages_skip_no_open_one(world: World) -> None:
    """A next page started one early (offset less one) skipped an open incident once two of
    those already read were closed before it was asked for."""
    await world.team("fixed_post")
    operator = await world.operator()
    reported = []
    for _ in range(10):
        world.clock.advance(5)
        reported.append(await world.report(operator))

    closed: list[str] = []

    async def close_two(page: list[dict[str, Any]]) -> None:
        for incident in page[:2]:
            await close(world, operator, incident["id"])
            closed.append(incident["id"])

    listed = await every_page(world, operator, limit=3, between=close_two)
    newest_first = [incident["id"] for incident in reversed(reported)]
    # What the pages read is every incident, newest first, once each: those closed after
    # their page was read included (the next read of the list drops them).
    assert listed == newest_first
    assert len(closed) == 6
    still_open = [i for i in newest_first if i not in closed]
    assert await every_page(world, operator, limit=3) == still_open


async def test_incidents_reported_at_one_instant_come_once_each_across_pages(
    world: World,
) -> None:
    """Without a day the list was ordered by the report time alone: incidents reported at the
    same instant (the server's clock reads alike for reports that come together) came in any
    order from one page to the next, one repeated and another never listed."""
    await world.team("fixed_post")
    operator = await world.operator()
    world.clock.advance(5)
    older = await world.report(operator)
    world.clock.advance(5)
    together = [await world.report(operator) for _ in range(7)]
    assert len({incident["reported_at"] for incident in together}) == 1

    expected = [*sorted((i["id"] for i in together), reverse=True), older["id"]]
    for limit in (1, 2, 3):
        assert await every_page(world, operator, limit=limit) == expected, limit
    # The first page is the same whether or not a page follows: ties go by id, newest first.
    assert [i["id"] for i in await page_of(world, operator, status="open", limit=4)] == (
        expected[:4]
    )
    # offset pages, as readers that take no cursor ask for them, follow one another
    # too now that ties are broken.
    by_offset = []
    for offset in range(0, 8, 3):
        page = await page_of(world, operator, status="open", limit=3, offset=offset)
        by_offset += [incident["id"] for incident in page]
    assert by_offset == expected


async def test_a_leaders_pages_hold_his_teams_incidents_alone(world: World) -> None:
    team = await world.team("fixed_post")
    leader = await world.leader(team)
    operator = await world.operator()
    his = []
    others = []
    for n in range(6):
        world.clock.advance(5)
        his.append(await world.report(operator))
        if n % 2:
            others.append(await world.report(operator, lon=NOWHERE[0], lat=NOWHERE[1]))
    assert all(not incident["dispatches"] for incident in others)

    listed = await every_page(world, leader, limit=2)
    assert listed == [incident["id"] for incident in reversed(his)]
    # An incident of another team named as the cursor is refused as an unknown one is: the
    # answer tells a leader nothing of incidents that are not his.
    mine = await world.http.get(
        "/api/v1/incidents", params={"before": his[0]["id"]}, headers=leader.headers
    )
    assert mine.status_code == 200, mine.text
    reply = await world.http.get(
        "/api/v1/incidents", params={"before": others[0]["id"]}, headers=leader.headers
    )
    assert reply.status_code == 422, reply.text
    assert reply.json()["error"] == "invalid_input"
    assert field_of(reply.json()) == "before"


async def test_a_cursor_that_names_no_incident_is_refused_naming_before(world: World) -> None:
    operator = await world.operator()
    for bad in ("0" * 32, "not-an-incident", "x" * 33, ""):
        reply = await world.http.get(
            "/api/v1/incidents", params={"before": bad}, headers=operator.headers
        )
        assert reply.status_code == 422, (bad, reply.text)
        assert field_of(reply.json()) == "before", (bad, reply.text)
        assert set(reply.json()) >= {"error", "detail"}

    schema = (await world.http.get("/openapi.json")).json()
    operation = schema["paths"]["/api/v1/incidents"]["get"]
    parameters = {p["name"]: p for p in operation["parameters"]}
    assert "before" in parameters
    assert "id" in parameters["before"]["description"]
    assert "before" in str(operation["responses"]["422"])
