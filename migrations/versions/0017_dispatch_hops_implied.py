"""dispatches: which hops were implied by an arrival rather than observed

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03 09:00:00.000000

An arrival recorded without an accept first used to record the accept, and the delivery when
no ack had come, at the arrival's own time, as if the phone had done them: an operator's radio
arrival at 121 s made an alert → delivery of 121 s and an acceptance → arrival of 0 in the
reports. Such hops are now marked (``delivered_implied``, ``accepted_implied``) and measure
nothing. The rows already stored are marked the same way: a hop stamped at the very
microsecond of its dispatch's arrival was recorded by that arrival (an observed accept or ack
is always earlier; a later accept found it on record and changed nothing).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_dispatches = sa.table(
    "dispatches",
    sa.column("delivered_at", sa.DateTime()),
    sa.column("accepted_at", sa.DateTime()),
    sa.column("arrived_at", sa.DateTime()),
    sa.column("delivered_implied", sa.Boolean()),
    sa.column("accepted_implied", sa.Boolean()),
)


def _mark_hops_stamped_by_their_arrival() -> None:
    d = _dispatches.c
    bind = op.get_bind()
    for at, implied in ((d.delivered_at, "delivered_implied"), (d.accepted_at, "accepted_implied")):
        bind.execute(
            sa.update(_dispatches)
            .where(d.arrived_at.is_not(None), at == d.arrived_at)
            .values({implied: sa.true()})
        )


def upgrade() -> None:
    with op.batch_alter_table("dispatches", schema=None) as batch_op:
        for name in ("delivered_implied", "accepted_implied"):
            batch_op.add_column(
                sa.Column(name, sa.Boolean(), server_default=sa.false(), nullable=False)
            )
    _mark_hops_stamped_by_their_arrival()


def downgrade() -> None:
    with op.batch_alter_table("dispatches", schema=None) as batch_op:
        batch_op.drop_column("accepted_implied")
        batch_op.drop_column("delivered_implied")
