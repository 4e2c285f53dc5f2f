"""The one way API routers are made: shared error answers, and every route in a unit of work
that leaves the audit row of what it changed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import get_dependant, get_parameterless_sub_dependant
from fastapi.routing import APIRoute

from dispatch.auth.models import Role
from dispatch.deps import BearerPrincipal, get_session
from dispatch.errors import ERROR_RESPONSES, header

# What any API route may answer, whatever it does: a method its path does not take (405), a
# body too large or a NUL in the query (413, 422: dispatch.security.middleware), input that
# fails its checks (422), the database away or its connections busy (503: every route takes
# one).
EVERY_ROUTE = (405, 413, 422, 503)


def _principals(dependant: Dependant) -> Iterator[BearerPrincipal]:
    for sub in dependant.dependencies:
        if isinstance(sub.call, BearerPrincipal):
            yield sub.call
        yield from _principals(sub)


def implied_refusals(dependant: Dependant) -> set[int]:
    """The refusals a route's parameters and dependencies make possible: a body to parse
    (400), a token to check (401), a role not every user has (403), a record named in the
    path (404)."""
    implied = set()
    if dependant.body_params:
        implied.add(400)
    if dependant.path_params:
        implied.add(404)
    for principal in _principals(dependant):
        implied.add(401)
        if principal.roles and set(principal.roles) != set(Role):
            implied.add(403)
    return implied


class ApiRoute(APIRoute):
    """A route whose schema declares the refusals ``implied_refusals`` finds in it, besides
    EVERY_ROUTE's. Its own ``responses`` name those of its domain (a conflict, a record named
    in the query or the body, a rate, a refusal a role check in its service makes), and may
    word any of these in its own terms.

    The responses must be known before APIRoute's own ``__init__`` reads them, so the route's
    dependencies are read here as FastAPI reads them, with two of its functions that are not
    its public API (``get_dependant``, ``get_parameterless_sub_dependant``), and only those the
    route is made with: its own and its router's. A FastAPI release that changes them, or that
    adds dependencies where this does not see them (as 0.16x solves those a router is included
    with, ``include_router(..., dependencies=...)``, without making the route again), would
    leave a refusal the route answers out of its schema without a word. So
    tests/security/test_schema.py holds ``implied_refusals`` to the dependencies FastAPI solves
    for each route and to the schema it serves, and fails naming the route. pyproject.toml sets
    no upper bound on FastAPI for this: releases come every few weeks, with Starlette's fixes,
    and what is at stake is the schema's words, which that test checks on every upgrade."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        dependant = get_dependant(path=path, call=endpoint)
        dependant.dependencies += [
            get_parameterless_sub_dependant(depends=depends, path=path)
            for depends in kwargs.get("dependencies") or ()
        ]
        responses = dict(kwargs.pop("responses", None) or {})
        # Kept for the tests that hold it to what FastAPI solves.
        self.implied_refusals = frozenset(implied_refusals(dependant))
        for status in sorted(self.implied_refusals):
            responses.setdefault(status, ERROR_RESPONSES[status])
        super().__init__(path, endpoint, responses=responses, **kwargs)


def api_router(prefix: str = "", *, tags: list[str]) -> APIRouter:
    """Every route declares the error answers ({"error", "detail"}) it may give, and no other
    (``ApiRoute``), and runs in a unit of work (``deps.get_session``, the same one its handler
    and the token's check ask for), which writes the audit row of every change it makes in the
    same transaction."""
    return APIRouter(
        prefix=prefix,
        tags=list(tags),
        responses={status: ERROR_RESPONSES[status] for status in EVERY_ROUTE},
        route_class=ApiRoute,
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
