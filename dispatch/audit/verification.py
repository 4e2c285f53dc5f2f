"""The verification the office runs from the console: ``dispatch audit verify`` over the
request's snapshot, with the log's head it ended at and, given a head noted on a report, whether
that row is still in the log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.audit import chain
from dispatch.db import hold_snapshot


@dataclass(frozen=True)
class Verification:
    verdict: chain.Verdict
    head: chain.Head | None
    # Asked for a head (a report's), the row of the log with that hash, if it is still there.
    asked: chain.Head | None


async def verify(session: AsyncSession, now: datetime, asked: str | None) -> Verification:
    """``chain.verify`` (as the command line runs it, without a checkpoint), then the log's
    head at ``now`` and the row ``asked`` names, read in the same snapshot. Slice by slice,
    as the command line reads: the memory holds one slice of incidents at a time."""
    await hold_snapshot(session)
    verdict = await chain.verify(session)
    head = await chain.head_at(session, now)
    found = None if asked is None else await chain.event_with_hash(session, asked)
    return Verification(verdict, head, found)
