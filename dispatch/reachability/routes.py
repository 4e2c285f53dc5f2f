from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import Depends, Query

from dispatch.auth import service as auth
from dispatch.auth.models import Role
from dispatch.db import before_commit
from dispatch.deps import OperatorDep, RuntimeDep, SessionDep, require
from dispatch.errors import RATE_LIMITED, NotFound, error_response
from dispatch.reachability import service
from dispatch.reachability.schemas import (
    LeaderReachabilityOut,
    TeamReachabilityOut,
    TestAlertOut,
    TestAlertSentOut,
)
from dispatch.routing import api_router
from dispatch.runtime import Runtime
from dispatch.security import limits
from dispatch.teams import service as teams
from dispatch.teams.models import Team
from dispatch.teams.routes import AfterTeam, TeamOffset, check_cursor

router = api_router("/api/v1", tags=["reachability"])

# A city has tens of thousands of teams: every one's reachability in one answer was 5 MB,
# built in a second while the loop served nothing else (alerts included). The list comes a
# page at a time, as GET /api/v1/teams does; without a limit, its first page.
REACHABILITY_PAGE = 1000
REACHABILITY_PAGE_MAX = 2000

Watcher = Annotated[auth.Principal, Depends(require(Role.ADMIN, Role.OPERATOR, Role.AUDITOR))]


async def _views(
    runtime: Runtime, session: SessionDep, found: list[Team]
) -> list[TeamReachabilityOut]:
    leaders = await service.leaders_of(session, [t.id for t in found])
    user_ids = [u.id for users in leaders.values() for u in users]
    seen = await service.presence_of(
        session,
        user_ids,
        now=runtime.clock.now(),
        stale_after_s=3 * runtime.settings.presence_heartbeat_s,
        local=runtime.hub.connected_users(),
        local_seen=runtime.hub.last_seen,
        instance=runtime.origin,
    )
    tests = await service.latest_tests(session, user_ids)
    views = []
    for team in found:
        people = [
            LeaderReachabilityOut(
                user_id=u.id,
                name=u.name,
                connected=seen[u.id].connected,
                last_seen_at=seen[u.id].last_seen_at,
                phone_on_file=bool(u.phone),
                last_test=TestAlertOut.model_validate(tests[u.id]) if u.id in tests else None,
            )
            for u in leaders[team.id]
        ]
        views.append(
            TeamReachabilityOut(
                team_id=team.id,
                team_name=team.name,
                tier=team.tier,
                reachable=any(p.connected for p in people),
                leaders=people,
            )
        )
    return views


@router.get(
    "/reachability",
    response_model=list[TeamReachabilityOut],
    responses={
        422: error_response(
            422,
            "invalid_input, as every route; a cursor that names no team (field after); or "
            "offset with after (field offset)",
        )
    },
)
async def all_teams(
    runtime: RuntimeDep,
    session: SessionDep,
    _: Watcher,
    limit: Annotated[
        int,
        Query(
            ge=1,
            le=REACHABILITY_PAGE_MAX,
            description="at most this many teams (a page); read on with after while a page "
            "comes full",
        ),
    ] = REACHABILITY_PAGE,
    after: AfterTeam = None,
    offset: TeamOffset = 0,
) -> list[TeamReachabilityOut]:
    """The active teams, in GET /api/v1/teams's order, a page at a time: is a leader connected
    now, when each was last seen, the last test."""
    check_cursor(after, offset)
    found = await teams.list_teams(session, limit=limit, offset=offset, after=after)
    return await _views(runtime, session, found)


@router.get("/teams/{team_id}/reachability", response_model=TeamReachabilityOut)
async def one_team(
    team_id: str, runtime: RuntimeDep, session: SessionDep, _: Watcher
) -> TeamReachabilityOut:
    return (await _views(runtime, session, [await teams.get_team(session, team_id)]))[0]


# Per user, across teams: every team of a town tested at the start of a shift, then one every
# few seconds; one account cannot ring the leaders' phones at machine speed.
TEST_ALERTS = limits.Rate(burst=60, per_minute=20)


@router.post(
    "/teams/{team_id}/test-alert",
    status_code=202,
    response_model=TestAlertSentOut,
    responses={
        202: {"description": "stored for every leader of the team and sent to open sockets"},
        409: error_response(409, "the team has no leader account"),
        **RATE_LIMITED,
    },
)
async def send_test_alert(
    team_id: str, runtime: RuntimeDep, session: SessionDep, operator: OperatorDep
) -> TestAlertSentOut:
    """A ``test_alert`` message to each leader of the team. The round trip is recorded when
    the phone acknowledges it; read it from the team's reachability or the test alert.

    At most 60 at once and 20 a minute per user (429 with Retry-After beyond)."""
    now = runtime.clock.now()
    team, sent = await service.send_test_alert(
        session, team_id, requested_by=operator.user_id, now=now
    )
    # Spent with the last statement, as a report's: a refused test alert writes nothing.
    key = f"test-alert:{operator.user_id}"
    before_commit(session, partial(limits.take, session, key, TEST_ALERTS, now, "test alerts"))
    return TestAlertSentOut(team_id=team.id, sent=[TestAlertOut.model_validate(t) for t in sent])


@router.get("/teams/{team_id}/test-alerts/{test_alert_id}", response_model=TestAlertOut)
async def get_test_alert(
    team_id: str, test_alert_id: str, session: SessionDep, _: Watcher
) -> TestAlertOut:
    test = await service.get_test_alert(session, team_id, test_alert_id)
    if test is None:
        # Which of the two is missing, the team first. Retired teams count: their test alerts
        # are read still.
        if not await teams.teams_by_id(session, [team_id]):
            raise NotFound(f"team {team_id!r} does not exist", field="team_id")
        raise NotFound(f"test alert {test_alert_id!r} does not exist", field="test_alert_id")
    return TestAlertOut.model_validate(test)
