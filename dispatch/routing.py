"""The one way API routers are made: shared error answers and the audit trail on every route."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from dispatch.audit.trail import audit_trail
from dispatch.errors import ERROR_RESPONSES, header


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


def file_name(*, when: str = "") -> dict[str, Any]:
    """The Content-Disposition header an export names its file with, for a 200's ``headers``;
    ``when`` says which of a route's answers carry it, if not every one."""
    description = "attachment, with the file's name (filename*, UTF-8, for names in Chinese)"
    return {
        "Content-Disposition": header(
            f"{when}: {description}" if when else description, required=not when
        )
    }


def file_answer(description: str, *media_types: str) -> dict[int | str, dict[str, Any]]:
    """``responses`` for a route whose 200 is a file to save (an export): its media types and
    the Content-Disposition header that names the file."""
    return {
        200: {
            "description": description,
            "content": {media_type: {} for media_type in media_types},
            "headers": file_name(),
        }
    }
