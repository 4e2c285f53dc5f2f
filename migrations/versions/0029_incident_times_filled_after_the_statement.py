"""chain_tiers and dispatches: their incident's times filled once the statement has written

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-07 15:00:00.000000

0024's triggers gave a tier or dispatch inserted without its incident's times those of its
incident, read before the row was inserted. On PostgreSQL the release before 0023 writes a
report's rows in one statement, the incident inserted in a CTE beside its tiers and dispatches
(alerts.bulk): the rows of one statement see the database as it was before the statement,
without that incident, so the copies of every report such a server took during a rolling
upgrade (or after a rollback) stayed empty, the reports left them out, and `dispatch audit
verify` called them broken. The triggers now run after the statement, as SQLite's always did
(``AFTER INSERT``, which on SQLite fires after each row), and fill the rows then, when the
incident is there.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0029"
down_revision: str | None = "0028"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Row triggers AFTER INSERT fire at the end of the statement, and see all it wrote, the
# incident of a CTE beside it included. This release's report writes the copies itself: on
# its path the condition is false and nothing more is done.
_AFTER = (
    """
    CREATE OR REPLACE FUNCTION chain_tiers_take_incident_times() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE chain_tiers AS t
        SET incident_reported_at = i.reported_at, incident_closed_at = i.closed_at
        FROM incidents AS i
        WHERE i.id = NEW.incident_id AND t.incident_id = NEW.incident_id AND t.tier = NEW.tier
          AND t.incident_reported_at IS NULL;
        RETURN NULL;
    END $$
    """,
    """
    CREATE OR REPLACE FUNCTION dispatches_take_incident_time() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE dispatches AS d SET incident_reported_at = i.reported_at
        FROM incidents AS i
        WHERE i.id = NEW.incident_id AND d.id = NEW.id AND d.incident_reported_at IS NULL;
        RETURN NULL;
    END $$
    """,
    "DROP TRIGGER chain_tiers_take_incident_times ON chain_tiers",
    """
    CREATE TRIGGER chain_tiers_take_incident_times AFTER INSERT ON chain_tiers
    FOR EACH ROW WHEN (NEW.incident_reported_at IS NULL)
    EXECUTE FUNCTION chain_tiers_take_incident_times()
    """,
    "DROP TRIGGER dispatches_take_incident_time ON dispatches",
    """
    CREATE TRIGGER dispatches_take_incident_time AFTER INSERT ON dispatches
    FOR EACH ROW WHEN (NEW.incident_reported_at IS NULL)
    EXECUTE FUNCTION dispatches_take_incident_time()
    """,
)

# 0024's, read before the row is written.
_BEFORE = (
    "DROP TRIGGER chain_tiers_take_incident_times ON chain_tiers",
    "DROP TRIGGER dispatches_take_incident_time ON dispatches",
    """
    CREATE OR REPLACE FUNCTION chain_tiers_take_incident_times() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        SELECT i.reported_at, i.closed_at INTO NEW.incident_reported_at, NEW.incident_closed_at
        FROM incidents AS i WHERE i.id = NEW.incident_id;
        RETURN NEW;
    END $$
    """,
    """
    CREATE OR REPLACE FUNCTION dispatches_take_incident_time() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        SELECT i.reported_at INTO NEW.incident_reported_at
        FROM incidents AS i WHERE i.id = NEW.incident_id;
        RETURN NEW;
    END $$
    """,
    """
    CREATE TRIGGER chain_tiers_take_incident_times BEFORE INSERT ON chain_tiers
    FOR EACH ROW WHEN (NEW.incident_reported_at IS NULL)
    EXECUTE FUNCTION chain_tiers_take_incident_times()
    """,
    """
    CREATE TRIGGER dispatches_take_incident_time BEFORE INSERT ON dispatches
    FOR EACH ROW WHEN (NEW.incident_reported_at IS NULL)
    EXECUTE FUNCTION dispatches_take_incident_time()
    """,
)


def upgrade() -> None:
    # SQLite's triggers (0024) are AFTER INSERT already, and SQLite has no writing CTEs.
    if op.get_bind().dialect.name == "postgresql":
        for statement in _AFTER:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in _BEFORE:
            op.execute(statement)
