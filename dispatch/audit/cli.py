"""``dispatch audit verify``: check the incident event log's hash chains."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from dispatch.audit.chain import Verdict
from dispatch.config import Settings


def add_audit_command(commands: Any) -> None:
    audit = commands.add_parser("audit", help="the audit trail and the event log's hash chains")
    audit_commands = audit.add_subparsers()
    verify = audit_commands.add_parser(
        "verify",
        help="check every incident's event chain; exit 1 naming the first broken row",
    )
    verify.set_defaults(handler=_verify)


def _verify(_: argparse.Namespace) -> int:
    from dispatch.cli import at_this_release, database_error, database_errors, sqlite_path

    settings = Settings()
    # A check never creates what it checks: a missing file is a wrong path, not an empty log.
    path = sqlite_path(settings.database_url) if settings.is_sqlite else None
    if path is not None and not path.is_file():
        print(
            f"error: DISPATCH_DATABASE_URL: no SQLite database at {path}; nothing to verify",
            file=sys.stderr,
        )
        return 1
    # Nor does it write: a database of an older release (a backup) is refused, not upgraded.
    if not at_this_release(settings.database_url):
        return 1
    try:
        verdict = asyncio.run(_run_verify(settings))
    except database_errors() as error:
        print(
            database_error("DISPATCH_DATABASE_URL", settings.database_url, error), file=sys.stderr
        )
        return 1
    if verdict.broken is not None:
        print(f"BROKEN: {verdict.broken}")
        return 1
    print(f"ok: {verdict.events} events in {verdict.incidents} incident chains")
    # Kept somewhere else (the office's ledger), a later seal that differs shows that whole
    # chains were rewritten or removed since.
    print(f"seal: {verdict.seal}")
    return 0


async def _run_verify(settings: Settings) -> Verdict:
    from dispatch.audit import chain
    from dispatch.db import create_engine, create_sessionmaker

    engine = create_engine(settings.database_url, read_only=True)
    try:
        async with create_sessionmaker(engine)() as session:
            return await chain.verify(session)
    finally:
        await engine.dispose()
