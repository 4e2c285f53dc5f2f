from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Response

from dispatch.audit import service as audit
from dispatch.auth import service as auth
from dispatch.auth.models import Role
from dispatch.deps import AdminDep, RuntimeDep, SessionDep, require
from dispatch.errors import Forbidden, InvalidInput, Responses, error_response
from dispatch.routing import api_router
from dispatch.schemas import LocationOut, QueryLatitude, QueryLongitude
from dispatch.teams import service
from dispatch.teams.coverage import CoveredBy
from dispatch.teams.models import Team, TeamKind
from dispatch.teams.schemas import CoveringTeamOut, TeamCreate, TeamOut, TeamPatch
from geo.crs import CRS

router = api_router("/api/v1/teams", tags=["teams"])
_Viewer = Depends(require(Role.ADMIN, Role.OPERATOR, Role.AUDITOR, Role.LEADER))
Viewer = Annotated[auth.Principal, _Viewer]
# Those who read reports, which still name retired teams.
OFFICE = (Role.ADMIN, Role.OPERATOR, Role.AUDITOR)
# The largest page of GET /api/v1/teams: some hundreds of kilobytes.
TEAM_PAGE_MAX = 2000

# The next page of a city's teams, after the last team of the one before: GET /api/v1/teams
# and GET /api/v1/reachability take it alike.
AfterTeam = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=32,
        description="the next page: the id of the last team of the page before; only the teams "
        "after it in the list's order come (by tier, name, then id), whatever became of it "
        "since. Teams added or retired between pages neither skip nor repeat one, as they do "
        "with offset",
    ),
]

TeamOffset = Annotated[
    int,
    Query(
        ge=0,
        le=1_000_000,
        description="skip this many, for the next page (a team added or retired between "
        "pages moves the rest by one: after does not)",
    ),
]


def check_cursor(after: str | None, offset: int) -> None:
    """A page is either after a team or at an offset: both at once is refused, not guessed."""
    if after is not None and offset:
        raise InvalidInput("offset: give after (the next page) or offset, not both", field="offset")


def team_out(team: Team) -> TeamOut:
    return TeamOut(
        id=team.id,
        name=team.name,
        kind=TeamKind(team.kind),
        tier=team.tier,
        location=LocationOut(lon=team.lon, lat=team.lat),
        radius_m=team.radius_m,
        zone=team.zone,
        created_at=team.created_at,
        updated_at=team.updated_at,
        retired_at=team.retired_at,
    )


# The database keeps a name one team's in service: a create or a rename that takes another's.
_NAME_TAKEN: Responses = {
    409: error_response(409, "another team in service has this name (field name)")
}


def covering_out(team: Team, hit: CoveredBy) -> CoveringTeamOut:
    return CoveringTeamOut(**team_out(team).model_dump(), distance_m=round(hit.distance_m, 3))


@router.post("", status_code=201, response_model=TeamOut, responses=_NAME_TAKEN)
async def create_team(
    data: TeamCreate, runtime: RuntimeDep, session: SessionDep, _: AdminDep
) -> TeamOut:
    team = await service.create_team(
        session,
        data,
        coverage=runtime.coverage,
        now=runtime.clock.now(),
        max_vertices=runtime.settings.max_zone_vertices,
    )
    audit.note(session, target_id=team.id, name=team.name, kind=team.kind)
    return team_out(team)


@router.get(
    "",
    response_model=list[TeamOut],
    responses={
        403: error_response(403, "include_retired asked for by a leader"),
        422: error_response(
            422,
            "invalid_input, as every route; a cursor that names no team (field after); "
            "after_retired for a team in service or without after (field after_retired); or "
            "offset with after (field offset)",
        ),
    },
)
async def list_teams(
    session: SessionDep,
    principal: Viewer,
    include_retired: Annotated[
        bool,
        Query(
            description="also the retired teams, after those in service (admin, operator, "
            "auditor: the office reports on them)"
        ),
    ] = False,
    # A city has tens of thousands of teams: one answer with all of them is megabytes, built
    # while the server's loop serves nothing else (alerts included). The console reads them a
    # page at a time; without a limit the whole list comes, as it always has.
    limit: Annotated[
        int | None, Query(ge=1, le=TEAM_PAGE_MAX, description="at most this many (a page)")
    ] = None,
    after: AfterTeam = None,
    after_retired: Annotated[
        bool,
        Query(
            description="with include_retired: the team named by after came retired on the "
            "page before (its retired_at set), so the next page goes on among the retired"
        ),
    ] = False,
    offset: TeamOffset = 0,
) -> list[TeamOut]:
    """Teams in service by tier and name (ties by id); retired ones after them on request."""
    if include_retired and principal.role not in OFFICE:
        # A leader's page needs the teams alerted today, not the town's past organisation.
        raise Forbidden(
            "retired teams are listed for admin, operator and auditor only",
            field="include_retired",
        )
    check_cursor(after, offset)
    if after_retired and (after is None or not include_retired):
        raise InvalidInput(
            "after_retired: only with after and include_retired, for a page whose last team "
            "came retired",
            field="after_retired",
        )
    teams = await service.list_teams(
        session,
        include_retired=include_retired,
        limit=limit,
        offset=offset,
        after=after,
        after_retired=after_retired,
    )
    return [team_out(t) for t in teams]


@router.get("/covering", response_model=list[CoveringTeamOut], dependencies=[_Viewer])
async def covering_teams(
    runtime: RuntimeDep,
    session: SessionDep,
    lon: Annotated[QueryLongitude, Query()],
    lat: Annotated[QueryLatitude, Query()],
    crs: Annotated[CRS, Query()] = CRS.WGS84,
) -> list[CoveringTeamOut]:
    """Every team whose zone covers the point, nearest first."""
    found = await service.covering_teams(session, runtime.coverage, lon, lat, crs)
    return [covering_out(team, hit) for team, hit in found]


@router.get("/{team_id}", response_model=TeamOut, dependencies=[_Viewer])
async def get_team(team_id: str, session: SessionDep) -> TeamOut:
    return team_out(await service.get_team(session, team_id))


@router.patch("/{team_id}", response_model=TeamOut, responses=_NAME_TAKEN)
async def update_team(
    team_id: str, patch: TeamPatch, runtime: RuntimeDep, session: SessionDep, _: AdminDep
) -> TeamOut:
    """A team that stops being mobile loses its duty schedule: it serves round the clock."""
    team, schedule_removed = await service.update_team(
        session,
        team_id,
        patch,
        coverage=runtime.coverage,
        now=runtime.clock.now(),
        max_vertices=runtime.settings.max_zone_vertices,
        duty=runtime.duty,
    )
    changes = patch.model_dump(mode="json", exclude_unset=True)
    if changes.get("zone") is not None:
        # A zone can hold thousands of vertices: the trail says it was replaced.
        changes["zone"] = "replaced"
    if schedule_removed:
        audit.note(session, changes=changes, duty_schedule="removed")
    else:
        audit.note(session, changes=changes)
    return team_out(team)


@router.delete("/{team_id}", status_code=204, response_class=Response)
async def retire_team(
    team_id: str, runtime: RuntimeDep, session: SessionDep, _: AdminDep
) -> Response:
    await service.retire_team(
        session, team_id, coverage=runtime.coverage, now=runtime.clock.now(), duty=runtime.duty
    )
    return Response(status_code=204)
