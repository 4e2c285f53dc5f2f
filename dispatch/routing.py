"""The one way API routers are made: shared error answers and the audit trail on every route."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from dispatch.audit.trail import audit_trail
from dispatch.errors import ERROR_RESPONSES


def api_router(prefix: str = "", *, tags: list[str]) -> APIRouter:
    """Every route declares the error answers ({"error", "detail"}) it may give, and every
    change it makes leaves an audit row in the same transaction."""
    return APIRouter(
        prefix=prefix,
        tags=list(tags),
        responses=dict(ERROR_RESPONSES),
        # scope="function": the row is written before the unit of work commits.
        dependencies=[Depends(audit_trail, scope="function")],
    )
