"""The served schema says what the roster routes take and answer, as they take and answer it."""

from __future__ import annotations

import re
from typing import Any

from dispatch.rosters.schemas import MemberCreate
from dispatch.rosters.service import RowError, normalize_id_number, normalize_phone
from tests.support import World


async def served(world: World) -> dict[str, Any]:
    reply = await world.http.get("/openapi.json")
    assert reply.status_code == 200
    schema: dict[str, Any] = reply.json()
    return schema


async def test_the_imports_refusals_carry_the_error_body(world: World) -> None:
    schema = await served(world)
    responses = schema["paths"]["/api/v1/rosters/import"]["post"]["responses"]
    for status in ("413", "415", "422"):
        body = responses[status]["content"]["application/json"]["schema"]
        assert body == {"$ref": "#/components/schemas/ErrorOut"}, status
    assert "DISPATCH_MAX_UPLOAD_BYTES" in responses["413"]["description"]


async def test_duty_hours_and_member_numbers_are_described_by_the_schema(world: World) -> None:
    components = (await served(world))["components"]["schemas"]
    duty = components["DutyIn"]["properties"]
    for end in ("start", "end"):
        assert duty[end]["pattern"] == "^([01][0-9]|2[0-3]):[0-5][0-9]$"
    assert duty["units"]["items"] == {"type": "integer", "minimum": 1, "maximum": 99}
    assert duty["units"]["uniqueItems"] is True
    member = components["MemberCreate"]["properties"]
    assert "pattern" in member["phone"]
    (text,) = (o for o in member["id_number"]["anyOf"] if o.get("type") == "string")
    assert "pattern" in text


def accepts(check: Any, value: str) -> bool:
    try:
        check(value)
    except RowError:
        return False
    return True


PHONES = [
    "13912345678",
    "+86 139 1234 5678",
    "+86-139-1234-5678",
    "(0769) 8765 4321",
    "0769-8765432",
    "+86（0769）87654321",
    "1234",
    "12912345678",
    "139123456789",
    "+85 13912345678",
    "1391234567a",
    "769-87654321",
    "0769-876543210123",
    # Full-width, as an input method's full-width mode types them; other digits are refused.
    "１３９１２３４５６７８",
    "＋８６　１３９－１２３４－５６７８",
    "（０７６９）８７６５４３２１",
    "139١٢٣٤٥٦٧٨",
    "13912345６7\u00b2",
    # Between the digits spaces, hyphens and brackets only, as the pattern says: a tab, a line
    # break or a no-break space is refused, not dropped unseen.
    "139\t1234\t5678",
    "139\u00a01234\u00a05678",
    "\t13912345678",
    "13912345678\n",
    "139 1234\u20025678",
]
# The check digit is beyond a pattern: these have a right one, or a wrong form.
ID_NUMBERS = [
    "441900199003070016",
    "44190019900307018X",
    "44190019900307018x",
    " 441900199003070016 ",
    "",
    "4419",
    "44190019900307001Y",
    "4419001990030700161",
    "４４１９００１９９００３０７０１８ｘ",
    "\u3000４４１９００１９９００３０７００１６",
    "44190019900307001٦",
    "\t441900199003070016",
    "441900199003070016\u00a0",
    "\t",
]


async def test_a_phone_with_a_stray_space_is_refused_naming_it(world: World) -> None:
    admin = await world.admin()
    team = await world.team("mobile")
    body = {
        "kind": "emergency",
        "group_name": team["name"],
        "name": "黄队长",
        "phone": "139\u00a01234\u00a05678",
        "role": "leader",
    }
    reply = await world.http.post("/api/v1/rosters/members", json=body, headers=admin.headers)
    assert reply.status_code == 422 and reply.json()["field"] == "phone", reply.text
    assert "spaces, hyphens and brackets (U+00A0)" in reply.json()["detail"]
    body["phone"] = "139 1234\u30005678"
    reply = await world.http.post("/api/v1/rosters/members", json=body, headers=admin.headers)
    assert reply.status_code == 201 and reply.json()["phone"] == "13912345678", reply.text


def test_the_number_patterns_take_what_the_roster_takes() -> None:
    phone = MemberCreate.model_json_schema()["properties"]["phone"]["pattern"]
    for value in PHONES:
        assert bool(re.search(phone, value)) == accepts(normalize_phone, value), value
    id_number = MemberCreate.model_json_schema()["properties"]["id_number"]["anyOf"][0]
    for value in ID_NUMBERS:
        taken = accepts(normalize_id_number, value)
        assert bool(re.search(id_number["pattern"], value)) == taken, value
