"""What a GET shows of an incident is of one moment, though its chain goes on meanwhile.

An incident's view is read in several statements: the incident, its chain's tiers, its
dispatches, their teams. A team's arrival recorded between two of them must not show the
team on scene while its tier is still waiting for it: the next read has both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.support import Account, World


def tier_1_and_its_team(view: dict[str, Any], team: dict[str, Any]) -> tuple[Any, ...]:
    (tier,) = [t for t in view["chain"] if t["tier"] == 1]
    (dispatch,) = [d for d in view["dispatches"] if d["team_id"] == team["id"]]
    return tier["status"], tier["arrived_at"] is not None, dispatch["arrived_at"] is not None


async def read_as_the_team_arrives(
    world: World, path: Callable[[dict[str, Any]], str], **params: Any
) -> tuple[dict[str, Any], Any, dict[str, Any], Account]:
    """An incident with one team of tier 1; GET ``path(incident)`` by an operator, with the
    team's arrival recorded right after the chain's tiers are read (its dispatches are read
    after them). The incident, what the GET answered, the team and the operator."""
    operator = await world.operator()
    post = await world.team("fixed_post", name="A驻点队")
    leader = await world.leader(post)
    incident = await world.report(operator)
    world.clock.advance(30)
    landed: list[int] = []

    async def arrives() -> None:
        landed.append(await world.arrive(incident, post, leader))

    body = await world.read_while(path(incident), operator, "FROM chain_tiers", arrives, **params)
    assert landed == [200]
    return incident, body, post, operator


async def test_an_incident_read_while_its_team_arrives_is_of_one_moment(world: World) -> None:
    incident, view, post, operator = await read_as_the_team_arrives(
        world, lambda incident: f"/api/v1/incidents/{incident['id']}"
    )
    assert tier_1_and_its_team(view, post) == ("pending", False, False)

    again = await world.incident(operator, incident["id"])
    assert tier_1_and_its_team(again, post) == ("met", True, True)


async def test_the_list_of_incidents_is_of_one_moment(world: World) -> None:
    incident, listed, post, _ = await read_as_the_team_arrives(
        world, lambda _: "/api/v1/incidents", status="open"
    )
    (view,) = [i for i in listed if i["id"] == incident["id"]]
    assert tier_1_and_its_team(view, post) == ("pending", False, False)
