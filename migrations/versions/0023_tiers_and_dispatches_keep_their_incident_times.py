"""chain_tiers and dispatches: their incident's report time (and the tiers its close time)

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-05 13:00:00.000000

The reports judged every tier and dispatch by its incident's report and close times, joining
each row to ``incidents``: a third of a report's time over 100k incidents. Each row now keeps
a copy (``incident_reported_at``; the tiers also ``incident_closed_at``), written with it and
at the close, which ``dispatch audit verify`` holds to the incident's events. The rows already
stored take their incident's times here. A partial index keeps the tiers nobody reached in
report order, for the report's list of them (a sort of every such tier before).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import alerts.models

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The tiers nobody reached, which a report lists in report order.
_UNREACHED = sa.text("arrived_at IS NULL")
_incidents = sa.table(
    "incidents",
    sa.column("id", sa.String()),
    sa.column("reported_at", alerts.models.UTCDateTime(timezone=True)),
    sa.column("closed_at", alerts.models.UTCDateTime(timezone=True)),
)
_tiers = sa.table(
    "chain_tiers",
    sa.column("incident_id", sa.String()),
    sa.column("incident_reported_at", alerts.models.UTCDateTime(timezone=True)),
    sa.column("incident_closed_at", alerts.models.UTCDateTime(timezone=True)),
)
_dispatches = sa.table(
    "dispatches",
    sa.column("incident_id", sa.String()),
    sa.column("incident_reported_at", alerts.models.UTCDateTime(timezone=True)),
)


def _incident_time(column: str, incident_id: sa.ColumnElement[str]) -> sa.ScalarSelect[object]:
    return sa.select(_incidents.c[column]).where(_incidents.c.id == incident_id).scalar_subquery()


def _copy_incident_times() -> None:
    tier_of = _tiers.c.incident_id
    op.execute(
        _tiers.update().values(
            incident_reported_at=_incident_time("reported_at", tier_of),
            incident_closed_at=_incident_time("closed_at", tier_of),
        )
    )
    op.execute(
        _dispatches.update().values(
            incident_reported_at=_incident_time("reported_at", _dispatches.c.incident_id)
        )
    )


def upgrade() -> None:
    for table in ("chain_tiers", "dispatches"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column(
                    "incident_reported_at",
                    alerts.models.UTCDateTime(timezone=True),
                    nullable=True,
                )
            )
            if table == "chain_tiers":
                batch_op.add_column(
                    sa.Column(
                        "incident_closed_at",
                        alerts.models.UTCDateTime(timezone=True),
                        nullable=True,
                    )
                )
    _copy_incident_times()
    for table in ("chain_tiers", "dispatches"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(
                "incident_reported_at",
                existing_type=alerts.models.UTCDateTime(timezone=True),
                nullable=False,
            )
            batch_op.create_index(
                f"ix_{table}_incident_reported_at",
                ["incident_reported_at"],
                unique=False,
                postgresql_using="brin",
            )
            if table == "chain_tiers":
                batch_op.create_index(
                    "ix_chain_tiers_unreached",
                    ["incident_reported_at", "incident_id", "tier"],
                    unique=False,
                    postgresql_where=_UNREACHED,
                    sqlite_where=_UNREACHED,
                )


def downgrade() -> None:
    for table in ("chain_tiers", "dispatches"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            if table == "chain_tiers":
                batch_op.drop_index(
                    "ix_chain_tiers_unreached",
                    postgresql_where=_UNREACHED,
                    sqlite_where=_UNREACHED,
                )
            batch_op.drop_index(f"ix_{table}_incident_reported_at", postgresql_using="brin")
            batch_op.drop_column("incident_reported_at")
            if table == "chain_tiers":
                batch_op.drop_column("incident_closed_at")
