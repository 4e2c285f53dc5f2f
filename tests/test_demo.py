"""The demo town: seeded once, its accounts' passwords kept where the demo prints them from."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.engine import Engine

from dispatch.auth.models import User
from dispatch.config import Settings
from dispatch.db import create_engine
from dispatch.demo import DEMO_TEAMS, seed_demo
from tests.support import watch_folder_syncs


async def users_on_record(settings: Settings) -> int:
    engine = create_engine(settings.database_url)
    try:
        async with engine.connect() as connection:
            return int(await connection.scalar(select(func.count()).select_from(User)) or 0)
    finally:
        await engine.dispose()


async def test_the_demo_is_seeded_once_and_its_passwords_kept(
    settings: Settings, tmp_path: Path
) -> None:
    kept = tmp_path / "demo-credentials.txt"
    accounts = await seed_demo(settings, kept)
    names = [name for name, _, _ in accounts]
    assert names == ["admin", "operator", *(f"leader{i}" for i in range(1, len(DEMO_TEAMS) + 1))]
    assert await users_on_record(settings) == len(accounts)
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    # Started again: nothing new, and the same passwords, read back from the file.
    assert await seed_demo(settings, kept) == accounts
    assert await users_on_record(settings) == len(accounts)
    assert os.listdir(tmp_path) == [kept.name]  # no partial file left


async def test_the_passwords_are_on_disk_before_the_accounts_are_committed(
    settings: Settings, tmp_path: Path
) -> None:
    """Committed first, a crash before the file was written left accounts that nobody could
    log in to, and the demo never seeded them again."""
    kept = tmp_path / "demo-credentials.txt"
    at_commit: list[str] = []

    def commit(_connection: Any) -> None:
        at_commit.append(kept.read_text() if kept.exists() else "")

    event.listen(Engine, "commit", commit)
    try:
        accounts = await seed_demo(settings, kept)
    finally:
        event.remove(Engine, "commit", commit)
    # SQLite's engine may commit more than once (its journal mode is set on connect).
    assert at_commit, "the accounts were never committed"
    written = "".join(f"{name}\t{role}\t{password}\n" for name, role, password in accounts)
    assert at_commit[-1] == written


async def test_a_file_that_cannot_be_written_leaves_no_accounts(
    settings: Settings, tmp_path: Path
) -> None:
    kept = tmp_path / "missing-folder" / "demo-credentials.txt"
    with pytest.raises(FileNotFoundError):
        await seed_demo(settings, kept)
    assert await users_on_record(settings) == 0
    # The folder made, the demo seeds then.
    kept.parent.mkdir()
    assert len(await seed_demo(settings, kept)) == 2 + len(DEMO_TEAMS)


async def test_the_passwords_file_keeps_its_name_through_a_power_loss_before_the_commit(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file's data was synced but not its folder, which holds its name: power lost after
    the accounts committed could take the new name back, and the passwords with it."""
    kept = tmp_path / "demo-credentials.txt"
    synced = watch_folder_syncs(monkeypatch, tmp_path, kept.exists)
    at_commit: list[bool] = []

    def commit(_connection: Any) -> None:
        at_commit.append(any(synced))

    event.listen(Engine, "commit", commit)
    try:
        await seed_demo(settings, kept)
    finally:
        event.remove(Engine, "commit", commit)
    assert at_commit and at_commit[-1], "the folder was not synced before the accounts committed"
