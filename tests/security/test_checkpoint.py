"""A checkpoint kept outside the database: ``dispatch audit verify --checkpoint FILE`` notes
every incident's chain head, ``--against FILE`` later finds an incident rewritten (its chain
hashed again, which the chain alone cannot show) or removed since."""

from __future__ import annotations

import asyncio
import errno
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, select, update

from dispatch.audit import checkpoint as checkpoint_file
from dispatch.audit.chain import GENESIS, canonical, link
from dispatch.audit.models import EventChainHead
from dispatch.cli import main
from dispatch.db import table_of
from dispatch.incidents.models import ChainTier, Dispatch, IncidentEvent
from tests.conftest import every_table_child_first
from tests.support import World, watch_folder_syncs

EVENTS, HEADS = table_of(IncidentEvent), table_of(EventChainHead)
TIERS, DISPATCHES = table_of(ChainTier), table_of(Dispatch)


def audit_verify(database_url: str, *options: str) -> tuple[int, str, str]:
    done = subprocess.run(
        [sys.executable, "-m", "dispatch", "audit", "verify", *options],
        capture_output=True,
        text=True,
        env={**os.environ, "DISPATCH_DATABASE_URL": database_url},
        timeout=120,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


async def verify(world: World, *options: str | Path) -> tuple[int, str, str]:
    url = world.runtime.settings.database_url
    return await asyncio.to_thread(audit_verify, url, *map(str, options))


async def hash_again(world: World, incident_id: str) -> None:
    """What anyone with SQL access and the published algorithm can do after changing an
    event: compute the incident's chain, and its head, again."""
    async with world.runtime.engine.begin() as connection:
        rows = await connection.execute(
            select(EVENTS).where(EVENTS.c.incident_id == incident_id).order_by(EVENTS.c.seq)
        )
        prev = GENESIS
        for e in rows.all():
            hash_ = link(prev, canonical(incident_id, e.seq, e.at, e.type, e.actor_id, e.data))
            await connection.execute(
                update(EVENTS).where(EVENTS.c.id == e.id).values(prev_hash=prev, hash=hash_)
            )
            prev = hash_
        await connection.execute(
            update(HEADS).where(HEADS.c.incident_id == incident_id).values(hash=prev)
        )


async def remove_whole(world: World, incident_id: str) -> None:
    """An incident deleted with every row of it: its chain, head, tiers and dispatches."""
    async with world.runtime.engine.begin() as connection:
        for table in every_table_child_first():
            if table.name == "incidents":
                await connection.execute(delete(table).where(table.c.id == incident_id))
            elif "incident_id" in table.c:
                await connection.execute(delete(table).where(table.c.incident_id == incident_id))


async def test_an_arrival_rewritten_and_hashed_again_is_caught_against_the_checkpoint(
    world: World, tmp_path: Path
) -> None:
    team = await world.team("fixed_post")
    leader = await world.leader(team)
    operator = await world.operator()
    incident = await world.report(operator)
    other = await world.report(operator, category="theft")
    dispatch_id = incident["dispatches"][0]["id"]
    world.clock.advance(70)
    await world.wait_for(operator, incident["id"], lambda i: i["chain"][0]["status"] == "breached")
    reply = await world.http.post(
        f"/api/v1/dispatches/{dispatch_id}/arrive", headers=leader.headers
    )
    assert reply.status_code == 200, reply.text
    checkpoint = tmp_path / "2026-04-01.checkpoint"
    code, out, err = await verify(world, "--checkpoint", checkpoint)
    assert code == 0, out + err
    assert f"checkpoint: 2 incident chain heads written to {checkpoint}" in out
    lines = checkpoint.read_text().splitlines()
    assert lines[0] == "# dispatch audit checkpoint 1" and lines[-1].startswith("# sha256 ")

    # The breach made to look met: the arrival moved from 70 s to 55 s in its event and in
    # every row the reports read, and the chain hashed again.
    async with world.runtime.engine.begin() as connection:
        arrived = (
            await connection.execute(
                select(EVENTS).where(
                    EVENTS.c.incident_id == incident["id"], EVENTS.c.type == "arrived"
                )
            )
        ).one()
        earlier = arrived.at - timedelta(seconds=15)
        data = {**arrived.data, "elapsed_s": 55.0}
        await connection.execute(
            update(EVENTS).where(EVENTS.c.id == arrived.id).values(at=earlier, data=data)
        )
        await connection.execute(
            update(DISPATCHES).where(DISPATCHES.c.id == dispatch_id).values(arrived_at=earlier)
        )
        await connection.execute(
            update(TIERS)
            .where(TIERS.c.incident_id == incident["id"], TIERS.c.tier == 1)
            .values(arrived_at=earlier, elapsed_s=55.0)
        )
    await hash_again(world, incident["id"])
    report = await world.http.get(
        f"/api/v1/reports/incidents/{incident['id']}", headers=operator.headers
    )
    assert report.json()["tiers"][0]["outcome"] == "met", "the report believes it"
    code, out, err = await verify(world)
    assert code == 0, "the chain alone cannot show it: " + out + err

    code, out, err = await verify(world, "--against", checkpoint)
    assert code == 1, out + err
    assert out.startswith(f"BROKEN: incident {incident['id']}: rewritten since the checkpoint: ")
    assert "has the hash" in out and "the checkpoint's head there" in out

    # A verification that fails writes no checkpoint, and leaves the one there as it was.
    kept = checkpoint.read_bytes()
    code, out, err = await verify(world, "--against", checkpoint, "--checkpoint", checkpoint)
    assert code == 1 and "chain heads written" not in out, out + err
    assert checkpoint.read_bytes() == kept
    assert os.listdir(tmp_path) == [checkpoint.name]
    assert other["id"] not in out


async def test_an_incident_removed_whole_is_caught_against_the_checkpoint(
    world: World, tmp_path: Path
) -> None:
    await world.team("fixed_post")
    operator = await world.operator()
    kept = await world.report(operator)
    removed = await world.report(operator, category="theft")
    checkpoint = tmp_path / "checkpoint.txt"
    assert (await verify(world, "--checkpoint", checkpoint))[0] == 0

    await remove_whole(world, removed["id"])
    code, out, err = await verify(world)
    assert code == 0, "nothing is left in the database to show it: " + out + err
    code, out, err = await verify(world, "--against", checkpoint)
    assert code == 1, out + err
    assert out == (
        f"BROKEN: incident {removed['id']}: removed since the checkpoint, which names its "
        f"chain up to seq {removed_seq(checkpoint, removed['id'])}\n"
    )
    assert kept["id"] not in out


def removed_seq(checkpoint: Path, incident_id: str) -> int:
    line = next(x for x in checkpoint.read_text().splitlines() if x.startswith(incident_id))
    return int(line.split()[1])


async def test_new_events_and_incidents_after_the_checkpoint_hold_against_it(
    world: World, tmp_path: Path
) -> None:
    team = await world.team("fixed_post")
    leader = await world.leader(team)
    operator = await world.operator()
    incident = await world.report(operator)
    yesterday, today = tmp_path / "yesterday.txt", tmp_path / "today.txt"
    assert (await verify(world, "--checkpoint", yesterday))[0] == 0

    dispatch_id = incident["dispatches"][0]["id"]
    for hop in ("accept", "arrive"):
        world.clock.advance(10)
        reply = await world.http.post(
            f"/api/v1/dispatches/{dispatch_id}/{hop}", headers=leader.headers
        )
        assert reply.status_code == 200, reply.text
    reply = await world.http.post(
        f"/api/v1/incidents/{incident['id']}/close", headers=operator.headers
    )
    assert reply.status_code == 200, reply.text
    await world.report(operator, category="fire")

    code, out, err = await verify(world, "--against", yesterday, "--checkpoint", today)
    assert code == 0, out + err
    assert f"ok: each of the 1 incidents of {yesterday} (taken " in out
    assert "still passes through the chain head it had then" in out
    assert f"checkpoint: 2 incident chain heads written to {today}" in out
    assert (await verify(world, "--against", today))[0] == 0


async def test_a_checkpoint_of_an_empty_database_holds_against_what_follows(
    world: World, tmp_path: Path
) -> None:
    checkpoint = tmp_path / "empty.txt"
    code, out, err = await verify(world, "--checkpoint", checkpoint)
    assert code == 0, out + err
    assert out.startswith("ok: 0 events in 0 incident chains\n")
    assert "checkpoint: 0 incident chain heads" in out
    assert [x for x in checkpoint.read_text().splitlines() if not x.startswith("#")] == []
    await world.team("fixed_post")
    await world.report(await world.operator())
    code, out, err = await verify(world, "--against", checkpoint)
    assert code == 0 and "ok: each of the 0 incidents of" in out, out + err


def test_a_damaged_checkpoint_is_refused_in_one_line(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'dispatch.db'}"
    upgraded = subprocess.run(
        [sys.executable, "-m", "dispatch", "db", "upgrade"],
        env={**os.environ, "DISPATCH_DATABASE_URL": url},
        capture_output=True,
        check=False,
    )
    assert upgraded.returncode == 0
    good = tmp_path / "good.txt"
    assert audit_verify(url, "--checkpoint", str(good))[0] == 0
    whole = good.read_bytes()
    # A database with incidents gives a longer file; the checks are the same.
    entry = b"6c1f0e6a2b7d4c1e9f3a5b7c9d1e3f50 12 " + b"ab" * 32 + b"\n"
    body = whole[: whole.rindex(b"# 0 incidents")] + entry
    cases = {
        "cut short": (whole[:-30], "incomplete (cut short?): it does not end with its sha256 line"),
        "cut at a line": (body, "incomplete (cut short?): it does not end with its sha256 line"),
        "a byte changed": (
            whole.replace(b"# 0 incidents", b"# 1 incidents"),
            "damaged: its content does not match its sha256 line",
        ),
        "another file": (
            b"incident,seq,hash\n",
            "not a checkpoint of dispatch audit verify: its first line is not "
            "'# dispatch audit checkpoint 1'",
        ),
        "empty": (b"", "not a checkpoint of dispatch audit verify"),
    }
    for name, (content, said) in cases.items():
        damaged = tmp_path / f"{name}.txt"
        damaged.write_bytes(content)
        code, out, err = audit_verify(url, "--against", str(damaged))
        assert code == 1 and out == "", (name, out, err)
        assert err.startswith(f"error: --against {damaged}: {said}"), (name, err)
        assert len(err.splitlines()) == 1 and "Traceback" not in err, (name, err)

    code, out, err = audit_verify(url, "--against", str(tmp_path / "missing.txt"))
    assert code == 1 and err.startswith(f"error: --against {tmp_path / 'missing.txt'}: cannot "), (
        err
    )
    nowhere = tmp_path / "no" / "such" / "dir.txt"
    code, out, err = audit_verify(url, "--checkpoint", str(nowhere))
    assert code == 1 and out == "" and len(err.splitlines()) == 1, err
    assert err.startswith(f"error: --checkpoint {nowhere}: cannot write it: "), err


# Waits for a line on stdin, then becomes `dispatch audit verify` with the arguments given: the
# same process, so the test knows the verify's process id before it runs.
BECOME_VERIFY = """
import os, sys
sys.stdin.readline()
os.execv(sys.executable, [sys.executable, "-m", "dispatch", "audit", "verify", *sys.argv[1:]])
"""


def test_a_checkpoint_half_written_by_a_verify_that_died_does_not_stop_the_next(
    tmp_path: Path,
) -> None:
    """A verify killed while writing its checkpoint (the power lost, kill -9) leaves its part
    written beside the file. The next one, in a container as the same process id (1 in a
    `docker compose run`), was refused "cannot write it: File exists" until someone found the
    hidden file and removed it."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'dispatch.db'}"
    env = {**os.environ, "DISPATCH_DATABASE_URL": url}
    upgrade = [sys.executable, "-m", "dispatch", "db", "upgrade"]
    assert subprocess.run(upgrade, env=env, capture_output=True, check=False).returncode == 0
    checkpoint = tmp_path / "nightly.checkpoint"
    launcher = [sys.executable, "-c", BECOME_VERIFY, "--checkpoint", str(checkpoint)]
    with subprocess.Popen(
        launcher, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as verifying:
        # What the one that died wrote: the start of a checkpoint, under this process id.
        left = tmp_path / f".{checkpoint.name}.{verifying.pid}.part"
        left.write_text("# dispatch audit checkpoint 1\n# taken 2026-12-06T03:00:00+08:00\n")
        out, err = verifying.communicate(b"go\n", timeout=120)
    assert verifying.returncode == 0, (out + err).decode()
    assert b"checkpoint: 0 incident chain heads written" in out
    assert audit_verify(url, "--against", str(checkpoint))[0] == 0


def checkpoint_taken(tmp_path: Path, checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    """A database made in ``tmp_path`` whose verify wrote ``checkpoint``, set as this process's
    DISPATCH_DATABASE_URL for the next verify; the checkpoint's inode, to tell its successor."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'dispatch.db'}"
    env = {**os.environ, "DISPATCH_DATABASE_URL": url}
    upgrade = [sys.executable, "-m", "dispatch", "db", "upgrade"]
    assert subprocess.run(upgrade, env=env, capture_output=True, check=False).returncode == 0
    assert audit_verify(url, "--checkpoint", str(checkpoint))[0] == 0
    monkeypatch.setenv("DISPATCH_DATABASE_URL", url)
    return os.stat(checkpoint).st_ino


def test_a_checkpoint_keeps_its_place_through_a_power_loss_once_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The new checkpoint's data was synced, then put in the earlier one's place, but the
    folder that holds the name was not synced: power lost after "checkpoint: … written" could
    bring the earlier checkpoint back at that path."""
    checkpoint = tmp_path / "nightly.checkpoint"
    earlier = checkpoint_taken(tmp_path, checkpoint, monkeypatch)
    synced = watch_folder_syncs(
        monkeypatch, tmp_path, lambda: os.stat(checkpoint).st_ino != earlier
    )
    assert main(["audit", "verify", "--checkpoint", str(checkpoint)]) == 0
    assert os.stat(checkpoint).st_ino != earlier
    assert synced and synced[-1], "the folder was not synced after the replace"


def test_a_checkpoint_whose_folder_cannot_be_synced_is_said_to_be_written_all_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The folder's sync comes after the new checkpoint took the earlier one's place: when it
    failed, verify said it could not write the checkpoint, though the new one was there to be
    read, and only a power loss could bring the earlier one back. It says just that."""
    checkpoint = tmp_path / "nightly.checkpoint"
    earlier = checkpoint_taken(tmp_path, checkpoint, monkeypatch)
    fsync = os.fsync
    folder = os.stat(tmp_path)

    def failing_folder_fsync(fd: int) -> None:
        target = os.fstat(fd)
        if (target.st_dev, target.st_ino) == (folder.st_dev, folder.st_ino):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_folder_fsync)
    assert main(["audit", "verify", "--checkpoint", str(checkpoint)]) == 1
    out, err = capsys.readouterr()
    assert os.stat(checkpoint).st_ino != earlier  # the new one is in place, and whole
    assert checkpoint_file.read(checkpoint).heads == {}
    assert "ok: 0 events" in out
    assert "cannot write" not in err
    assert (
        f"--checkpoint {checkpoint}: written, but its folder could not be synced "
        f"({os.strerror(errno.EIO)}): a power loss may bring back the earlier checkpoint"
    ) in err
    assert list(tmp_path.glob(".*.part")) == []


async def test_an_older_backup_restored_is_named_as_possibly_that(
    world: World, tmp_path: Path
) -> None:
    team = await world.team("fixed_post")
    leader = await world.leader(team)
    operator = await world.operator()
    first = await world.report(operator)
    async with world.runtime.engine.begin() as connection:
        backed_up = (
            await connection.execute(select(HEADS).where(HEADS.c.incident_id == first["id"]))
        ).one()
    # After the night's backup: the team arrives, two more incidents are reported, and the
    # office takes its checkpoint with the month's report.
    world.clock.advance(30)
    assert await world.arrive(first, team, leader) == 200
    later = [await world.report(operator, category=c) for c in ("theft", "fire")]
    checkpoint = tmp_path / "with-the-report.checkpoint"
    assert (await verify(world, "--checkpoint", checkpoint))[0] == 0

    # The backup restored over it: the first incident's chain as it was then, the later
    # incidents not yet there.
    async with world.runtime.engine.begin() as connection:
        await connection.execute(
            delete(EVENTS).where(EVENTS.c.incident_id == first["id"], EVENTS.c.seq > backed_up.seq)
        )
        await connection.execute(
            update(HEADS)
            .where(HEADS.c.incident_id == first["id"])
            .values(seq=backed_up.seq, hash=backed_up.hash)
        )
    for incident in later:
        await remove_whole(world, incident["id"])
    code, out, err = await verify(world, "--against", checkpoint)
    assert code == 1 and "Traceback" not in err, out + err
    assert out.splitlines()[0] == (
        f"BROKEN: incident {first['id']}: rewritten since the checkpoint: its chain ends at seq "
        f"{backed_up.seq}, the checkpoint's head is at seq {removed_seq(checkpoint, first['id'])}"
        ": its later events were removed, or this database is older than the checkpoint (a "
        "backup from before it, restored)"
    ), out

    await remove_whole(world, first["id"])
    code, out, err = await verify(world, "--against", checkpoint)
    assert code == 1, out + err
    gone = min(incident["id"] for incident in [first, *later])
    assert out == (
        f"BROKEN: incident {gone}: removed since the checkpoint, which names its chain up to "
        f"seq {removed_seq(checkpoint, gone)} (and 2 more of its 3 incidents are gone: deleted, "
        "or this database is older than the checkpoint (a backup from before it, restored))\n"
    ), out
