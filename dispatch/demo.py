"""A demo town around Qingxi (清溪镇), for trying the server on a fresh machine."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from dispatch.auth import service as auth
from dispatch.auth.models import Role, User
from dispatch.clock import SystemClock
from dispatch.config import Settings
from dispatch.db import create_engine, create_sessionmaker
from dispatch.files import write_private
from dispatch.schemas import LocationIn
from dispatch.teams import service as teams
from dispatch.teams.coverage import Coverage
from dispatch.teams.models import TeamKind
from dispatch.teams.schemas import TeamCreate


@dataclass(frozen=True)
class DemoTeam:
    name: str
    kind: TeamKind
    lon: float
    lat: float
    radius_m: float | None = None


# Around the town centre, 22.847 N 114.159 E (WGS84).
DEMO_TEAMS = (
    DemoTeam("三中工业园驻点应急联防队", TeamKind.FIXED_POST, 114.1612, 22.8488),
    DemoTeam("清溪商业步行街驻点应急联防队", TeamKind.FIXED_POST, 114.1581, 22.8462),
    DemoTeam("大利批发市场驻点应急联防队", TeamKind.FIXED_POST, 114.1562, 22.8449),
    DemoTeam("清溪中心机动应急联防队", TeamKind.MOBILE, 114.1590, 22.8470),
    DemoTeam("银湖工业区机动应急联防队", TeamKind.MOBILE, 114.1530, 22.8515),
    DemoTeam("清溪派出所巡逻警力", TeamKind.PATROL, 114.1600, 22.8465, 3000.0),
    DemoTeam("清溪处突警力", TeamKind.RESPONSE, 114.1648, 22.8431, 6000.0),
)


async def seed_demo(settings: Settings, credentials_file: Path) -> list[tuple[str, str, str]]:
    """Create the demo teams and accounts once; return (name, role, password) of each account.
    Its connection gives a host gone dark up as the server's do (DISPATCH_DB_HOST_TIMEOUT_S):
    the demo would otherwise wait for an answer until TCP gave up, hours later."""
    engine = create_engine(settings.database_url, host_timeout_s=settings.db_host_timeout_s)
    sessionmaker = create_sessionmaker(engine)
    clock = SystemClock()
    hasher = auth.password_hasher(settings.argon2_time_cost, settings.argon2_memory_kib)
    try:
        async with sessionmaker() as session, session.begin():
            if await session.scalar(select(User.id).limit(1)) is not None:
                return _read_credentials(credentials_file)
            accounts: list[tuple[str, Role, str | None]] = [
                ("admin", Role.ADMIN, None),
                ("operator", Role.OPERATOR, None),
            ]
            for i, spec in enumerate(DEMO_TEAMS, start=1):
                team = await teams.create_team(
                    session,
                    TeamCreate(
                        name=spec.name,
                        kind=spec.kind,
                        location=LocationIn(lon=spec.lon, lat=spec.lat),
                        radius_m=spec.radius_m,
                    ),
                    coverage=Coverage(),
                    now=clock.now(),
                    max_vertices=settings.max_zone_vertices,
                )
                accounts.append((f"leader{i}", Role.LEADER, team.id))
            created = []
            for name, role, team_id in accounts:
                password = secrets.token_urlsafe(9)
                await auth.create_user(
                    session,
                    name=name,
                    password=password,
                    role=role,
                    team_id=team_id,
                    now=clock.now(),
                    hasher=hasher,
                )
                created.append((name, role.value, password))
            # Before the accounts commit: committed first, a crash before the file was written
            # left accounts whose passwords nobody knew, never seeded again. Written first, a
            # commit that fails leaves a file that the next start's seeding writes anew.
            _write_credentials(credentials_file, created)
    finally:
        await engine.dispose()
    return created


def _write_credentials(path: Path, accounts: list[tuple[str, str, str]]) -> None:
    """Whole or not at all, and under its name on disk before the accounts commit: a file cut
    short by a crash, or one whose name a power loss took back, would lose passwords for good."""
    text = "".join(f"{name}\t{role}\t{password}\n" for name, role, password in accounts)
    write_private(path, text, replace=True)


def _read_credentials(path: Path) -> list[tuple[str, str, str]]:
    if not path.exists():
        return []
    rows = [line.split("\t") for line in path.read_text().splitlines() if line.strip()]
    return [(r[0], r[1], r[2]) for r in rows if len(r) == 3]
