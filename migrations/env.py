"""Alembic environment: async engine, every table of dispatch and alerts, one migrator at a time."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import context
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from alerts.models import AlertsBase
from dispatch import models  # noqa: F401  (registers every table)
from dispatch.config import Settings
from dispatch.db import Base, begin_sqlite_transaction, give_up_after, server_keepalives
from dispatch.migrate import (
    APPLIED_KEY,
    BEFORE_KEY,
    HOST_TIMEOUT_KEY,
    UNKNOWN_KEY,
    unknown_revisions,
)

target_metadata = [Base.metadata, AlertsBase.metadata]
# An arbitrary constant: the advisory lock that lets one process migrate while others wait.
MIGRATION_LOCK = 135_135


def database_url() -> str:
    url = context.config.attributes.get("database_url")
    return str(url) if url else Settings().database_url


def run_offline() -> None:
    context.configure(url=database_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def migrate(connection: Connection) -> None:
    applied: list[str] = context.config.attributes.setdefault(APPLIED_KEY, [])
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        # SQLite's too (below): an upgrade stopped part-way leaves the database as it found it.
        transactional_ddl=True,
        # What was applied, for `dispatch db upgrade` to say.
        on_version_apply=lambda *, step, **_: applied.append(str(step.up_revision_id)),
    )
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
    # A newer release migrated the database (a rolling upgrade): leave it as it is. Its
    # migrations keep it usable by this release (expand first, contract a release later).
    # Read under the lock (SQLite's is dispatch.migrate's): what this upgrade starts from.
    current = context.get_context().get_current_heads()
    context.config.attributes[BEFORE_KEY] = sorted(current)
    unknown = unknown_revisions(context.script, current)
    if unknown:
        context.config.attributes[UNKNOWN_KEY] = unknown
        return
    with context.begin_transaction():
        context.run_migrations()


async def run_online() -> None:
    url = make_url(database_url())
    dark_s = context.config.attributes.get(HOST_TIMEOUT_KEY)
    connect_args: dict[str, Any] = {}
    if dark_s is not None and url.get_backend_name() == "postgresql":
        # A host gone dark mid-migration (or before it answers the connect) is given up after
        # about that long, as the server's pools give it up (dispatch.db.create_engine): the
        # upgrade, run by hand or as the server starts, otherwise waited for TCP, for hours.
        connect_args = {"timeout": dark_s, "server_settings": server_keepalives(dark_s)}
    # A failed migration's error names its statement, not the values (names, phone and ID
    # numbers) it was moving.
    engine = create_async_engine(
        url, poolclass=NullPool, hide_parameters=True, connect_args=connect_args
    )
    if connect_args:
        event.listen(engine.sync_engine.pool, "connect", give_up_after(dark_s))
    if engine.dialect.name == "sqlite":
        # Its driver begins a transaction only before a write, so each DDL statement was its
        # own: an upgrade stopped part-way (killed, a full disk, a locked file) kept some of a
        # revision's changes without its number, and every later upgrade failed on them
        # ("duplicate column name"). SQLite runs DDL in a transaction like the rest.
        event.listen(engine.sync_engine, "begin", begin_sqlite_transaction)
    async with engine.begin() as connection:
        await connection.run_sync(migrate)
    await engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    asyncio.run(run_online())
