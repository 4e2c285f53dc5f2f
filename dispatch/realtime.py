"""The websocket endpoint: authentication and acknowledgements wired into the alerts protocol."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from datetime import datetime

from fastapi import APIRouter, WebSocket
from sqlalchemy.ext.asyncio import AsyncSession

from alerts.acks import Acked, Skipped
from alerts.socket import POLICY_VIOLATION, FrameError, Peer, SocketPolicy, serve_socket
from dispatch.auth import service as auth
from dispatch.errors import Unauthorized
from dispatch.incidents import service as incidents
from dispatch.outages import database_unavailable
from dispatch.reachability import service as reachability
from dispatch.runtime import Runtime
from dispatch.schemas import show_instant
from dispatch.security.limits import FrameBudget
from dispatch.security.origins import origin_allowed

router = APIRouter()
logger = logging.getLogger(__name__)

# The socket's login was ended on purpose, each with its own code (docs/api.md): the pages say
# what ended it and what to do, and neither renew nor reconnect. Every other refusal of the
# token (expired, bad) is 1008 (POLICY_VIOLATION), after which a page that holds a renewed token
# reconnects.
# Logged out (here, in another tab or on another device).
LOGGED_OUT = 4001
LOGGED_OUT_REASON = "logged out: this login was ended; log in again"
# The account was disabled by an administrator: only he can let the user in again.
ACCOUNT_DISABLED = 4002
ACCOUNT_DISABLED_REASON = "account disabled: ask your administrator"
# The password was reset by an administrator: a login with the new one.
PASSWORD_RESET = 4003
PASSWORD_RESET_REASON = "password reset: log in with the new password"
# Ended by an administrator otherwise (a disabling, the account enabled again since): a login.
LOGIN_ENDED = 4004
LOGIN_ENDED_REASON = "login ended by an administrator: log in again"

ENDED: dict[type[auth.LoginEnded], tuple[int, str]] = {
    auth.LoggedOut: (LOGGED_OUT, LOGGED_OUT_REASON),
    auth.AccountDisabled: (ACCOUNT_DISABLED, ACCOUNT_DISABLED_REASON),
    auth.PasswordReset: (PASSWORD_RESET, PASSWORD_RESET_REASON),
    auth.EndedByAdministrator: (LOGIN_ENDED, LOGIN_ENDED_REASON),
}


def ended(error: auth.LoginEnded) -> FrameError:
    """The close that tells the page what ended its login."""
    code, reason = ENDED.get(type(error), (LOGIN_ENDED, LOGIN_ENDED_REASON))
    return FrameError(code, reason)


@router.websocket("/ws")
async def websocket_endpoint(websocket: WebSocket) -> None:
    runtime: Runtime = websocket.app.state.runtime
    # The socket's token, once its hello showed it, and what is known of it since.
    presented = ""
    expires_at: datetime | None = None
    # The token cache's generation when the token was last judged: unchanged, no user's
    # access has changed through the API since (every such change drops the cache's entries of
    # its user).
    judged = -1
    # When (monotonic) the rows the token was last judged by were read: a change made directly
    # in the database is seen once ``principal_cache_s`` has passed since, as REST sees it.
    read_at = -math.inf
    # That read, once due, runs beside the socket's sender: an alert never waits on the
    # database for it. What it found against the token ends the socket at the next look.
    rereading: asyncio.Task[None] | None = None
    refused: FrameError | None = None

    async def look_up(token: str, *, fresh: bool = False) -> auth.Principal:
        """The token's principal; ``fresh``: from the rows, not from the token cache."""
        nonlocal judged, read_at
        cache = None if fresh else runtime.principal_cache()
        judged = runtime.principals.generation
        started = time.monotonic()
        async with runtime.reading() as session:
            principal = await auth.principal_for_token(
                session, token, secret=runtime.secret, now=runtime.clock.now(), cache=cache
            )
        age = None if cache is None else cache.age(token)
        # Answered from the cache: as old as its entry. Else read now (and maybe cached).
        read_at = started if age is None else min(started, time.monotonic() - age)
        return principal

    async def authenticate(token: str) -> Peer | None:
        nonlocal presented, expires_at
        try:
            principal = await look_up(token)
        except auth.LoginEnded as error:
            raise ended(error) from None
        except Unauthorized:
            return None
        presented, expires_at = token, principal.token_expires_at
        info = {"role": principal.role.value, "team_id": principal.team_id}
        # Just past the expiry: judged by the same clock, the token has then expired.
        until = None
        if expires_at is not None:
            until = max((expires_at - runtime.clock.now()).total_seconds(), 0) + EXPIRY_MARGIN_S
        return Peer(
            principal.user_id,
            principal.role.value,
            info,
            auth.mailbox_of(principal),
            recheck_in_s=until,
        )

    async def recheck(peer: Peer, told: bool) -> str | None:
        """Why this socket's token no longer lets it read, or None while it does. A token
        that expired ends the socket (1008); one whose login was ended (logout, the user
        disabled or given a new password) with the code saying which (``ENDED``): a dismissed
        guard's phone stops receiving the board at once, and says why. A change
        made past the API (directly in the database) is read from the rows beside the first
        message sent once ``principal_cache_s`` has passed since they were last read, and
        ends the socket as soon as that read finds it, as REST would refuse the token."""
        nonlocal rereading
        if refused is not None:
            raise refused
        if expires_at is not None and expires_at <= runtime.clock.now():
            return "the token has expired: log in again"
        aged = time.monotonic() - read_at >= runtime.settings.principal_cache_s
        if not told and runtime.principals.generation == judged:
            if aged and (rereading is None or rereading.done()):
                rereading = asyncio.create_task(read_again(peer.user_id))
            return None
        try:
            await look_up(presented, fresh=aged)
        except auth.LoginEnded as error:
            raise ended(error) from None
        except Unauthorized:
            return "the token is no longer valid: log in again"
        return None

    async def read_again(user_id: str) -> None:
        """Read the token's access from the rows; refused, have the socket look again."""
        nonlocal refused
        try:
            await look_up(presented, fresh=True)
        except auth.LoginEnded as error:
            refused = ended(error)
            runtime.hub.recheck(user_id)
        except Unauthorized:
            refused = FrameError(POLICY_VIOLATION, "the token is no longer valid: log in again")
            runtime.hub.recheck(user_id)
        except Exception as error:
            if not database_unavailable(error):
                raise
            # Read again before a later message; the socket's access stands meanwhile, as
            # it would for a token the cache still held.
            logger.warning(
                "an open socket's access could not be read again: %s", type(error).__name__
            )

    frames = FrameBudget(runtime.settings.ws_frame_burst, runtime.settings.ws_frames_per_s)
    highest_ack = 0
    acks = runtime.acks
    assert acks is not None, "the lifespan starts the acknowledgement recorder"

    def admit() -> None:
        # A socket that floods frames (acks, pings, anything) is closed: one phone cannot
        # starve the others of the server.
        if not frames.spend():
            raise FrameError(POLICY_VIOLATION, "too many frames: slow down and reconnect")

    async def acknowledge(peer: Peer, seq: int, skipped: int) -> None:
        # A repeated ack costs nothing: one phone cannot starve the others of the database.
        nonlocal highest_ack
        if seq <= highest_ack or peer.shared:
            # The board's messages refer to nothing a reader could prove received, and its
            # acknowledged mark would be whichever operator's came last. (``seq`` is at most
            # what this socket sent: alerts.socket clamps it.)
            return
        highest_ack = seq
        if skipped == seq:
            # A resync's pass, written before the resync frame tells the phone its new seq.
            await acks.record_now(peer.user_id, seq, runtime.clock.now(), skipped)
            return
        # Stamped now, written with the others gathered meanwhile (alerts/acks.py). Up to
        # ``skipped`` (a resync's seq) it moves the mark and proves no delivery.
        acks.submit(peer.user_id, seq, runtime.clock.now(), skipped)

    headers = websocket.headers
    allowed = runtime.settings.ws_allowed_origins
    if not origin_allowed(headers.get("origin"), headers.get("host"), allowed):
        # Refused before accept: the handshake is answered 403, no cross-site hijacking.
        await websocket.close(code=POLICY_VIOLATION, reason="origin not allowed")
        return
    try:
        await serve_socket(
            websocket,
            hub=runtime.hub,
            sessionmaker=runtime.reading,
            authenticate=authenticate,
            acknowledge=acknowledge,
            policy=SocketPolicy(hello_timeout_s=runtime.settings.ws_hello_timeout_s),
            # Each reading shown once: past show_time's cache (a pong every 20 s a phone).
            server_time=lambda: show_instant(runtime.clock.now()),
            recheck=recheck,
            admit=admit,
        )
    finally:
        if rereading is not None:
            rereading.cancel()


# A timer may fire a little before the clock it was set by says the time has come.
EXPIRY_MARGIN_S = 1.0


async def record_acknowledged(
    runtime: Runtime, session: AsyncSession, acked: Sequence[Acked]
) -> None:
    """What acknowledged messages prove: an alert's delivery, a test alert's round trip."""
    deliveries = [incidents.Delivery(a.ref, a.user_id, a.at) for a in acked if a.type == "alert"]
    await incidents.record_deliveries(session, deliveries, runtime.clock.now(), runtime.coverage)
    # Test alerts are rare (an operator's reachability check): one at a time, each its own time.
    for test in (a for a in acked if a.type == reachability.TEST_ALERT):
        await reachability.record_test_acks(session, test.user_id, [test.ref], test.at)


async def record_skipped(
    runtime: Runtime, session: AsyncSession, skipped: Sequence[Skipped]
) -> None:
    """What a resync passed unsent: a leader's alert is sent to him again (his phone reloaded
    the incident but never rang for it, and nothing says he saw it)."""
    alerts = [incidents.SkippedAlert(s.user_id, s.ref, s.seq) for s in skipped if s.type == "alert"]
    await incidents.send_again(session, alerts, runtime.clock.now())
