"""The town a running server serves: its teams in service with their zones, how many leaders
each has, and the places of its latest incidents.

An office simulates the layout it has on the incidents it had, edits the saved file into the
layout it is considering, and simulates that on the same places: two answers to "what share of
incidents would meet 1 minute?" that differ by the layout alone.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx

from dispatch.simulate.seed import SIMULATED_INCIDENT, SIMULATED_TEAM, login, ok
from dispatch.simulate.town import MAX_NAME_LENGTH, TeamSpec, Town, around
from dispatch.teams.models import TeamKind

# The most incidents the server lists in one answer (GET /api/v1/incidents?limit=).
MAX_HISTORY = 1000


async def town_of_server(
    base_url: str, admin_name: str, admin_password: str, *, history: int = MAX_HISTORY
) -> Town:
    """Read the town from the server's admin API; ``history`` latest incidents give the
    places (0: none, and incidents then fall near the tier-1 sites as in a generated town).
    The simulator's own teams and incidents, left by a run with ``--keep-town``, are not the
    town's and are left out."""
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
        admin = await login(http, admin_name, admin_password)
        teams: list[dict[str, Any]] = ok(await http.get("/api/v1/teams", headers=admin))
        users: list[dict[str, Any]] = ok(await http.get("/api/v1/users", headers=admin))
        incidents: list[dict[str, Any]] = []
        if history > 0:
            latest = {"limit": min(history, MAX_HISTORY)}
            incidents = ok(await http.get("/api/v1/incidents", headers=admin, params=latest))
    leaders = Counter(
        u["team_id"] for u in users if u["role"] == "leader" and not u["disabled"] and u["team_id"]
    )
    specs = [_spec(t, leaders[t["id"]]) for t in teams if not SIMULATED_TEAM.search(t["name"])]
    if not specs:
        raise RuntimeError(f"{base_url} has no teams in service to simulate")
    places = [
        (float(i["location"]["lon"]), float(i["location"]["lat"]))
        for i in incidents
        if not (i.get("description") or "").startswith(SIMULATED_INCIDENT)
    ]
    return around(f"{httpx.URL(base_url).netloc.decode()} 在役队伍", specs, [], places)


def _spec(team: dict[str, Any], leaders: int) -> TeamSpec:
    name = team["name"]
    if len(name) > MAX_NAME_LENGTH:
        # The file leaves room for a run's tag after each name.
        name = name[: MAX_NAME_LENGTH - 1] + "…"
    return TeamSpec(
        name=name,
        kind=TeamKind(team["kind"]),
        lon=float(team["location"]["lon"]),
        lat=float(team["location"]["lat"]),
        radius_m=None if team["zone"] is not None else float(team["radius_m"]),
        leaders=leaders,
        zone=team["zone"],
    )
