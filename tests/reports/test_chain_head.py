"""Every form of the response-time report states the chain head it was computed against (the
event log's newest row then: its hash and time), so a printed report can be checked against the
log later (GET /api/v1/audit/verification?head=)."""

from __future__ import annotations

import io
from datetime import datetime

from openpyxl import load_workbook
from sqlalchemy import select

from dispatch.db import table_of
from dispatch.incidents.models import IncidentEvent
from dispatch.schemas import DISPLAY_TZ, show_time
from tests.reports.test_response_times import CHAIN_HEAD, csv_rows, report, settle
from tests.support import World

EVENTS = table_of(IncidentEvent)


async def test_json_csv_and_workbook_state_the_chain_head(world: World) -> None:
    await world.team("fixed_post")
    operator = await world.operator()
    await world.report(operator, category="theft")
    world.clock.advance(120)
    await settle(world)  # tier 1's breach and the escalation written
    async with world.runtime.engine.connect() as connection:
        last = (await connection.execute(select(EVENTS).order_by(EVENTS.c.id.desc()))).first()
    assert last is not None
    local = last.at.astimezone(DISPLAY_TZ)

    head = (await report(world)).json()["chain_head"]
    assert head == {"event_id": last.id, "hash": last.hash, "at": show_time(last.at)}

    for part in ("figures", "exclusions"):
        header, rows = csv_rows(await report(world, format="csv", part=part))
        # Last, as columns are only ever added.
        assert header[-2:] == CHAIN_HEAD, part
        assert rows, part
        for row in rows:
            assert row[-2:] == [last.hash, f"{local:%Y-%m-%d %H:%M:%S}"], part

    book = load_workbook(io.BytesIO((await report(world, format="xlsx")).content))
    about = {r[0]: r[1] for r in book["说明"].iter_rows(min_row=3, values_only=True)}
    assert about["记录链头哈希"] == last.hash
    made = about["记录链头时间（北京时间）"]
    assert isinstance(made, datetime)
    assert made == local.replace(tzinfo=None, microsecond=0)
    assert "/api/v1/audit/verification?head=" in about["记录核验"]


async def test_a_report_of_an_empty_log_says_it_has_no_chain_head(world: World) -> None:
    assert (await report(world)).json()["chain_head"] is None
    header, rows = csv_rows(await report(world, format="csv"))
    assert header[-2:] == CHAIN_HEAD
    for row in rows:
        assert row[-2:] == ["无（事件记录为空）", ""]
    book = load_workbook(io.BytesIO((await report(world, format="xlsx")).content))
    about = {r[0]: r[1] for r in book["说明"].iter_rows(min_row=3, values_only=True)}
    assert about["记录链头哈希"] == "无（事件记录为空）"
