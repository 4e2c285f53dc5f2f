"""docs/grafana-dashboard.json shows what the record says: its figures, worked out from the
counters as a server moves them, against the incidents' chains."""

from __future__ import annotations

import ast
import json
import math
import operator
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.observability.test_metrics import Samples, scrape, until, value
from tests.support import QINGXI, World

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"

# ``sum(increase(name{labels}[window]))``, or ``sum by (label) (...)`` of the same.
INCREASE = re.compile(r"sum(?: by \((\w+)\))? ?\(increase\((\w+)(?:\{([^}]*)\})?\[\w+\]\)\)")
OPERATORS: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: lambda a, b: a / b if b else math.nan,
}


def expressions(title: str) -> list[str]:
    """The queries of the dashboard's panel of that title."""
    board = json.loads(DASHBOARD.read_text())
    [panel] = [p for p in board["panels"] if p.get("title") == title]
    return [target["expr"] for target in panel["targets"]]


def figure(expr: str, before: Samples, after: Samples, **group: str) -> float:
    """What Prometheus shows for ``expr`` over a window that holds exactly what happened
    between the two scrapes; ``group`` picks the series of a ``sum by`` (``tier="1"``)."""

    def increase(found: re.Match[str]) -> str:
        by, name, selector = found.groups()
        wanted = dict(re.findall(r'(\w+)="([^"]*)"', selector or ""))
        if by is not None:
            wanted[by] = group[by]
        moved = sum(
            count - before.get((n, labels), 0.0)
            for (n, labels), count in after.items()
            if n == name and wanted.items() <= dict(labels).items()
        )
        return repr(moved)

    return _arithmetic(ast.parse(INCREASE.sub(increase, expr), mode="eval").body)


def _arithmetic(node: ast.expr) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return float(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in OPERATORS:
        return OPERATORS[type(node.op)](_arithmetic(node.left), _arithmetic(node.right))
    raise AssertionError(f"not a sum of counters' increases: {ast.unparse(node)}")


def tier(incident: dict[str, Any], n: int) -> str:
    status: str = incident["chain"][n - 1]["status"]
    return status


async def test_the_breaches_shown_are_the_tiers_the_record_says_breached(world: World) -> None:
    """Incident A: the timer breaches tier 1, then an arrival whose call came in by the
    deadline meets it (the breach withdrawn). Incident B: nobody comes. One breach."""
    post = await world.team("fixed_post")
    leader = await world.leader(post)
    operator = await world.operator()
    console = await world.connect(operator)
    before = await scrape(world)
    a = await world.report(operator)
    world.clock.advance(61)
    await console.next_of("chain.breached")
    world.clock.advance(-1.5)
    assert await world.arrive(a, post, leader) == 200
    b = await world.report(operator)
    world.clock.advance(61)
    await console.next_of("chain.breached")
    await world.http.post(f"/api/v1/incidents/{b['id']}/close", headers=operator.headers)
    after = await scrape(world)
    await console.close()
    assert tier(await world.incident(operator, a["id"]), 1) == "met"
    assert tier(await world.incident(operator, b["id"]), 1) == "breached"

    [breaches] = expressions("Chain breaches (24 h)")
    assert figure(breaches, before, after) == 1
    met, breached = expressions("Chain met and breached by tier")
    assert figure(met, before, after, tier="1") == 1
    assert figure(breached, before, after, tier="1") == 1
    [share] = expressions("Tier 1 on scene within 60 s (24 h)")
    assert figure(share, before, after) == 0.5


async def test_the_tier1_share_counts_a_met_tier_once_however_many_teams_arrive(
    world: World,
) -> None:
    """Two fixed posts cover the incident: one is on scene at 30 s, the other at 90 s. Tier 1
    met its minute; counted by the teams' arrivals the share was a half."""
    posts = [await world.team("fixed_post", lon=QINGXI[0] + i * 0.0002) for i in range(2)]
    leaders = [await world.leader(post) for post in posts]
    operator = await world.operator()
    before = await scrape(world)
    a = await world.report(operator)
    world.clock.advance(30)
    assert await world.arrive(a, posts[0], leaders[0]) == 200
    world.clock.advance(60)
    assert await world.arrive(a, posts[1], leaders[1]) == 200
    after = await scrape(world)
    assert tier(await world.incident(operator, a["id"]), 1) == "met"
    [share] = expressions("Tier 1 on scene within 60 s (24 h)")
    assert figure(share, before, after) == 1


async def test_the_tier1_share_counts_a_tier_nobody_reached_as_breached(world: World) -> None:
    """Incident A: tier 1 on scene at 30 s. Incident B: nobody of tier 1 comes, and it is
    closed. Met in one of two; counted by arrivals the share was all of them."""
    post = await world.team("fixed_post")
    leader = await world.leader(post)
    operator = await world.operator()
    before = await scrape(world)
    a = await world.report(operator)
    world.clock.advance(30)
    assert await world.arrive(a, post, leader) == 200
    await world.http.post(f"/api/v1/incidents/{a['id']}/close", headers=operator.headers)
    b = await world.report(operator)
    world.clock.advance(61)
    breached = value(before, "dispatch_chain_breaches_total", tier="1") + 1
    await until(world, "dispatch_chain_breaches_total", breached, tier="1")
    await world.http.post(f"/api/v1/incidents/{b['id']}/close", headers=operator.headers)
    after = await scrape(world)
    assert tier(await world.incident(operator, b["id"]), 1) == "breached"
    [share] = expressions("Tier 1 on scene within 60 s (24 h)")
    assert figure(share, before, after) == 0.5
