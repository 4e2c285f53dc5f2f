from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, Query, Request, Response

from dispatch.audit import service as audit
from dispatch.auth import service as auth
from dispatch.auth.models import Role
from dispatch.deps import AdminDep, RuntimeDep, SessionDep, require
from dispatch.errors import ErrorOut, Responses, error_response
from dispatch.rosters import service
from dispatch.rosters.files import XLSX_TYPE, download, file_facts, read_capped
from dispatch.rosters.models import KIND_TITLES, RosterKind
from dispatch.rosters.schemas import (
    AccountLink,
    DutyIn,
    DutyOut,
    ImportOut,
    MemberCreate,
    MemberOut,
    TeamStrengthOut,
)
from dispatch.routing import api_router, file_answer
from dispatch.schemas import Instant

router = api_router("/api/v1/rosters", tags=["rosters"])
Reader = Annotated[
    auth.Principal, Depends(require(Role.ADMIN, Role.OPERATOR, Role.AUDITOR, Role.LEADER))
]
Office = Annotated[auth.Principal, Depends(require(Role.ADMIN, Role.OPERATOR, Role.AUDITOR))]

_UPLOAD: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "the roster as an .xlsx workbook (its first sheet with a header row) "
        "or a CSV file (UTF-8 or GBK; or Excel's Unicode text: UTF-16, tab-separated), sent "
        "as the raw request body; the format is read from the content",
        "content": {
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {
                "schema": {"type": "string", "format": "binary"}
            },
            "text/csv": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
# Each replaces the router's answer of its status (ERROR_RESPONSES), so it names the body too.
_REFUSALS: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorOut, "description": "larger than DISPATCH_MAX_UPLOAD_BYTES"},
    415: {
        "model": ErrorOut,
        "description": "neither .xlsx nor CSV (an old .xls is named as such)",
    },
    422: {
        "model": ErrorOut,
        "description": "bad rows: each listed with its row number and reason; nothing written",
    },
    409: error_response(409, "a team's roster changed while the file was imported: import again"),
}
_FILE = file_answer("the roster file", XLSX_TYPE, "text/csv")
_UNKNOWN_TEAM: Responses = {404: error_response(404, "team_id names no team")}


@router.post("/import", response_model=ImportOut, openapi_extra=_UPLOAD, responses=_REFUSALS)
async def import_roster(
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    _: AdminDep,
    kind: Annotated[RosterKind, Query(description="which of the plan's rosters the file is")],
) -> ImportOut:
    """Replace the members of every team named in the file (column 队伍名称). Headers follow
    the plan's attachments 2-5: 序号、队伍名称、单元、姓名、职务、联系电话、身份证号码、所在单位."""
    data = await read_capped(request, runtime.settings.max_upload_bytes)
    result = await service.import_roster(session, kind, data, runtime.clock.now(), runtime.duty)
    audit.note(session, file=file_facts(data), **result.model_dump(mode="json"))
    return result


@router.get("/export", response_class=Response, responses={**_FILE, **_UNKNOWN_TEAM})
async def export_roster(
    session: SessionDep,
    viewer: Office,
    kind: RosterKind,
    format: Annotated[Literal["xlsx", "csv"], Query()] = "xlsx",
    team_id: str | None = None,
) -> Response:
    """The roster with the plan's Chinese headers. Phone and ID numbers are masked unless the
    caller is an admin."""
    content, media_type = await service.export_roster(
        session, kind, format, team_id=team_id, viewer=viewer
    )
    return download(
        content, media_type, f"{KIND_TITLES[kind]}.{format}", f"roster-{kind.value}.{format}"
    )


@router.get(
    "/members",
    response_model=list[MemberOut],
    responses={
        403: error_response(403, "a leader asking for another team's roster"),
        **_UNKNOWN_TEAM,
    },
)
async def list_members(
    session: SessionDep,
    viewer: Reader,
    kind: RosterKind | None = None,
    team_id: str | None = None,
    group_name: str | None = None,
) -> list[MemberOut]:
    """Phone and ID numbers are masked unless the caller is an admin; a leader sees his team's."""
    members = await service.list_members(
        session, kind=kind, team_id=team_id, group_name=group_name, viewer=viewer
    )
    reveal = service.can_see_identity(viewer)
    return [service.member_out(m, reveal=reveal) for m in members]


@router.post(
    "/members",
    status_code=201,
    response_model=MemberOut,
    responses={
        409: error_response(
            409,
            "the team's roster has the phone, or the kind's the ID number, already; or the "
            "team was retired meanwhile (the field is named)",
        )
    },
)
async def create_member(
    data: MemberCreate, runtime: RuntimeDep, session: SessionDep, _: AdminDep
) -> MemberOut:
    member = await service.create_member(session, data, runtime.clock.now(), runtime.duty)
    return service.member_out(member, reveal=True)


@router.delete("/members/{member_id}", status_code=204, response_class=Response)
async def delete_member(
    member_id: str, runtime: RuntimeDep, session: SessionDep, _: AdminDep
) -> Response:
    await service.delete_member(session, member_id, runtime.duty)
    return Response(status_code=204)


@router.put(
    "/members/{member_id}/account",
    response_model=MemberOut,
    responses={
        404: error_response(404, "no such member, or user_id names no account"),
        409: error_response(409, "the account is linked to another member (field user_id)"),
    },
)
async def link_account(
    member_id: str, body: AccountLink, runtime: RuntimeDep, session: SessionDep, _: AdminDep
) -> MemberOut:
    """Link a leader account of the member's team to the member (or unlink with null). In a
    team that rotates units, the account is alerted while the member's unit is on turn."""
    member = await service.link_account(
        session, member_id, body.user_id, runtime.clock.now(), runtime.duty
    )
    return service.member_out(member, reveal=True)


@router.get("/strength", response_model=list[TeamStrengthOut])
async def team_strength(session: SessionDep, _: Office) -> list[TeamStrengthOut]:
    """Every fixed-post and mobile team against the plan's minimum of 3 units of 4 members."""
    return await service.team_strength(session)


@router.put("/duty/{team_id}", response_model=DutyOut)
async def set_duty(
    team_id: str, body: DutyIn, runtime: RuntimeDep, session: SessionDep, _: AdminDep
) -> DutyOut:
    """Duty hours (Asia/Shanghai) and unit rotation of a mobile team. Outside them, or when the
    unit on turn has nobody on the roster, the team is skipped at dispatch."""
    now = runtime.clock.now()
    schedule = await service.set_schedule(session, team_id, body, now, runtime.duty)
    return await service.duty_out(session, schedule, now)


@router.get("/duty/{team_id}", response_model=DutyOut)
async def get_duty(
    team_id: str,
    runtime: RuntimeDep,
    session: SessionDep,
    _: Reader,
    at: Annotated[Instant | None, Query(description="the moment to judge (default now)")] = None,
) -> DutyOut:
    schedule = await service.get_schedule(session, team_id)
    moment: datetime = at if at is not None else runtime.clock.now()
    return await service.duty_out(session, schedule, moment)


@router.delete("/duty/{team_id}", status_code=204, response_class=Response)
async def delete_duty(
    team_id: str, runtime: RuntimeDep, session: SessionDep, _: AdminDep
) -> Response:
    """Without a schedule the team serves round the clock."""
    await service.delete_schedule(session, team_id, runtime.duty)
    return Response(status_code=204)
