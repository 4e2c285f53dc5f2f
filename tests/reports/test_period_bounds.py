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
