"""The migrations build exactly the schema the models declare, on both backends."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, MetaData, inspect, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from alerts.models import AlertsBase
from dispatch import migrate
from dispatch.audit.models import AuditEntry
from dispatch.auth.models import RevokedToken, User
from dispatch.clock import ManualClock
from dispatch.db import Base, create_engine, create_sessionmaker, table_of
from dispatch.incidents.models import ChainTier, Dispatch, Incident
from dispatch.notifiers.models import Notification
from dispatch.rosters.models import RosterMember
from dispatch.teams import service as teams
from dispatch.teams.coverage import Coverage
from dispatch.teams.models import Team
from dispatch.villages.models import Village
from tests.conftest import RunningServer, clock_start, fresh_database, server_settings
from tests.processes import ServerProcess, server_env
from tests.test_cli import dispatch


def _differences(connection: Connection) -> list[Any]:
    declared = MetaData()
    for metadata in (Base.metadata, AlertsBase.metadata):
        for table in metadata.tables.values():
            table.to_metadata(declared)
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, declared))


async def test_the_newest_migration_is_the_schema_the_models_declare(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            differences = await connection.run_sync(_differences)
    finally:
        await engine.dispose()
    assert differences == [], "a model and the migrations disagree: add a migration"


@asynccontextmanager
async def downgraded(
    backend: str, folder: Path, revision: str
) -> AsyncIterator[tuple[Config, AsyncEngine]]:
    """A fresh database of ``backend`` taken down to ``revision``, as a release before wrote
    it: its migrations' config and an engine on it, disposed when the block ends."""
    async with fresh_database(backend, folder) as url:
        config = migrate.alembic_config(url)
        await asyncio.to_thread(command.downgrade, config, revision)
        engine = create_engine(url)
        try:
            yield config, engine
        finally:
            await engine.dispose()


def _member(member_id: str, kind: str, group: str, phone: str, **extra: Any) -> dict[str, Any]:
    at = extra.pop("at", datetime(2026, 3, 1, tzinfo=UTC))
    return {
        "id": member_id,
        "kind": kind,
        "group_name": group,
        "team_id": None,
        "name": f"队员{member_id}",
        "phone": phone,
        "id_number": None,
        "role": "member",
        "unit": None,
        "site": None,
        "user_id": None,
        "created_at": at,
        "updated_at": at,
        **extra,
    }


async def test_a_phone_twice_on_a_team_is_kept_once_and_the_removal_is_on_the_trail(
    backend: str, tmp_path: Path
) -> None:
    """0015: of each set the member linked to an account stays, else the one entered first."""
    members = table_of(RosterMember)
    earlier = datetime(2026, 2, 1, tzinfo=UTC)
    async with downgraded(backend, tmp_path, "0014") as (config, engine):
        async with engine.begin() as connection:
            await connection.execute(
                table_of(User).insert(),
                {
                    "id": "u1",
                    "name": "u1",
                    "password_hash": "x",
                    "role": "leader",
                    "disabled": False,
                    "created_at": earlier,
                },
            )
            await connection.execute(
                members.insert(),
                [
                    _member("later", "area", "gX", "13900000001"),
                    _member("first", "area", "gX", "13900000001", at=earlier),
                    _member("entered", "area", "gX", "13900000002", at=earlier),
                    _member("linked", "area", "gX", "13900000002", user_id="u1"),
                    # Another team's roster, and another roster's team of the same name.
                    _member("other-team", "area", "gY", "13900000001"),
                    _member("other-roster", "watch", "gX", "13900000001"),
                ],
            )
        await asyncio.to_thread(command.upgrade, config, "head")

        async with engine.connect() as connection:
            left = await connection.scalars(select(members.c.id).order_by(members.c.id))
            assert list(left) == ["first", "linked", "other-roster", "other-team"]
            trail = await _trail(connection, "duplicate_member_removed")
            removed = [(actor, target, data["kept"], data["name"]) for actor, target, data in trail]
            assert removed == [
                ("migration 0015", "entered", "linked", "队员entered"),
                ("migration 0015", "later", "first", "队员later"),
            ]
        with pytest.raises(IntegrityError):
            async with engine.begin() as connection:
                await connection.execute(
                    members.insert(), _member("again", "area", "gX", "13900000001")
                )


async def test_a_database_ahead_of_this_release_is_served_as_it_is(
    backend: str, tmp_path: Path
) -> None:
    """A rolling upgrade: a newer release migrated the database while this one still runs.
    This release neither migrates it (it cannot: the revision is not one of its own) nor
    reports itself not ready; behind is still behind."""
    newer = "9999_from_a_newer_release"
    async with fresh_database(backend, tmp_path) as url:
        engine = create_engine(url)
        try:
            assert await migrate.schema_state(engine) is migrate.Schema.CURRENT
            config = migrate.alembic_config(url)
            await asyncio.to_thread(command.downgrade, config, "0014")
            assert await migrate.schema_state(engine) is migrate.Schema.BEHIND
            await asyncio.to_thread(command.upgrade, config, "head")
            async with engine.begin() as connection:
                await connection.execute(
                    text("UPDATE alembic_version SET version_num = :newer"), {"newer": newer}
                )
            assert await migrate.schema_state(engine) is migrate.Schema.AHEAD

            done = await asyncio.to_thread(dispatch, "db", "upgrade", database_url=url)
            assert done.returncode == 0, done.stderr
            # A log line like the server's (DISPATCH_LOG_FORMAT=json), not plain text.
            [warning] = [json.loads(line) for line in done.stderr.splitlines()]
            assert (warning["level"], warning["logger"]) == ("WARNING", "dispatch.cli")
            assert warning["message"].startswith("DISPATCH_DATABASE_URL: the database is at")
            assert newer in warning["message"]
            text_format = {"log_format": "text"}
            done = await asyncio.to_thread(
                dispatch, "db", "upgrade", database_url=url, **text_format
            )
            assert " WARNING dispatch.cli: DISPATCH_DATABASE_URL: " in done.stderr
            assert await migrate.current_revisions(engine) == [newer]

            env = server_env(url, tmp_path)
            server = ServerProcess(env, tmp_path / "server.log")
            try:
                await server.start()  # ready: /readyz answered 200
                async with httpx.AsyncClient(base_url=server.base_url) as http:
                    assert (await http.get("/readyz")).json()["status"] == "ready"
            finally:
                server.terminate()
                server.stop()
            warnings = [
                json.loads(line)
                for line in server.output().splitlines()
                if line.startswith("{") and newer in line
            ]
            assert [w["level"] for w in warnings] == ["WARNING"], server.output()
            assert await migrate.current_revisions(engine) == [newer]
        finally:
            await engine.dispose()


async def test_readyz_reads_no_migration_file_and_still_sees_a_database_behind(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The migrations cannot change under a running server: it reads them as it starts, and
    each probe only asks the database (reading the files took ~19 ms of the event loop)."""
    async with fresh_database(backend, tmp_path) as url:
        server = RunningServer(server_settings(url), ManualClock(clock_start()))
        await server.start()
        try:

            def read_from_files(*_: object) -> ScriptDirectory:
                raise AssertionError("/readyz read the migration files")

            monkeypatch.setattr(ScriptDirectory, "from_config", read_from_files)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
                assert (await http.get("/readyz")).json()["status"] == "ready"
                # A database behind this release (as though restored from an older backup).
                older = text("UPDATE alembic_version SET version_num = '0014'")
                async with server.app.state.runtime.engine.begin() as connection:
                    await connection.execute(older)
                ready = await http.get("/readyz")
            assert (ready.status_code, ready.json()["status"]) == (503, "migrations pending")
        finally:
            await server.stop()


async def _trail(connection: AsyncConnection, action: str) -> list[tuple[str, str, Any]]:
    """The audit rows a migration wrote for ``action``: actor, target and data, by target."""
    audit = table_of(AuditEntry)
    rows = await connection.execute(
        select(audit.c.actor_name, audit.c.target_id, audit.c.data)
        .where(audit.c.action == action)
        .order_by(audit.c.target_id)
    )
    return [(row.actor_name, row.target_id, row.data) for row in rows]


def _team_row(team_id: str, at: datetime, **extra: Any) -> dict[str, Any]:
    return {
        "id": team_id,
        "name": f"队{team_id}",
        "kind": "fixed_post",
        "tier": 1,
        "lon": 114.16,
        "lat": 22.85,
        "radius_m": 100.0,
        "zone": None,
        "created_at": at,
        "updated_at": at,
        "retired_at": None,
        **extra,
    }


def _team_columns(connection: Connection) -> tuple[set[str], set[str]]:
    found = inspect(connection)
    return (
        {c["name"] for c in found.get_columns("teams")},
        {i["name"] for i in found.get_indexes("teams")},
    )


async def test_teams_are_numbered_in_the_order_they_were_created_and_back_again(
    backend: str, tmp_path: Path
) -> None:
    """0016: the teams stored before it get revisions 1, 2, ... by creation; the index's
    first load takes them all, and so does its revision."""
    old_teams = sa.table(
        "teams", *(sa.column(name) for name in _team_row("x", datetime.now(UTC)) if name != "zone")
    )
    async with downgraded(backend, tmp_path, "0015") as (config, engine):
        async with engine.begin() as connection:
            await connection.execute(
                old_teams.insert(),
                [
                    {k: v for k, v in row.items() if k != "zone"}
                    for row in (
                        _team_row("late", datetime(2026, 3, 3, tzinfo=UTC)),
                        _team_row("first", datetime(2026, 3, 1, tzinfo=UTC)),
                        _team_row(
                            "gone",
                            datetime(2026, 3, 2, tzinfo=UTC),
                            retired_at=datetime(2026, 3, 4, tzinfo=UTC),
                        ),
                    )
                ],
            )
        await asyncio.to_thread(command.upgrade, config, "head")

        teams_table = table_of(Team)
        async with engine.connect() as connection:
            numbered = await connection.execute(
                select(teams_table.c.id, teams_table.c.revision).order_by(teams_table.c.revision)
            )
            assert list(numbered) == [("first", 1), ("gone", 2), ("late", 3)]
            columns, indexes = await connection.run_sync(_team_columns)
            assert "revision" in columns and "ix_teams_revision" in indexes
        coverage = Coverage()
        async with create_sessionmaker(engine)() as session:
            await teams.load_coverage(session, coverage)
        assert (len(coverage), coverage.revision) == (2, 3)
        with pytest.raises(IntegrityError):
            async with engine.begin() as connection:
                await connection.execute(
                    teams_table.insert(), _team_row("unnumbered", datetime.now(UTC))
                )

        await asyncio.to_thread(command.downgrade, config, "0015")
        async with engine.connect() as connection:
            columns, indexes = await connection.run_sync(_team_columns)
            assert "revision" not in columns and "ix_teams_revision" not in indexes
            left = await connection.scalars(select(old_teams.c.id).order_by(old_teams.c.id))
            assert list(left) == ["first", "gone", "late"]
        await asyncio.to_thread(command.upgrade, config, "head")


async def test_hops_stamped_by_their_arrival_are_marked_implied(
    backend: str, tmp_path: Path
) -> None:
    """0017: a delivery or accept stored at the very microsecond of its dispatch's arrival was
    recorded by that arrival (a radio arrival, or one without an accept first): marked implied,
    so that the reports stop measuring it. Hops observed before the arrival stay as they were."""
    new_columns = ("delivered_implied", "accepted_implied")
    dispatches = table_of(Dispatch)
    old_dispatches = sa.table(
        "dispatches",
        *(sa.column(c.name, c.type) for c in dispatches.c if c.name not in new_columns),
    )
    reported = datetime(2026, 3, 1, 1, 0, tzinfo=UTC)

    def at(seconds: float | None) -> datetime | None:
        return None if seconds is None else reported + timedelta(seconds=seconds)

    def dispatch(dispatch_id: str, delivered: float | None, accepted: float | None,
                 arrived: float | None) -> dict[str, Any]:  # fmt: skip
        return {
            "id": dispatch_id, "incident_id": "i1", "team_id": "t1", "tier": 1, "ring": 0,
            "distance_m": 10.0, "alerted_at": reported, "delivered_at": at(delivered),
            "shown_at": None, "accepted_at": at(accepted), "arrived_at": at(arrived),
            "arrival_source": None if arrived is None else "button",
        }  # fmt: skip

    async with downgraded(backend, tmp_path, "0016") as (config, engine):
        async with engine.begin() as connection:
            await connection.execute(
                table_of(User).insert(),
                {"id": "u1", "name": "u1", "password_hash": "x", "role": "operator",
                 "disabled": False, "created_at": reported},
            )  # fmt: skip
            team = _team_row("t1", reported, revision=1)
            # As the table was at 0016: the columns of later revisions left out.
            teams_then = sa.table("teams", *(sa.column(name) for name in team))
            await connection.execute(teams_then.insert(), team)
            await connection.execute(
                table_of(Incident).insert(),
                {"id": "i1", "reported_at": reported, "lon": 114.16, "lat": 22.85,
                 "category": "fight", "status": "open", "reported_by": "u1"},
            )  # fmt: skip
            await connection.execute(
                old_dispatches.insert(),
                [
                    dispatch("radio", 121, 121, 121),
                    dispatch("tapped", 5, 10, 50),
                    dispatch("acked", 3, 80, 80),
                    dispatch("waiting", 2, None, None),
                ],
            )
        await asyncio.to_thread(command.upgrade, config, "head")
        async with engine.connect() as connection:
            marked = await connection.execute(
                select(dispatches.c.id, *(dispatches.c[name] for name in new_columns))
            )
            assert sorted(marked) == [
                ("acked", False, True),
                ("radio", True, True),
                ("tapped", False, False),
                ("waiting", False, False),
            ]
        await asyncio.to_thread(command.downgrade, config, "0016")
        await asyncio.to_thread(command.upgrade, config, "head")


async def test_teams_in_service_sharing_a_name_keep_it_for_the_first_and_the_trail_says_so(
    backend: str, tmp_path: Path
) -> None:
    """0018: the team created first keeps the name; each other is numbered, the first free
    number, and its rename is on the trail; a retired team keeps its name."""
    teams_table = table_of(Team)
    old_teams = sa.table(
        "teams", *(sa.column(c.name) for c in teams_table.columns if c.name != "former_names")
    )
    long_name = "长" * 128

    def row(team_id: str, name: str, day: int, **extra: Any) -> dict[str, Any]:
        at = datetime(2026, 3, day, tzinfo=UTC)
        return _team_row(team_id, at, name=name, revision=day, **extra)

    async with downgraded(backend, tmp_path, "0017") as (config, engine):
        async with engine.begin() as connection:
            await connection.execute(
                old_teams.insert(),
                [
                    row("later", "三中驻点", 3),
                    row("first", "三中驻点", 1),
                    row("gone", "三中驻点", 2, retired_at=datetime(2026, 3, 4, tzinfo=UTC)),
                    row("numbered", "三中驻点（2）", 4),
                    row("long-1", long_name, 5),
                    row("long-2", long_name, 6),
                ],
            )
        await asyncio.to_thread(command.upgrade, config, "head")

        async with engine.connect() as connection:
            found = await connection.execute(
                select(teams_table.c.id, teams_table.c.name, teams_table.c.revision)
            )
            names = {team_id: (name, revision) for team_id, name, revision in found}
            assert {k: v[0] for k, v in names.items()} == {
                "first": "三中驻点",
                "gone": "三中驻点",
                "later": "三中驻点（3）",
                "numbered": "三中驻点（2）",
                "long-1": long_name,
                "long-2": "长" * 125 + "（2）",
            }
            # Renamed: a change of the team, after every revision before.
            assert sorted((names["later"][1], names["long-2"][1])) == [7, 8]
            trail = await _trail(connection, "duplicate_team_renamed")
            renamed = [(a, target, d["name"], d["was"], d["kept"]) for a, target, d in trail]
            assert renamed == [
                ("migration 0018", "later", "三中驻点（3）", "三中驻点", "first"),
                ("migration 0018", "long-2", "长" * 125 + "（2）", long_name, "long-1"),
            ]
        with pytest.raises(IntegrityError):
            async with engine.begin() as connection:
                await connection.execute(
                    teams_table.insert(), row("again", "三中驻点", 9, former_names=[])
                )
        async with engine.begin() as connection:
            await connection.execute(
                teams_table.insert(),
                row("retired", "三中驻点", 9, former_names=[], retired_at=datetime.now(UTC)),
            )


async def test_a_teams_roster_is_put_under_its_present_name_once_per_phone(
    backend: str, tmp_path: Path
) -> None:
    """0019: members stored under a team's old name are put under its present one, the old
    name kept as a former name; a phone the team had under both names is kept once."""
    members = table_of(RosterMember)
    teams_table = table_of(Team)
    old_teams = sa.table(
        "teams", *(sa.column(c.name) for c in teams_table.columns if c.name != "former_names")
    )
    early, late = datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)
    earliest = datetime(2026, 1, 1, tzinfo=UTC)

    def of_team(member_id: str, group: str, phone: str, **extra: Any) -> dict[str, Any]:
        return _member(member_id, "emergency", group, phone, team_id="t", **extra)

    async with downgraded(backend, tmp_path, "0018") as (config, engine):
        async with engine.begin() as connection:
            await connection.execute(
                old_teams.insert(), _team_row("t", early, name="银湖机动队（二期）", revision=1)
            )
            await connection.execute(
                table_of(User).insert(),
                {
                    "id": "u1",
                    "name": "u1",
                    "password_hash": "x",
                    "role": "leader",
                    "team_id": "t",
                    "disabled": False,
                    "created_at": early,
                },
            )
            await connection.execute(
                members.insert(),
                [
                    # Imported before the rename, and again under the new name.
                    of_team("old-1", "银湖机动队", "13900000001", at=early),
                    of_team("new-1", "银湖机动队（二期）", "13900000001", at=late),
                    of_team("old-2", "银湖机动队", "13900000002", at=early, user_id="u1"),
                    of_team("new-2", "银湖机动队（二期）", "13900000002", at=late),
                    of_team("old-3", "银湖机动队", "13900000003", at=early),
                    of_team("older", "银湖联防队", "13900000004", at=earliest),
                    # Another roster's team of the same name: no team's, left as it is.
                    _member("area", "area", "银湖机动队", "13900000001"),
                ],
            )  # fmt: skip
        await asyncio.to_thread(command.upgrade, config, "head")

        async with engine.connect() as connection:
            left = await connection.execute(
                select(members.c.id, members.c.group_name).order_by(members.c.id)
            )
            assert list(left) == [
                ("area", "银湖机动队"),
                ("new-1", "银湖机动队（二期）"),
                ("old-2", "银湖机动队（二期）"),
                ("old-3", "银湖机动队（二期）"),
                ("older", "银湖机动队（二期）"),
            ]
            former = await connection.scalar(
                select(teams_table.c.former_names).where(teams_table.c.id == "t")
            )
            assert former == ["银湖机动队", "银湖联防队"], "newest first"
            trail = await _trail(connection, "duplicate_member_removed")
            removed = [(a, target, data["kept"], data["group_name"]) for a, target, data in trail]
            assert removed == [
                ("migration 0019", "new-2", "old-2", "银湖机动队（二期）"),
                ("migration 0019", "old-1", "new-1", "银湖机动队"),
            ]
        with pytest.raises(IntegrityError):
            async with engine.begin() as connection:
                await connection.execute(
                    members.insert(), of_team("again", "别的名字", "13900000003")
                )


async def test_names_stored_before_the_checks_are_stripped_and_marked_on_the_trail(
    backend: str, tmp_path: Path
) -> None:
    """0020: names lose their surrounding whitespace, and a control or bidirectional
    formatting character (a description's too, but tabs and line breaks) or, in a name, a
    character that shows nothing shows as U+FFFD;
    a unique name another record then has is numbered, as 0018 numbers; each change is on
    the trail with what was stored."""
    teams_table, members, users = table_of(Team), table_of(RosterMember), table_of(User)
    villages, incidents = table_of(Village), table_of(Incident)
    at = datetime(2026, 3, 1, tzinfo=UTC)

    def team(team_id: str, name: str, day: int, **extra: Any) -> dict[str, Any]:
        when = datetime(2026, 3, day, tzinfo=UTC)
        return _team_row(team_id, when, name=name, revision=day, **{"former_names": [], **extra})

    def user(user_id: str, name: str, day: int) -> dict[str, Any]:
        when = datetime(2026, 3, day, tzinfo=UTC)
        row = {"id": user_id, "name": name, "password_hash": "x", "role": "operator"}
        return {**row, "team_id": None, "disabled": False, "created_at": when}

    def village(village_id: str, name: str) -> dict[str, Any]:
        square = [[[114.1, 22.8], [114.2, 22.8], [114.2, 22.9], [114.1, 22.8]]]
        bounds = {"min_lon": 114.1, "min_lat": 22.8, "max_lon": 114.2, "max_lat": 22.9}
        boundary = {"type": "Polygon", "coordinates": square}
        return {"id": village_id, "name": name, "boundary": boundary, "area_m2": 1.0, **bounds}

    def incident(incident_id: str, description: str | None) -> dict[str, Any]:
        return {
            "id": incident_id,
            "reported_at": at,
            "lon": 114.16,
            "lat": 22.85,
            "category": "fight",
            "description": description,
            "status": "open",
            "reported_by": "u-admin",
        }

    async with downgraded(backend, tmp_path, "0019") as (config, engine):
        async with engine.begin() as connection:
            await connection.execute(
                teams_table.insert(),
                [
                    team("kept", "三中驻点", 1),
                    # Two names then, one once stripped: the one already clean keeps it.
                    team("spaced", " 三中驻点\u3000", 2),
                    team("rlo", "联防\u202e队", 3),
                    team("blank", "   ", 4),
                    team("gone", " 三中驻点", 5, retired_at=at),
                    team(
                        "former",
                        "银湖机动队",
                        6,
                        former_names=[" 银湖机动队 ", "旧\u0007名", "旧\ufffd名", "旧名 "],
                    ),
                ],
            )
            await connection.execute(
                users.insert(),
                [
                    user("u-admin", "admin", 1),
                    user("u-space", " admin", 2),
                    user("u-bel", "b\x07", 3),
                ],
            )
            await connection.execute(
                villages.insert(),
                [
                    {**village("v1", "上元村\u3000"), "created_at": at, "updated_at": at},
                    {**village("v2", "下仙\u202e社区"), "created_at": at, "updated_at": at},
                    # A zero-width space: a second 横坑村 that reads as the first.
                    {**village("v3", "横\u200b坑村"), "created_at": at, "updated_at": at},
                ],
            )
            await connection.execute(
                members.insert(),
                [
                    _member(
                        "of-team",
                        "emergency",
                        " 三中驻点\u3000",
                        "13900000001",
                        team_id="spaced",
                    ),
                    # Two rosters of no team that cleaning gives one name, a phone on both.
                    _member("clean", "area", "甲\ufffd组", "13900000002", at=at),
                    _member(
                        "dirty",
                        "area",
                        "甲\u202e组",
                        "13900000002",
                        at=at + timedelta(1),
                        name="李\u202e四",
                        site=" 银湖 ",
                    ),
                    _member("no-site", "watch", "乙组", "13900000003", site="\u3000"),
                ],
            )
            await connection.execute(
                incidents.insert(),
                [
                    incident("i1", "持刀\u0007\r\n东门\t(\u202e)"),
                    # A free text keeps what shows nothing: it names nobody.
                    incident("i2", "两人\u200b\n\t打架 "),
                    incident("i3", None),
                ],
            )
        await asyncio.to_thread(command.upgrade, config, "head")

        async with engine.connect() as connection:
            found = await connection.execute(
                select(
                    teams_table.c.id,
                    teams_table.c.name,
                    teams_table.c.revision,
                    teams_table.c.former_names,
                )
            )
            stored = {row.id: row for row in found}
            assert {k: v.name for k, v in stored.items()} == {
                "kept": "三中驻点",
                "spaced": "三中驻点（2）",
                "rlo": "联防\ufffd队",
                "blank": "（无名称）",
                "gone": "三中驻点",
                "former": "银湖机动队",
            }
            assert stored["former"].former_names == ["旧\ufffd名", "旧名"]
            # Each team changed takes the next revision, after every one before.
            changed = ("spaced", "rlo", "blank", "gone", "former")
            assert [stored[t].revision for t in changed] == [7, 8, 9, 10, 11]
            assert stored["kept"].revision == 1
            found = await connection.execute(select(users.c.id, users.c.name))
            assert dict(found.all()) == {
                "u-admin": "admin",
                "u-space": "admin（2）",
                "u-bel": "b\ufffd",
            }
            found = await connection.execute(select(villages.c.id, villages.c.name))
            assert dict(found.all()) == {
                "v1": "上元村",
                "v2": "下仙\ufffd社区",
                "v3": "横\ufffd坑村",
            }
            found = await connection.execute(
                select(members.c.id, members.c.group_name, members.c.name, members.c.site)
            )
            assert {row.id: tuple(row)[1:] for row in found} == {
                "of-team": ("三中驻点（2）", "队员of-team", None),
                "clean": ("甲\ufffd组", "队员clean", None),
                "dirty": ("甲\ufffd组（2）", "李\ufffd四", "银湖"),
                "no-site": ("乙组", "队员no-site", None),
            }
            found = await connection.execute(select(incidents.c.id, incidents.c.description))
            assert dict(found.all()) == {
                "i1": "持刀\ufffd\r\n东门\t(\ufffd)",
                "i2": "两人\u200b\n\t打架 ",
                "i3": None,
            }
            trail = await _trail(connection, "stored_text_cleaned")
            cleaned = sorted(
                (target, d["table"], d["field"], d["was"], d["now"], d.get("kept_by"))
                for actor, target, d in trail
                if actor == "migration 0020"
            )
            assert len(cleaned) == len(trail)
            assert cleaned == sorted(
                [
                    ("spaced", "teams", "name", " 三中驻点\u3000", "三中驻点（2）", "kept"),
                    ("rlo", "teams", "name", "联防\u202e队", "联防\ufffd队", None),
                    ("blank", "teams", "name", "   ", "（无名称）", None),
                    ("gone", "teams", "name", " 三中驻点", "三中驻点", None),
                    (
                        "former",
                        "teams",
                        "former_names",
                        [" 银湖机动队 ", "旧\u0007名", "旧\ufffd名", "旧名 "],
                        ["旧\ufffd名", "旧名"],
                        None,
                    ),
                    ("u-space", "users", "name", " admin", "admin（2）", "u-admin"),
                    ("u-bel", "users", "name", "b\x07", "b\ufffd", None),
                    ("v1", "villages", "name", "上元村\u3000", "上元村", None),
                    ("v2", "villages", "name", "下仙\u202e社区", "下仙\ufffd社区", None),
                    ("v3", "villages", "name", "横\u200b坑村", "横\ufffd坑村", None),
                    ("dirty", "roster_members", "name", "李\u202e四", "李\ufffd四", None),
                    ("dirty", "roster_members", "site", " 银湖 ", "银湖", None),
                    (
                        "dirty",
                        "roster_members",
                        "group_name",
                        "甲\u202e组",
                        "甲\ufffd组（2）",
                        None,
                    ),
                    ("no-site", "roster_members", "site", "\u3000", None, None),
                    (
                        "i1",
                        "incidents",
                        "description",
                        "持刀\u0007\r\n东门\t(\u202e)",
                        "持刀\ufffd\r\n东门\t(\ufffd)",
                        None,
                    ),
                ]
            )

        # Run again on what it left: nothing more to clean.
        await asyncio.to_thread(command.downgrade, config, "0019")
        await asyncio.to_thread(command.upgrade, config, "head")
        async with engine.connect() as connection:
            assert len(await _trail(connection, "stored_text_cleaned")) == len(trail)


_COPIES = ("incident_reported_at", "incident_closed_at")


def _without_copies(table: sa.Table) -> sa.TableClause:
    """``table`` as the release before 0023 knew it: without its incident's times."""
    return sa.table(
        table.name, *(sa.column(c.name, c.type) for c in table.c if c.name not in _COPIES)
    )


async def _an_operator_and_a_team(connection: AsyncConnection, at: datetime) -> None:
    await connection.execute(
        table_of(User).insert(),
        {"id": "u1", "name": "u1", "password_hash": "x", "role": "operator", "disabled": False,
         "created_at": at},
    )  # fmt: skip
    await connection.execute(
        table_of(Team).insert(), _team_row("t1", at, revision=1, former_names=[])
    )


async def _incident_as_the_release_before_wrote_it(
    connection: AsyncConnection, incident_id: str, at: datetime, closed_at: datetime | None
) -> None:
    """An incident with its three tiers and a dispatch, none of them with the copies."""
    await connection.execute(
        table_of(Incident).insert(),
        {"id": incident_id, "reported_at": at, "lon": 114.16, "lat": 22.85, "category": "fight",
         "status": "closed" if closed_at else "open", "closed_at": closed_at,
         "reported_by": "u1"},
    )  # fmt: skip
    await connection.execute(
        _without_copies(table_of(ChainTier)).insert(),
        [
            {"incident_id": incident_id, "tier": tier, "target_s": 60.0 * tier,
             "deadline": at + timedelta(minutes=tier), "status": "pending",
             "covered": tier == 1}
            for tier in (1, 2, 3)
        ],
    )  # fmt: skip
    await connection.execute(
        _without_copies(table_of(Dispatch)).insert(),
        {"id": f"d-{incident_id}", "incident_id": incident_id, "team_id": "t1", "tier": 1,
         "ring": 0, "distance_m": 10.0, "alerted_at": at + timedelta(milliseconds=3)},
    )  # fmt: skip


async def _copies(connection: AsyncConnection) -> tuple[list[Any], list[Any]]:
    tiers, dispatches = table_of(ChainTier), table_of(Dispatch)
    found_tiers = await connection.execute(
        select(tiers.c.incident_id, tiers.c.tier, *(tiers.c[c] for c in _COPIES))
    )
    found_dispatches = await connection.execute(
        select(dispatches.c.id, dispatches.c.incident_reported_at)
    )
    return sorted(found_tiers), sorted(found_dispatches)


async def test_tiers_and_dispatches_stored_before_0023_take_their_incidents_times(
    backend: str, tmp_path: Path
) -> None:
    """0023: every tier and dispatch already stored gets its incident's report time, and
    every tier its close time (none while the incident is open), as the service writes them
    now; the reports read those instead of joining each row to its incident."""
    reported = datetime(2026, 3, 1, 1, 0, 0, 123456, tzinfo=UTC)
    closed = reported + timedelta(seconds=95, microseconds=7)
    later = timedelta(hours=1)
    async with downgraded(backend, tmp_path, "0022") as (config, engine):
        async with engine.begin() as connection:
            await _an_operator_and_a_team(connection, reported)
            await _incident_as_the_release_before_wrote_it(connection, "open", reported, None)
            await _incident_as_the_release_before_wrote_it(
                connection, "closed", reported + later, closed + later
            )
        await asyncio.to_thread(command.upgrade, config, "head")
        async with engine.connect() as connection:
            assert await _copies(connection) == (
                [("closed", tier, reported + later, closed + later) for tier in (1, 2, 3)]
                + [("open", tier, reported, None) for tier in (1, 2, 3)],
                [("d-closed", reported + later), ("d-open", reported)],
            )
        await asyncio.to_thread(command.downgrade, config, "0022")
        await asyncio.to_thread(command.upgrade, config, "head")


async def test_the_release_before_writes_on_the_migrated_database_and_its_rows_get_the_copies(
    backend: str, tmp_path: Path
) -> None:
    """0024: a server of the release before keeps serving on the migrated database during a
    rolling upgrade (and after a rollback). It writes tiers and dispatches without their
    incident's times and closes an incident without touching its tiers; the database fills
    the copies in, so its reports are stored and counted like this release's."""
    reported = datetime(2026, 3, 1, 1, 0, 0, 123456, tzinfo=UTC)
    closed = reported + timedelta(seconds=95, microseconds=7)
    incidents = table_of(Incident)
    async with fresh_database(backend, tmp_path) as url:
        engine = create_engine(url)
        try:
            async with engine.begin() as connection:
                await _an_operator_and_a_team(connection, reported)
                await _incident_as_the_release_before_wrote_it(connection, "i1", reported, None)
            async with engine.connect() as connection:
                assert await _copies(connection) == (
                    [("i1", tier, reported, None) for tier in (1, 2, 3)],
                    [("d-i1", reported)],
                )
            async with engine.begin() as connection:
                await connection.execute(
                    incidents.update()
                    .where(incidents.c.id == "i1")
                    .values(status="closed", closed_at=closed)
                )
            async with engine.connect() as connection:
                assert await _copies(connection) == (
                    [("i1", tier, reported, closed) for tier in (1, 2, 3)],
                    [("d-i1", reported)],
                )
            # A time put right by hand reaches the copies too.
            moved = reported - timedelta(seconds=1)
            async with engine.begin() as connection:
                await connection.execute(
                    incidents.update().where(incidents.c.id == "i1").values(reported_at=moved)
                )
            async with engine.connect() as connection:
                assert await _copies(connection) == (
                    [("i1", tier, moved, closed) for tier in (1, 2, 3)],
                    [("d-i1", moved)],
                )
        finally:
            await engine.dispose()


async def _report_as_the_release_before_wrote_it(
    connection: AsyncConnection, incident_id: str, at: datetime
) -> None:
    """A report of the release before 0023 as it wrote it: on PostgreSQL in one statement, the
    incident and its dispatch inserted in CTEs beside the tiers' insert (alerts.bulk), so that
    a trigger of one of those inserts does not see the incident yet; on SQLite, which has no
    such statements, one statement after another."""
    if connection.dialect.name != "postgresql":
        await _incident_as_the_release_before_wrote_it(connection, incident_id, at, None)
        return
    incident = (
        table_of(Incident)
        .insert()
        .values(id=incident_id, reported_at=at, lon=114.16, lat=22.85, category="fight",
                status="open", closed_at=None, reported_by="u1")
        .cte("incident")
    )  # fmt: skip
    dispatch = (
        _without_copies(table_of(Dispatch))
        .insert()
        .values(id=f"d-{incident_id}", incident_id=incident_id, team_id="t1", tier=1, ring=0,
                distance_m=10.0, alerted_at=at + timedelta(milliseconds=3))
        .cte("dispatch")
    )  # fmt: skip
    tiers = _without_copies(table_of(ChainTier)).insert().values(
        [
            {"incident_id": incident_id, "tier": tier, "target_s": 60.0 * tier,
             "deadline": at + timedelta(minutes=tier), "status": "pending",
             "covered": tier == 1}
            for tier in (1, 2, 3)
        ]
    )  # fmt: skip
    await connection.execute(tiers.add_cte(incident, dispatch))


async def test_a_report_the_release_before_writes_in_one_statement_gets_the_copies(
    backend: str, tmp_path: Path
) -> None:
    """0029: on PostgreSQL the release before writes a report's incident, tiers and dispatches
    in one statement, and 0024's triggers, run before each row was inserted, did not see the
    incident yet: the copies stayed empty, and `dispatch audit verify` called every report an
    older server took during a rolling upgrade broken. They now fill the rows once the
    statement has written them all."""
    reported = datetime(2026, 3, 1, 1, 0, 0, 123456, tzinfo=UTC)
    async with fresh_database(backend, tmp_path) as url:
        engine = create_engine(url)
        try:
            async with engine.begin() as connection:
                await _an_operator_and_a_team(connection, reported)
                await _report_as_the_release_before_wrote_it(connection, "i1", reported)
            async with engine.connect() as connection:
                assert await _copies(connection) == (
                    [("i1", tier, reported, None) for tier in (1, 2, 3)],
                    [("d-i1", reported)],
                )
        finally:
            await engine.dispose()


class Interrupted(Exception):
    """The upgrade stopped part-way: the process killed, the disk full, the file locked."""


async def test_an_upgrade_stopped_part_way_leaves_the_database_as_it_found_it(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with fresh_database(backend, tmp_path) as url:
        config = migrate.alembic_config(url)
        await asyncio.to_thread(command.downgrade, config, "0022")
        # 0023 adds the tiers' copy of their incident's times; 0024 stops at its first trigger.
        run = Operations.execute

        def stopping_at_a_trigger(self: Operations, sql: Any, *args: Any, **kw: Any) -> Any:
            if "CREATE TRIGGER" in str(sql) or "CREATE FUNCTION" in str(sql):
                raise Interrupted
            return run(self, sql, *args, **kw)

        monkeypatch.setattr(Operations, "execute", stopping_at_a_trigger)
        with pytest.raises(Interrupted):
            await asyncio.to_thread(command.upgrade, config, "head")
        monkeypatch.setattr(Operations, "execute", run)

        engine = create_engine(url)
        try:
            assert await migrate.current_revisions(engine) == ["0022"]
            async with engine.connect() as connection:
                columns = await connection.run_sync(
                    lambda sync: [c["name"] for c in inspect(sync).get_columns("chain_tiers")]
                )
            assert "incident_reported_at" not in columns
        finally:
            await engine.dispose()
        await asyncio.to_thread(command.upgrade, config, "head")
        engine = create_engine(url)
        try:
            assert await migrate.current_revisions(engine) == migrate.heads()
        finally:
            await engine.dispose()


async def test_concurrent_upgrades_of_a_new_sqlite_file_wait_for_each_other(
    tmp_path: Path,
) -> None:
    """As on PostgreSQL (its advisory lock): three `dispatch db upgrade` started together on a
    new file all succeed, one migrating while the others wait, where two stopped with
    "database is locked"."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'town.db'}"
    env = server_env(url, tmp_path)

    async def upgrade() -> tuple[int | None, str]:
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "dispatch", "db", "upgrade",
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(child.communicate(), 120)
        return child.returncode, (out + err).decode()

    done = await asyncio.gather(upgrade(), upgrade(), upgrade())
    assert [status for status, _ in done] == [0, 0, 0], done
    said = sorted(out for _, out in done)
    newest = ", ".join(migrate.heads())
    # One migrated it; the others, waiting meanwhile, found nothing left to do.
    assert [line.startswith(f"database created at {newest} (") for line in said] == [
        False,
        False,
        True,
    ], said
    assert said[0] == said[1] == f"database already at {newest} (the latest): nothing to do\n"
    left = await asyncio.to_thread(lambda: sorted(p.name for p in tmp_path.iterdir()))
    assert not [name for name in left if name.endswith(".upgrade.lock")], left
    engine = create_engine(url)
    try:
        assert await migrate.current_revisions(engine) == migrate.heads()
    finally:
        await engine.dispose()


async def test_users_and_logouts_stored_before_0027_keep_working(
    backend: str, tmp_path: Path
) -> None:
    """0027: every user stored before starts at token generation 0 (tokens issued before carry
    none and are judged by their issue time), a logout stored before has no time of its own
    (kept by its expiry), and the release before, writing users and logouts without either
    column during a rolling upgrade, is filled in by the database."""
    at = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
    users, revoked = table_of(User), table_of(RevokedToken)

    def user(user_id: str) -> dict[str, Any]:
        return {"id": user_id, "name": user_id, "password_hash": "x", "role": "operator",
                "disabled": False, "created_at": at}  # fmt: skip

    def logout(jti: str) -> dict[str, Any]:
        return {"jti": jti, "user_id": "u-before", "expires_at": at + timedelta(hours=12)}

    async with downgraded(backend, tmp_path, "0026") as (config, engine):
        async with engine.begin() as connection:
            await connection.execute(users.insert(), user("u-before"))
            await connection.execute(revoked.insert(), logout("a" * 32))
        await asyncio.to_thread(command.upgrade, config, "head")
        async with engine.begin() as connection:
            await connection.execute(users.insert(), user("u-during"))
            await connection.execute(revoked.insert(), logout("b" * 32))
        async with engine.connect() as connection:
            generations = await connection.execute(
                select(users.c.id, users.c.token_generation).order_by(users.c.id)
            )
            assert generations.all() == [("u-before", 0), ("u-during", 0)]
            logouts = await connection.execute(
                select(revoked.c.jti, revoked.c.revoked_at).order_by(revoked.c.jti)
            )
            assert logouts.all() == [("a" * 32, None), ("b" * 32, None)]
        await asyncio.to_thread(command.downgrade, config, "0026")
        await asyncio.to_thread(command.upgrade, config, "head")


async def test_users_stored_before_0028_have_no_end_of_their_tokens_said(
    backend: str, tmp_path: Path
) -> None:
    """0028: a user stored before, or written by the release before during a rolling upgrade,
    has no ``tokens_ended_by``: a token of his ended since is refused as ended by an
    administrator (4004), not said to be a reset or a disabling it may not have been."""
    at = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
    users = table_of(User)

    def user(user_id: str) -> dict[str, Any]:
        return {"id": user_id, "name": user_id, "password_hash": "x", "role": "operator",
                "disabled": False, "created_at": at, "tokens_valid_after": at}  # fmt: skip

    async with downgraded(backend, tmp_path, "0027") as (config, engine):
        async with engine.begin() as connection:
            await connection.execute(users.insert(), user("u-before"))
        await asyncio.to_thread(command.upgrade, config, "head")
        async with engine.begin() as connection:
            await connection.execute(users.insert(), user("u-during"))
        async with engine.connect() as connection:
            ended = await connection.execute(
                select(users.c.id, users.c.tokens_ended_by).order_by(users.c.id)
            )
            assert ended.all() == [("u-before", None), ("u-during", None)]
        await asyncio.to_thread(command.downgrade, config, "0027")
        await asyncio.to_thread(command.upgrade, config, "head")


async def test_notifications_held_before_0031_get_their_time_from_their_sentence(
    backend: str, tmp_path: Path
) -> None:
    """0031: a notification held before for its leader's phone to reconnect gets
    ``held_until`` from the time its ``held`` sentence begins with (stored in UTC); one whose
    sentence does not begin with a time, and one not held, are left null; the release before,
    writing notifications without it during a rolling upgrade, leaves it null too."""
    at = datetime(2026, 12, 7, 9, 59, 40, tzinfo=UTC)
    until = datetime(2026, 12, 7, 10, 0, 10, 250000, tzinfo=UTC)
    notifications = table_of(Notification)
    before = sa.table(
        notifications.name,
        *(sa.column(c.name, c.type) for c in notifications.c if c.name != "held_until"),
    )
    sentence = (
        "held until 2026-12-07T18:00:10.250000+08:00: the leader's phone was connected to a "
        "server process that went away at 2026-12-07T17:59:40+08:00, and was given 10 s to "
        "reconnect once the server was back"
    )

    def notification(notification_id: str, held: str | None) -> dict[str, Any]:
        return {"id": notification_id, "incident_id": "i1", "dispatch_id": "d-i1",
                "user_id": "u1", "channel": "sms", "status": "notified", "attempts": 1,
                "created_at": at, "finished_at": at, "held": held}  # fmt: skip

    async with downgraded(backend, tmp_path, "0030") as (config, engine):
        async with engine.begin() as connection:
            await _an_operator_and_a_team(connection, at)
            await _incident_as_the_release_before_wrote_it(connection, "i1", at, None)
            await connection.execute(
                before.insert(),
                [
                    notification("n-held", sentence),
                    notification("n-unreadable", "held until later: the phone was away"),
                    notification("n-bad-time", "held until 2026-13-40T99:00:00+08:00: away"),
                    notification("n-not-held", None),
                ],
            )
        await asyncio.to_thread(command.upgrade, config, "head")
        async with engine.begin() as connection:
            await connection.execute(before.insert(), notification("n-during", sentence))
        async with engine.connect() as connection:
            found = await connection.execute(
                select(notifications.c.id, notifications.c.held_until).order_by(notifications.c.id)
            )
            assert found.all() == [
                ("n-bad-time", None),
                ("n-during", None),
                ("n-held", until),
                ("n-not-held", None),
                ("n-unreadable", None),
            ]
        await asyncio.to_thread(command.downgrade, config, "0030")
        async with engine.connect() as connection:
            columns = await connection.run_sync(
                lambda sync: [c["name"] for c in inspect(sync).get_columns("notifications")]
            )
            assert "held_until" not in columns
            held = await connection.execute(select(before.c.id, before.c.held))
            assert dict(held.all())["n-held"] == sentence
        await asyncio.to_thread(command.upgrade, config, "head")
