"""Teams and their zones."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Select, delete, func, select, text, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from alerts.bulk import any_of, on_postgresql
from dispatch.db import after_commit, announce, dialect_name, new_id, violates_unique
from dispatch.errors import Conflict, InvalidInput, NotFound
from dispatch.rosters.book import DutyBook, duty_changed
from dispatch.rosters.models import DutySchedule, RosterMember
from dispatch.schemas import wgs84_point
from dispatch.teams.coverage import Coverage, CoveredBy, newest_revision
from dispatch.teams.models import DEFAULT_RADIUS_M, FORMER_NAMES_KEPT, Team, TeamKind
from dispatch.teams.schemas import TeamCreate, TeamPatch
from geo.crs import CRS
from geo.errors import CoordinateError, ZoneError
from geo.zones import parse_zone_geojson, zone_to_geojson


async def create_team(
    session: AsyncSession, data: TeamCreate, *, coverage: Coverage, now: datetime, max_vertices: int
) -> Team:
    lon, lat = data.location.to_wgs84()
    radius_m, zone = _zone_fields(data.kind, data.radius_m, data.zone, max_vertices)
    team = Team(
        id=new_id(),
        name=data.name,
        kind=data.kind.value,
        tier=data.kind.tier,
        lon=lon,
        lat=lat,
        radius_m=radius_m,
        zone=zone,
        created_at=now,
        updated_at=now,
        retired_at=None,
        # Numbered by ``stamp`` below, in the same transaction.
        revision=0,
        former_names=[],
    )
    session.add(team)
    await _flush_name(session, team.name)
    await _changed(session, coverage, team)
    return team


# The index that keeps a name one active team's (Team.__table_args__).
NAME_INDEX = "uq_teams_active_name"


async def _flush_name(session: AsyncSession, name: str) -> None:
    """Flush a team just named ``name``: the database refuses a name another team in service
    has, also when two requests take it at once (the second waits for the first to commit)."""
    try:
        await session.flush()
    except IntegrityError as error:
        if violates_unique(error, NAME_INDEX, "teams", "name"):
            raise Conflict(
                f"name: another team in service is named {name!r}; choose another name",
                field="name",
            ) from None
        raise


async def update_team(
    session: AsyncSession,
    team_id: str,
    patch: TeamPatch,
    *,
    coverage: Coverage,
    now: datetime,
    max_vertices: int,
    duty: DutyBook | None = None,
) -> tuple[Team, bool]:
    """The team as changed, and whether its duty schedule was removed: duty hours are a mobile
    team's, so a team that stops being mobile serves round the clock (a fixed post always
    does), and becoming mobile again it starts without a schedule."""
    team = await get_team(session, team_id, for_update=True)
    was_mobile = team.kind == TeamKind.MOBILE.value
    fields = patch.model_fields_set
    renamed = False
    if patch.name is not None and patch.name != team.name:
        team.former_names = _former_names(team, patch.name)
        team.name, renamed = patch.name, True
    if patch.location is not None:
        team.lon, team.lat = patch.location.to_wgs84()
    if patch.radius_m is not None or patch.zone is not None:
        kind = patch.kind or TeamKind(team.kind)
        team.radius_m, team.zone = _zone_fields(kind, patch.radius_m, patch.zone, max_vertices)
    elif fields & {"radius_m", "zone"}:
        kind = patch.kind or TeamKind(team.kind)
        cleared = fields & {"radius_m", "zone"}
        team.radius_m, team.zone = _zone_cleared(team, kind, cleared, max_vertices)
    elif patch.kind is not None and patch.kind.value != team.kind:
        team.radius_m, team.zone = _zone_of_new_kind(team, patch.kind, max_vertices)
    if patch.kind is not None:
        team.kind, team.tier = patch.kind.value, patch.kind.tier
    team.updated_at = now
    await _flush_name(session, team.name)
    if renamed:
        # The roster goes with the team: its members show, export and import under the new
        # name (an import locks the team, so none is written under the old one meanwhile).
        await session.execute(
            update(RosterMember)
            .where(RosterMember.team_id == team.id)
            .values(group_name=team.name)
            .execution_options(synchronize_session=False)
        )
    await _changed(session, coverage, team)
    removed = was_mobile and team.kind != TeamKind.MOBILE.value
    return team, removed and await _remove_schedule(session, team.id, duty)


def _former_names(team: Team, new_name: str) -> list[str]:
    """The names the team answers to in roster files once renamed to ``new_name``."""
    kept = [n for n in team.former_names if n not in (team.name, new_name)]
    return [team.name, *kept][:FORMER_NAMES_KEPT]


async def _remove_schedule(session: AsyncSession, team_id: str, duty: DutyBook | None) -> bool:
    """Remove the team's duty schedule, if it has one; the duty book hears of it."""
    result = await session.execute(delete(DutySchedule).where(DutySchedule.team_id == team_id))
    if not getattr(result, "rowcount", 0):
        return False
    duty_changed(session, duty)
    return True


async def retire_team(
    session: AsyncSession,
    team_id: str,
    *,
    coverage: Coverage,
    now: datetime,
    duty: DutyBook | None = None,
) -> None:
    """Teams are retired, not erased: past dispatches keep pointing at them. Its duty
    schedule stays on record; the duty book, which holds the teams in service, lets it go."""
    team = await get_team(session, team_id, for_update=True)
    team.retired_at = now
    team.updated_at = now
    await session.flush()
    await _changed(session, coverage, team)
    scheduled = select(DutySchedule.team_id).where(DutySchedule.team_id == team.id)
    if await session.scalar(scheduled) is not None:
        duty_changed(session, duty)


TEAMS_CHANNEL = "dispatch_teams"
# Taken by every change of a team, for its transaction (an arbitrary constant: "teams").
TEAMS_LOCK = 0x7465616D73


async def stamp(session: AsyncSession, team: Team) -> None:
    """Give the change of ``team`` just flushed the next revision, in commit order.

    Each server process's coverage index applies the teams whose revision is above its own
    (``Coverage.catch_up``), which is right only if no change commits with a revision below
    one already seen. So the changes take turns from reading the newest revision to their
    commit: on PostgreSQL by an advisory lock held to the end of the transaction (taken just
    before the read: the statement reading the revision sees every change committed before);
    SQLite has one writer at a time, and the flush of ``team`` before this already holds the
    write lock, so the same single statement reads the newest revision under it.
    """
    await _take_turn(session)
    # The newest revision of all the teams, not of the row updated.
    others = select(func.coalesce(func.max(Team.revision), 0) + 1).scalar_subquery()
    revision = await session.scalar(
        update(Team)
        .where(Team.id == team.id)
        .values(revision=others.correlate(None))
        .returning(Team.revision)
        .execution_options(synchronize_session=False)
    )
    assert revision is not None, "the team was flushed in this transaction"
    set_committed_value(team, "revision", revision)


async def stamp_all(session: AsyncSession, teams: list[Team]) -> None:
    """``stamp`` for many teams flushed at once (a simulated town's): one read, one write.
    On SQLite their flush holds the write lock already, as for ``stamp``."""
    await _take_turn(session)
    newest = await session.scalar(newest_revision()) or 0
    for n, team in enumerate(teams, start=1):
        team.revision = newest + n
    await session.flush()


async def _take_turn(session: AsyncSession) -> None:
    if dialect_name(session) == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": TEAMS_LOCK})


async def _changed(session: AsyncSession, coverage: Coverage, team: Team) -> None:
    """Number the change, update this process's coverage on commit, and tell the other
    processes to catch up (each also catches up by itself before its next decision)."""
    await stamp(session, team)
    after_commit(session, lambda: coverage.put(team))
    announce(session, TEAMS_CHANNEL, team.id)


async def load_coverage(session: AsyncSession, coverage: Coverage) -> None:
    """Fill ``coverage`` with every active team, at the revision read first."""
    revision = await session.scalar(newest_revision())
    coverage.load(await all_teams(session), revision or 0)


def _zone_of_new_kind(
    team: Team, kind: TeamKind, max_vertices: int
) -> tuple[float | None, dict[str, Any] | None]:
    """The zone a team takes when its kind changes and no radius_m or zone comes with it.

    A joint-defence kind takes its own circle (100 m for a fixed post, 500 m for a mobile team),
    as a new team of that kind would; a polygon drawn for police is not silently dropped for
    it: the change must say its radius_m. A police kind keeps a zone drawn for police, and
    needs one of its own in place of a joint-defence team's circle, as a new team would.
    """
    if kind.tier == 1 and team.zone is not None:
        raise InvalidInput(
            f"zone: a {kind.value} team's zone is a circle, and this team has a polygon; "
            "give radius_m with the change of kind",
            field="zone",
        )
    if kind.tier == 1 or TeamKind(team.kind).tier == 1:
        return _zone_fields(kind, None, None, max_vertices)
    return team.radius_m, team.zone


def _zone_cleared(
    team: Team, kind: TeamKind, cleared: set[str], max_vertices: int
) -> tuple[float | None, dict[str, Any] | None]:
    """The zone left when a change gives ``cleared`` (radius_m, zone or both) as null and
    neither a value: those are cleared, the other stays as it was (``{"zone": null}`` keeps a
    circle's radius). A team left with neither takes its kind's circle, as a new team does
    (a police kind has none: 422). A change of kind between tiers brings the new kind's zone
    whatever stays, as a change of kind alone does."""
    carried = kind.value == team.kind or min(kind.tier, TeamKind(team.kind).tier) > 1
    radius_m = team.radius_m if carried and "radius_m" not in cleared else None
    zone = team.zone if carried and "zone" not in cleared else None
    if radius_m is None and zone is None:
        return _zone_fields(kind, None, None, max_vertices)
    return radius_m, zone


def _zone_fields(
    kind: TeamKind, radius_m: float | None, zone: dict[str, Any] | None, max_vertices: int
) -> tuple[float | None, dict[str, Any] | None]:
    if radius_m is not None and zone is not None:
        raise InvalidInput("zone: give either radius_m or zone, not both", field="zone")
    if zone is not None and kind in DEFAULT_RADIUS_M:
        # The escalation ring reaches joint-defence teams by the distance to their site: a
        # polygon would leave the team out of it.
        raise InvalidInput(
            f"zone: a {kind.value} team's zone is a circle around its site; give radius_m "
            f"(default {DEFAULT_RADIUS_M[kind]:g})",
            field="zone",
        )
    if zone is not None:
        return None, parse_zone(zone, max_vertices)
    if radius_m is not None:
        return radius_m, None
    if kind in DEFAULT_RADIUS_M:
        return DEFAULT_RADIUS_M[kind], None
    raise InvalidInput(
        f"radius_m: a {kind.value} team needs a radius_m or a zone", field="radius_m"
    )


def parse_zone(zone: dict[str, Any], max_vertices: int) -> dict[str, Any]:
    raw_crs = zone.get("crs", CRS.WGS84.value)
    try:
        crs = CRS(raw_crs)
    except ValueError:
        raise InvalidInput(
            f"zone.crs: unknown coordinate system {raw_crs!r}; use wgs84, gcj02 or bd09",
            field="zone.crs",
        ) from None
    body = {k: v for k, v in zone.items() if k != "crs"}
    try:
        geometry = parse_zone_geojson(body, crs, max_vertices=max_vertices)
    except ZoneError as error:
        raise InvalidInput(f"zone: {error.message}", field="zone") from None
    except CoordinateError as error:
        raise InvalidInput(f"zone: {error.message}", field="zone") from None
    return zone_to_geojson(geometry)


async def get_team(
    session: AsyncSession, team_id: str, *, for_update: bool = False, held: bool = False
) -> Team:
    """The team in service. ``for_update`` to change it; ``held`` to act on it as it is
    (names_held's share lock): no retirement or change of it commits until the transaction
    ends, and one under way is waited for, after which a team it retired is not found."""
    query = select(Team).where(Team.id == team_id, Team.retired_at.is_(None))
    if for_update:
        query = query.with_for_update(key_share=True)
    elif held:
        query = query.with_for_update(read=True)
    team = await session.scalar(query)
    if team is None:
        raise NotFound(f"team {team_id!r} does not exist", field="team_id")
    return team


async def names_held(session: AsyncSession, team_ids: list[str]) -> dict[str, str]:
    """The names of those of ``team_ids`` in service, as they are now, held until the
    transaction ends: no rename or retirement of them commits in between (PostgreSQL: a share
    lock, which waits for one under way; SQLite has one writer at a time)."""
    rows = await session.execute(
        select(Team.id, Team.name)
        .where(Team.id.in_(team_ids), Team.retired_at.is_(None))
        .with_for_update(read=True)
    )
    return {team_id: name for team_id, name in rows}


async def list_teams(
    session: AsyncSession,
    *,
    include_retired: bool = False,
    limit: int | None = None,
    offset: int = 0,
    after: str | None = None,
    after_retired: bool = False,
) -> list[Team]:
    """Teams in service by tier and name; with ``include_retired``, the retired ones after
    them, in the same order: reports still cover their past dispatches. ``limit`` and
    ``offset`` take a page of that list; ``after`` (the id of the previous page's last team,
    ``after_retired`` if it came retired) starts the next page after it."""
    if offset:
        query = select(Team)
        if not include_retired:
            query = query.where(Team.retired_at.is_(None))
        # By id last: retired teams may share a name, and a page must follow the one before.
        order = (Team.retired_at.is_not(None), Team.tier, Team.name, Team.id)
        query = query.order_by(*order).offset(offset)
        if limit is not None:
            query = query.limit(limit)
        return list(await session.scalars(query))
    # From the start or from a cursor, each part of the list (in service, retired) is read on
    # its own, on the index on (tier, name, id) from the cursor on: no page sorts the city's
    # teams again, and teams added or retired between pages move none past the cursor.
    since = None if after is None else await _cursor_key(session, after, after_retired)
    teams: list[Team] = []
    if not after_retired:
        teams = await _part(session, retired=False, since=since, limit=limit)
        if not include_retired or (limit is not None and len(teams) >= limit):
            return teams
        # The retired part from its start: the cursor was a team in service when listed.
        since = None
    rest = None if limit is None else limit - len(teams)
    return teams + await _part(session, retired=True, since=since, limit=rest)


# Where a cursor team stands in the list's order, ties of tier and name going by id.
_Key = tuple[int, str, str]


async def _cursor_key(session: AsyncSession, after: str, after_retired: bool) -> _Key:
    """The place of the team ``after`` names as it stands now: its tier, name and id. A team
    retired since its page was read keeps its place among those in service unless the page
    listed it retired (``after_retired``); a team is never brought back into service."""
    row = (
        await session.execute(select(Team.tier, Team.name, Team.retired_at).where(Team.id == after))
    ).one_or_none()
    if row is None:
        raise InvalidInput(
            f"after: {after!r} names no team; give the id of the last team of the page before",
            field="after",
        )
    if after_retired and row.retired_at is None:
        raise InvalidInput(
            f"after_retired: team {after!r} is in service; give after_retired only when the "
            "page listed the team named by after as retired",
            field="after_retired",
        )
    return (row.tier, row.name, after)


async def _part(
    session: AsyncSession, *, retired: bool, since: _Key | None, limit: int | None
) -> list[Team]:
    in_part = Team.retired_at.is_not(None) if retired else Team.retired_at.is_(None)
    query = select(Team).where(in_part).order_by(Team.tier, Team.name, Team.id)
    if since is not None:
        # One row-value comparison, not an OR of three: both databases then read the index
        # on (tier, name, id) from the cursor on.
        query = query.where(tuple_(Team.tier, Team.name, Team.id) > tuple_(*since))
    if limit is not None:
        query = query.limit(limit)
    return list(await session.scalars(query))


async def teams_by_id(session: AsyncSession, team_ids: list[str]) -> dict[str, Team]:
    if not team_ids:
        return {}
    rows = await session.scalars(select(Team).where(Team.id.in_(team_ids)))
    return {t.id: t for t in rows}


async def team_names(session: AsyncSession, team_ids: Iterable[str]) -> dict[str, str]:
    """Each team's name by id (retired teams' too: they name the dispatches of their past)."""
    wanted = sorted(set(team_ids))
    if not wanted:
        return {}
    rows = await session.execute(_names_query(on_postgresql(session)), {"team_ids": wanted})
    return {team_id: name for team_id, name in rows}


@cache
def _names_query(postgresql: bool) -> Select[str, str]:
    # Built once: every incident's view names its teams.
    return select(Team.id, Team.name).where(any_of(Team.id, "team_ids", postgresql))


async def all_teams(session: AsyncSession) -> list[Team]:
    return list(await session.scalars(select(Team).where(Team.retired_at.is_(None))))


async def covering_teams(
    session: AsyncSession, coverage: Coverage, lon: float, lat: float, crs: CRS
) -> list[tuple[Team, CoveredBy]]:
    """Teams covering the point given by the query parameters lon, lat and crs."""
    lon, lat = wgs84_point(lon, lat, crs, field=None)
    await coverage.catch_up(session)
    hits = coverage.covering(lon, lat)
    teams = await teams_by_id(session, [h.team_id for h in hits])
    return [(teams[h.team_id], h) for h in hits if h.team_id in teams]
