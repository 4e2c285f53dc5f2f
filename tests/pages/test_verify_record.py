"""The report page's 核验记录 (Verify record): the record checked as ``dispatch audit verify``
checks it, in green with the rows checked and the chain head when it holds, each break named by
its incident's report time (Beijing time), category and village when it does not; and the chain
head the report on screen states, looked for in the record. Chinese first, English on switch."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from playwright.async_api import Browser, expect
from sqlalchemy import func, select, update

from dispatch.db import table_of
from dispatch.incidents.models import Dispatch, IncidentEvent
from tests.pages.conftest import Opened, ask_report, desk_context, log_in
from tests.security.test_verify_where import an_arrival
from tests.support import World

EVENTS, DISPATCHES = table_of(IncidentEvent), table_of(Dispatch)


def wall(iso: str) -> str:
    return iso[:19].replace("T", " ")


async def test_verify_record_shows_the_record_whole_then_the_break_in_both_languages(
    world: World, browser: Browser, contexts: Opened
) -> None:
    incident, _ = await an_arrival(world)
    auditor = await world.account("auditor")
    head = (await world.http.get("/api/v1/reports/response-times", headers=auditor.headers)).json()[
        "chain_head"
    ]
    context = await desk_context(browser, contexts)
    page = await context.new_page()
    await log_in(page, world.base_url + "/console/reports", auditor)
    await expect(page.locator("#app")).to_have_attribute("data-state", "ready")
    await ask_report(page, incident["reported_at"][:10])
    await expect(page.locator("#report-head")).to_have_text(
        f"本报表的记录链头：{head['hash']}（北京时间 {wall(head['at'])}）"
    )

    section = page.locator("#verify")
    await page.get_by_role("button", name="核验记录").click()
    await expect(section).to_have_attribute("data-state", "ok")
    result = page.locator("#verify-result")
    ok = result.locator(".verify-ok").first
    async with world.runtime.engine.connect() as connection:
        # Counted, not read off the head's row id: ids go on from earlier tests' rows.
        events = (await connection.execute(select(func.count()).select_from(EVENTS))).scalar_one()
    await expect(ok).to_have_text(f"记录完整：核验了 1 起警情的 {events} 条事件记录，均未被改动")
    assert await ok.evaluate("e => getComputedStyle(e).color") == "rgb(4, 120, 87)"
    await expect(result).to_contain_text(f"记录链头：{head['hash']}（北京时间 {wall(head['at'])}）")
    await expect(result).to_contain_text("本报表的记录链头仍在记录中")

    async with world.runtime.engine.begin() as connection:
        arrived = (await connection.execute(select(EVENTS).where(EVENTS.c.type == "arrived"))).one()
        earlier = arrived.at - timedelta(seconds=30)
        await connection.execute(update(EVENTS).where(EVENTS.c.id == arrived.id).values(at=earlier))
    reply = await world.http.get("/api/v1/audit/verification", headers=auditor.headers)
    (broken,) = reply.json()["breaks"]

    await page.get_by_role("button", name="核验记录").click()
    await expect(section).to_have_attribute("data-state", "broken")
    await expect(result.locator(".verify-broken").first).to_have_text(
        "记录有断裂：以下记录与哈希链不符"
    )
    where = result.locator(".verify-where")
    await expect(where).to_have_text(
        f"警情 {incident['id']}：报警时间 {wall(incident['reported_at'])}（北京时间），"
        "盗窃，不属任何村"
    )
    await expect(result).to_contain_text(
        f"所涉事件：arrived，记录时间 {wall(broken['place']['event_at'])}（北京时间）"
    )
    says = result.locator(".verify-says")
    await expect(says).to_have_text(
        f"第 {arrived.id} 条事件记录（序号 {arrived.seq}）的内容与其哈希不符：记录可能被改动"
    )
    await expect(result.locator(".verify-text")).to_have_text(f"原文：{broken['text']}")

    await page.get_by_role("button", name="English").click()
    await expect(where).to_have_text(
        f"Incident {incident['id']}: reported {wall(incident['reported_at'])} (Beijing time), "
        "Theft, in no village"
    )
    await expect(result.locator(".verify-broken").first).to_have_text(
        "The record is broken: these rows do not agree with the hash chain"
    )
    await expect(page.get_by_role("button", name="Verify record")).to_be_visible()
    await expect(says).to_have_text(
        f"Event row {arrived.id} (seq {arrived.seq}): its content does not match its hash: "
        "the row may have been changed"
    )

    # The event put back, the dispatch's arrival moved: the column, the time stored and the
    # one the arrival event records, in Beijing time, in either language.
    async with world.runtime.engine.begin() as connection:
        await connection.execute(
            update(EVENTS).where(EVENTS.c.id == arrived.id).values(at=arrived.at)
        )
        await connection.execute(
            update(DISPATCHES)
            .where(DISPATCHES.c.id == incident["dispatches"][0]["id"])
            .values(arrived_at=earlier)
        )
    reply = await world.http.get("/api/v1/audit/verification", headers=auditor.headers)
    (broken,) = reply.json()["breaks"]
    values = broken["values"]
    await page.get_by_role("button", name="Verify record").click()
    await expect(says).to_have_text(
        f"The arrival time of the dispatch row, {wall(values['stored'])}, differs from the "
        f"{wall(values['expected'])} its arrival event records (event row {arrived.id}, seq "
        f"{arrived.seq}): the row may have been changed"
    )
    await page.get_by_role("button", name="中文").click()
    await expect(says).to_have_text(
        f"派单记录的到场时间 {wall(values['stored'])} 与到场事件所记 "
        f"{wall(values['expected'])} 不符（第 {arrived.id} 条事件记录，序号 {arrived.seq}）："
        "记录可能被改动"
    )
    await expect(result.locator(".verify-text")).to_have_text(f"原文：{broken['text']}")


async def test_verify_record_pressed_while_one_runs_says_so_and_waits_the_servers_seconds(
    world: World, browser: Browser, contexts: Opened
) -> None:
    """One verification runs at a time on a server: pressed meanwhile, the page says a
    verification is under way and when to try again (the 429's Retry-After), not 操作过于频繁,
    as if its user had done too much; the button may be pressed again after those seconds."""
    incident, _ = await an_arrival(world)
    auditor = await world.account("auditor")
    context = await desk_context(browser, contexts)
    page = await context.new_page()
    await log_in(page, world.base_url + "/console/reports", auditor)
    await expect(page.locator("#app")).to_have_attribute("data-state", "ready")
    await ask_report(page, incident["reported_at"][:10])

    section, result = page.locator("#verify"), page.locator("#verify-result")
    button = page.locator("#verify-run")
    loop = asyncio.get_running_loop()
    async with world.runtime.verifying:
        await button.click()
        await expect(section).to_have_attribute("data-state", "waiting")
        refused_at = loop.time()
    await expect(result).to_have_text("核验正在进行，请稍后再试（约 10 秒）")
    await expect(result).not_to_contain_text("操作过于频繁")
    await expect(button).to_be_disabled()
    await page.get_by_role("button", name="English").click()
    await expect(result).to_have_text("A verification is already running; try again in about 10 s")
    # Still waiting a few seconds on; pressable again once the ten have passed.
    await asyncio.sleep(max(0.0, refused_at + 3 - loop.time()))
    await expect(button).to_be_disabled()
    await expect(button).to_be_enabled(timeout=12_000)
    assert loop.time() - refused_at >= 9.5
    await button.click()
    await expect(section).to_have_attribute("data-state", "ok")
    await expect(result.locator(".verify-ok").first).to_contain_text("The record holds")
