"""teams: an index on (tier, name, id), the order of the teams' list

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-07 08:30:00.000000

A city's teams (tens of thousands) are read a page at a time, each next page after the last
team of the one before (``after``): without an index in the list's order both databases sorted
every team for each page. With it, each page is read from the cursor on, in service and
retired alike.

Created and dropped without ``batch_alter_table``: an index needs no rebuilt table on SQLite.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0026"
down_revision: str | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_teams_tier_name_id", "teams", ["tier", "name", "id"])


def downgrade() -> None:
    op.drop_index("ix_teams_tier_name_id", table_name="teams")
