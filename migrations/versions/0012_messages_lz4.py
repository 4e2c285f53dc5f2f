"""stored messages compressed with lz4 on PostgreSQL

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29 06:40:00.000000

An alert carries the whole incident, some 7 KB of JSON, once per recipient: PostgreSQL
compresses each such value as it stores it, with pglz by default. lz4 costs a fraction of that
CPU on every report. Rows stored before keep their pglz values, which read as before; a server
built without lz4 keeps pglz. Nothing to do on SQLite.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HAS_LZ4 = "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql" and bind.scalar(sa.text(HAS_LZ4)):
        op.execute("ALTER TABLE messages ALTER COLUMN data SET COMPRESSION lz4")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE messages ALTER COLUMN data SET COMPRESSION default")
