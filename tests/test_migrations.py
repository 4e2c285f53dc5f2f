"""The migrations build exactly the schema the models declare, on both backends."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, MetaData

from alerts.models import AlertsBase
from dispatch.db import Base, create_engine


def _differences(connection: Connection) -> list[Any]:
    declared = MetaData()
    for metadata in (Base.metadata, AlertsBase.metadata):
        for table in metadata.tables.values():
            table.to_metadata(declared)
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, declared))


async def test_the_newest_migration_is_the_schema_the_models_declare(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            differences = await connection.run_sync(_differences)
    finally:
        await engine.dispose()
    assert differences == [], "a model and the migrations disagree: add a migration"
