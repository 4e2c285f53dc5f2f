"""Schemathesis against the served OpenAPI schema, signed in as each role and as nobody.

Every operation gets a bounded number of generated requests, valid and invalid, over real
HTTP to the real server. Not one may answer 5xx, and every answer must be declared by the
schema: its status, its content type, its headers and its body.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis import checks as st_checks

from tests.support import World

EXAMPLES = {GenerationMode.POSITIVE: 6, GenerationMode.NEGATIVE: 4}
# Each of these would end the role's session (or lock it out) for the rest of the run.
SPARED = {"POST /api/v1/auth/logout"}

Drawn = dict[tuple[str, GenerationMode], list[Any] | BaseException]
# The requests drawn for a schema, by its digest: derandomized, so the same for each backend,
# and drawn once for both (drawing is most of the test's time).
DRAWN: dict[str, tuple[Any, Drawn]] = {}


def conformance() -> list[Any]:
    return [
        st_checks.not_a_server_error,
        st_checks.status_code_conformance,
        st_checks.content_type_conformance,
        st_checks.response_headers_conformance,
        st_checks.response_schema_conformance,
    ]


@dataclass
class Figures:
    operations: set[str] = field(default_factory=set)
    requests: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)


def generated(operation: schemathesis.APIOperation, mode: GenerationMode) -> list[Any]:
    """The requests Hypothesis generates for one operation in one mode.

    Derandomized, so the same for every role: they are drawn once and sent as each role.
    Drawing them (regex-shaped strings above all) costs far more than sending them.
    """
    cases: list[Any] = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES[mode],
        deadline=None,
        database=None,
        # The same requests on every run: a red build is reproducible, never a fluke.
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def one(case: schemathesis.Case) -> None:
        cases.append(case)

    one()
    return cases


def probe(
    cases: list[Any],
    role: str,
    headers: dict[str, str],
    base_url: str,
    http: requests.Session,
    figures: Figures,
) -> None:
    """The generated requests to one operation, sent as one role; the first broken answer
    raises."""
    checks = conformance()
    for generated_case in cases:
        # A copy of its own for each role: the same request, never one a call has touched.
        case = generated_case.derive(keep_auth=True)
        response = case.call(base_url=base_url, headers=headers, session=http)
        figures.requests[role] += 1
        figures.statuses[response.status_code] += 1
        case.validate_response(response, checks=checks, headers=headers)


def fuzz(raw_schema: dict[str, Any], base_url: str, tokens: dict[str, str | None]) -> Figures:
    digest = hashlib.sha256(json.dumps(raw_schema, sort_keys=True).encode()).hexdigest()
    if digest not in DRAWN:
        DRAWN[digest] = (schemathesis.openapi.from_dict(raw_schema), {})
    schema, drawn = DRAWN[digest]
    figures = Figures()
    http = requests.Session()
    for role, token in tokens.items():
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        for result in schema.get_all_operations():
            operation = result.ok()
            label = f"{operation.method.upper()} {operation.path}"
            if role != "anonymous" and label in SPARED:
                continue
            figures.operations.add(label)
            for mode in EXAMPLES:
                if (label, mode) not in drawn:
                    try:
                        drawn[label, mode] = generated(operation, mode)
                    except (Exception, BaseExceptionGroup) as failure:
                        drawn[label, mode] = failure
                try:
                    cases = drawn[label, mode]
                    if isinstance(cases, BaseException):
                        raise cases
                    probe(cases, role, headers, base_url, http, figures)
                except Unsatisfiable:
                    # No invalid request exists for an operation without parameters.
                    continue
                except (Exception, BaseExceptionGroup) as failure:
                    figures.failures.append(f"{role} {label} ({mode.value}): {failure}"[:3000])
    return figures


async def test_the_api_holds_its_schema_under_generated_requests(world: World) -> None:
    team = await world.team()
    accounts = {
        "admin": await world.admin(),
        "operator": await world.operator(),
        "leader": await world.leader(team),
        "auditor": await world.account("auditor"),
    }
    await world.report(accounts["operator"])
    tokens: dict[str, str | None] = {role: a.token for role, a in accounts.items()}
    tokens["anonymous"] = None
    raw = (await world.http.get("/openapi.json")).json()
    figures = await asyncio.to_thread(fuzz, raw, world.base_url, tokens)
    total = sum(figures.requests.values())
    print(
        f"schemathesis: {len(figures.operations)} operations, {len(tokens)} roles, "
        f"{total} requests ({dict(figures.requests)}), "
        f"statuses {dict(sorted(figures.statuses.items()))}, {len(figures.failures)} failures"
    )
    assert total > 0
    assert not figures.failures, "\n\n".join(figures.failures)
