"""The served OpenAPI schema declares what the server answers: every error's body, and the
headers a client acts on (Retry-After, WWW-Authenticate, Idempotent-Replayed,
Content-Disposition)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.responses import Response
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel

from dispatch.app import create_app
from dispatch.auth.models import Role
from dispatch.config import Settings
from dispatch.deps import AdminDep, BearerPrincipal, PrincipalDep, require
from dispatch.routing import EVERY_ROUTE, ApiRoute, api_router, file_answer, implied_refusals
from tests.security import schema_fixture
from tests.security.raising import OURS, Reader
from tests.support import World

ERROR_OUT = {"$ref": "#/components/schemas/ErrorOut"}


def operations(schema: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{method.upper()} {path}", operation)
        for path, methods in schema["paths"].items()
        for method, operation in methods.items()
    ]


def json_schema(response: dict[str, Any]) -> Any:
    return response.get("content", {}).get("application/json", {}).get("schema")


def resolved(schema: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    """A response as declared, also when the operation names one of the schema's components."""
    ref = response.get("$ref")
    if ref is None:
        return response
    prefix = "#/components/responses/"
    assert ref.startswith(prefix), ref
    found: dict[str, Any] = schema["components"]["responses"][ref.removeprefix(prefix)]
    return found


async def test_every_error_of_the_api_declares_its_body(world: World) -> None:
    schema = (await world.http.get("/openapi.json")).json()
    undeclared = [
        f"{label} {status}"
        for label, operation in operations(schema)
        if " /api/" in label
        for status, response in operation["responses"].items()
        if int(status) >= 400 and json_schema(resolved(schema, response)) != ERROR_OUT
    ]
    assert undeclared == []
    # A route's own description of a refusal keeps the body and the headers of the default.
    village_import = schema["paths"]["/api/v1/villages/import"]["post"]["responses"]
    assert "DISPATCH_MAX_UPLOAD_BYTES" in village_import["413"]["description"]
    assert "file_rejected" in village_import["422"]["description"]


async def test_the_headers_a_client_acts_on_are_declared_and_sent(world: World) -> None:
    schema = (await world.http.get("/openapi.json")).json()
    for label, operation in operations(schema):
        responses = operation["responses"]
        if " /api/" not in label:
            continue
        assert responses["401"]["headers"]["WWW-Authenticate"]["required"], label
        assert responses["503"]["headers"]["Retry-After"]["schema"] == {"type": "integer"}, label
        if "429" in responses:
            assert responses["429"]["headers"]["Retry-After"]["required"], label
    report = schema["paths"]["/api/v1/incidents"]["post"]["responses"]
    assert "429" in report
    replayed = report["201"]["headers"]["Idempotent-Replayed"]
    assert replayed["required"] is False and replayed["schema"] == {"type": "string"}

    # And sent as declared.
    anonymous = await world.http.get("/api/v1/incidents")
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"] == "Bearer"
    operator = await world.operator()
    await world.team()
    key = {**operator.headers, "Idempotency-Key": "schema-test-1"}
    body = {"location": {"lon": 114.159, "lat": 22.847}, "category": "fight"}
    first = await world.http.post("/api/v1/incidents", json=body, headers=key)
    again = await world.http.post("/api/v1/incidents", json=body, headers=key)
    assert first.status_code == again.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"


async def test_routes_outside_the_api_declare_what_the_middleware_answers(world: World) -> None:
    schema = (await world.http.get("/openapi.json")).json()
    outside = sorted(path for path in schema["paths"] if not path.startswith("/api/"))
    assert {"/healthz", "/readyz", "/metrics", "/console", "/m"} <= set(outside)
    for path in outside:
        responses = schema["paths"][path]["get"]["responses"]
        assert json_schema(responses["413"]) == ERROR_OUT, path
        assert json_schema(responses["422"]) == ERROR_OUT, path
        reply = await world.http.get(path, params={"probe": "a\x00"})
        assert reply.status_code == 422
        assert reply.json()["field"] == "probe"
        reply = await world.http.request(
            "GET", path, content=b"x" * (world.runtime.settings.max_body_bytes + 1)
        )
        assert reply.status_code == 413 and reply.json()["error"] == "too_large"
    ready = schema["paths"]["/readyz"]["get"]["responses"]
    assert json_schema(ready["200"]) == json_schema(ready["503"])
    assert ready["503"]["headers"]["Retry-After"]["schema"] == {"type": "integer"}
    assert (await world.http.get("/readyz")).json()["status"] == "ready"


FILES = ("text/csv", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")


async def test_every_export_declares_the_file_name_it_sends(world: World) -> None:
    schema = (await world.http.get("/openapi.json")).json()
    exports = {
        label: operation["responses"]["200"]
        for label, operation in operations(schema)
        if set(FILES) & set(operation["responses"].get("200", {}).get("content", {}))
    }
    assert set(exports) == {"GET /api/v1/rosters/export", "GET /api/v1/reports/response-times"}
    for label, answer in exports.items():
        assert "Content-Disposition" in answer["headers"], label
    # The report answers JSON too, without a file's name; each roster export is a file.
    report = exports["GET /api/v1/reports/response-times"]["headers"]["Content-Disposition"]
    assert report["required"] is False and "csv or xlsx" in report["description"]
    roster = exports["GET /api/v1/rosters/export"]["headers"]["Content-Disposition"]
    assert roster["required"] is True

    admin = await world.admin()
    for path, params in (
        ("/api/v1/rosters/export", {"kind": "emergency", "format": "csv"}),
        ("/api/v1/rosters/export", {"kind": "emergency", "format": "xlsx"}),
        ("/api/v1/reports/response-times", {"format": "csv"}),
        ("/api/v1/reports/response-times", {"format": "xlsx"}),
    ):
        reply = await world.http.get(path, params=params, headers=admin.headers)
        assert reply.status_code == 200, reply.text
        assert reply.headers["Content-Disposition"].startswith("attachment; filename="), params
    reply = await world.http.get("/api/v1/reports/response-times", headers=admin.headers)
    assert reply.status_code == 200 and "Content-Disposition" not in reply.headers


# What pydantic writes for a bound it checks but cannot set on the type (one given to a
# validator's output rather than to the number): no JSON Schema or OpenAPI tool reads these
# keys, so to a client or a generator any number would be valid.
PYDANTIC_ONLY = {"ge", "gt", "le", "lt", "allow_inf_nan", "multiple_of", "strict"}


def pydantic_only_keys(node: Any, where: str = "#") -> list[str]:
    if isinstance(node, list):
        return [k for i, item in enumerate(node) for k in pydantic_only_keys(item, f"{where}/{i}")]
    if not isinstance(node, dict):
        return []
    # A model's properties are named by its fields, any name.
    keys = set() if where.endswith("/properties") else PYDANTIC_ONLY & set(node)
    found = [f"{where}/{key}" for key in sorted(keys)]
    for key, value in node.items():
        found += pydantic_only_keys(value, f"{where}/{key}")
    return found


async def test_every_bound_is_declared_in_json_schemas_words(world: World) -> None:
    schema = (await world.http.get("/openapi.json")).json()
    assert pydantic_only_keys(schema) == []


async def test_every_path_declares_its_405_with_the_methods_it_takes(world: World) -> None:
    """A method a path does not take is answered 405 with Allow: one response among the
    schema's components, which every operation names."""
    schema = (await world.http.get("/openapi.json")).json()
    shared = schema["components"]["responses"]["MethodNotAllowed"]
    assert json_schema(shared) == ERROR_OUT
    assert shared["headers"]["Allow"]["required"] is True
    ref = {"$ref": "#/components/responses/MethodNotAllowed"}
    assert [label for label, op in operations(schema) if op["responses"].get("405") != ref] == []

    operator = await world.operator()
    for method, path, allowed in (
        ("PUT", "/api/v1/incidents", "GET, POST"),
        ("DELETE", "/api/v1/audit", "GET"),
        ("POST", "/healthz", "GET"),
        ("POST", "/m", "GET"),
    ):
        reply = await world.http.request(method, path, headers=operator.headers)
        assert reply.status_code == 405, (method, path)
        assert reply.headers["Allow"] == allowed, (method, path)
        assert reply.json()["error"] == "method_not_allowed"
        assert path in schema["paths"] and method.lower() not in schema["paths"][path]


def test_an_export_declares_the_file_it_sends_and_its_name() -> None:
    app = FastAPI()
    router = api_router("/exports", tags=["exports"])

    @router.get("/roster", response_class=Response, responses=file_answer("the roster", "text/csv"))
    async def roster() -> Response:
        return Response("a,b\n", media_type="text/csv")

    app.include_router(router)
    answer = app.openapi()["paths"]["/exports/roster"]["get"]["responses"]["200"]
    assert list(answer["content"]) == ["text/csv"]
    assert answer["headers"]["Content-Disposition"]["required"] is True


def declared_errors(operation: dict[str, Any]) -> set[int]:
    return {int(status) for status in operation["responses"] if int(status) >= 400}


# The routes that count attempts (429 with Retry-After beyond the allowance).
RATE_LIMITED_ROUTES = {
    "POST /api/v1/auth/token",
    "POST /api/v1/incidents",
    "POST /api/v1/teams/{team_id}/test-alert",
    # Not a count of attempts: one verification of the whole record at a time.
    "GET /api/v1/audit/verification",
}


async def test_no_route_declares_a_refusal_its_code_cannot_make(world: World) -> None:
    """What every route's declarations follow from: a record the path names may be missing
    (404); only a body is parsed (400); only a write can conflict (409); only the routes that
    count attempts refuse for their rate (429). Who asks (401, 403) is held by the
    authorisation matrix (tests/security/test_matrix.py)."""
    schema = (await world.http.get("/openapi.json")).json()
    wrong: list[str] = []
    for label, operation in operations(schema):
        method, path = label.split(" ", 1)
        if not path.startswith("/api/"):
            continue
        declared = declared_errors(operation)
        if ("{" in path) != (404 in declared) and not NOT_FOUND_IN_QUERY_OR_BODY.get(label):
            wrong.append(f"{label}: 404 declared {404 in declared}, path names a record")
        if 400 in declared and "requestBody" not in operation:
            wrong.append(f"{label}: 400 without a body to parse")
        if 409 in declared and method == "GET":
            wrong.append(f"{label}: 409 on a read")
        if (429 in declared) != (label in RATE_LIMITED_ROUTES):
            wrong.append(f"{label}: 429 declared {429 in declared}")
        # Every route takes a connection (503), has its input checked (422), its size (413).
        if not {405, 413, 422, 503} <= declared:
            wrong.append(f"{label}: lacks one of 405, 413, 422, 503")
    assert not wrong, "\n".join(wrong)
    token = schema["paths"]["/api/v1/auth/token"]["post"]["responses"]
    assert "403" not in token and "404" not in token and "409" not in token


# Routes that look up a record named in the query or the body, the field named.
NOT_FOUND_IN_QUERY_OR_BODY = {
    "POST /api/v1/users": "team_id",
    "GET /api/v1/reports/response-times": "team_id",
    "GET /api/v1/reports/arrival-histogram": "team_id",
    "GET /api/v1/rosters/export": "team_id",
    "GET /api/v1/rosters/members": "team_id",
    "GET /api/v1/coverage": "village_id",
}


async def test_each_refusal_provoked_is_declared_by_its_route(world: World) -> None:
    """Real requests that provoke each kind of refusal: each is answered as its route declares,
    naming the field; and the obvious bad inputs to a route that does not declare a refusal do
    not provoke it."""
    schema = (await world.http.get("/openapi.json")).json()
    admin, operator = await world.admin(), await world.operator()
    team = await world.team()
    leader = await world.leader(team)
    leaderless = await world.team("fixed_post", 114.2, 22.9)
    site = {"lon": 114.5, "lat": 23.2}
    broken_json = {"content": b'{"name": ', "headers": {"Content-Type": "application/json"}}
    provoked: list[tuple[str, str, Any, dict[str, Any], int, str | None]] = [
        (
            "POST",
            "/api/v1/auth/token",
            None,
            {"data": {"username": admin.name, "password": "x"}},
            401,
            None,
        ),
        ("POST", "/api/v1/teams", admin, broken_json, 400, "body"),
        ("GET", "/api/v1/teams/nope", admin, {}, 404, "team_id"),
        ("PATCH", "/api/v1/users/nope", admin, {"json": {"disabled": True}}, 404, "user_id"),
        ("DELETE", "/api/v1/villages/nope", admin, {}, 404, "village_id"),
        ("POST", "/api/v1/dispatches/nope/accept", leader, {}, 404, "dispatch_id"),
        (
            "POST",
            "/api/v1/users",
            admin,
            {
                "json": {
                    "name": "u-x",
                    "password": "long-password",
                    "role": "leader",
                    "team_id": "nope",
                }
            },
            404,
            "team_id",
        ),
        (
            "POST",
            "/api/v1/users",
            admin,
            {"json": {"name": admin.name, "password": "long-password", "role": "auditor"}},
            409,
            "name",
        ),
        (
            "POST",
            "/api/v1/teams",
            admin,
            {"json": {"name": team["name"], "kind": "mobile", "location": site}},
            409,
            "name",
        ),
        ("POST", f"/api/v1/teams/{leaderless['id']}/test-alert", operator, {}, 409, "team_id"),
        (
            "GET",
            "/api/v1/teams",
            leader,
            {"params": {"include_retired": True}},
            403,
            "include_retired",
        ),
    ]
    for query, field in NOT_FOUND_IN_QUERY_OR_BODY.items():
        method, path = query.split(" ", 1)
        if method == "GET":
            params = {field: "nope", "kind": "emergency"}
            provoked.append((method, path, admin, {"params": params}, 404, field))
    wrong: list[str] = []
    for method, path, who, kwargs, status, field in provoked:
        headers = {**(who.headers if who else {}), **kwargs.pop("headers", {})}
        reply = await world.http.request(method, path, headers=headers, **kwargs)
        route = next(
            operation
            for label, operation in operations(schema)
            if label == f"{method} {path}" or _matches(label, f"{method} {path}")
        )
        if reply.status_code != status or reply.json().get("field") != field:
            wrong.append(f"{method} {path}: {reply.status_code} {reply.text[:200]}")
        elif status not in declared_errors(route):
            wrong.append(f"{method} {path}: {status} undeclared")
    assert not wrong, "\n".join(wrong)

    # A route that checks no token answers as without one, whatever token is sent.
    login = {"username": admin.name, "password": admin.password}
    garbage = {"Authorization": "Bearer garbage"}
    reply = await world.http.post("/api/v1/auth/token", data=login, headers=garbage)
    assert reply.status_code == 200, reply.text
    # A read names no missing record by its query but the records it declares: a filter that
    # matches nothing matches nothing.
    assert "404" not in schema["paths"]["/api/v1/incidents"]["get"]["responses"]
    reply = await world.http.get(
        "/api/v1/incidents", params={"day": "2000-01-01"}, headers=operator.headers
    )
    assert reply.status_code == 200 and reply.json() == []


def _matches(label: str, request: str) -> bool:
    """Whether ``request`` (METHOD /path) is answered by the operation ``label`` names."""
    method, template = label.split(" ", 1)
    wanted_method, path = request.split(" ", 1)
    parts, wanted = template.split("/"), path.split("/")
    return (
        method == wanted_method
        and len(parts) == len(wanted)
        and all(p == w or p.startswith("{") for p, w in zip(parts, wanted, strict=True))
    )


# Refusals a route's code names that no request can meet, and why.
UNREACHABLE = {
    # The token's check refuses (401) a user who is not there; users are disabled, not deleted.
    ("GET /api/v1/auth/me", 404),
    # A replayed Idempotency-Key's incident was stored; incidents are never deleted.
    ("POST /api/v1/incidents", 404),
}


def _followed(dependant: Dependant) -> Iterator[Any]:
    """What a route's handler and its dependencies call, as FastAPI solves them: the
    token's check aside, whose 401 and 403 ``implied_refusals`` declares and the authorisation
    matrix holds to the roles (tests/security/test_matrix.py); its own dependencies are read."""
    if dependant.call is not None and not isinstance(dependant.call, BearerPrincipal):
        yield dependant.call
    for sub in dependant.dependencies:
        yield from _followed(sub)


def refusals(
    app: FastAPI, held: tuple[object, ...] = (), ours: tuple[str, ...] = OURS
) -> tuple[list[str], list[str]]:
    """For each API route: the statuses of the domain errors its code can raise that it does
    not declare (but those UNREACHABLE lists), and the statuses it declares that nothing can
    answer: not its code, not FastAPI (a body it cannot parse, 400), not the token's check
    (401, 403), nor what every route answers (EVERY_ROUTE). ``held``: what the running server
    holds (its runtime), whose objects' kept callables are followed."""
    schema = app.openapi()
    reader = Reader(ours, held)
    undeclared: list[str] = []
    overdeclared: list[str] = []
    for route in iter_route_contexts(app.routes):
        if not isinstance(route.original_route, ApiRoute):
            continue
        # The dependencies as FastAPI solves them for a request (those its router was
        # included with too).
        followed = _followed(route.dependant)
        made = {error.status for thing in followed for error in reader.errors(thing)}
        outside = set(EVERY_ROUTE) | (implied_refusals(route.dependant) & {400, 401, 403})
        for method in sorted(route.methods or ()):
            label = f"{method} {route.path}"
            declared = declared_errors(schema["paths"][route.path][method.lower()])
            undeclared += [
                f"{label} {status}"
                for status in sorted(made - declared)
                if (label, status) not in UNREACHABLE
            ]
            overdeclared += [f"{label} {status}" for status in sorted(declared - made - outside)]
    return undeclared, overdeclared


async def test_every_domain_error_a_routes_code_makes_is_declared_by_it(world: World) -> None:
    """Read from the code (tests/security/raising.py): a route declares the status of every
    domain error (NotFound, Conflict, RateLimited, ...) its handler and its dependencies can
    raise, in the functions they call and the methods of the objects they reach (the coverage
    index, the village index, the duty book, ...); and declares no refusal that nothing can
    make, a record missing (404), a conflict (409), a rate (429) its code never raises."""
    undeclared, overdeclared = refusals(world.app, (world.runtime,))
    assert undeclared == []
    assert overdeclared == []


def test_a_refusal_reached_through_a_method_is_held_to_the_schema() -> None:
    """Each route of tests/security/schema_fixture.py reaches a domain error only through a
    method of an object, and declares none: each is named; and the conflict a route declares
    that its code cannot raise."""
    fixture, app = schema_fixture.__name__, schema_fixture.app()
    undeclared, overdeclared = refusals(app, (schema_fixture.holder(),), (*OURS, fixture))
    assert undeclared == [
        "GET /fixture/shelf 404",
        "POST /fixture/ticket 409",
        "POST /fixture/counter 429",
        "GET /fixture/issued 403",
        "POST /fixture/passing 409",
        "POST /fixture/gate 409",
        "POST /fixture/loaded 401",
    ]
    assert overdeclared == ["POST /fixture/declared 409"]
    # The loader is known only from the object held.
    assert "POST /fixture/loaded 401" not in refusals(app, (), (*OURS, fixture))[0]
    # Read as product code is, the fixture's module aside: nothing of it is followed.
    assert refusals(app) == ([], ["POST /fixture/declared 409"])


class NamedBody(BaseModel):
    name: str


async def admins_name(admin: AdminDep) -> str:
    return admin.name


# A dependency that asks for the admin's token itself.
AdminsName = Annotated[str, Depends(admins_name)]


def read_apart(app: FastAPI) -> list[str]:
    """Where ``ApiRoute`` read a route's dependencies otherwise than FastAPI solves them and
    serves them in the schema: a request body FastAPI parses (400; an import reads its own,
    described by ``openapi_extra``), a bearer token it asks for (401), a path parameter
    (404), and the roles the token's check lets through (403)."""
    schema = app.openapi()
    apart: list[str] = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if not isinstance(route, ApiRoute):
            continue
        solved = implied_refusals(context.dependant)
        for method in sorted(context.methods or ()):
            operation = schema["paths"][context.path][method.lower()]
            served = {403} & solved
            if "requestBody" in operation and "requestBody" not in (route.openapi_extra or {}):
                served.add(400)
            if "security" in operation:
                served.add(401)
            if any(parameter["in"] == "path" for parameter in operation.get("parameters", ())):
                served.add(404)
            for seen, by in ((solved, "FastAPI solves"), (served, "the schema serves")):
                if route.implied_refusals != seen:
                    apart.append(
                        f"{method} {context.path}: ApiRoute read {sorted(route.implied_refusals)},"
                        f" {by} {sorted(seen)}"
                    )
    return apart


def test_api_route_reads_a_routes_dependencies_as_fastapi_solves_them() -> None:
    """ApiRoute reads a route's refusals with FastAPI functions that are not its public API
    (dispatch/routing.py says why): after a FastAPI upgrade that changed them, this fails
    naming the routes, rather than the schema leaving out a refusal without a word."""
    assert read_apart(create_app(Settings(secret_key="k" * 32))) == []

    # Each way a route takes what its refusals come from.
    router = api_router("/c", tags=["c"])
    guarded = APIRouter(route_class=ApiRoute, dependencies=[Depends(require(Role.ADMIN))])

    @router.post("/body")
    async def body(data: NamedBody) -> None: ...

    @router.get("/path/{thing}")
    async def path(thing: str) -> None: ...

    @router.get("/anyone")
    async def anyone(_: PrincipalDep) -> None: ...

    @router.get("/admin")
    async def admin(_: AdminDep) -> None: ...

    @router.get("/listed", dependencies=[Depends(require(Role.ADMIN))])
    async def listed() -> None: ...

    @router.get("/nested")
    async def nested(_: AdminsName) -> None: ...

    @guarded.get("/c/router")
    async def by_router() -> None: ...

    app = FastAPI()
    app.include_router(router)
    app.include_router(guarded)
    assert read_apart(app) == []
    operations_ = dict(operations(app.openapi()))
    assert {label: declared_errors(op) - set(EVERY_ROUTE) for label, op in operations_.items()} == {
        "POST /c/body": {400},
        "GET /c/path/{thing}": {404},
        "GET /c/anyone": {401},
        "GET /c/admin": {401, 403},
        "GET /c/listed": {401, 403},
        "GET /c/nested": {401, 403},
        "GET /c/router": {401, 403},
    }

    # A router included with a dependency of its own: FastAPI solves it for the route without
    # making the route again, and ApiRoute never sees it. Named, not served silently.
    included = FastAPI()
    included.include_router(router, prefix="/more", dependencies=[Depends(require(Role.ADMIN))])
    assert "GET /more/c/anyone: ApiRoute read [401], FastAPI solves [401, 403]" in read_apart(
        included
    )
