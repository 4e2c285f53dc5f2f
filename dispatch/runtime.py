"""What the running server holds: built in the lifespan, never at import time."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from argon2 import PasswordHasher
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm.session import SessionTransactionState

from alerts import store as mailboxes
from alerts.acks import AckRecorder
from alerts.bulk import Read, take_later, write_rows
from alerts.fanout import Listener, notification
from alerts.hub import Hub
from alerts.store import Envelope
from dispatch.auth.cache import Principals
from dispatch.clock import Clock
from dispatch.config import MIN_SECRET_CHARS, Settings
from dispatch.db import (
    AFTER_COMMIT_KEY,
    BEFORE_COMMIT_KEY,
    EACH_STATEMENT_ALONE,
    FALLS_DUE_KEY,
    REFRESH_KEY,
    AfterCommit,
)
from dispatch.files import write_private
from dispatch.outages import WriteHealth, database_unavailable, mark_commit_unknown
from dispatch.rosters.book import DutyBook
from dispatch.teams.coverage import Coverage
from dispatch.villages.index import Villages

if TYPE_CHECKING:
    from dispatch.migrate import Release

MESSAGES_CHANNEL = "dispatch_messages"
# After a COMMIT whose outcome is unknown, when this process's sockets look at the store a
# second time (``Runtime._catch_up``).
CATCH_UP_AGAIN_S = 1.0


@dataclass
class Runtime:
    settings: Settings
    clock: Clock
    # Writes; reads have their own pool (the same engine on SQLite).
    engine: AsyncEngine
    read_engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    hub: Hub
    coverage: Coverage
    villages: Villages
    # Duty schedules and unit sizes, for the reports' on-duty check.
    duty: DutyBook
    secret: str
    passwords: PasswordHasher
    # Who each recently seen bearer token speaks for (DISPATCH_PRINCIPAL_CACHE_S).
    principals: Principals
    # This release's migrations, read as the server started, for /readyz.
    release: Release
    # Cross-process fan-out; None on SQLite, which serves from one process.
    fanout: Listener | None = None
    # Records websocket acknowledgements in group commits; started in the lifespan.
    acks: AckRecorder | None = None
    origin: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    # Each timer's wake-up, given the time something new falls due (None: unknown).
    wake_timers: list[Callable[[datetime | None], None]] = field(default_factory=list)
    # Failing from a database outage seen by a unit of work until a write succeeds again
    # (/readyz answers 503 meanwhile, and tries a write of its own).
    writes: WriteHealth = field(default_factory=WriteHealth)
    # Background tasks the server cannot do without (the deadline timer, the acknowledgements'
    # recorder) that ended, by name, with what ended them: /readyz answers 503 meanwhile.
    stopped: dict[str, str] = field(default_factory=dict)
    # Held while this process verifies the record (GET /api/v1/audit/verification): a check
    # of the whole log holds a reader's connection and CPU for as long as the command takes,
    # so a second asked meanwhile is refused rather than run beside it.
    verifying: asyncio.Lock = field(default_factory=asyncio.Lock)
    # The readers' pool, each statement its own transaction.
    statement_read_engine: AsyncEngine = field(init=False)

    def __post_init__(self) -> None:
        # SQLite's driver begins a transaction only before a write, so each read is its own
        # where the readers' engine does not begin one (``create_read_engine``); asking for
        # AUTOCOMMIT there would switch the connection's mode back and forth at every
        # checkout, a turn through the driver's thread each way.
        self.statement_read_engine = (
            self.read_engine.execution_options(**{EACH_STATEMENT_ALONE: True})
            if self.read_engine.dialect.name == "sqlite"
            else self.read_engine.execution_options(isolation_level="AUTOCOMMIT")
        )

    def pools(self) -> dict[str, AsyncEngine]:
        """The engines by pool: ``writes``, and ``reads`` where it is another (PostgreSQL, and
        SQLite in WAL mode)."""
        if self.read_engine is self.engine:
            return {"writes": self.engine}
        return {"writes": self.engine, "reads": self.read_engine}

    def reading(self) -> AsyncSession:
        """A session on the readers' pool for work that only reads, where each statement is
        its own transaction: no BEGIN and ROLLBACK round trips around it (a websocket's hello
        and replays, the fan-out's reads). Under READ COMMITTED each statement of a
        transaction sees the database anew anyway, so a read sees nothing different."""
        return self.sessionmaker(bind=self.statement_read_engine)

    @asynccontextmanager
    async def transaction(self, *, read: bool = False) -> AsyncIterator[AsyncSession]:
        """One unit of work. Messages it enqueued are published only after it commits.

        ``read``: on the readers' pool (a GET request's), of one moment however many
        statements it reads (``create_read_engine``)."""
        bind = self.read_engine if read else self.engine
        session = self.sessionmaker(bind=bind)
        try:
            try:
                yield session
                for action in session.info.pop(BEFORE_COMMIT_KEY, []):
                    await action()
                # Last of all: the mailboxes every report locks are held for the commit alone.
                # The rows kept for the last statement and the announcements to the other
                # processes go with the staged messages, or alone.
                notes = self._notification(session)
                if not await mailboxes.write_staged(session, read=notes):
                    await write_rows(session, *take_later(session), read=notes)
                await session.commit()
            except BaseException as error:
                if database_unavailable(error):
                    self.writes.failed(error)
                if _reached_commit(session):
                    mark_commit_unknown(error)
                    self._catch_up(
                        mailboxes.take_outbox(session), session.info.pop(REFRESH_KEY, [])
                    )
                await session.rollback()
                raise
            envelopes = mailboxes.take_outbox(session)
            actions: list[AfterCommit] = session.info.pop(AFTER_COMMIT_KEY, [])
            due: datetime | None = session.info.pop(FALLS_DUE_KEY, None)
        finally:
            await _close(session)
        self.hub.publish(envelopes)
        if due is not None:
            self.wake(due)
        for action in actions:
            action()
        if envelopes:
            # The sockets' senders, woken by the publish, write their alerts before this task
            # goes on (to a request's response, say): the teams hear first, the reporter a
            # few sends later.
            await asyncio.sleep(0)

    def _catch_up(self, envelopes: list[Envelope], refreshes: list[AfterCommit]) -> None:
        """A COMMIT of these messages failed, its outcome unknown: the connection may have
        dropped after the database received it, and then it committed and the other
        processes deliver the messages (they heard the announcement), but this one, which
        publishes its own messages rather than hear them, would not. Its sockets reading
        those mailboxes catch up from the store instead; finding nothing new (it rolled back
        after all) they send nothing. Its refreshing after-commit actions run too (``refresh``
        of ``after_commit``: a logout's forgetting of the user's tokens, say), first, as they
        do after a commit, so that a socket whose access ended is closed before it catches up.

        Once now, and once more a second later: the read may come before the database
        finished a COMMIT it received as the connection dropped (writing it to disk, waiting
        on a synchronous standby), and then sees the mailbox as before. A second is far
        longer than a commit takes, and the second look costs one read a socket, on a path
        that only a lost connection takes. What commits later still is not lost either: the
        next message to the mailbox fills the gap from the store, and a reconnect resumes."""
        names = {envelope.user_id for envelope in envelopes}
        if not names and not refreshes:
            return
        self._look_again(names, refreshes)
        # A timer handle, not a task: nothing to await or cancel at shutdown, where a nudge of
        # sockets that are gone finds nothing to offer.
        loop = asyncio.get_running_loop()
        loop.call_later(CATCH_UP_AGAIN_S, self._look_again, names, refreshes)

    def _look_again(self, names: set[str], refreshes: list[AfterCommit]) -> None:
        for refresh in refreshes:
            refresh()
        if names:
            self.hub.nudge(names)

    def principal_cache(self) -> Principals | None:
        """The token cache, unless the listener that brings other processes' changes is down:
        their announcements are lost meanwhile, so the cache is emptied and left aside until the
        listener is back (its reconnect empties it once more)."""
        if self.fanout is not None and not self.fanout.connected:
            self.principals.clear()
            return None
        return self.principals

    def duty_book(self) -> DutyBook | None:
        """The duty book for a decision, unless the listener that brings other processes'
        changes is down: their announcements are lost meanwhile, so reports read the schedules
        from the tables until the listener is back (its reconnect reloads the book). As the
        token cache is set aside; the coverage index needs no such care, as every decision
        checks the teams' revision."""
        if self.fanout is not None and not self.fanout.connected:
            return None
        return self.duty

    def _notification(self, session: AsyncSession) -> Read | None:
        """What this transaction announces to the other processes (none on SQLite, served
        by one process): the ids each channel names, and the batches of messages it wrote."""
        announcements: dict[str, list[str]] = session.info.pop("announce", {})
        if self.fanout is None:
            return None
        batches = mailboxes.pending_batches(session)
        if batches:
            announcements[MESSAGES_CHANNEL] = batches
        return notification(self.origin, announcements)

    def wake(self, due: datetime | None = None) -> None:
        for wake in self.wake_timers:
            wake(due)


async def _close(session: AsyncSession) -> None:
    """Close a unit of work's session. Its own context manager closes it in a task of its own,
    shielded so that a cancellation cannot cut the close short: turns of the event loop, some
    90k instructions (about 1 % of a report). After its commit or its rollback the session
    holds no connection, and its close only lets go of its objects: closed here at once. One
    still in its transaction (its rollback failed) holds a connection, and is closed by its
    context manager, to the end even if this task is cancelled meanwhile."""
    if not session.in_transaction():
        await session.close()
        return
    async with session:
        pass


def _reached_commit(session: AsyncSession) -> bool:
    """Whether the session's transaction failed in its COMMIT (or after it), not before: its
    flush and the checks before it had passed. SQLAlchemy marks the transaction prepared then,
    and leaves it so when the database's COMMIT raises; a failure before leaves it active, or
    gone with the rollback of a failed flush. Read after the failure, it costs a commit that
    succeeds nothing."""
    transaction = session.sync_session.get_transaction()
    return transaction is not None and transaction._state in _COMMITTING


# The states of a session transaction whose COMMIT was sent (or done).
_COMMITTING = frozenset({SessionTransactionState.PREPARED, SessionTransactionState.COMMITTED})


class SecretFileError(ValueError):
    """DISPATCH_SECRET_FILE holds no usable signing secret; the message is one line."""


def load_secret(settings: Settings) -> str:
    """The token signing secret: from settings, or generated once and kept in a 0600 file."""
    if settings.secret_key:
        return settings.secret_key
    path = Path(settings.secret_file)
    if path.exists():
        return _kept_secret(path)
    return _new_secret(path)


def _kept_secret(path: Path) -> str:
    secret = path.read_text().strip()
    if len(secret) < MIN_SECRET_CHARS:
        # An empty file once started a server whose every login then failed.
        held = f"a secret of {len(secret)} characters" if secret else "no secret (it is empty)"
        raise SecretFileError(
            f"DISPATCH_SECRET_FILE: {path} holds {held}; a signing secret has at least "
            f"{MIN_SECRET_CHARS} characters. Put the servers' secret back, or delete the file "
            "to have a new one made (tokens issued so far are then refused: users log in again)"
        )
    return secret


def _new_secret(path: Path) -> str:
    """Write a new secret to ``path`` whole or not at all: a crash or a full disk leaves at most
    a stray temporary file, never an empty secret file. A secret another process wrote there
    first is kept, and returned instead."""
    secret = secrets.token_urlsafe(48)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not write_private(path, secret, replace=False):
        return _kept_secret(path)
    return secret
