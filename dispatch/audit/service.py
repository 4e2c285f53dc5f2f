"""Writing and reading the audit trail."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from alerts.bulk import Added, write_later
from dispatch.audit.models import AuditEntry
from dispatch.db import table_of

NOTE_KEY = "audit.note"
UNCHANGED_KEY = "audit.unchanged"
# Personal data: shown in full to admins only, masked for everyone else who reads the trail.
PERSONAL_KEYS = frozenset({"phone", "id_number"})
SECRET_KEYS = frozenset({"password", "token", "access_token"})


@dataclass(frozen=True)
class Actor:
    """Who made a change, and from which address."""

    user_id: str | None
    name: str | None
    role: str | None
    address: str | None


SYSTEM = Actor(None, "system", None, None)


def note(session: AsyncSession, *, target_id: str | None = None, **facts: Any) -> None:
    """Add to the audit row this request will write: what was created or changed."""
    pending: dict[str, Any] = session.info.setdefault(NOTE_KEY, {})
    if target_id is not None:
        pending["target_id"] = target_id
    pending.update(facts)


def unchanged(session: AsyncSession) -> None:
    """This request, though it succeeds, changed nothing: it leaves no audit row."""
    session.info[UNCHANGED_KEY] = True


def changed_anything(session: AsyncSession) -> bool:
    return not session.info.pop(UNCHANGED_KEY, False)


def take_note(session: AsyncSession) -> dict[str, Any]:
    noted: dict[str, Any] = session.info.pop(NOTE_KEY, {})
    return noted


def entry(
    actor: Actor,
    action: str,
    now: datetime,
    *,
    target_id: str | None = None,
    method: str | None = None,
    route: str | None = None,
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An audit row's column values but its id (the database's), its secrets withheld;
    ``record`` or ``write`` it."""
    return {
        "at": now,
        "actor_id": actor.user_id,
        "actor_name": actor.name,
        "actor_role": actor.role,
        # An IP address or a marker (``trail.client_address``); cut as the column is anyway.
        "address": actor.address[:64] if actor.address else None,
        "action": action[:64],
        "method": method,
        "route": route,
        "target_id": target_id[:64] if target_id else None,
        "data": _without_secrets(data or {}),
    }


def record(session: AsyncSession, row: dict[str, Any]) -> AuditEntry:
    """Add the row to the session, written with its next flush."""
    added = AuditEntry(**row)
    session.add(added)
    return added


def write(session: AsyncSession, row: dict[str, Any]) -> None:
    """Write the row past the unit of work, with the transaction's last statement: every change
    made through the API writes one, the flush of a single object cost more than the insert,
    and the insert a round trip of its own. No mapped object is built: with its instrumented
    attributes it cost twenty times the row's values."""
    write_later(session, Added(table_of(AuditEntry), [row]))


def _without_secrets(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: ("[withheld]" if k in SECRET_KEYS else _without_secrets(v)) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_without_secrets(v) for v in value]
    return value


def mask_personal(value: Any) -> Any:
    """Phone and ID numbers reduced to their first and last digits, wherever they are."""
    if isinstance(value, dict):
        return {
            k: (_mask(v) if k in PERSONAL_KEYS and isinstance(v, str) else mask_personal(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [mask_personal(v) for v in value]
    return value


_DIGITS = re.compile(r"\s")


def _mask(text: str) -> str:
    text = _DIGITS.sub("", text)
    if len(text) <= 7:
        return "*" * len(text)
    keep = 4 if len(text) >= 15 else 3
    return text[:keep] + "*" * (len(text) - keep - 4) + text[-4:]


@dataclass(frozen=True)
class Filters:
    actor_id: str | None = None
    action: str | None = None
    target_id: str | None = None
    start: datetime | None = None
    end: datetime | None = None


async def entries(
    session: AsyncSession, filters: Filters, *, before_id: int | None, limit: int
) -> list[AuditEntry]:
    """Newest first; page backwards with ``before_id`` (the smallest id of the last page)."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if filters.actor_id is not None:
        query = query.where(AuditEntry.actor_id == filters.actor_id)
    if filters.action is not None:
        query = query.where(AuditEntry.action == filters.action)
    if filters.target_id is not None:
        query = query.where(AuditEntry.target_id == filters.target_id)
    if filters.start is not None:
        query = query.where(AuditEntry.at >= filters.start)
    if filters.end is not None:
        query = query.where(AuditEntry.at < filters.end)
    if before_id is not None:
        query = query.where(AuditEntry.id < before_id)
    return list(await session.scalars(query))
