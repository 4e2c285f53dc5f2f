"""A city's teams a page at a time, as the console and the report page read them all: each next
page starts after the last team of the one before (``after``), so that teams added or retired
between two pages neither drop out of the list nor come twice, and no page sorts the city's
teams again (the index on (tier, name, id) is read from the cursor on)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import event

from tests.incidents.test_history import field_of
from tests.pages.test_console_city import city_teams
from tests.support import Account, World, sync_engines

Between = Callable[[list[dict[str, Any]]], Awaitable[None]]


async def every_page(
    world: World,
    by: Account,
    limit: int,
    between: Between | None = None,
    path: str = "/api/v1/teams",
    **params: Any,
) -> list[dict[str, Any]]:
    """Every team of the list, a page at a time, each after the last one's last team;
    ``between`` is done after each full page, before the next is read."""
    found: list[dict[str, Any]] = []
    asked: dict[str, Any] = {**params, "limit": limit}
    # A server that took no cursor would answer the first page for ever.
    for _ in range(100):
        reply = await world.http.get(path, params=asked, headers=by.headers)
        assert reply.status_code == 200, reply.text
        page: list[dict[str, Any]] = reply.json()
        found += page
        if len(page) < limit:
            return found
        if between is not None:
            await between(page)
        last = page[-1]
        asked["after"] = last.get("id", last.get("team_id"))
        if last.get("retired_at"):
            asked["after_retired"] = "true"
    raise AssertionError(f"no last page after 100: {ids(found)[:20]}")


def ids(teams: list[dict[str, Any]]) -> list[str]:
    return [team.get("id", team.get("team_id")) for team in teams]


async def retire(world: World, by: Account, team_id: str) -> None:
    reply = await world.http.delete(f"/api/v1/teams/{team_id}", headers=by.headers)
    assert reply.status_code == 204, reply.text


async def listed(world: World, by: Account, **params: Any) -> list[dict[str, Any]]:
    teams: list[dict[str, Any]] = await world.read("/api/v1/teams", by, **params)
    return teams


async def test_teams_added_and_retired_between_pages_skip_and_repeat_none(
    world: World,
) -> None:
    """A next page started one early (offset less one) skipped a team once two of those
    already read were retired before it was asked for; retiring the page's last team itself
    moves nothing either."""
    admin = await world.admin()
    for n in range(12):
        await world.team("fixed_post", name=f"驻点队{n:02d}")
    whole = ids(await listed(world, admin))
    retired: list[str] = []
    added: list[str] = []

    async def retire_two_and_add_one(page: list[dict[str, Any]]) -> None:
        for team in (page[0], page[-1]):
            await retire(world, admin, team["id"])
            retired.append(team["id"])
        # Sorted before every team read so far: it belongs to no page still to come.
        added.append((await world.team("fixed_post", name=f"A{len(added)}"))["id"])

    read = await every_page(world, admin, 3, retire_two_and_add_one)
    assert ids(read) == whole
    assert len(retired) == 8
    still = [team for team in whole if team not in retired]
    assert ids(await every_page(world, admin, 3)) == added + still
    assert ids(await every_page(world, admin, 1000)) == added + still


async def test_with_the_retired_teams_pages_go_on_among_them_after_those_in_service(
    world: World,
) -> None:
    """The report page reads the retired teams too, after those in service: the cursor of a
    team that came in service and was retired since keeps its place among those in service,
    one that came retired goes on among the retired."""
    admin = await world.admin()
    teams = [await world.team("fixed_post", name=f"驻点队{n:02d}") for n in range(9)]
    for team in teams[6:]:
        await retire(world, admin, team["id"])
    whole = ids(await listed(world, admin, include_retired="true"))
    assert whole == [t["id"] for t in teams]
    for limit in (1, 2, 4, 5, 1000):
        assert ids(await every_page(world, admin, limit, include_retired="true")) == whole

    async def retire_the_last(page: list[dict[str, Any]]) -> None:
        if page[-1]["retired_at"] is None:
            await retire(world, admin, page[-1]["id"])

    read = ids(await every_page(world, admin, 2, retire_the_last, include_retired="true"))
    # Every team in its place, those in service as they came: none skipped. The three retired
    # after their page was read come again among the retired, where they now are, before
    # those retired already.
    assert read == [*whole[:6], whole[1], whole[3], whole[5], *whole[6:]]


async def test_a_bad_cursor_is_refused_naming_its_field(world: World) -> None:
    admin = await world.admin()
    team = await world.team("fixed_post")
    for path in ("/api/v1/teams", "/api/v1/reachability"):
        for params, field in (
            ({"after": "0" * 32}, "after"),
            ({"after": "not-a-team"}, "after"),
            ({"after": "x" * 33}, "after"),
            ({"after": ""}, "after"),
            ({"after": team["id"], "offset": 1}, "offset"),
        ):
            reply = await world.http.get(path, params=params, headers=admin.headers)
            assert reply.status_code == 422, (path, params, reply.text)
            assert field_of(reply.json()) == field, (path, params, reply.text)
            assert set(reply.json()) >= {"error", "detail"}
    for params in (
        {"after_retired": "true"},
        {"after": team["id"], "after_retired": "true"},
        {"after": team["id"], "after_retired": "true", "include_retired": "true"},
    ):
        reply = await world.http.get("/api/v1/teams", params=params, headers=admin.headers)
        assert reply.status_code == 422, (params, reply.text)
        assert field_of(reply.json()) == "after_retired", (params, reply.text)

    schema = (await world.http.get("/openapi.json")).json()
    for path, fields in (
        ("/api/v1/teams", ("after", "after_retired")),
        ("/api/v1/reachability", ("after",)),
    ):
        operation = schema["paths"][path]["get"]
        parameters = {p["name"]: p for p in operation["parameters"]}
        for field in fields:
            assert field in parameters, (path, field)
            assert field in str(operation["responses"]["422"]), (path, field)
        assert "id" in parameters["after"]["description"]


async def test_a_page_after_a_cursor_reads_the_index_from_it(world: World) -> None:
    """Each page of a city's teams was sorted out of all of them: from a cursor on, both
    databases read the index on (tier, name, id) and sort nothing."""
    admin = await world.admin()
    await city_teams(world, 3000)
    engine = world.runtime.engine
    postgresql = engine.dialect.name == "postgresql"
    async with engine.connect() as connection:
        await connection.exec_driver_sql("ANALYZE" if postgresql else "ANALYZE teams")
        await connection.commit()
    first = await listed(world, admin, limit=50)
    sent: list[tuple[str, Any]] = []

    def seen(_c: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "FROM teams" in statement and "ORDER BY" in statement:
            sent.append((statement, parameters))

    engines = sync_engines(world.runtime)
    for each in engines:
        event.listen(each, "before_cursor_execute", seen)
    try:
        for include_retired in ("false", "true"):
            await listed(
                world, admin, limit=50, after=first[-1]["id"], include_retired=include_retired
            )
    finally:
        for each in engines:
            event.remove(each, "before_cursor_execute", seen)
    assert sent
    async with engine.connect() as connection:
        for statement, parameters in sent:
            if postgresql:
                rows = await connection.exec_driver_sql(f"EXPLAIN {statement}", parameters)
                plan = "\n".join(row[0] for row in rows)
                assert "ix_teams_tier_name_id" in plan, plan
                assert "Sort" not in plan, plan
            else:
                rows = await connection.exec_driver_sql(
                    f"EXPLAIN QUERY PLAN {statement}", parameters
                )
                plan = "\n".join(str(row[-1]) for row in rows)
                assert "ix_teams_tier_name_id" in plan, plan
                assert "TEMP B-TREE" not in plan, plan
