"""The authorisation matrix: every route of the app, for every role, with the exact status.

The matrix is checked against the app's own route table both ways: a route added without an
entry here fails, and so does an entry for a route that no longer exists. Every change that
succeeds must leave its audit row.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import httpx
from fastapi import FastAPI
from fastapi.routing import APIWebSocketRoute, iter_route_contexts
from sqlalchemy import func, select
from starlette.routing import Mount
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from dispatch.audit.models import AuditEntry
from tests.support import QINGXI, Account, World

ROLES = ("anonymous", "admin", "operator", "leader", "other_leader", "auditor")
READS = frozenset({"GET", "HEAD", "OPTIONS"})
WELCOMED = 101


def only(status: int, *roles: str) -> dict[str, int]:
    """``status`` for the roles named; 403 for the other signed-in roles, 401 anonymous."""
    return {r: status if r in roles else 401 if r == "anonymous" else 403 for r in ROLES}


def signed_in(status: int, **exceptions: int) -> dict[str, int]:
    return {r: exceptions.get(r, 401 if r == "anonymous" else status) for r in ROLES}


def everyone(status: int) -> dict[str, int]:
    return dict.fromkeys(ROLES, status)


OFFICE = ("admin", "operator", "auditor")
RESPONDERS = ("admin", "operator", "leader")


@dataclass
class Call:
    path: str
    json: Any = None
    content: bytes | None = None
    data: dict[str, str] | None = None
    params: dict[str, Any] | None = None
    # A token of the role other than its usual one (logout spends the token it is sent with).
    token: str | None = None


@dataclass
class Scene:
    """Two teams with a leader each, an incident dispatched to the first, and the records
    every route needs; factories make fresh ones for the routes that use a record up."""

    world: World
    accounts: dict[str, Account] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)
    reporter: Account | None = None

    @property
    def admin(self) -> Account:
        return self.accounts["admin"]

    async def post(self, path: str, **kwargs: Any) -> Any:
        reply = await self.world.http.post(path, headers=self.admin.headers, **kwargs)
        assert reply.status_code < 300, (path, reply.text)
        return reply.json() if reply.content else None

    async def team(self, kind: str = "fixed_post", lon: float = 114.4, lat: float = 23.1) -> str:
        team = await self.world.team(kind, lon, lat)
        return str(team["id"])

    async def incident(self) -> dict[str, Any]:
        assert self.reporter is not None
        return await self.world.report(self.reporter)

    async def member(self) -> str:
        body = {
            "kind": "emergency",
            "group_name": self.ids["team_a_name"],
            "name": "队员" + uuid.uuid4().hex[:4],
            "phone": "139" + str(uuid.uuid4().int)[:8],
            "role": "guard",
            "unit": 1,
        }
        return str((await self.post("/api/v1/rosters/members", json=body))["id"])

    async def village(self, name: str) -> str:
        await self.post(
            "/api/v1/villages/import", content=json.dumps(village_geojson(name)).encode()
        )
        listed = await self.world.http.get("/api/v1/villages", headers=self.admin.headers)
        return next(str(v["id"]) for v in listed.json() if v["name"] == name)

    async def duty(self) -> str:
        team_id = self.ids["mobile"]
        await self.world.http.put(
            f"/api/v1/rosters/duty/{team_id}", json=DUTY, headers=self.admin.headers
        )
        return team_id

    async def spare_token(self, role: str) -> str | None:
        if role == "anonymous":
            return None
        return (await self.world.relogin(self.accounts[role])).token

    async def audit_rows(self, action: str) -> int:
        async with self.world.runtime.sessionmaker() as session:
            count = await session.scalar(
                select(func.count()).select_from(AuditEntry).where(AuditEntry.action == action)
            )
        return int(count or 0)


def village_geojson(name: str) -> dict[str, Any]:
    lon, lat = QINGXI
    ring = [[lon - 0.01, lat - 0.01], [lon + 0.01, lat - 0.01], [lon + 0.01, lat + 0.01]]
    ring += [[lon - 0.01, lat + 0.01], [lon - 0.01, lat - 0.01]]
    geometry = {"type": "Polygon", "coordinates": [ring]}
    return {
        "type": "FeatureCollection",
        "features": [{"type": "Feature", "properties": {"name": name}, "geometry": geometry}],
    }


DUTY = {"start": "08:00", "end": "20:00", "rotation_start": str(date(2026, 1, 5)), "units": []}
PATROL_CSV = "序号,村(社区),姓名,职务,联系电话,身份证号码\n1,上元村,刘一,队长,13700000001,\n"


async def build_scene(world: World) -> Scene:
    scene = Scene(world)
    scene.accounts["admin"] = await world.admin()
    scene.accounts["operator"] = await world.operator()
    scene.accounts["auditor"] = await world.account("auditor")
    scene.reporter = await world.operator()
    team_a = await world.team("fixed_post")
    team_b = await world.team("fixed_post", 114.2, 22.9)
    scene.accounts["leader"] = await world.leader(team_a)
    scene.accounts["other_leader"] = await world.leader(team_b)
    scene.ids.update(team_a=team_a["id"], team_a_name=team_a["name"], team_b=team_b["id"])
    scene.ids["spare_team"] = await scene.team()
    scene.ids["mobile"] = await scene.team("mobile", 114.3, 22.95)
    await scene.duty()
    spare = await world.operator()
    scene.ids["spare_user"] = spare.id
    incident = await scene.incident()
    scene.ids["incident"] = incident["id"]
    [dispatch] = incident["dispatches"]
    assert dispatch["team_id"] == team_a["id"]
    scene.ids["dispatch"] = dispatch["id"]
    scene.ids["member"] = await scene.member()
    scene.ids["village"] = await scene.village("上元村")
    sent = await scene.post(f"/api/v1/teams/{team_a['id']}/test-alert")
    scene.ids["test_alert"] = sent["sent"][0]["id"]
    return scene


Build = Callable[[Scene, str], Awaitable[Call]]


@dataclass(frozen=True)
class Entry:
    build: Build
    expect: dict[str, int]
    # Whether a successful answer changed something (and must have left its audit row).
    changed: Callable[[httpx.Response], bool] = lambda _reply: True


def fixed(path: str, **kwargs: Any) -> Build:
    async def build(scene: Scene, _role: str) -> Call:
        return Call(path.format(**scene.ids), **kwargs)

    return build


def made(factory: Callable[[Scene], Awaitable[Call]]) -> Build:
    async def build(scene: Scene, _role: str) -> Call:
        return await factory(scene)

    return build


async def _login(scene: Scene, _role: str) -> Call:
    admin = scene.admin
    return Call("/api/v1/auth/token", data={"username": admin.name, "password": admin.password})


async def _logout(scene: Scene, role: str) -> Call:
    return Call("/api/v1/auth/logout", token=await scene.spare_token(role))


async def _renew(scene: Scene, role: str) -> Call:
    return Call("/api/v1/auth/renew", token=await scene.spare_token(role))


async def _new_user(scene: Scene) -> Call:
    body = {"name": "user-" + uuid.uuid4().hex[:8], "password": "long-password", "role": "auditor"}
    return Call("/api/v1/users", json=body)


async def _new_team(scene: Scene) -> Call:
    body = {"name": "队-" + uuid.uuid4().hex[:6], "kind": "mobile"}
    return Call("/api/v1/teams", json={**body, "location": {"lon": 114.5, "lat": 23.2}})


async def _retire_team(scene: Scene) -> Call:
    return Call(f"/api/v1/teams/{await scene.team()}")


async def _close(scene: Scene) -> Call:
    return Call(f"/api/v1/incidents/{(await scene.incident())['id']}/close")


async def _add_team(scene: Scene) -> Call:
    """A team added by hand to the shared incident: a fresh one for each call."""
    body = {"team_id": await scene.team(), "note": "报警人要求"}
    return Call(f"/api/v1/incidents/{scene.ids['incident']}/dispatches", json=body)


async def _delete_member(scene: Scene) -> Call:
    return Call(f"/api/v1/rosters/members/{await scene.member()}")


async def _new_member(scene: Scene) -> Call:
    body = {
        "kind": "watch",
        "group_name": "守望队",
        "name": "守望" + uuid.uuid4().hex[:4],
        "phone": "137" + str(uuid.uuid4().int)[:8],
        "role": "member",
    }
    return Call("/api/v1/rosters/members", json=body)


async def _delete_duty(scene: Scene) -> Call:
    return Call(f"/api/v1/rosters/duty/{await scene.duty()}")


async def _delete_village(scene: Scene) -> Call:
    return Call(f"/api/v1/villages/{await scene.village('村' + uuid.uuid4().hex[:6])}")


async def _report(_scene: Scene) -> Call:
    lon, lat = QINGXI
    return Call(
        "/api/v1/incidents", json={"location": {"lon": lon, "lat": lat}, "category": "fire"}
    )


POSITION = {"location": {"lon": QINGXI[0], "lat": QINGXI[1]}, "accuracy_m": 10}
ONE_VILLAGE = json.dumps(village_geojson("上元村")).encode()

MATRIX: dict[str, Entry] = {
    # ------------------------------------------------------------ accounts
    "POST /api/v1/auth/token": Entry(_login, everyone(200)),
    "POST /api/v1/auth/logout": Entry(_logout, signed_in(204)),
    "POST /api/v1/auth/renew": Entry(_renew, signed_in(200)),
    "GET /api/v1/auth/me": Entry(fixed("/api/v1/auth/me"), signed_in(200)),
    "POST /api/v1/users": Entry(made(_new_user), only(201, "admin")),
    "GET /api/v1/users": Entry(fixed("/api/v1/users"), only(200, "admin")),
    "PATCH /api/v1/users/{user_id}": Entry(
        fixed("/api/v1/users/{spare_user}", json={"disabled": False}), only(200, "admin")
    ),
    "PUT /api/v1/users/{user_id}/phone": Entry(
        fixed("/api/v1/users/{spare_user}/phone", json={"phone": None}), only(200, "admin")
    ),
    # ------------------------------------------------------------ teams
    "POST /api/v1/teams": Entry(made(_new_team), only(201, "admin")),
    "GET /api/v1/teams": Entry(fixed("/api/v1/teams"), signed_in(200)),
    "GET /api/v1/teams/covering": Entry(
        fixed("/api/v1/teams/covering", params={"lon": QINGXI[0], "lat": QINGXI[1]}),
        signed_in(200),
    ),
    "GET /api/v1/teams/{team_id}": Entry(fixed("/api/v1/teams/{team_a}"), signed_in(200)),
    "PATCH /api/v1/teams/{team_id}": Entry(
        fixed("/api/v1/teams/{spare_team}", json={"radius_m": 120}), only(200, "admin")
    ),
    "DELETE /api/v1/teams/{team_id}": Entry(made(_retire_team), only(204, "admin")),
    # ------------------------------------------------------------ incidents and dispatches
    "POST /api/v1/incidents": Entry(made(_report), only(201, "admin", "operator")),
    "GET /api/v1/incidents": Entry(fixed("/api/v1/incidents"), signed_in(200)),
    "GET /api/v1/incidents/{incident_id}": Entry(
        fixed("/api/v1/incidents/{incident}"), signed_in(200, other_leader=403)
    ),
    "GET /api/v1/incidents/{incident_id}/events": Entry(
        fixed("/api/v1/incidents/{incident}/events"), signed_in(200, other_leader=403)
    ),
    "POST /api/v1/incidents/{incident_id}/close": Entry(
        made(_close), only(200, "admin", "operator")
    ),
    "POST /api/v1/incidents/{incident_id}/dispatches": Entry(
        made(_add_team), only(201, "admin", "operator")
    ),
    "POST /api/v1/dispatches/{dispatch_id}/accept": Entry(
        fixed("/api/v1/dispatches/{dispatch}/accept"), only(200, *RESPONDERS)
    ),
    "POST /api/v1/dispatches/{dispatch_id}/shown": Entry(
        fixed("/api/v1/dispatches/{dispatch}/shown"), only(200, *RESPONDERS)
    ),
    "POST /api/v1/dispatches/{dispatch_id}/position": Entry(
        fixed("/api/v1/dispatches/{dispatch}/position", json=POSITION),
        only(200, "leader"),
        # A fix changes something only when it records the arrival.
        changed=lambda reply: bool(reply.json()["arrived"]),
    ),
    "POST /api/v1/dispatches/{dispatch_id}/arrive": Entry(
        fixed("/api/v1/dispatches/{dispatch}/arrive"), only(200, *RESPONDERS)
    ),
    "GET /api/v1/incidents/{incident_id}/notifications": Entry(
        fixed("/api/v1/incidents/{incident}/notifications"), only(200, *OFFICE)
    ),
    # ------------------------------------------------------------ reports
    "GET /api/v1/reports/response-times": Entry(
        fixed("/api/v1/reports/response-times"), only(200, *OFFICE)
    ),
    "GET /api/v1/reports/incidents/{incident_id}": Entry(
        fixed("/api/v1/reports/incidents/{incident}"), only(200, *OFFICE)
    ),
    "GET /api/v1/reports/arrival-histogram": Entry(
        fixed("/api/v1/reports/arrival-histogram"), only(200, *OFFICE)
    ),
    # ------------------------------------------------------------ rosters and duty
    "POST /api/v1/rosters/import": Entry(
        fixed(
            "/api/v1/rosters/import",
            params={"kind": "village_patrol"},
            content=PATROL_CSV.encode(),
        ),
        only(200, "admin"),
    ),
    "GET /api/v1/rosters/export": Entry(
        fixed("/api/v1/rosters/export", params={"kind": "emergency"}), only(200, *OFFICE)
    ),
    # A leader reads his own team's roster; asking for another team's is refused.
    "GET /api/v1/rosters/members": Entry(
        fixed("/api/v1/rosters/members", params={"team_id": "{team_a}"}),
        signed_in(200, other_leader=403),
    ),
    "POST /api/v1/rosters/members": Entry(made(_new_member), only(201, "admin")),
    "DELETE /api/v1/rosters/members/{member_id}": Entry(made(_delete_member), only(204, "admin")),
    "PUT /api/v1/rosters/members/{member_id}/account": Entry(
        fixed("/api/v1/rosters/members/{member}/account", json={"user_id": None}),
        only(200, "admin"),
    ),
    "GET /api/v1/rosters/strength": Entry(fixed("/api/v1/rosters/strength"), only(200, *OFFICE)),
    "PUT /api/v1/rosters/duty/{team_id}": Entry(
        fixed("/api/v1/rosters/duty/{mobile}", json=DUTY), only(200, "admin")
    ),
    "GET /api/v1/rosters/duty/{team_id}": Entry(
        fixed("/api/v1/rosters/duty/{mobile}"), signed_in(200)
    ),
    "DELETE /api/v1/rosters/duty/{team_id}": Entry(made(_delete_duty), only(204, "admin")),
    # ------------------------------------------------------------ villages and coverage
    "POST /api/v1/villages/import": Entry(
        fixed("/api/v1/villages/import", content=ONE_VILLAGE), only(200, "admin")
    ),
    "GET /api/v1/villages": Entry(fixed("/api/v1/villages"), signed_in(200)),
    "GET /api/v1/villages/names": Entry(fixed("/api/v1/villages/names"), signed_in(200)),
    "GET /api/v1/villages/{village_id}": Entry(fixed("/api/v1/villages/{village}"), signed_in(200)),
    "DELETE /api/v1/villages/{village_id}": Entry(made(_delete_village), only(204, "admin")),
    "GET /api/v1/coverage": Entry(fixed("/api/v1/coverage"), only(200, *OFFICE)),
    # ------------------------------------------------------------ reachability
    "GET /api/v1/reachability": Entry(fixed("/api/v1/reachability"), only(200, *OFFICE)),
    "GET /api/v1/teams/{team_id}/reachability": Entry(
        fixed("/api/v1/teams/{team_a}/reachability"), only(200, *OFFICE)
    ),
    "POST /api/v1/teams/{team_id}/test-alert": Entry(
        fixed("/api/v1/teams/{team_a}/test-alert"), only(202, "admin", "operator")
    ),
    "GET /api/v1/teams/{team_id}/test-alerts/{test_alert_id}": Entry(
        fixed("/api/v1/teams/{team_a}/test-alerts/{test_alert}"), only(200, *OFFICE)
    ),
    # ------------------------------------------------------------ the audit trail
    "GET /api/v1/audit": Entry(fixed("/api/v1/audit"), only(200, "admin", "auditor")),
    # Those who read the reports check the record they are computed from.
    "GET /api/v1/audit/verification": Entry(
        fixed("/api/v1/audit/verification"), only(200, *OFFICE)
    ),
    # ------------------------------------------------------------ public: pages, health, docs
    "GET /": Entry(fixed("/"), everyone(200)),
    "GET /console": Entry(fixed("/console"), everyone(200)),
    "GET /console/reports": Entry(fixed("/console/reports"), everyone(200)),
    "GET /m": Entry(fixed("/m"), everyone(200)),
    "GET /favicon.ico": Entry(fixed("/favicon.ico"), everyone(200)),
    "GET /favicon.svg": Entry(fixed("/favicon.svg"), everyone(200)),
    "MOUNT /static/assets": Entry(fixed("/static/assets/none-such.js"), everyone(404)),
    "GET /healthz": Entry(fixed("/healthz"), everyone(200)),
    "GET /readyz": Entry(fixed("/readyz"), everyone(200)),
    # Bound to the internal network by the proxy (docs/security.md), not by a token.
    "GET /metrics": Entry(fixed("/metrics"), everyone(200)),
    "GET /openapi.json": Entry(fixed("/openapi.json"), everyone(200)),
    "GET /docs": Entry(fixed("/docs"), everyone(200)),
    "GET /docs/oauth2-redirect": Entry(fixed("/docs/oauth2-redirect"), everyone(200)),
    "GET /redoc": Entry(fixed("/redoc"), everyone(200)),
    # ------------------------------------------------------------ the websocket
    "WS /ws": Entry(fixed("/ws"), signed_in(WELCOMED, anonymous=1008)),
}


def app_routes(app: FastAPI) -> dict[str, str]:
    """Every route the app answers, as the matrix names them, with the route's name."""
    found: dict[str, str] = {}
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIWebSocketRoute):
            found[f"WS {context.path}"] = str(context.name)
        elif isinstance(route, Mount):
            found[f"MOUNT {context.path}"] = str(context.name)
        else:
            for method in sorted(set(context.methods or ()) - {"HEAD"}):
                found[f"{method} {context.path}"] = str(context.name)
    return found


async def ws_outcome(scene: Scene, role: str) -> int:
    """101 when the hello is welcomed, else the close code."""
    token = scene.accounts[role].token if role != "anonymous" else "no-token"
    async with connect(scene.world.ws_url, compression=None) as ws:
        await ws.send(json.dumps({"type": "hello", "token": token, "resume_from": 0}))
        try:
            first = json.loads(await asyncio.wait_for(ws.recv(), 5))
        except ConnectionClosed as closed:
            assert closed.rcvd is not None
            return closed.rcvd.code
        return WELCOMED if first["type"] == "welcome" else 0


async def test_the_matrix_names_every_route_of_the_app_and_no_other(world: World) -> None:
    routes = app_routes(world.app)
    missing = sorted(set(routes) - set(MATRIX))
    stale = sorted(set(MATRIX) - set(routes))
    assert not missing, f"routes without a matrix entry: {missing}"
    assert not stale, f"matrix entries for routes that do not exist: {stale}"


async def test_every_route_answers_every_role_with_the_exact_status(world: World) -> None:
    scene = await build_scene(world)
    names = app_routes(world.app)
    wrong: list[str] = []
    unaudited: list[str] = []
    checked = 0
    for key, entry in MATRIX.items():
        method, _ = key.split(" ", 1)
        for role in ROLES:
            checked += 1
            if method == "WS":
                got = await ws_outcome(scene, role)
                if got != entry.expect[role]:
                    wrong.append(f"{key} as {role}: {got}, expected {entry.expect[role]}")
                continue
            call = await entry.build(scene, role)
            token = call.token or (scene.accounts[role].token if role != "anonymous" else None)
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            params = {
                k: v.format(**scene.ids) if isinstance(v, str) else v
                for k, v in (call.params or {}).items()
            }
            audited_before = await scene.audit_rows(names[key])
            reply = await world.http.request(
                "GET" if method == "MOUNT" else method,
                call.path,
                headers=headers,
                json=call.json,
                content=call.content,
                data=call.data,
                params=params,
            )
            if reply.status_code != entry.expect[role]:
                wrong.append(
                    f"{key} as {role}: {reply.status_code}, expected {entry.expect[role]}: "
                    f"{reply.text[:200]}"
                )
            changed = (
                method not in READS | {"MOUNT"}
                and 200 <= reply.status_code < 300
                and entry.changed(reply)
            )
            if changed and await scene.audit_rows(names[key]) != audited_before + 1:
                unaudited.append(f"{key} as {role}")
    print(f"authorisation matrix: {len(MATRIX)} routes x {len(ROLES)} roles = {checked} checks")
    assert not wrong, "\n".join(wrong)
    assert not unaudited, f"changes that left no audit row: {unaudited}"


# Refusals a route makes for its input rather than for who asks, which the matrix (one good
# request per route) does not send: each is provoked in tests/security/test_schema.py.
REFUSED_FOR_INPUT = {
    # A wrong password.
    "POST /api/v1/auth/token": {401},
    # include_retired asked for by a leader.
    "GET /api/v1/teams": {403},
}


async def test_the_schema_declares_401_and_403_exactly_where_the_matrix_meets_them(
    world: World,
) -> None:
    """A client reads from the schema whether a route wants a token (401) and whether some role
    is refused (403): every route declares the refusals the matrix meets, and a route that no
    role is refused, or that wants no token, declares no such refusal."""
    schema = (await world.http.get("/openapi.json")).json()
    wrong: list[str] = []
    for key, entry in MATRIX.items():
        method, path = key.split(" ", 1)
        if not path.startswith("/api/"):
            continue
        responses = schema["paths"][path][method.lower()]["responses"]
        declared = {int(status) for status in responses if int(status) >= 400}
        met = {status for status in entry.expect.values() if status >= 400}
        if undeclared := met - declared:
            wrong.append(f"{key} answers {sorted(undeclared)}, undeclared")
        by_role = (met | REFUSED_FOR_INPUT.get(key, set())) & {401, 403}
        if declared & {401, 403} != by_role:
            wrong.append(f"{key} declares {sorted(declared & {401, 403})}, meets {sorted(by_role)}")
    assert not wrong, "\n".join(wrong)
