"""chain_tiers and dispatches: their incident's times kept by the database for every writer

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-05 18:00:00.000000

0023 gave every tier and dispatch a copy of its incident's report time (the tiers also its
close time) and required it. A server of the release before, which keeps serving on the
migrated database until it is restarted (and again if the upgrade is rolled back), writes
tiers and dispatches without the copy and closes incidents without touching their tiers: its
reports failed on the constraint, and its closes left the tiers' copies empty.

Triggers now keep the copies for whoever writes: a tier or dispatch inserted without its
incident's times takes them from the incident, and a change of an incident's report or close
time is carried to its rows. The columns may be null again (SQLite checks ``NOT NULL`` before
a trigger can fill the column); the triggers leave none null, and ``dispatch audit verify``
holds every copy to the incident's events. This release's report writes the copies itself, so
on its path the insert triggers' condition is false; its close leaves the tiers' close time to
the incident's trigger.

On SQLite a table rebuilt by a later migration (``batch_alter_table`` moving and copying it)
loses its triggers: such a migration must create them again (``create_triggers``).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

import alerts.models

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = alerts.models.UTCDateTime(timezone=True)

# A row inserted without its incident's times takes them; BEFORE, so the row is whole when
# the constraints are checked.
_PG_FILL_FUNCTIONS = (
    """
    CREATE FUNCTION chain_tiers_take_incident_times() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        SELECT i.reported_at, i.closed_at INTO NEW.incident_reported_at, NEW.incident_closed_at
        FROM incidents AS i WHERE i.id = NEW.incident_id;
        RETURN NEW;
    END $$
    """,
    """
    CREATE FUNCTION dispatches_take_incident_time() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        SELECT i.reported_at INTO NEW.incident_reported_at
        FROM incidents AS i WHERE i.id = NEW.incident_id;
        RETURN NEW;
    END $$
    """,
    # An incident's report or close time changed: its rows' copies follow.
    """
    CREATE FUNCTION incidents_give_rows_their_times() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE chain_tiers
        SET incident_reported_at = NEW.reported_at, incident_closed_at = NEW.closed_at
        WHERE incident_id = NEW.id
          AND (incident_reported_at IS DISTINCT FROM NEW.reported_at
               OR incident_closed_at IS DISTINCT FROM NEW.closed_at);
        UPDATE dispatches SET incident_reported_at = NEW.reported_at
        WHERE incident_id = NEW.id AND incident_reported_at IS DISTINCT FROM NEW.reported_at;
        RETURN NULL;
    END $$
    """,
)
_PG_TRIGGERS = (
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
    """
    CREATE TRIGGER incidents_give_rows_their_times AFTER UPDATE OF reported_at, closed_at
    ON incidents FOR EACH ROW
    WHEN (NEW.reported_at IS DISTINCT FROM OLD.reported_at
          OR NEW.closed_at IS DISTINCT FROM OLD.closed_at)
    EXECUTE FUNCTION incidents_give_rows_their_times()
    """,
)

# SQLite's triggers cannot change the row being inserted: they fill it right after.
_SQLITE_TRIGGERS = (
    """
    CREATE TRIGGER chain_tiers_take_incident_times AFTER INSERT ON chain_tiers
    FOR EACH ROW WHEN NEW.incident_reported_at IS NULL
    BEGIN
        UPDATE chain_tiers
        SET incident_reported_at = (SELECT reported_at FROM incidents WHERE id = NEW.incident_id),
            incident_closed_at = (SELECT closed_at FROM incidents WHERE id = NEW.incident_id)
        WHERE incident_id = NEW.incident_id AND tier = NEW.tier;
    END
    """,
    """
    CREATE TRIGGER dispatches_take_incident_time AFTER INSERT ON dispatches
    FOR EACH ROW WHEN NEW.incident_reported_at IS NULL
    BEGIN
        UPDATE dispatches
        SET incident_reported_at = (SELECT reported_at FROM incidents WHERE id = NEW.incident_id)
        WHERE id = NEW.id;
    END
    """,
    """
    CREATE TRIGGER incidents_give_rows_their_times AFTER UPDATE OF reported_at, closed_at
    ON incidents FOR EACH ROW
    WHEN NEW.reported_at IS NOT OLD.reported_at OR NEW.closed_at IS NOT OLD.closed_at
    BEGIN
        UPDATE chain_tiers
        SET incident_reported_at = NEW.reported_at, incident_closed_at = NEW.closed_at
        WHERE incident_id = NEW.id
          AND (incident_reported_at IS NOT NEW.reported_at
               OR incident_closed_at IS NOT NEW.closed_at);
        UPDATE dispatches SET incident_reported_at = NEW.reported_at
        WHERE incident_id = NEW.id AND incident_reported_at IS NOT NEW.reported_at;
    END
    """,
)
_TRIGGERS = {
    "chain_tiers_take_incident_times": "chain_tiers",
    "dispatches_take_incident_time": "dispatches",
    "incidents_give_rows_their_times": "incidents",
}


def create_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in (*_PG_FILL_FUNCTIONS, *_PG_TRIGGERS):
            op.execute(statement)
    else:
        for statement in _SQLITE_TRIGGERS:
            op.execute(statement)


def drop_triggers() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for trigger, table in _TRIGGERS.items():
        op.execute(f"DROP TRIGGER IF EXISTS {trigger}" + (f" ON {table}" if postgresql else ""))
        if postgresql:
            op.execute(f"DROP FUNCTION IF EXISTS {trigger}()")


def _set_nullable(nullable: bool) -> None:
    for table in ("chain_tiers", "dispatches"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column("incident_reported_at", existing_type=_TIME, nullable=nullable)


def upgrade() -> None:
    # Relaxed first: on SQLite this rebuilds both tables, which would drop their triggers.
    _set_nullable(True)
    create_triggers()


def downgrade() -> None:
    drop_triggers()
    _set_nullable(False)
