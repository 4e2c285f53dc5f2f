from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query

from dispatch.audit import chain, service, verification
from dispatch.audit.schemas import (
    AuditEntryOut,
    AuditPage,
    BreakOut,
    BreakPlaceOut,
    ChainHeadOut,
    VerificationOut,
)
from dispatch.auth import service as auth
from dispatch.auth.models import Role
from dispatch.deps import RuntimeDep, SessionDep, require
from dispatch.errors import RATE_LIMITED, RateLimited
from dispatch.routing import api_router
from dispatch.schemas import Instant, empty_period

router = api_router("/api/v1/audit", tags=["audit"])
Reader = Annotated[auth.Principal, Depends(require(Role.ADMIN, Role.AUDITOR))]
# Those who read the reports, whose figures the verification vouches for.
Verifier = Annotated[auth.Principal, Depends(require(Role.ADMIN, Role.OPERATOR, Role.AUDITOR))]
_Id = Annotated[str | None, Query(max_length=64)]
# When a verification refused for another one running is worth asking again.
VERIFYING_RETRY_S = 10


class VerificationRunning(RateLimited):
    """A verification asked for while another runs in this process. No count of attempts was
    passed, so it has a code of its own: the report page says a verification is under way and
    when to ask again, where ``rate_limited`` would tell its user he did too much."""

    code = "verification_running"


@router.get("", response_model=AuditPage)
async def audit_trail(
    session: SessionDep,
    reader: Reader,
    actor_id: _Id = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    target_id: _Id = None,
    start: Annotated[Instant | None, Query(alias="from")] = None,
    end: Annotated[Instant | None, Query(alias="to")] = None,
    before_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> AuditPage:
    """Every change made through the API and the command line, newest first. Read-only: no
    route changes or deletes a row. Phone and ID numbers are masked unless you are an admin."""
    if start is not None and end is not None and start >= end:
        # As the reports say it: the period [from, to) holds no moment.
        raise empty_period(start, end)
    filters = service.Filters(actor_id, action, target_id, start, end)
    # One row past the page says whether there is an older page: a last page the rows left fill
    # exactly names no before_id, rather than one that answers an empty page.
    rows = await service.entries(session, filters, before_id=before_id, limit=limit + 1)
    more, rows = len(rows) > limit, rows[:limit]
    reveal = reader.role == Role.ADMIN
    items = [
        AuditEntryOut.model_validate(row).model_copy(
            update={"data": row.data if reveal else service.mask_personal(row.data)}
        )
        for row in rows
    ]
    last = rows[-1].id if more else None
    return AuditPage(items=items, next_before_id=last)


@router.get(
    "/verification",
    response_model=VerificationOut,
    responses={
        429: {
            **RATE_LIMITED[429],
            "description": "verification_running: a verification is already running on this "
            "server (one at a time); ask again after Retry-After seconds (10)",
        }
    },
)
async def audit_verification(
    runtime: RuntimeDep,
    session: SessionDep,
    _: Verifier,
    head: Annotated[
        str | None,
        Query(
            pattern="^[0-9a-f]{64}$",
            description="a chain head a report states (记录链头): answer whether that row is "
            "still in the log",
        ),
    ] = None,
) -> VerificationOut:
    """What `dispatch audit verify` checks and says, over one snapshot of the database: every
    incident's event chain, and the rows the reports judge from against the events. Read a
    slice of incidents at a time; over a large log it takes as long as the command."""
    if runtime.verifying.locked():
        raise VerificationRunning(
            "a verification of the record is already running on this server; its answer comes "
            "once every incident is checked: ask again then",
            retry_after_s=VERIFYING_RETRY_S,
        )
    async with runtime.verifying:
        now = runtime.clock.now()
        found = await verification.verify(session, now, head)
    verdict = found.verdict
    breaks = [] if verdict.broken is None else [_break_out(verdict)]
    return VerificationOut(
        ok=verdict.broken is None,
        checked_at=now,
        events=verdict.events,
        incidents=verdict.incidents,
        unchecked=verdict.unrecorded,
        head=_head_out(found.head),
        breaks=breaks,
        asked_head=_head_out(found.asked),
        head_found=None if head is None else found.asked is not None,
    )


def _head_out(head: chain.Head | None) -> ChainHeadOut | None:
    return (
        None if head is None else ChainHeadOut(event_id=head.event_id, hash=head.hash, at=head.at)
    )


def _break_out(verdict: chain.Verdict) -> BreakOut:
    broken = verdict.broken
    assert broken is not None
    place = verdict.place
    return BreakOut(
        incident_id=broken.incident_id,
        event_id=broken.event_id,
        seq=broken.seq,
        row=broken.row,
        reason=broken.reason,
        code=broken.code,
        values=dict(broken.values),
        text=str(broken),
        where=verdict.where,
        place=None if place is None else BreakPlaceOut.model_validate(place),
    )
