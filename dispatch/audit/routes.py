from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query

from dispatch.audit import service
from dispatch.audit.schemas import AuditEntryOut, AuditPage
from dispatch.auth import service as auth
from dispatch.auth.models import Role
from dispatch.deps import SessionDep, require
from dispatch.routing import api_router
from dispatch.schemas import Instant, empty_period

router = api_router("/api/v1/audit", tags=["audit"])
Reader = Annotated[auth.Principal, Depends(require(Role.ADMIN, Role.AUDITOR))]
_Id = Annotated[str | None, Query(max_length=64)]


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
