"""incidents: one index on (reported_at, id) in place of the one on reported_at alone

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-07 08:00:00.000000

The list of incidents is ordered newest first with ties by id, and its next page starts after
the previous page's last incident (``before``): with the report time alone indexed, both
databases sorted the incidents of each report time again, and SQLite's search from a cursor
scanned from the newest incident on. The index on (reported_at, id) gives the list in its
order from any cursor on; its leading column serves every read by the report time alone, so
the index on that column would only cost each report a second entry.

Created and dropped without ``batch_alter_table``: an index needs no rebuilt table on SQLite,
and a rebuilt ``incidents`` would lose its triggers (0024).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_incidents_reported_at_id", "incidents", ["reported_at", "id"])
    op.drop_index("ix_incidents_reported_at", table_name="incidents")


def downgrade() -> None:
    op.create_index("ix_incidents_reported_at", "incidents", ["reported_at"])
    op.drop_index("ix_incidents_reported_at_id", table_name="incidents")
