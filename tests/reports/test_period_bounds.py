"""A period's bounds as a URL carries them."""

from __future__ import annotations

from tests.support import World

REPORTS = "/api/v1/reports/response-times"


async def test_a_bound_whose_plus_the_url_made_a_space_is_told_how_to_write_it(
    world: World,
) -> None:
    """``?from=2026-12-07T08:00:00+08:00`` typed into a URL as the report writes its times
    reaches the server as ``2026-12-07T08:00:00 08:00``: a query reads "+" as a space. The
    422 named the field but said only "unexpected extra characters"; it now says why."""
    auditor = await world.account("auditor")
    # The audit trail's bounds are read alike.
    for url in (REPORTS, "/api/v1/reports/arrival-histogram", "/api/v1/audit"):
        for field in ("from", "to"):
            reply = await world.http.get(
                f"{url}?{field}=2026-12-07T08:00:00+08:00", headers=auditor.headers
            )
            assert reply.status_code == 422, reply.text
            (problem,) = reply.json()["fields"]
            assert problem["field"] == field
            assert "%2B" in problem["message"], problem
    # Written as a URL must write it, the same bound is a period's start.
    body = (
        await world.http.get(
            REPORTS, params={"from": "2026-12-07T08:00:00+08:00"}, headers=auditor.headers
        )
    ).json()
    assert body["period_from"] == "2026-12-07T08:00:00+08:00"


async def test_an_empty_or_backward_period_says_its_bounds_and_that_to_is_excluded(
    world: World,
) -> None:
    """``from=2026-12-07&to=2026-12-07`` reads as that day but is the empty period
    [00:00, 00:00): the 422 said only that the start must be before the end, which it seemed
    to be. It names ``from`` as before, and now gives both bounds in Beijing time and says
    that ``to`` is excluded; a start after the default end says that end is the default."""
    auditor = await world.account("auditor")
    for url in (REPORTS, "/api/v1/reports/arrival-histogram"):
        reply = await world.http.get(
            url, params={"from": "2026-12-07", "to": "2026-12-07"}, headers=auditor.headers
        )
        assert reply.status_code == 422, reply.text
        body = reply.json()
        assert body["field"] == "from"
        assert "2026-12-07T00:00:00+08:00" in body["detail"], body
        assert "excluded" in body["detail"] and "to=2026-12-08" in body["detail"], body
        # The words the pages translate (web/src/shared/errors.js) stay as they were.
        assert "the period's start must be before its end" in body["detail"], body
        # At the calendar's end, where the next day is past it, as well.
        last = {"from": "9999-12-31T15:59:59Z", "to": "9999-12-31T15:59:59Z"}
        reply = await world.http.get(url, params=last, headers=auditor.headers)
        assert reply.status_code == 422, reply.text
        assert reply.json()["field"] == "from"

        reply = await world.http.get(url, params={"from": "9000-01-01"}, headers=auditor.headers)
        assert reply.status_code == 422, reply.text
        body = reply.json()
        assert body["field"] == "from"
        assert "9000-01-01T00:00:00+08:00" in body["detail"], body
        assert "default" in body["detail"], body
