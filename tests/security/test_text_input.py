"""Names and texts others read follow one set of rules wherever a client sends them
(docs/api.md, "Names and texts"): a name is stripped, not blank, and without control or
bidirectional formatting characters; a free text may hold tabs and line breaks, no other
control character. BEL (U+0007) garbles a screen and a log; RLO (U+202E) shows what follows
it backwards, so that a console shows a name other than the one stored. Each refusal is a 422
naming the field (in a file: the row and column), and nothing of the request is written."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pytest

from tests.rosters.test_rosters import HEADER, member
from tests.support import QINGXI, World
from tests.villages.test_villages import SHANGYUAN, XIAXIAN, collection, feature

BEL, RLO = "\u0007", "\u202e"
# Refused in any name: BEL, RLO (shows 队防联 as 联防队), an isolate (U+2066), a C1 control,
# and a unit separator at the end (which str.strip() drops as whitespace: refused, not dropped).
REFUSED = (f"联防{BEL}队", f"{RLO}队防联", "联防\u2066队", "联防\x85队", "联防队\x1f")
# An ordinary name with spaces inside it and whitespace around it (an ideographic space, a
# tab): kept inside, dropped around.
SPACED, STORED = "\u3000 阿依古丽 买买提\t", "阿依古丽 买买提"


def named(reply: Any) -> list[str]:
    """The fields a 422 names: one by the service, each one by the schema."""
    body = reply.json()
    return [body["field"]] if "field" in body else [f["field"] for f in body["fields"]]


def refused(reply: Any, field: str, found: str) -> None:
    assert reply.status_code == 422, reply.text
    assert reply.json()["error"] == "invalid_input"
    assert named(reply) == [field], reply.text
    assert f"control character ({found})" in reply.json()["detail"], reply.text


def code_point(name: str) -> str:
    """The character of REFUSED's name that is refused, as the answer names it."""
    return next(f"U+{ord(c):04X}" for c in name if not c.isprintable())


async def trail_length(world: World) -> int:
    reply = await world.http.get(
        "/api/v1/audit", params={"limit": 500}, headers=(await world.admin()).headers
    )
    assert reply.status_code == 200, reply.text
    return len(reply.json()["items"])


# Each field a name goes in: a request sending the value, the name as stored after a 2xx.
Send = Callable[[World, str], Awaitable[Any]]
Stored = Callable[[World, Any], Awaitable[str]]


async def create_user(world: World, name: str) -> Any:
    body = {"name": name, "password": "password123", "role": "operator"}
    return await world.http.post("/api/v1/users", json=body, headers=(await world.admin()).headers)


async def user_name(world: World, reply: Any) -> str:
    listed = await world.http.get("/api/v1/users", headers=(await world.admin()).headers)
    return str(next(u["name"] for u in listed.json() if u["id"] == reply.json()["id"]))


async def create_team(world: World, name: str) -> Any:
    body = {"name": name, "kind": "mobile", "location": {"lon": QINGXI[0], "lat": QINGXI[1]}}
    return await world.http.post("/api/v1/teams", json=body, headers=(await world.admin()).headers)


async def rename_team(world: World, name: str) -> Any:
    admin = await world.admin()
    listed = await world.http.get("/api/v1/teams", headers=admin.headers)
    team = listed.json()[0] if listed.json() else await world.team("mobile", name="机动队")
    reply = await world.http.patch(
        f"/api/v1/teams/{team['id']}", json={"name": name}, headers=admin.headers
    )
    return reply


async def team_name(world: World, reply: Any) -> str:
    found = await world.http.get(
        f"/api/v1/teams/{reply.json()['id']}", headers=(await world.admin()).headers
    )
    return str(found.json()["name"])


def roster_member(field: str) -> Send:
    async def send(world: World, value: str) -> Any:
        body = {
            "kind": "area",
            "group_name": "银湖区域联防队",
            "name": "黄队长",
            "phone": "13800001111",
            "role": "leader",
            "site": "银湖公司",
            field: value,
        }
        headers = (await world.admin()).headers
        return await world.http.post("/api/v1/rosters/members", json=body, headers=headers)

    return send


def member_field(field: str) -> Stored:
    async def stored(world: World, reply: Any) -> str:
        listed = await world.http.get(
            "/api/v1/rosters/members", headers=(await world.admin()).headers
        )
        return str(next(m[field] for m in listed.json() if m["id"] == reply.json()["id"]))

    return stored


NAMES: dict[str, tuple[Send, Stored, str]] = {
    "users.name": (create_user, user_name, "name"),
    "teams.name (create)": (create_team, team_name, "name"),
    "teams.name (rename)": (rename_team, team_name, "name"),
    "rosters.group_name": (roster_member("group_name"), member_field("group_name"), "group_name"),
    "rosters.name": (roster_member("name"), member_field("name"), "name"),
    "rosters.site": (roster_member("site"), member_field("site"), "site"),
}


@pytest.mark.parametrize("where", list(NAMES))
async def test_a_name_refuses_control_characters_and_keeps_inner_spaces(
    world: World, where: str
) -> None:
    send, stored, field = NAMES[where]
    await world.admin()
    if where == "teams.name (rename)":
        await world.team("mobile", name="机动队")
    before = await trail_length(world)

    for name in REFUSED:
        refused(await send(world, name), field, code_point(name))
    if field != "site":
        # A site is optional: a blank one is none.
        blank = await send(world, " \u3000\t")
        assert blank.status_code == 422 and named(blank) == [field], blank.text
    assert await trail_length(world) == before, "a refused request writes nothing"

    reply = await send(world, SPACED)
    assert reply.status_code in (200, 201), reply.text
    assert reply.json()[field] == STORED
    assert await stored(world, reply) == STORED


# The longest name each field takes, counted as stored: without the whitespace around it.
LONGEST = {
    "users.name": 64,
    "teams.name (create)": 128,
    "teams.name (rename)": 128,
    "rosters.group_name": 128,
    "rosters.name": 64,
    "rosters.site": 128,
}


# Where the served schema declares each field's name.
DECLARED = {
    "users.name": ("UserCreate", "name"),
    "teams.name (create)": ("TeamCreate", "name"),
    "teams.name (rename)": ("TeamPatch", "name"),
    "rosters.group_name": ("MemberCreate", "group_name"),
    "rosters.name": ("MemberCreate", "name"),
    "rosters.site": ("MemberCreate", "site"),
}


def declared_string(schema: dict[str, Any], model: str, field: str) -> dict[str, Any]:
    declared = schema["components"]["schemas"][model]["properties"][field]
    string: dict[str, Any] = next(
        option for option in declared.get("anyOf", [declared]) if option["type"] == "string"
    )
    return string


def declared_to_take(string: dict[str, Any], value: str) -> bool:
    """Whether a JSON Schema validator takes ``value`` for the declared ``string``."""
    return (
        string.get("minLength", 0) <= len(value) <= string.get("maxLength", len(value))
        and re.search(string.get("pattern", ""), value) is not None
    )


@pytest.mark.parametrize("where", list(NAMES))
async def test_a_padded_name_is_as_long_as_the_name_it_is(world: World, where: str) -> None:
    """The length is counted after the whitespace around a name is dropped, in every field
    (the rosters' once counted the spaces: a padded name a file took was refused there), and
    the schema declares it so: it takes the padded name the server takes, and no longer one."""
    send, stored, field = NAMES[where]
    await world.admin()
    if where == "teams.name (rename)":
        await world.team("mobile", name="机动队")
    longest = LONGEST[where]
    string = declared_string((await world.http.get("/openapi.json")).json(), *DECLARED[where])
    before = await trail_length(world)

    too_long = " " + "名" * (longest + 1) + "\u3000"
    reply = await send(world, too_long)
    assert reply.status_code == 422 and named(reply) == [field], reply.text
    assert f"at most {longest} characters" in reply.json()["detail"], reply.text
    assert await trail_length(world) == before, "a refused request writes nothing"
    assert not declared_to_take(string, too_long), string

    name = "名" * longest
    padded = "\u3000 " + name + "\t"
    reply = await send(world, padded)
    assert reply.status_code in (200, 201), reply.text
    assert reply.json()[field] == name
    assert await stored(world, reply) == name
    assert declared_to_take(string, padded), string


# Characters that show nothing, refused inside a name: with one, 联防队 in service twice would
# read as one name on the console (a zero-width space, a word joiner, a byte-order mark, a soft
# hyphen, a zero-width joiner, a line separator inside the name; the Mongolian vowel separator,
# a shorthand format control, a musical formatting character, and tag characters, which can
# spell a hidden text after a visible one: 联防队 then "x").
INVISIBLE = (
    "联\u200b防队",
    "联防\u2060队",
    "\ufeff联防队",
    "联\u00ad防队",
    "联\u200d防队",
    "联\u2028防队",
    "联防\u180e队",
    "联防\U0001bca0队",
    "联防\U0001d173队",
    "联防队\U000e0001\U000e0078\U000e007f",
    "联防队\U000e00ff",
    "联防队\U000e01f0",
)
# Variation selectors pick a rare hanzi's glyph in a person's name (葛 with U+E0100), of the
# ideographic set, the standard ones and the Mongolian ones: kept.
VARIATIONS = "葛\U000e0100洪\U000e01ef\ufe00\ufe0f\u180b\u180f"


@pytest.mark.parametrize("where", list(NAMES))
async def test_a_name_refuses_characters_that_show_nothing(world: World, where: str) -> None:
    send, stored, _ = NAMES[where]
    await refused_each(world, where, INVISIBLE, "invisible character")
    reply = await send(world, VARIATIONS)
    assert reply.status_code in (200, 201), reply.text
    assert await stored(world, reply) == VARIATIONS


# Noncharacters, which no text holds: XML cannot hold U+FFFE and U+FFFF, and an exported
# workbook showing a name with one was corrupt (Excel would not open it).
NONCHARACTERS = (
    "联防队\uffff",
    "\ufffe联防队",
    "联\ufdd0防队",
    "联防\U0001fffe队",
    "联防队\U0010ffff",
)


@pytest.mark.parametrize("where", list(NAMES))
async def test_a_name_refuses_noncharacters(world: World, where: str) -> None:
    await refused_each(world, where, NONCHARACTERS, "noncharacter")


async def refused_each(world: World, where: str, names: Sequence[str], what: str) -> None:
    """Each of ``names`` sent ``where`` is refused, naming its field and its character, and
    none of them writes anything."""
    send, _, field = NAMES[where]
    await world.admin()
    if where == "teams.name (rename)":
        await world.team("mobile", name="机动队")
    before = await trail_length(world)
    for name in names:
        reply = await send(world, name)
        assert reply.status_code == 422 and named(reply) == [field], reply.text
        found = next(f"U+{ord(c):04X}" for c in name if c not in "联防队")
        assert f"{what} ({found})" in reply.json()["detail"], reply.text
    assert await trail_length(world) == before, "a refused request writes nothing"


async def test_a_login_name_is_read_as_names_are_stored(world: World) -> None:
    """A login name with a control character names no account: 422 naming username, and
    neither the trail nor the log gets it (a failed login is on the trail, by name)."""
    assert (await create_user(world, SPACED)).status_code == 201
    before = await trail_length(world)
    for name in (f"admin{BEL}", f"{RLO}nimda"):
        reply = await world.http.post(
            "/api/v1/auth/token", data={"username": name, "password": "password123"}
        )
        refused(reply, "username", code_point(name))
    assert await trail_length(world) == before
    # Surrounding whitespace is dropped, as it was from the name when it was stored.
    for name in (STORED, SPACED, f" {STORED} "):
        reply = await world.http.post(
            "/api/v1/auth/token", data={"username": name, "password": "password123"}
        )
        assert reply.status_code == 200, (name, reply.text)
    # Then the length is counted, as the schema declares: a padded name of 64 characters is
    # a login name (of no account here), one of 65 is none.
    schema = (await world.http.get("/openapi.json")).json()
    string = declared_string(schema, "Body_issue_token_api_v1_auth_token_post", "username")
    for name, status in ((f"\t{'名' * 64}\u3000 ", 401), ("名" * 65, 422)):
        reply = await world.http.post(
            "/api/v1/auth/token", data={"username": name, "password": "password123"}
        )
        assert reply.status_code == status, reply.text
        assert declared_to_take(string, name) == (status == 401), string


async def test_a_roster_files_names_are_read_as_the_apis(world: World) -> None:
    admin = await world.admin()
    rows = [
        member(1, "银湖区域联防队", 1, "黄队长", "队长", "13800001111"),
        member(2, "银湖区域联防队", 1, f"李{BEL}四", "队员", "13800001112"),
        member(3, f"{RLO}队防联域区湖银", 1, "王五", "队员", "13800001113"),
        member(4, "银湖区域联防队", 1, "赵六", "队员", "13800001114", site=f"银湖{RLO}公司"),
    ]

    def csv_of(rows: list[list[Any]]) -> bytes:
        buffer = io.StringIO()
        csv.writer(buffer).writerows([HEADER, *rows])
        return buffer.getvalue().encode()

    async def upload(body: bytes) -> Any:
        return await world.http.post(
            "/api/v1/rosters/import", params={"kind": "area"}, content=body, headers=admin.headers
        )

    reply = await upload(csv_of(rows))
    assert reply.status_code == 422, reply.text
    problems = [(p["row"], p["field"], p["message"]) for p in reply.json()["problems"]]
    assert [(row, field) for row, field, _ in problems] == [
        (3, "name"),
        (4, "group_name"),
        (5, "site"),
    ]
    assert [message.rsplit(" ", 1)[-1] for _, _, message in problems] == [
        "(U+0007)",
        "(U+202E)",
        "(U+202E)",
    ]
    assert (await world.http.get("/api/v1/rosters/members", headers=admin.headers)).json() == []

    rows = [member(1, f" {STORED} ", 1, SPACED, "队长", "13800001111", site=SPACED)]
    assert (await upload(csv_of(rows))).status_code == 200
    listed = (await world.http.get("/api/v1/rosters/members", headers=admin.headers)).json()
    assert [(m["group_name"], m["name"], m["site"]) for m in listed] == [(STORED,) * 3]


async def test_a_village_files_names_are_read_as_the_apis(world: World) -> None:
    admin = await world.admin()

    async def upload(*features: dict[str, Any]) -> Any:
        return await world.http.post(
            "/api/v1/villages/import", content=collection(*features), headers=admin.headers
        )

    reply = await upload(
        feature(f"上元{BEL}村", SHANGYUAN),
        feature(f"{RLO}区社仙下", XIAXIAN),
        feature("上元\u200b村", SHANGYUAN),
    )
    assert reply.status_code == 422, reply.text
    assert reply.json()["error"] == "file_rejected"
    problems = [(p["field"], p["message"]) for p in reply.json()["problems"]]
    assert problems == [
        ("features[0].properties.name", "the name contains a control character (U+0007)"),
        ("features[1].properties.name", "the name contains a control character (U+202E)"),
        ("features[2].properties.name", "the name contains an invisible character (U+200B)"),
    ]
    assert (await world.http.get("/api/v1/villages", headers=admin.headers)).json() == []

    reply = await upload(feature(SPACED, SHANGYUAN))
    assert reply.status_code == 200, reply.text
    assert reply.json()["created"] == [STORED]
    listed = (await world.http.get("/api/v1/villages", headers=admin.headers)).json()
    assert [v["name"] for v in listed] == [STORED]


async def test_a_village_files_padded_name_is_as_long_as_the_name_it_is(world: World) -> None:
    admin = await world.admin()

    async def upload(name: str) -> Any:
        return await world.http.post(
            "/api/v1/villages/import",
            content=collection(feature(name, SHANGYUAN)),
            headers=admin.headers,
        )

    reply = await upload(" " + "村" * 129 + "\u3000")
    assert reply.status_code == 422, reply.text
    assert [(p["field"], p["message"]) for p in reply.json()["problems"]] == [
        ("features[0].properties.name", "the name must be at most 128 characters")
    ]
    reply = await upload("\u3000 " + "村" * 128 + "\t")
    assert reply.status_code == 200, reply.text
    assert reply.json()["created"] == ["村" * 128]
    listed = (await world.http.get("/api/v1/villages", headers=admin.headers)).json()
    assert [v["name"] for v in listed] == ["村" * 128]


async def test_a_description_keeps_its_lines_and_refuses_other_control_characters(
    world: World,
) -> None:
    operator = await world.operator()
    where = {"lon": QINGXI[0], "lat": QINGXI[1]}

    async def report(description: str) -> Any:
        body = {"location": where, "category": "fight", "description": description}
        return await world.http.post("/api/v1/incidents", json=body, headers=operator.headers)

    before = await trail_length(world)
    for text in (*REFUSED, "\x1b[2J清屏"):
        refused(await report(text), "description", code_point(text))
    for text in NONCHARACTERS:
        reply = await report(text)
        assert reply.status_code == 422 and named(reply) == ["description"], reply.text
        assert "the text contains a noncharacter (U+" in reply.json()["detail"], reply.text
    assert await trail_length(world) == before
    assert (await world.http.get("/api/v1/incidents", headers=operator.headers)).json() == []
    # Free text is kept as written: its whitespace too.
    text = " 两名男子 持刀\r\n在三中工业园门口\t(东门) "
    reply = await report(text)
    assert reply.status_code == 201 and reply.json()["description"] == text
    stored = await world.incident(operator, reply.json()["id"])
    assert stored["description"] == text


def test_a_names_length_is_that_of_the_name_as_stored() -> None:
    """Surrounding whitespace is dropped before the length is checked, as the schema's
    pattern says (a maxLength would count the whitespace too)."""
    from dispatch.auth.schemas import UserCreate

    schema = UserCreate.model_json_schema()["properties"]["name"]
    assert "maxLength" not in schema
    for value in (" " + "名" * 64 + "\u3000", "名", "\u3000名 字\t"):
        assert declared_to_take(schema, value), value
        assert UserCreate(name=value, password="p" * 8, role="admin").name == value.strip()
    for value in ("名" * 65, " ", "\t\u3000", ""):
        assert not declared_to_take(schema, value), value
