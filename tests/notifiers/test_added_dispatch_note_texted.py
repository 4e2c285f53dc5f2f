"""加派 with a note: the text and robot message of an alert the added team's leader did not
acknowledge quote the operator's note (调度员附言) briefly, on one line, a long one cut with …;
the webhook's document carries it whole. A 加派 without one is texted as before."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace

from dispatch.notifiers.channels import NOTE_CHARS, Notice
from tests.notifiers.receiver import Receiver
from tests.notifiers.test_notifiers import (
    WEBHOOK_SECRET,
    Start,
    receivers,
    robbery_notice,
    setup_incident,
    start,
)

__all__ = ["receivers", "start"]

NOTE = "从北门进，报警人在二楼\n<b>电梯坏了</b>"


async def test_the_text_of_an_unacknowledged_added_team_quotes_the_operators_note(
    start: Start, receivers: Callable[..., Awaitable[Receiver]]
) -> None:
    sms = await receivers()
    webhook = await receivers()
    world = await start(
        sms_gateway_url=sms.url,
        sms_gateway_username="town",
        sms_gateway_password="pw",
        webhook_url=webhook.url,
        webhook_secret=WEBHOOK_SECRET,
    )
    await world.team("fixed_post")
    far = await world.team("patrol", 114.2, 22.9, radius_m=1000, name="三号巡逻车")
    _, operator, incident = await setup_incident(world, team=far)
    reply = await world.http.post(
        f"/api/v1/incidents/{incident['id']}/dispatches",
        json={"team_id": far["id"], "note": NOTE},
        headers=operator.headers,
    )
    assert reply.status_code == 201, reply.text

    world.clock.advance(15)
    [text] = await sms.wait_for(1)
    said = text.json()["text"]
    # On one line (its line break a space), after the rest.
    quoted = "调度员附言：从北门进，报警人在二楼 <b>电梯坏了</b>"
    assert said.endswith(f"警情编号 {incident['id'][:8]}。{quoted}"), said
    [document] = await webhook.wait_for(1)
    assert document.json()["dispatch"]["note"] == NOTE


async def test_a_team_added_without_a_note_is_texted_as_any_other(
    start: Start, receivers: Callable[..., Awaitable[Receiver]]
) -> None:
    sms = await receivers()
    world = await start(
        sms_gateway_url=sms.url, sms_gateway_username="town", sms_gateway_password="pw"
    )
    await world.team("fixed_post")
    far = await world.team("patrol", 114.2, 22.9, radius_m=1000, name="三号巡逻车")
    _, operator, incident = await setup_incident(world, team=far)
    reply = await world.http.post(
        f"/api/v1/incidents/{incident['id']}/dispatches",
        json={"team_id": far["id"]},
        headers=operator.headers,
    )
    assert reply.status_code == 201, reply.text

    world.clock.advance(15)
    [text] = await sms.wait_for(1)
    assert "附言" not in text.json()["text"]
    assert text.json()["text"].endswith(f"警情编号 {incident['id'][:8]}")


def notice(note: str | None) -> Notice:
    """The robbery notice of the notifier tests, for a patrol added by hand with ``note``."""
    return replace(
        robbery_notice(), team_name="三号巡逻车", tier=2, distance_m=3000, phone=None, note=note
    )


def test_a_long_note_is_cut_with_an_ellipsis_to_keep_the_text_brief() -> None:
    long = "从北门进入小区后左转，" * 10
    text = notice(long).text()
    quoted = text.split("调度员附言：", 1)[1]
    assert len(quoted) == NOTE_CHARS
    assert quoted.endswith("…")
    assert long.startswith(quoted[:-1])
    assert notice(long).document()["dispatch"]["note"] == long
    # A note that fits is quoted whole.
    assert notice("走东侧楼梯").text().endswith("。调度员附言：走东侧楼梯")
    assert "附言" not in notice(None).text()
