"""The incidents of a day in Beijing time, closed ones included, a page at a time: what the
console's history (历史警情) reads."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from dispatch.schemas import DISPLAY_TZ
from tests.support import World


def field_of(answer: dict[str, Any]) -> str | None:
    if "fields" in answer:
        return answer["fields"][0]["field"]
    return answer.get("field")


def to_a_minute_before_midnight(world: World) -> datetime:
    """Move the world's clock on to the next 23:59:00 in Beijing time, and give it."""
    now = world.clock.now().astimezone(DISPLAY_TZ)
    late = now.replace(hour=23, minute=59, second=0, microsecond=0)
    if late <= now:
        late += timedelta(days=1)
    world.clock.advance((late - now).total_seconds())
    return late


async def test_a_days_incidents_newest_first_a_page_at_a_time(world: World) -> None:
    world.long_logins()
    await world.team("fixed_post")
    operator = await world.operator()
    # Start at 23:59:00 Beijing time: one incident that day, three the next.
    late = to_a_minute_before_midnight(world)
    first = await world.report(operator, category="fight")
    closed = await world.http.post(
        f"/api/v1/incidents/{first['id']}/close", headers=operator.headers
    )
    assert closed.status_code == 200, closed.text
    world.clock.advance(120)
    after = [await world.report(operator, category="theft")]
    for _ in range(2):
        world.clock.advance(10)
        after.append(await world.report(operator, category="fire"))
    day = late.date().isoformat()
    next_day = (late.date() + timedelta(days=1)).isoformat()

    async def listed(**params: Any) -> list[str]:
        reply = await world.http.get("/api/v1/incidents", params=params, headers=operator.headers)
        assert reply.status_code == 200, reply.text
        return [i["id"] for i in reply.json()]

    assert await listed(day=day) == [first["id"]]
    assert await listed(day=day, status="closed") == [first["id"]]
    assert await listed(day=day, status="open") == []
    newest = [i["id"] for i in reversed(after)]
    assert await listed(day=next_day) == newest
    assert await listed(day=next_day, limit=2) == newest[:2]
    assert await listed(day=next_day, limit=2, offset=2) == newest[2:]
    assert await listed(day=next_day, limit=2, offset=4) == []
    reported = datetime.fromisoformat(first["reported_at"]).astimezone(DISPLAY_TZ)
    assert reported.date().isoformat() == day

    for bad in ("2026-02-30", "20260101", "2026-1-1", "yesterday", "0001-01-01", "9999-12-31"):
        reply = await world.http.get(
            "/api/v1/incidents", params={"day": bad}, headers=operator.headers
        )
        assert reply.status_code == 422, (bad, reply.text)
        assert field_of(reply.json()) == "day", (bad, reply.text)
    for bad_offset in ("-1", "1000001", "x"):
        reply = await world.http.get(
            "/api/v1/incidents", params={"offset": bad_offset}, headers=operator.headers
        )
        assert reply.status_code == 422, reply.text
        assert field_of(reply.json()) == "offset", reply.text

    schema = (await world.http.get("/openapi.json")).json()
    parameters = {p["name"]: p for p in schema["paths"]["/api/v1/incidents"]["get"]["parameters"]}
    assert "Beijing time" in parameters["day"]["description"]
    assert "offset" in parameters


async def test_a_days_pages_after_a_cursor_hold_that_day_alone_each_incident_once(
    world: World,
) -> None:
    """The history's next page, after the last incident of the one before (``before``), on a
    day that ends at Beijing's midnight: incidents reported between pages (on the day or the
    next), closed between pages, or at one instant come neither twice nor never, and none of
    another day comes with them."""
    world.long_logins()
    world.runtime.settings.report_burst = 100
    await world.team("fixed_post")
    operator = await world.operator()
    start = to_a_minute_before_midnight(world)
    day = start.date().isoformat()
    before_midnight = []
    for n in range(9):
        if n % 3 == 0:
            world.clock.advance(5)  # three at each instant: ties go by id
        before_midnight.append(await world.report(operator))

    async def page(**params: Any) -> list[dict[str, Any]]:
        reply = await world.http.get(
            "/api/v1/incidents", params={"day": day, **params}, headers=operator.headers
        )
        assert reply.status_code == 200, reply.text
        incidents: list[dict[str, Any]] = reply.json()
        return incidents

    whole = [incident["id"] for incident in await page(limit=1000)]
    assert sorted(whole) == sorted(incident["id"] for incident in before_midnight)
    read: list[str] = []
    cursor: dict[str, Any] = {}
    later = []
    while True:
        got = await page(limit=2, **cursor)
        read += [incident["id"] for incident in got]
        if len(got) < 2:
            break
        # Between pages: one closed that was read, one that was not; one reported that day
        # (newer than every page), one the next day.
        unread = [i for i in whole if i not in read]
        for incident_id in (read[0], *unread[:1]):
            closed = await world.http.post(
                f"/api/v1/incidents/{incident_id}/close", headers=operator.headers
            )
            assert closed.status_code == 200, closed.text
        if world.clock.now() < start + timedelta(seconds=59):
            world.clock.advance(1)
            later.append(await world.report(operator))
        cursor = {"before": got[-1]["id"]}
    assert read == whole
    assert len(later) >= 2
    # Past midnight too: one of the next day now, and the day's list holds only its own.
    world.clock.advance(60)
    next_day = await world.report(operator)
    assert datetime.fromisoformat(next_day["reported_at"]).astimezone(DISPLAY_TZ).date() > (
        start.date()
    )
    days_list = [*[i["id"] for i in reversed(later)], *whole]
    assert [i["id"] for i in await page(limit=1000)] == days_list
    # A cursor of another day places the page in the same order: after one of the next day the
    # whole day comes; after the day's last, nothing. Open ones alone after a closed cursor.
    assert [i["id"] for i in await page(limit=1000, before=next_day["id"])] == days_list
    assert await page(before=whole[-1]) == []
    still_open = {i["id"] for i in await page(status="open", limit=1000)}
    assert whole[0] not in still_open
    open_after = await page(status="open", before=whole[0])
    assert [i["id"] for i in open_after] == [i for i in whole[1:] if i in still_open]
