"""The board: every operator's, admin's and auditor's console reads one shared mailbox."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from sqlalchemy import select

from alerts.models import Mailbox, Message
from alerts.store import MAILBOXES
from dispatch import migrate
from dispatch.auth.service import BOARD_MAILBOX
from dispatch.db import create_engine
from tests.conftest import fresh_database
from tests.support import World


async def stored(world: World, mailbox: str) -> list[tuple[int, str]]:
    async with world.runtime.sessionmaker() as session:
        rows = await session.execute(
            select(Message.seq, Message.type)
            .where(Message.user_id == mailbox)
            .order_by(Message.seq)
        )
        return [(seq, kind) for seq, kind in rows.all()]


async def test_every_console_gets_the_same_board_message_written_once(world: World) -> None:
    team = await world.team("fixed_post")
    leader = await world.leader(team)
    first, second = await world.operator(), await world.operator()
    admin = await world.admin()
    consoles = [await world.connect(account) for account in (first, second, admin)]
    assert {c.welcome["data"]["mailbox"] for c in consoles} == {BOARD_MAILBOX}
    phone = await world.connect(leader)
    assert phone.welcome["data"]["mailbox"] == leader.id

    incident = await world.report(first)

    updates = [await console.next() for console in consoles]
    assert {(u["type"], u["seq"], u["data"]["id"]) for u in updates} == {
        ("incident.updated", 1, incident["id"])
    }
    assert (await phone.next())["type"] == "alert"
    assert await stored(world, BOARD_MAILBOX) == [(1, "incident.updated")]
    for account in (first, second, admin):
        assert await stored(world, account.id) == []


async def test_an_auditors_console_reads_the_board_and_its_acks_change_nothing(
    world: World,
) -> None:
    team = await world.team("fixed_post")
    await world.leader(team)
    operator = await world.operator()
    auditor = await world.account("auditor")
    console = await world.connect(auditor)
    assert console.welcome["data"]["mailbox"] == BOARD_MAILBOX

    incident = await world.report(operator)

    update = await console.next()
    assert (update["type"], update["seq"], update["data"]["id"]) == (
        "incident.updated",
        1,
        incident["id"],
    )
    await console.ack()
    await console.silent(0.2)
    async with world.runtime.sessionmaker() as session:
        board = await session.get(Mailbox, BOARD_MAILBOX)
    assert board is not None and (board.last_seq, board.acked_seq) == (1, 0)
    assert await stored(world, auditor.id) == []


async def test_a_delivery_reaches_the_board_once_and_every_console_sees_it(world: World) -> None:
    team = await world.team("fixed_post")
    leader = await world.leader(team)
    operator = await world.operator()
    consoles = [await world.connect(operator), await world.connect(await world.operator())]
    phone = await world.connect(leader)
    incident = await world.report(operator)
    await phone.next_of("alert")
    await phone.ack()

    for console in consoles:
        update = await console.next_of("dispatches.updated")
        (dispatch,) = update["data"]["dispatches"]
        assert dispatch["incident_id"] == incident["id"]
        assert dispatch["delivered_at"] is not None
    kinds = [kind for _, kind in await stored(world, BOARD_MAILBOX)]
    assert kinds == ["incident.updated", "dispatches.updated"]


async def test_a_console_new_to_the_board_starts_at_its_latest_message(world: World) -> None:
    # With a leader: a team without one adds a nobody_alerted message to each report.
    await world.leader(await world.team("fixed_post"))
    operator = await world.operator()
    for _ in range(3):
        await world.report(operator)
    latecomer = await world.operator()

    console = await world.connect(latecomer)

    # Told to load the current state over HTTP, not replayed the board's history.
    assert console.welcome["seq"] == 3
    assert [m["type"] for m in console.received] == ["resync"]
    assert console.received[0]["seq"] == 3
    assert await console.silent()
    incident = await world.report(operator)
    update = await console.next()
    assert (update["seq"], update["data"]["id"]) == (4, incident["id"])


async def test_a_console_resuming_on_the_board_gets_what_it_missed(world: World) -> None:
    # With a leader: a team without one adds a nobody_alerted message to each report.
    await world.leader(await world.team("fixed_post"))
    operator = await world.operator()
    first = await world.report(operator)
    console = await world.connect(operator, resume_from=1)
    assert await console.silent()
    await console.close()
    missed = [await world.report(operator) for _ in range(2)]

    console = await world.connect(operator, resume_from=1)

    replayed = [await console.next(), await console.next()]
    assert [(m["seq"], m["data"]["id"]) for m in replayed] == [
        (2, missed[0]["id"]),
        (3, missed[1]["id"]),
    ]
    assert first["id"] not in {m["data"]["id"] for m in replayed}


async def test_acknowledging_the_board_moves_no_mark(world: World) -> None:
    # With a leader: a team without one adds a nobody_alerted message to each report.
    await world.leader(await world.team("fixed_post"))
    operator = await world.operator()
    console = await world.connect(operator)
    await world.report(operator)
    await console.next()

    await console.ack()
    await console.silent(0.2)

    async with world.runtime.sessionmaker() as session:
        board = await session.get(Mailbox, BOARD_MAILBOX)
    assert board is not None and (board.last_seq, board.acked_seq) == (1, 0)


async def test_presence_still_counts_operators_by_who_they_are(world: World) -> None:
    operator = await world.operator()
    console = await world.connect(operator)
    hub = world.runtime.hub
    assert hub.is_connected(operator.id) and not hub.is_connected(BOARD_MAILBOX)
    second = await world.connect(operator)
    await console.close()
    await second.silent(0.1)
    assert hub.is_connected(operator.id)
    await second.close()
    for _ in range(100):
        if not hub.is_connected(operator.id):
            break
        await asyncio.sleep(0.02)
    assert not hub.is_connected(operator.id)


async def test_the_board_starts_past_every_seq_handed_out_before_it(
    backend: str, tmp_path: Path
) -> None:
    # Consoles kept the seq of their operator's own mailbox; on the board it must look old,
    # so they are told to reload instead of being replayed the wrong messages.
    async with fresh_database(backend, tmp_path) as url:
        config = migrate.alembic_config(url)
        await asyncio.to_thread(command.downgrade, config, "0010")
        engine = create_engine(url)
        async with engine.begin() as connection:
            await connection.execute(
                MAILBOXES.insert(),
                [
                    {"user_id": "op-1", "last_seq": 7, "acked_seq": 7},
                    {"user_id": "op-2", "last_seq": 3, "acked_seq": 1},
                ],
            )
        await asyncio.to_thread(command.upgrade, config, "head")
        async with engine.connect() as connection:
            board = await connection.execute(
                select(MAILBOXES.c.last_seq, MAILBOXES.c.acked_seq).where(
                    MAILBOXES.c.user_id == BOARD_MAILBOX
                )
            )
            assert board.all() == [(7, 0)]
        await asyncio.to_thread(command.downgrade, config, "0010")
        async with engine.connect() as connection:
            left = await connection.scalars(select(MAILBOXES.c.user_id).order_by("user_id"))
            assert list(left) == ["op-1", "op-2"]
        await engine.dispose()
