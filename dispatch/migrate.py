"""Alembic, driven from code: applied at start and by ``dispatch db upgrade``.

A database may be ahead of the code: during a rolling upgrade the newer release has migrated it
while older servers still run. Migrations are written to be compatible with the release
before (expand first, contract a release later), so an older server keeps serving on it: it
neither migrates (it does not know the newer revisions) nor reports itself not ready.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import ResolutionError
from sqlalchemy.ext.asyncio import AsyncEngine

import migrations

# Where env.py leaves the revisions of the database this code does not know.
UNKNOWN_KEY = "dispatch.unknown_revisions"
# Where it leaves the revisions the database was at before, read under the migrators' lock.
BEFORE_KEY = "dispatch.revisions_before"
# Where it lists the migrations it applied, in order.
APPLIED_KEY = "dispatch.applied_revisions"
# Where it finds how long the database's host may go unheard (``dispatch.db.create_engine``).
HOST_TIMEOUT_KEY = "dispatch.host_timeout_s"


class Schema(StrEnum):
    CURRENT = "current"
    # Migrations of this release are pending: upgrade.
    BEHIND = "behind"
    # The database carries a revision this release does not know: a newer release migrated it.
    AHEAD = "ahead"


def alembic_config(database_url: str, host_timeout_s: float | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    config.attributes["database_url"] = database_url
    config.attributes[HOST_TIMEOUT_KEY] = host_timeout_s
    return config


def unknown_revisions(script: ScriptDirectory, current: Iterable[str]) -> list[str]:
    """The database's revisions that are none of this code's migrations."""
    unknown = []
    for revision in current:
        try:
            known = script.revision_map.get_revision(revision)
        except ResolutionError:
            known = None
        if known is None:
            unknown.append(revision)
    return sorted(unknown)


def heads() -> list[str]:
    """This release's newest revisions."""
    return sorted(ScriptDirectory.from_config(alembic_config("")).get_heads())


@dataclass(frozen=True)
class Upgrade:
    """What an upgrade found and did."""

    # The database's revisions before it; none for a new (empty) database.
    before: list[str]
    # The migrations it applied, in order; none when the database was current or ahead.
    applied: list[str]
    # The database's revisions this code does not know (a newer release migrated it): left
    # as it is.
    unknown: list[str]


def upgrade(database_url: str, host_timeout_s: float | None = None) -> list[str]:
    """Apply the pending migrations. A database ahead of this code is left as it is: its
    revisions this code does not know are returned (none when it was upgraded or current).
    Upgrades of one database run one at a time, the others waiting (``one_upgrade_at_a_time``).
    ``host_timeout_s``: as ``dispatch.db.create_engine``'s, for the migrations' connection."""
    return upgrade_database(database_url, host_timeout_s).unknown


def upgrade_database(database_url: str, host_timeout_s: float | None = None) -> Upgrade:
    """``upgrade``, saying what the database was at and which migrations it applied."""
    config = alembic_config(database_url, host_timeout_s)
    with one_upgrade_at_a_time(database_url):
        command.upgrade(config, "head")
    found = config.attributes
    return Upgrade(
        list(found.get(BEFORE_KEY, [])),
        list(found.get(APPLIED_KEY, [])),
        found.get(UNKNOWN_KEY, []),
    )


@contextmanager
def one_upgrade_at_a_time(database_url: str) -> Iterator[None]:
    """On SQLite, an exclusive lock on a file beside the database (``town.db.upgrade.lock``)
    for the length of an upgrade, the file removed after it: upgrades started together
    (several ``dispatch db upgrade``, a server starting beside one) wait for each other, as
    PostgreSQL's advisory lock makes them (migrations/env.py), where all but one stopped with
    "database is locked". The system lets the lock go when its process ends, even killed (the
    file is then left, and removed by the next upgrade). Not the server's own lock
    (``town.db.lock``, held while it serves): an upgrade beside a running server must not wait
    for it to stop."""
    from dispatch.cli import sqlite_path

    path = sqlite_path(database_url)
    if path is None or not path.parent.is_dir():
        # PostgreSQL (env.py locks), memory, a URI; a missing directory is refused as it opens.
        yield
        return
    name = path.with_name(path.name + ".upgrade.lock")
    while True:
        lock = os.open(name, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            held = os.fstat(lock)
            try:
                there = os.stat(name)
            except FileNotFoundError:
                there = None
        except BaseException:
            os.close(lock)
            raise
        if there is not None and (there.st_dev, there.st_ino) == (held.st_dev, held.st_ino):
            break
        # The upgrade before removed the file as it finished: lock the one there now.
        os.close(lock)
    try:
        yield
    finally:
        # Removed while still held, so nothing is left beside the database; one waiting on
        # this file finds it gone and takes a new one.
        with suppress(FileNotFoundError):
            os.unlink(name)
        os.close(lock)


async def upgrade_async(database_url: str, host_timeout_s: float | None = None) -> list[str]:
    # env.py runs its own event loop; give it a thread of its own.
    return await asyncio.to_thread(upgrade, database_url, host_timeout_s)


async def current_revisions(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as connection:
        current = await connection.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_heads()
        )
    return sorted(current)


@dataclass(frozen=True)
class Release:
    """This release's migrations, read from their files once. A running server holds the one
    it started with: its files cannot change under it, and reading them took ~19 ms of the
    event loop's CPU, which each /readyz spent."""

    heads: frozenset[str]
    revisions: frozenset[str]

    @classmethod
    def read(cls) -> Release:
        script = ScriptDirectory.from_config(alembic_config(""))
        revisions = frozenset(revision.revision for revision in script.walk_revisions())
        return cls(frozenset(script.get_heads()), revisions)

    def state_of(self, current: Iterable[str]) -> Schema:
        """The state of a database at the revisions ``current`` against this release's."""
        current = set(current)
        if current - self.revisions:
            return Schema.AHEAD
        return Schema.CURRENT if current == self.heads else Schema.BEHIND


async def schema_state(engine: AsyncEngine, release: Release | None = None) -> Schema:
    """Whether the database is at this release's newest migration, behind it, or ahead of it
    (``release``: its migrations, read from their files if not given). Only reads."""
    current = await current_revisions(engine)
    return (release or Release.read()).state_of(current)


def state_of(current: Iterable[str]) -> Schema:
    """The state of a database at the revisions ``current`` against this release's."""
    return Release.read().state_of(current)
