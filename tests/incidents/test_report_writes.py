"""How a report is written: the rows other reports share are locked last, and a report refused
at its commit leaves nothing behind."""

from __future__ import annotations

import re
from dataclasses import fields
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from alerts import store as mailboxes
from alerts.models import Mailbox, Message
from dispatch.incidents.models import (
    Dispatch,
    DispatchRecord,
    EventRecord,
    Incident,
    IncidentEvent,
)
from tests.support import QINGXI, World, statements_sent


async def counts(world: World) -> dict[str, int]:
    async with world.runtime.sessionmaker() as session:
        return {
            model.__tablename__: await session.scalar(select(func.count()).select_from(model)) or 0
            for model in (Incident, Dispatch, IncidentEvent, Message)
        }


async def test_a_report_refused_at_its_commit_leaves_no_incident_and_no_message(
    world: World,
) -> None:
    leader = await world.leader(await world.team())
    phone = await world.connect(leader)
    operator = await world.operator()
    world.runtime.settings.report_burst = 1
    first = await world.report(operator)
    assert (await phone.next_of("alert"))["data"]["incident"]["id"] == first["id"]
    before = await counts(world)

    body = {"location": {"lon": QINGXI[0], "lat": QINGXI[1]}, "category": "fight"}
    refused = await world.http.post("/api/v1/incidents", json=body, headers=operator.headers)

    assert refused.status_code == 429
    assert await counts(world) == before
    assert await phone.silent()
    async with world.runtime.sessionmaker() as session:
        assert (await session.get(Mailbox, leader.id)) is not None
        assert (
            await session.scalar(select(Mailbox.last_seq).where(Mailbox.user_id == leader.id))
        ) == 1


async def test_the_mailboxes_and_the_rate_bucket_are_the_last_rows_a_report_writes(
    world: World, backend: str
) -> None:
    await world.leader(await world.team())
    operator = await world.operator()
    await world.operator()
    statements: list[tuple[int, str]] = []

    def seen(connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
        # "SELECT mailboxes", "INSERT incidents": what a statement does, to which table; each
        # write of a statement that makes several at once (PostgreSQL's CTEs), in its order.
        if statement.startswith("WITH"):
            # (Not an upsert's "DO UPDATE SET": that is the INSERT's other branch.)
            for verb, table in re.findall(r"(?<!DO )\b(INSERT INTO|UPDATE)\s+(\w+)", statement):
                statements.append((id(connection), f"{verb.split()[0]} {table}"))
            return
        verb = statement.split()[0]
        table = re.search(r"\b(?:FROM|INTO|UPDATE)\s+(\w+)", statement)
        statements.append((id(connection), f"{verb} {table.group(1) if table else '?'}"))

    engine = world.runtime.engine.sync_engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        await world.report(operator)
    finally:
        event.remove(engine, "before_cursor_execute", seen)

    start = statements.index(next(x for x in statements if x[1] == "INSERT incidents"))
    connection = statements[start][0]
    report = [s for c, s in statements[start:] if c == connection]
    if backend == "postgresql":
        # Everything else comes first; then one last statement: the upsert of the mailboxes
        # every report locks (the board's among them, made by this first message) leads it,
        # the messages are numbered from what it returns, the request's audit row goes with
        # them, and the reporter's bucket is checked and spent (an upsert that writes only
        # while a token is left) once the mailboxes are locked; the commit follows.
        assert "SELECT rate_buckets" not in report
        assert report.count("INSERT mailboxes") == 1
        end = report.index("INSERT rate_buckets")
        assert report[end - 3 : end + 1] == [
            "INSERT mailboxes",
            "INSERT messages",
            "INSERT audit_log",
            "INSERT rate_buckets",
        ]
    else:
        # On SQLite the mailboxes are made and moved on by one upsert, which returns the seqs
        # the messages are numbered from; then the last writes, and last of all the
        # reporter's bucket, checked and spent by an upsert that writes only while a token is
        # left, as on PostgreSQL (no read of the bucket before).
        assert "SELECT mailboxes" not in report
        assert "UPDATE mailboxes" not in report
        assert "SELECT rate_buckets" not in report
        assert report.count("INSERT mailboxes") == 1
        end = report.index("INSERT rate_buckets")
        assert report[end - 3 : end + 1] == [
            "INSERT mailboxes",
            "INSERT audit_log",
            "INSERT messages",
            "INSERT rate_buckets",
        ]
    assert report[end + 1 :] == []


async def test_a_report_with_an_idempotency_key_is_written_once_reading_the_teams_revision(
    world: World, backend: str
) -> None:
    # The console sends every report with a key. On PostgreSQL its incident rides the statement
    # that writes its other rows, inserted unless the key was used, the others written only
    # where it was, and the same statement reads the teams' newest revision. On SQLite the
    # incident is inserted first, then the revision read.
    await world.team()
    operator = await world.operator()
    key = {"Idempotency-Key": "console-1"}
    with statements_sent(world.runtime) as sent:
        incident = await world.report(operator, headers=key)
    revision_reads = [s for s in sent if "max(teams.revision)" in s]
    inserts = [s for s in sent if "INSERT INTO incidents" in s]
    if backend == "postgresql":
        (combined,) = inserts
        assert revision_reads == [combined]
        assert "ON CONFLICT (reported_by, idempotency_key) DO NOTHING" in combined
        assert "INSERT INTO dispatches" in combined
    else:
        (first_insert,) = inserts
        assert len(revision_reads) == 1
        assert sent.index(first_insert) < sent.index(revision_reads[0])
    assert len(incident["dispatches"]) == 1
    before = await counts(world)
    replayed = await world.http.post(
        "/api/v1/incidents",
        json={"location": {"lon": QINGXI[0], "lat": QINGXI[1]}, "category": "fight"},
        headers={**operator.headers, **key},
    )
    assert replayed.status_code == 201, replayed.text
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.json()["id"] == incident["id"]
    # The key was found used: nothing of a new incident's is written.
    assert await counts(world) == before


async def test_a_new_incident_is_written_in_one_statement_on_postgresql_after_one_read_on_sqlite(
    world: World, backend: str
) -> None:
    # One round trip for the incident, its escalation job, chain, dispatches, events and chain
    # head, and the dispatched teams' leaders read back (and one for the mailboxes, messages
    # and the announcement to other processes): each round trip was a wait of its own. A report
    # without an Idempotency-Key, as here, sends nothing before it.
    guard = await world.leader(await world.team())
    rider = await world.leader(await world.team("mobile"))
    phones = [await world.connect(guard), await world.connect(rider)]
    operator = await world.operator()
    with statements_sent(world.runtime) as sent:
        incident = await world.report(operator)

    writes = [s for s in sent if re.match(r"(WITH|INSERT|UPDATE)\b", s)]
    tables = ("incidents", "jobs", "chain_tiers", "dispatches", "incident_events")
    writing = {t: [s for s in writes if re.search(rf"INSERT INTO {t}\b", s)] for t in tables}
    if backend == "postgresql":
        (combined,) = writing["incidents"]
        assert all(found == [combined] for found in writing.values())
        assert "INSERT INTO incident_event_heads" in combined
        leaders = r"SELECT users\.team_id( AS team_id)?, users\.id( AS id)?\s+FROM users"
        assert re.search(leaders, combined)
        assert not [s for s in sent if s.startswith("SELECT users.team_id")]
        # Decided on the coverage index as it was, the rows are written only if no team changed
        # since: checked by the same statement, which reads the teams' newest revision, not by
        # a round trip of its own before the decision.
        assert [s for s in sent if "max(teams.revision)" in s] == [combined]
        (messages,) = [s for s in writes if "INSERT INTO messages" in s]
        # The mailboxes are locked and moved on by the same statement, which numbers the
        # messages from the seqs it returns.
        assert [s for s in writes if "INSERT INTO mailboxes" in s] == [messages]
        # The other processes hear of the alerts from the same statement (a NOTIFY goes out
        # at the commit wherever it is sent), not from a round trip of its own.
        assert "pg_notify" in messages
        assert [s for s in sent if "pg_notify" in s] == [messages]
    else:
        assert all(len(found) == 1 for found in writing.values())
        # Decided on the coverage index as it was, the rows are written only if no team changed
        # since: told by one read of the teams' newest revision with the dispatched teams'
        # leaders, before the writes (a revision read before the decision, and the leaders
        # read after the writes, were two).
        (read,) = [s for s in sent if "max(teams.revision)" in s]
        assert re.search(r"FROM users", read)
        assert not [s for s in sent if s.startswith("SELECT users.team_id")]
        assert sent.index(read) < sent.index(writing["incidents"][0])
    assert len(incident["dispatches"]) == 2
    for phone in phones:
        assert (await phone.next_of("alert"))["data"]["incident"]["id"] == incident["id"]
        await phone.close()
    async with world.runtime.sessionmaker() as session:
        rows = await session.scalars(
            select(Dispatch).where(Dispatch.incident_id == incident["id"]).order_by(Dispatch.tier)
        )
        assert [(d.team_id, d.tier) for d in rows] == [
            (d["team_id"], d["tier"]) for d in incident["dispatches"]
        ]
        assert (await session.get(Incident, incident["id"])) is not None


async def test_messages_staged_but_never_written_refuse_the_commit(world: World) -> None:
    operator = await world.operator()
    async with world.runtime.sessionmaker() as session:
        note = mailboxes.Outgoing(operator.id, "incident.updated", {"id": "x"})
        mailboxes.stage(session, [note], now=world.clock.now())
        with pytest.raises(RuntimeError, match="staged but never written"):
            await session.commit()
    assert (await counts(world))["messages"] == 0


async def test_a_report_leaves_nothing_for_the_unit_of_work_to_flush(world: World) -> None:
    # Every row of a report is a bulk insert: the unit of work's bookkeeping for a handful of
    # objects cost more than the statements themselves.
    await world.leader(await world.team())
    operator = await world.operator()
    flushed: list[str] = []

    def seen(session: Session, _context: Any) -> None:
        flushed.extend(type(o).__name__ for o in [*session.new, *session.dirty])

    event.listen(Session, "after_flush", seen)
    try:
        incident = await world.report(operator)
    finally:
        event.remove(Session, "after_flush", seen)

    assert flushed == []
    assert incident["dispatches"] and incident["chain"]
    audit = await world.http.get(
        "/api/v1/audit",
        params={"action": "report_incident"},
        headers=(await world.admin()).headers,
    )
    assert [row["target_id"] for row in audit.json()["items"]] == [incident["id"]]


def test_the_plain_records_hold_every_column_of_their_tables() -> None:
    # A column added to a table and not to its record would be left NULL by the bulk writes.
    assert [f.name for f in fields(DispatchRecord)] == [c.key for c in Dispatch.__table__.columns]
    columns = [c.key for c in IncidentEvent.__table__.columns if c.key != "id"]
    assert sorted(f.name for f in fields(EventRecord)) == sorted(columns)
