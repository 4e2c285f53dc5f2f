"""Each user's mailbox: a gap-free sequence of stored messages, kept for replay on reconnect."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, DateTime, Index, MetaData, String, false
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JSONType = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC and always hands back an aware UTC datetime, on SQLite too."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are refused: every time must carry its zone")
        value = value.astimezone(UTC)
        # SQLite keeps text; naive UTC text sorts and compares correctly.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class AlertsBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime,
        dict[str, Any]: JSONType,
    }


class Mailbox(AlertsBase):
    __tablename__ = "mailboxes"

    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_seq: Mapped[int] = mapped_column(default=0)
    acked_seq: Mapped[int] = mapped_column(default=0)


class Message(AlertsBase):
    __tablename__ = "messages"
    __table_args__ = (Index("ix_messages_created_at", "created_at"),)

    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(primary_key=True)
    type: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]]
    # An opaque reference the application attaches (for example the record an alert is about),
    # handed back when the message is acknowledged.
    ref: Mapped[str | None] = mapped_column(String(64))
    # Every message written by one transaction shares a batch id, so other processes can be
    # told "batch X committed" and read exactly those rows.
    batch: Mapped[str] = mapped_column(String(32), index=True)
    created_at: Mapped[datetime]
    # A resync moved its mailbox's acknowledged mark past it without its being sent to the
    # socket (the client reloaded its state instead): the mark proves nothing of it, and
    # nothing else will (``alerts.acks``, ``alerts.store.received``). The database's default
    # alone: messages are written by statements that name their columns, and a default of the
    # model's would be one more parameter in them that nothing gives.
    skipped: Mapped[bool] = mapped_column(server_default=false())
