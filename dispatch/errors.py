"""Domain errors carry their HTTP status; one handler renders them as ``{"error", "detail"}``."""

from __future__ import annotations

import math
import sys
from typing import Any, ClassVar

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel, Field
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException
from starlette.routing import compile_path

from dispatch.outages import commit_unknown, database_unavailable


class DomainError(Exception):
    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.code, "detail": self.detail}
        if self.field is not None:
            body["field"] = self.field
        return body

    def headers(self) -> dict[str, str] | None:
        return {"WWW-Authenticate": "Bearer"} if self.status == 401 else None


class InvalidInput(DomainError):
    status = 422
    code = "invalid_input"


class KeyReused(DomainError):
    """An Idempotency-Key used before for a different request: replaying the first would drop
    this one (IETF draft-ietf-httpapi-idempotency-key-header: 422)."""

    status = 422
    code = "idempotency_key_reused"


class NotFound(DomainError):
    status = 404
    code = "not_found"


class Conflict(DomainError):
    status = 409
    code = "conflict"


class Unauthorized(DomainError):
    status = 401
    code = "unauthorized"


class Forbidden(DomainError):
    status = 403
    code = "forbidden"


class RateLimited(DomainError):
    """Too many attempts: the client may try again after ``retry_after_s`` seconds."""

    status = 429
    code = "rate_limited"

    def __init__(self, detail: str, *, retry_after_s: float, field: str | None = None) -> None:
        super().__init__(detail, field=field)
        self.retry_after_s = max(1, math.ceil(retry_after_s))

    def body(self) -> dict[str, Any]:
        return {**super().body(), "retry_after_s": self.retry_after_s}

    def headers(self) -> dict[str, str] | None:
        return {"Retry-After": str(self.retry_after_s)}


class TryAgain(DomainError):
    """The request met a change committed meanwhile and wrote nothing; sent again, it is
    decided on the state as it is now. The pages send a 503 again by themselves."""

    status = 503
    code = "try_again"
    retry_after_s = 1

    def body(self) -> dict[str, Any]:
        return {**super().body(), "retry_after_s": self.retry_after_s}

    def headers(self) -> dict[str, str] | None:
        return {"Retry-After": str(self.retry_after_s)}


class FieldProblem(BaseModel):
    field: str
    message: str


class RowProblem(BaseModel):
    row: int | None
    field: str | None
    message: str


class ErrorOut(BaseModel):
    """Every error answer: a machine-readable ``error`` code and a ``detail`` for people."""

    error: str = Field(description="invalid_input, not_found, conflict, unauthorized, ...")
    detail: str
    field: str | None = Field(default=None, description="the input the error is about")
    fields: list[FieldProblem] | None = Field(default=None, description="every invalid input")
    problems: list[RowProblem] | None = Field(default=None, description="bad rows of a file")
    retry_after_s: int | None = Field(default=None, description="with 429, 503: when to try again")


def header(description: str, *, required: bool = True, kind: str = "string") -> dict[str, Any]:
    """A response header as the OpenAPI schema declares it."""
    return {"description": description, "required": required, "schema": {"type": kind}}


RETRY_AFTER = {"Retry-After": header("seconds to wait before trying again", kind="integer")}
WWW_AUTHENTICATE = {"WWW-Authenticate": header("Bearer: the scheme a token is sent with")}
_ERROR_OUT = {"$ref": "#/components/schemas/ErrorOut"}

# Every path answers 405 to a method it does not take, with Allow. Declared once among the
# schema's components (``declare_shared_responses``) and named by each operation's responses,
# rather than written out in full under each of them.
SHARED_RESPONSES: dict[str, dict[str, Any]] = {
    "MethodNotAllowed": {
        "description": "method_not_allowed: the path exists, but not for this method",
        "headers": {"Allow": header("the methods the path takes, e.g. GET, POST")},
        "content": {"application/json": {"schema": _ERROR_OUT}},
    }
}
METHOD_NOT_ALLOWED = {"$ref": "#/components/responses/MethodNotAllowed"}


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    declared: dict[str, Any] = {"model": ErrorOut, "description": description}
    if headers:
        declared["headers"] = headers
    return declared


# A route's ``responses``: its answers by status.
Responses = dict[int | str, dict[str, Any]]


def error_response(status: int, description: str) -> dict[str, Any]:
    """One of ERROR_RESPONSES with its own description: a route's ``responses`` replace the
    router's entry for a status whole, model and headers included."""
    return {**ERROR_RESPONSES[status], "description": description}


# Declared on every API router, so the schema names every error a route can answer with.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _error("the body could not be parsed (not JSON, or a broken form)"),
    401: _error("no token, or a bad, expired or revoked one, or a disabled user", WWW_AUTHENTICATE),
    403: _error("the caller's role or team may not do this"),
    404: _error("a named record does not exist"),
    405: METHOD_NOT_ALLOWED,
    409: _error("the request conflicts with the record's state"),
    413: _error("the request body is larger than allowed"),
    422: _error("invalid input: the field and the reason are named"),
    503: _error(
        "busy: no database connection came free in time; or database_unavailable: the database"
        " is away, full, locked or read-only (the request was rolled back; or, lost while it"
        " committed, it may have been written: send it again with the same Idempotency-Key):"
        " try again",
        RETRY_AFTER,
    ),
}
RATE_LIMITED: dict[int | str, dict[str, Any]] = {
    429: _error("too many attempts: wait for Retry-After seconds", RETRY_AFTER)
}


def _json_error(description: str) -> dict[str, Any]:
    # Named by reference rather than as a model: on a route whose own answer is HTML or text
    # (pages, metrics) FastAPI files a model under the route's media type, and these are JSON.
    # Every API router's declarations keep ErrorOut among the schema's components.
    return {"description": description, "content": {"application/json": {"schema": _ERROR_OUT}}}


# What the body-size and NUL checks (dispatch.security.middleware) answer on every HTTP route,
# for the routes made without api_router (health, metrics, pages) to declare.
MIDDLEWARE_RESPONSES: dict[int | str, dict[str, Any]] = {
    405: METHOD_NOT_ALLOWED,
    413: _json_error("the request body is larger than allowed"),
    422: _json_error("a NUL character in the path or the query (the field is named)"),
}

# FastAPI's answer when reading a body fails other than as a JSON syntax error (a number of
# more digits than Python converts, nesting past the interpreter's depth, a broken form).
_FASTAPI_UNPARSED = "There was an error parsing the body"


def unparsable(error: BaseException) -> str:
    """Why a body could not be read, in words for whoever sent it."""
    if isinstance(error, RecursionError):
        return "nested too deeply"
    if isinstance(error, ValueError) and "integer string conversion" in str(error):
        return f"a number has more than {sys.get_int_max_str_digits()} digits"
    if isinstance(error, MultiPartException):
        return error.message.rstrip(".")
    return str(error)


def _field_path(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or ".".join(str(p) for p in loc)


def _validation_body(exc: RequestValidationError) -> dict[str, Any]:
    errors = [
        {"field": _field_path(tuple(e.get("loc", ()))), "message": str(e.get("msg", ""))}
        for e in exc.errors()
    ]
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return {"error": "invalid_input", "detail": detail, "fields": errors}


def _unparsed_body(exc: RequestValidationError) -> dict[str, Any] | None:
    """A body that is not JSON at all is a 400, as for a broken form: FastAPI reports it as a
    validation error of a field named by the character where parsing stopped."""
    for e in exc.errors():
        if e.get("type") == "json_invalid":
            reason = (e.get("ctx") or {}).get("error", "not JSON")
            where = e.get("loc", ())[-1:]
            at = f" at character {where[0]}" if where and isinstance(where[0], int) else ""
            detail = f"body: not valid JSON ({reason}{at})"
            return {"error": "bad_request", "detail": detail, "field": "body"}
    return None


def _unreadable_body(request: Request, cause: BaseException | None) -> dict[str, Any]:
    """A body FastAPI could not read other than for a JSON syntax error (those are
    ``_unparsed_body``'s), named the same way: 400, ``field`` body, and why."""
    form = request.headers.get("content-type", "").lower().startswith(_FORMS)
    reason = f" ({unparsable(cause)})" if cause is not None else ""
    detail = f"body: not a valid form{reason}" if form else f"body: not valid JSON{reason}"
    return {"error": "bad_request", "detail": detail, "field": "body"}


def allowed_methods(request: Request) -> list[str]:
    """Every method the request's path takes. Starlette's 405 names only those of the first
    route at the path (POST for /api/v1/incidents, which also lists incidents with GET)."""
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.routes):
        if (
            route.methods
            and route.path
            and compile_path(route.path)[0].match(request.scope["path"])
        ):
            methods |= set(route.methods)
    return sorted(methods)


_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")
# When a client is told to try again after a database outage.
DATABASE_RETRY_AFTER_S = 2


def declare_shared_responses(app: FastAPI) -> None:
    """Put SHARED_RESPONSES among the served schema's components, and leave the operations
    that name one nothing but the reference (FastAPI gives each a description of its own,
    which would stand for the shared one's)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        schema.setdefault("components", {}).setdefault("responses", {}).update(SHARED_RESPONSES)
        for methods in schema.get("paths", {}).values():
            for operation in methods.values():
                responses = operation.get("responses", {})
                for status, response in responses.items():
                    if "$ref" in response:
                        responses[status] = {"$ref": response["$ref"]}
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def install_error_handlers(app: FastAPI) -> None:
    declare_shared_responses(app)

    async def domain_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, DomainError)
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers())

    async def validation_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        unparsed = _unparsed_body(exc)
        if unparsed is not None:
            return JSONResponse(unparsed, status_code=400)
        return JSONResponse(_validation_body(exc), status_code=422)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400 and exc.detail == _FASTAPI_UNPARSED:
            return JSONResponse(_unreadable_body(request, exc.__cause__), status_code=400)
        if exc.status_code == 400 and isinstance(exc.__context__, MultiPartException):
            # Starlette's form parsers raise every error they meet (no boundary, broken
            # multipart data, a part without a name, too many fields or files, a part too
            # large) as a 400 with the parser's text, while handling it: by that context it
            # is known, whatever the text says.
            return JSONResponse(_unreadable_body(request, exc.__context__), status_code=400)
        code = {
            400: "bad_request",
            401: "unauthorized",
            403: "forbidden",
            404: "not_found",
            405: "method_not_allowed",
            413: "too_large",
        }
        body = {"error": code.get(exc.status_code, "http_error"), "detail": str(exc.detail)}
        headers = dict(exc.headers or {})
        if exc.status_code == 401:
            headers.setdefault("WWW-Authenticate", "Bearer")
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(request))
        return JSONResponse(body, status_code=exc.status_code, headers=headers or None)

    async def pool_timeout(_: Request, exc: Exception) -> JSONResponse:
        # Raised while waiting for a connection, before the request's first statement.
        assert isinstance(exc, PoolTimeout)
        detail = "the server's database connections stayed busy; nothing was written, try again"
        body = {"error": "busy", "detail": detail, "retry_after_s": 1}
        return JSONResponse(body, status_code=503, headers={"Retry-After": "1"})

    async def database_error(_: Request, exc: Exception) -> JSONResponse:
        # Only an outage is answered here; any other database error is a bug: re-raised, it is
        # answered 500 and logged with its traceback.
        if not database_unavailable(exc):
            raise exc
        detail = (
            # The COMMIT went out and its answer never came back (the connection dropped): the
            # database may have committed it. "Rolled back" would have the client give up on
            # a report its teams were alerted to, or send it again as a new one.
            "the database became unavailable while the request was committing: whether it was"
            " written is unknown, it may have been. Send it again with the same"
            " Idempotency-Key: a report stored already is then answered with its incident"
            if commit_unknown(exc)
            else "the database is unavailable (away, full, locked or read-only); the request"
            " was rolled back: try again"
        )
        body = {
            "error": "database_unavailable",
            "detail": detail,
            "retry_after_s": DATABASE_RETRY_AFTER_S,
        }
        headers = {"Retry-After": str(DATABASE_RETRY_AFTER_S)}
        return JSONResponse(body, status_code=503, headers=headers)

    app.add_exception_handler(DomainError, domain_error)
    app.add_exception_handler(PoolTimeout, pool_timeout)
    # SQLAlchemy's wrapping of every driver error, and what the drivers raise unwrapped when a
    # connection drops.
    for kind in (DBAPIError, asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError):
        app.add_exception_handler(kind, database_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
