"""The one way API routers are made: shared error answers, and every route in a unit of work
that leaves the audit row of what it changed."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from dispatch.deps import get_session
from dispatch.errors import ERROR_RESPONSES, header


def api_router(prefix: str = "", *, tags: list[str]) -> APIRouter:
    """Every route declares the error answers ({"error", "detail"}) it may give, and runs in a
    unit of work (``deps.get_session``, the same one its handler and the token's check ask
    for), which writes the audit row of every change it makes in the same transaction."""
    return APIRouter(
        prefix=prefix,
        tags=list(tags),
        responses=dict(ERROR_RESPONSES),
        # scope="function", as SessionDep: one dependency, which commits before the response.
        dependencies=[Depends(get_session, scope="function")],
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
