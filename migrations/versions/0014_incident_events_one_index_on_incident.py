"""incident events: drop the index on incident_id alone

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30 01:45:00.000000

The unique index on (incident_id, seq) already serves every lookup by incident (its leading
column) and keeps the log in chain order; the index on incident_id alone only cost every event
written a second index entry (a report writes a dozen events, a flush of deliveries one each).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("incident_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_incident_events_incident_id"))


def downgrade() -> None:
    with op.batch_alter_table("incident_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_incident_events_incident_id"), ["incident_id"], unique=False
        )
