"""``dispatch audit verify``: check the incident event log's hash chains, the rows the reports
judge from against them, and, against a checkpoint kept outside the database, that no incident
was rewritten or removed since."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dispatch.config import Settings

# Only for the verify command: every other command builds this parser too, and the chain's
# modules bring the server's schemas (FastAPI, pyproj), about a second of CPU at each start.
if TYPE_CHECKING:
    from dispatch.audit.chain import Verdict
    from dispatch.audit.checkpoint import Checkpoint, Writer

# The columns events carry only since they carry everything the reports read.
UNRECORDED = (
    "category, description, village, tier targets and arrival positions (lon, lat, accuracy)"
)


def add_audit_command(commands: Any) -> None:
    from dispatch.cli import usage

    audit = commands.add_parser("audit", help="the audit trail and the event log's hash chains")
    audit.set_defaults(handler=usage(audit))
    audit_commands = audit.add_subparsers()
    verify = audit_commands.add_parser(
        "verify",
        help="check every incident's event chain and the rows the reports judge from; exit 1 "
        "naming the first that does not hold",
    )
    verify.add_argument(
        "--against",
        type=Path,
        metavar="FILE",
        help="a checkpoint written earlier: every incident in it must still be there, its chain "
        "passing through the head it had then",
    )
    verify.add_argument(
        "--checkpoint",
        type=Path,
        metavar="FILE",
        help="when everything holds, write every incident's chain head to FILE, to keep "
        "outside the database (with the report) and verify --against later",
    )
    verify.set_defaults(handler=_verify)


def _verify(args: argparse.Namespace) -> int:
    from dispatch.audit import checkpoint
    from dispatch.audit.checkpoint import CheckpointError, FolderNotSynced, Writer
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
    if not at_this_release(settings.database_url, host_timeout_s=settings.db_host_timeout_s):
        return 1
    against: Checkpoint | None = None
    if args.against is not None:
        try:
            against = checkpoint.read(args.against)
        except CheckpointError as error:
            print(f"error: --against {args.against}: {error}", file=sys.stderr)
            return 1
    writer: Writer | None = None
    if args.checkpoint is not None:
        try:
            writer = Writer(args.checkpoint, datetime.now(UTC))
        except CheckpointError as error:
            print(f"error: --checkpoint {args.checkpoint}: {error}", file=sys.stderr)
            return 1
    written = False
    unsynced: str | None = None  # why the checkpoint's folder could not be synced
    try:
        verdict = asyncio.run(_run_verify(settings, against, writer))
        if writer is not None and verdict.broken is None:
            try:
                writer.finish(verdict.events)
            except FolderNotSynced as error:
                unsynced = str(error)
            written = True
    except database_errors() as error:
        print(
            database_error("DISPATCH_DATABASE_URL", settings.database_url, error), file=sys.stderr
        )
        return 1
    except CheckpointError as error:
        print(f"error: --checkpoint {args.checkpoint}: {error}", file=sys.stderr)
        return 1
    finally:
        # A checkpoint only of a database that held, whole: otherwise none, and an earlier
        # one in the same place is left as it was.
        if writer is not None and not written:
            writer.discard()
    if verdict.broken is not None:
        print(f"BROKEN: {verdict.broken}")
        if verdict.where is not None:
            print(f"where: {verdict.where}")
        return 1
    print(f"ok: {verdict.events} events in {verdict.incidents} incident chains")
    # The extent of the proof: what events written before they carried every column the
    # reports read could not vouch for.
    print(
        f"unchecked: {verdict.unrecorded} of {verdict.incidents} incidents recorded before the "
        f"events carried their {UNRECORDED}: those are not checked"
    )
    if against is not None:
        taken = f" (taken {against.taken})" if against.taken else ""
        print(
            f"ok: each of the {len(against.heads)} incidents of {args.against}{taken} still "
            "passes through the chain head it had then"
        )
    if writer is not None:
        print(
            f"checkpoint: {writer.incidents} incident chain heads written to {args.checkpoint}; "
            "keep it outside the database, with the report, for verify --against"
        )
    if unsynced is not None:
        # The checkpoint is there, but not yet sure to outlast a power loss: exit 1, so that a
        # schedule says so, and what to do rather than "cannot write it".
        print(
            f"warning: --checkpoint {args.checkpoint}: written, but its folder could not be "
            f"synced ({unsynced}): a power loss may bring back the earlier checkpoint at that "
            "path (or none); run sync, or verify again, before relying on it",
            file=sys.stderr,
        )
        return 1
    return 0


async def _run_verify(
    settings: Settings, against: Checkpoint | None, writer: Writer | None
) -> Verdict:
    from dispatch.audit import chain
    from dispatch.db import create_engine, create_sessionmaker

    # A host gone dark mid-read is given up after about DISPATCH_DB_HOST_TIMEOUT_S unheard;
    # a read that is only slow, over a long log, goes on: the host answers TCP's probes.
    engine = create_engine(
        settings.database_url, read_only=True, host_timeout_s=settings.db_host_timeout_s
    )
    try:
        async with create_sessionmaker(engine)() as session:
            return await chain.verify(
                session,
                against=against.heads if against is not None else None,
                keep=writer.add if writer is not None else None,
            )
    finally:
        await engine.dispose()
