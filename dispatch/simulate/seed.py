"""Putting a simulated town into a server: straight into its database before it starts (fast,
for thousands of leaders), or through the admin API of a server that is running already."""

from __future__ import annotations

import re
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import select

from alerts.models import Mailbox
from dispatch import migrate
from dispatch.auth import service as auth
from dispatch.auth.models import Role, User
from dispatch.clock import SystemClock
from dispatch.db import create_engine, create_sessionmaker, new_id
from dispatch.simulate.leaders import Leader
from dispatch.simulate.town import NAME_ROOM, Town
from dispatch.teams import service as teams_service
from dispatch.teams.models import Team

# Simulated accounts never log in with a password (their tokens are issued directly), so the
# stored hash only has to be unguessable, not expensive.
CHEAP_HASH = (1, 1024)

# A simulated team's name ends in its run's tag; a simulated incident's description starts so.
SIMULATED_TEAM = re.compile(r" \(sim-[0-9a-f]{6}\)$")
SIMULATED_INCIDENT = "模拟警情"


def team_name(town_name: str, run: str) -> str:
    """A simulated team's name: the town's name for it, tagged with the run as its leaders'
    accounts are, so it is no name of a team in service (a real one, or one of a run that was
    killed before it retired its town)."""
    tag = f" (sim-{run})"
    assert len(tag) <= NAME_ROOM, "the town's names leave room for the tag"
    assert SIMULATED_TEAM.search(town_name + tag), "a simulated team is known by its name"
    return town_name + tag


def run_tag() -> str:
    """A run's tag: its teams' names and its accounts' names carry it."""
    return uuid.uuid4().hex[:6]


@dataclass
class Seeded:
    leaders: list[Leader]
    operator_token: str
    team_ids: list[str]
    # Every operator's token, the first one being operator_token.
    operator_tokens: list[str] = field(default_factory=list)
    # The accounts the seeding made (leaders and operators), disabled at the run's end.
    user_ids: list[str] = field(default_factory=list)


@dataclass
class Made:
    """What a seeding through the API has made on the server so far, recorded as each thing
    is made: the run's end retires and disables what the seeding got to, however it stopped
    (a team refused part-way, Ctrl-C)."""

    run: str = field(default_factory=run_tag)
    team_ids: list[str] = field(default_factory=list)
    user_ids: list[str] = field(default_factory=list)


async def seed_database(
    database_url: str,
    town: Town,
    *,
    secret: str,
    token_ttl_s: int = 24 * 3600,
    operators: int = 1,
    host_timeout_s: float | None = None,
) -> Seeded:
    """Write the town's teams, one account per leader and the operators, in one transaction.
    ``host_timeout_s``: as ``dispatch.db.create_engine``'s, for the seeding's connections."""
    await migrate.upgrade_async(database_url, host_timeout_s)
    engine = create_engine(database_url, host_timeout_s=host_timeout_s)
    sessionmaker = create_sessionmaker(engine)
    now = SystemClock().now()
    hasher = auth.password_hasher(*CHEAP_HASH)
    password_hash = hasher.hash(secrets.token_urlsafe(24))
    run = run_tag()
    teams: list[Team] = []
    users: list[User] = []
    plan: list[tuple[User, Team, bool, str]] = []
    for team_spec in town.teams:
        team = Team(
            id=new_id(),
            name=team_name(team_spec.name, run),
            kind=team_spec.kind.value,
            tier=team_spec.tier,
            lon=team_spec.lon,
            lat=team_spec.lat,
            radius_m=team_spec.radius_m,
            zone=team_spec.zone,
            created_at=now,
            updated_at=now,
            retired_at=None,
            # Numbered once written (teams_service.stamp_all).
            revision=0,
            former_names=[],
        )
        teams.append(team)
        for n in range(team_spec.leaders):
            user = _user(f"sim-{run}-{len(users)}", Role.LEADER, team.id, password_hash, now)
            users.append(user)
            plan.append((user, team, n == 0, team_spec.name))
    staff = [
        _user(f"sim-{run}-operator-{n}", Role.OPERATOR, None, password_hash, now)
        for n in range(operators)
    ]
    try:
        async with sessionmaker() as session, session.begin():
            session.add_all(teams)
            await session.flush()
            await teams_service.stamp_all(session, teams)
            session.add_all([*users, *staff])
            await session.flush()
            session.add_all(
                Mailbox(user_id=u.id, last_seq=0, acked_seq=0) for u in [*users, *staff]
            )
    finally:
        await engine.dispose()

    def token(user: User) -> str:
        # A simulated login lasts as long as its one token.
        issued = auth.issue_token(
            user,
            secret=secret,
            ttl_s=token_ttl_s,
            now=now,
            max_age_s=token_ttl_s,
            generation=user.token_generation,
        )
        return issued.token

    leaders = [Leader(u.id, token(u), t.id, t.kind, acts, key) for u, t, acts, key in plan]
    tokens = [token(u) for u in staff]
    user_ids = [u.id for u in [*users, *staff]]
    return Seeded(leaders, tokens[0], [t.id for t in teams], tokens, user_ids)


def _user(name: str, role: Role, team_id: str | None, password_hash: str, now: datetime) -> User:
    return User(
        id=new_id(),
        name=name,
        password_hash=password_hash,
        role=role.value,
        team_id=team_id,
        disabled=False,
        created_at=now,
        token_generation=0,
    )


async def seed_api(
    base_url: str, town: Town, admin_name: str, admin_password: str, made: Made | None = None
) -> Seeded:
    """Create the town through a running server's API as an admin (fine for hundreds of teams),
    recording in ``made`` each team and account as the server makes it."""
    made = made or Made()
    run = made.run
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
        admin = await login(http, admin_name, admin_password)
        leaders: list[Leader] = []
        team_ids: list[str] = []
        for i, spec in enumerate(town.teams):
            body = {
                "name": team_name(spec.name, run),
                "kind": spec.kind.value,
                "location": {"lon": spec.lon, "lat": spec.lat},
                **({"radius_m": spec.radius_m} if spec.zone is None else {"zone": spec.zone}),
            }
            team = ok(await http.post("/api/v1/teams", json=body, headers=admin))
            made.team_ids.append(team["id"])
            team_ids.append(team["id"])
            for n in range(spec.leaders):
                name, password = f"sim-{run}-{i}-{n}", secrets.token_urlsafe(12)
                user = {"name": name, "password": password, "role": "leader", "team_id": team["id"]}
                created = ok(await http.post("/api/v1/users", json=user, headers=admin))
                made.user_ids.append(created["id"])
                headers = await login(http, name, password)
                token = headers["Authorization"].removeprefix("Bearer ")
                leaders.append(
                    Leader(created["id"], token, team["id"], spec.kind.value, n == 0, spec.name)
                )
        operator_token = admin["Authorization"].removeprefix("Bearer ")
    return Seeded(leaders, operator_token, team_ids, [operator_token], list(made.user_ids))


async def retire_database(
    database_url: str,
    team_ids: list[str],
    user_ids: list[str],
    host_timeout_s: float | None = None,
) -> None:
    """Take a simulated town's teams out of service and disable its accounts, straight in the
    database its own server ran on once that has stopped (their records stay)."""
    engine = create_engine(database_url, host_timeout_s=host_timeout_s)
    now = SystemClock().now()
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            found = list(
                await session.scalars(
                    select(Team).where(Team.id.in_(team_ids), Team.retired_at.is_(None))
                )
            )
            for team in found:
                team.retired_at = team.updated_at = now
            await session.flush()
            await teams_service.stamp_all(session, found)
            for user in await session.scalars(select(User).where(User.id.in_(user_ids))):
                user.disabled = True
    finally:
        await engine.dispose()


async def undo_api(
    base_url: str, admin_name: str, admin_password: str, made: Made, *, retire: bool
) -> tuple[int, int]:
    """Retire the run's teams (unless not ``retire``) and disable its accounts, so that nothing
    of the run is alerted for the server's incidents or holds a live token; the teams and
    accounts recorded, and any the server holds under the run's tag (made by a request whose
    answer a stop cut off). How many teams were retired and accounts disabled."""
    tag = f" (sim-{made.run})"
    retired = disabled = 0
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
        admin = await login(http, admin_name, admin_password)
        if retire:
            teams: list[dict[str, Any]] = ok(await http.get("/api/v1/teams", headers=admin))
            tagged = [t["id"] for t in teams if t["name"].endswith(tag)]
            for team_id in dict.fromkeys([*made.team_ids, *tagged]):
                reply = await http.delete(f"/api/v1/teams/{team_id}", headers=admin)
                retired += reply.status_code == 204
        users: list[dict[str, Any]] = ok(await http.get("/api/v1/users", headers=admin))
        named = [u["id"] for u in users if u["name"].startswith(f"sim-{made.run}-")]
        enabled = {u["id"] for u in users if not u["disabled"]}
        for user_id in dict.fromkeys([*made.user_ids, *named]):
            if user_id in enabled:
                body = {"disabled": True}
                reply = await http.patch(f"/api/v1/users/{user_id}", json=body, headers=admin)
                disabled += reply.status_code == 200
    return retired, disabled


async def login(http: httpx.AsyncClient, name: str, password: str) -> dict[str, str]:
    reply = ok(await http.post("/api/v1/auth/token", data={"username": name, "password": password}))
    return {"Authorization": f"Bearer {reply['access_token']}"}


def ok(reply: httpx.Response) -> Any:
    """The answer's JSON; a refusal is a RuntimeError naming the request."""
    if reply.status_code >= 400:
        raise RuntimeError(f"{reply.request.method} {reply.request.url.path}: {reply.text[:300]}")
    return reply.json()
