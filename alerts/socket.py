"""The websocket protocol: hello, welcome, replay from the mailbox, live messages, acks.

A socket never holds a database session: replay pages and acks each use a short one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeGuard

import orjson
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from alerts import store
from alerts.hub import Hub, Signal, Subscription
from alerts.store import Envelope

log = logging.getLogger(__name__)

UNSUPPORTED_DATA = 1003
INVALID_PAYLOAD = 1007
POLICY_VIOLATION = 1008
INTERNAL_ERROR = 1011
SERVICE_RESTART = 1012
TRY_AGAIN_LATER = 1013

REPLAY_PAGE = 500
BUSY = "server busy: reconnect and resume"
# How long a socket that overflowed is given to take its close frame before its connection is
# cut: a client that stopped reading would hold it until the keepalive gave up (40 s).
OVERFLOW_CLOSE_S = 1.0


@dataclass(frozen=True)
class Peer:
    """Who is on the other end, as the application's authenticator saw it, and the mailbox
    the socket reads: the user's own, or (``mailbox``) one shared by many readers."""

    user_id: str
    label: str = ""
    info: dict[str, Any] | None = None
    mailbox: str | None = None
    # Seconds until the server wants to look at this peer's access again (its token expires
    # then); None: only when the hub asks (``Hub.recheck``).
    recheck_in_s: float | None = None

    @property
    def stream(self) -> str:
        return self.mailbox or self.user_id

    @property
    def shared(self) -> bool:
        return self.stream != self.user_id


# The peer a hello's token speaks for, or None (closed with 1008); a FrameError it raises
# closes the socket with its own code.
Authenticate = Callable[[str], Awaitable[Peer | None]]
# The peer holds every message up to ``seq``; of them, it was sent (and so proves received)
# only those after ``skipped``: a resync had it skip the others, and it reloaded its state
# instead. Its acknowledged mark passes them all. A resync's own pass (``skipped == seq``)
# must be on record when the call returns: the resync frame sent next gives the client that
# seq to resume from, and a resume from it, here or at another process, says it holds
# everything up to it.
Acknowledge = Callable[[Peer, int, int], Awaitable[None]]
# Whether a peer may still read, asked before the socket sends it anything: None if so, else
# why not (the socket is closed with 1008 and that reason; a FrameError it raises closes it
# with its own code). ``told`` is True when the hub or
# the expiry timer asked, so the answer must come from the rows, not from what is remembered.
Recheck = Callable[[Peer, bool], Awaitable[str | None]]
# Called for every frame a peer sends after its hello, before it is acted on: raises
# FrameError to refuse it (a socket flooding frames is closed, whatever the frames are).
Admit = Callable[[], None]


@dataclass(frozen=True)
class SocketPolicy:
    hello_timeout_s: float = 5.0
    allowed_origins: tuple[str, ...] = ()


class FrameError(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class GapError(Exception):
    """A live message arrived whose predecessors the store does not show yet."""


async def serve_socket(
    websocket: WebSocket,
    *,
    hub: Hub,
    sessionmaker: Callable[[], AsyncSession],
    authenticate: Authenticate,
    acknowledge: Acknowledge,
    policy: SocketPolicy,
    server_time: Callable[[], str],
    recheck: Recheck | None = None,
    admit: Admit | None = None,
) -> None:
    origin = websocket.headers.get("origin")
    if policy.allowed_origins and origin not in policy.allowed_origins:
        # Refusing before accept answers the handshake with 403: no cross-site hijacking.
        await websocket.close(code=POLICY_VIOLATION, reason="origin not allowed")
        return
    await websocket.accept()
    try:
        peer, resume_from = await _handshake(websocket, authenticate, policy)
    except FrameError as error:
        await _close(websocket, error.code, error.reason)
        return
    except (WebSocketDisconnect, ConnectionError):
        return
    except SQLAlchemyError:
        # A reconnect storm can outrun the database pool: ask the client to come back.
        log.warning("database busy during a websocket handshake", exc_info=True)
        await _close(websocket, TRY_AGAIN_LATER, BUSY)
        return
    subscription = hub.subscribe(peer.user_id, peer.label, mailbox=peer.stream)
    session = _Session(websocket, peer, subscription, sessionmaker, server_time, recheck)
    for_restart = False
    try:
        for_restart = await _converse(session, resume_from, acknowledge, server_time, admit)
    finally:
        hub.unsubscribe(subscription, for_restart=for_restart)


@dataclass(frozen=True, slots=True)
class _Session:
    """What a socket's sender needs besides where it starts."""

    websocket: WebSocket
    peer: Peer
    subscription: Subscription
    sessionmaker: Callable[[], AsyncSession]
    server_time: Callable[[], str]
    recheck: Recheck | None

    async def send(self, envelope: Envelope) -> None:
        await self.websocket.send_text(envelope.encode())
        self.subscription.sent = envelope.seq
        if self.subscription.pings:
            # Pinged while this was being written (a slow line, a replay): the pong goes
            # right after it, not behind whatever else waits to be sent.
            await self.answer_pings()

    async def answer_pings(self) -> None:
        """A pong for each ping not answered yet, written by the sender alone: its seq is
        that of the message it wrote last, just before the pong in the stream."""
        subscription = self.subscription
        while subscription.pings:
            subscription.pings -= 1
            # The time as the pong is written, not as the ping came: a page takes it as the
            # server's time halfway through the round trip, and the time spent here waiting
            # behind a message lies inside that trip.
            pong = {"server_time": self.server_time()}
            await self.websocket.send_text(_control("pong", subscription.sent, pong))

    async def check_access(self, told: bool = False) -> None:
        if self.recheck is None:
            return
        reason = await self.recheck(self.peer, told)
        if reason is not None:
            raise FrameError(POLICY_VIOLATION, reason)


async def _handshake(
    websocket: WebSocket, authenticate: Authenticate, policy: SocketPolicy
) -> tuple[Peer, int]:
    try:
        hello = await asyncio.wait_for(_receive_frame(websocket), policy.hello_timeout_s)
    except TimeoutError:
        raise FrameError(POLICY_VIOLATION, "no hello within the time allowed") from None
    if hello.get("type") != "hello":
        raise FrameError(POLICY_VIOLATION, "the first frame must be a hello")
    token = hello.get("token")
    if not isinstance(token, str) or not token:
        raise FrameError(POLICY_VIOLATION, "hello.token is missing")
    resume_from = hello.get("resume_from", 0)
    if not _is_seq(resume_from):
        raise FrameError(POLICY_VIOLATION, f"hello.resume_from must be a whole number {SEQS}")
    peer = await authenticate(token)
    if peer is None:
        raise FrameError(POLICY_VIOLATION, "hello.token is invalid or expired")
    return peer, int(resume_from)


# Seqs are stored as 32-bit integers on PostgreSQL (``integer`` columns): a larger one in a
# frame can name no message, and bound into a statement it would fail the write it rides
# (every acknowledgement gathered with it). 2^31-1 messages is a mailbox's whole life: the
# board, which gets every report's and every delivery's news, at 100,000 messages a day
# lasts 58 years.
MAX_SEQ = 2**31 - 1
SEQS = "from 0 to 2^31-1"
# Digits beyond any seq's: a longer number is not even converted (Python refuses beyond 4,300
# digits with a ValueError, which would read as malformed JSON rather than a bad seq).
MAX_DIGITS = 20


def _parse_int(digits: str) -> int | float:
    # Too long for a seq: a value no field accepts as a whole number, so the frame is refused
    # with 1008 naming the field, as any other out-of-range seq.
    return int(digits) if len(digits) <= MAX_DIGITS else float("inf")


# One decoder for every frame: ``json.loads`` with a hook builds a new one per call.
_FRAMES = json.JSONDecoder(parse_int=_parse_int)


def _is_seq(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_SEQ


async def _receive_frame(websocket: WebSocket) -> dict[str, Any]:
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    text = message.get("text")
    if text is None:
        raise FrameError(UNSUPPORTED_DATA, "binary frames are not accepted")
    try:
        frame = _FRAMES.decode(text)
    except (ValueError, RecursionError):
        # RecursionError: nesting deeper than the parser's stack ("[" * 30000) is not JSON
        # that any client of ours sends either.
        raise FrameError(INVALID_PAYLOAD, "frames must be JSON") from None
    if not isinstance(frame, dict):
        raise FrameError(INVALID_PAYLOAD, "frames must be JSON objects")
    return frame


async def _converse(
    session: _Session,
    resume_from: int,
    acknowledge: Acknowledge,
    server_time: Callable[[], str],
    admit: Admit | None = None,
) -> bool:
    """Serve the socket until it ends; whether the server closed it as it stops (1012)."""
    websocket, peer, subscription = session.websocket, session.peer, session.subscription
    try:
        start_after, span = await _welcome(
            websocket, peer, resume_from, session.sessionmaker, server_time, acknowledge
        )
    except SQLAlchemyError:
        log.warning("database busy while welcoming a websocket", exc_info=True)
        await _close(websocket, TRY_AGAIN_LATER, BUSY)
        return False
    except (WebSocketDisconnect, ConnectionError):
        # The client left while being welcomed: nothing to close, nothing went wrong here.
        return False
    # What the client holds once welcomed: the messages up to where it resumes (or, after a
    # resync, what it reloads), so its acks may cover them.
    subscription.sent = start_after
    if span.acked < resume_from <= span.latest:
        # Resuming after N says the client holds every message up to N: an ack of N. Its own
        # ack may have died with a server process before it was written, and the client
        # sends none for what it already had. (Already on record, it costs no write: a
        # storm of phones up to date is all hellos.)
        await acknowledge(peer, resume_from, 0)
    if start_after != resume_from:
        # A resync: the client was sent nothing up to ``start_after`` and reloads its state
        # instead, so no ack of this socket proves any of those received (the mark passed
        # them before the resync went out: ``_welcome``).
        subscription.skipped = start_after
    sender = asyncio.create_task(_send_loop(session, start_after, span.latest))
    receiver = asyncio.create_task(_receive_loop(websocket, peer, subscription, acknowledge, admit))
    # A future, not a task waiting on an event: one object less for every idle socket.
    overflow = subscription.overflow_signal()
    tasks: set[asyncio.Future[Any]] = {sender, receiver, overflow}
    # A timer handle, not a task: the look at a token's expiry goes through the sender.
    expiry = (
        None
        if peer.recheck_in_s is None
        else asyncio.get_running_loop().call_later(
            peer.recheck_in_s, subscription.offer, Signal.RECHECK
        )
    )
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if expiry is not None:
            expiry.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    code, reason = _closing(done, overflow)
    if overflow in done:
        await _close(websocket, code, reason, timeout_s=OVERFLOW_CLOSE_S)
    elif code:
        await _close(websocket, code, reason)
    return any(_stopping(task) for task in done if task is not overflow)


def _stopping(task: asyncio.Future[Any]) -> bool:
    """Whether the socket ended because the server is stopping: uvicorn tells the application
    so with a disconnect of code 1012 as it sends every socket its close."""
    if task.cancelled():
        return False
    error = task.exception()
    return isinstance(error, WebSocketDisconnect) and error.code == SERVICE_RESTART


def _closing(done: set[asyncio.Future[Any]], overflow: asyncio.Future[Any]) -> tuple[int, str]:
    if overflow in done:
        return TRY_AGAIN_LATER, "too slow to keep up: reconnect and resume"
    for task in done:
        error = task.exception()
        if isinstance(error, FrameError):
            return error.code, error.reason
        if isinstance(error, GapError):
            return TRY_AGAIN_LATER, "out of order: reconnect and resume"
        if isinstance(error, WebSocketDisconnect | ConnectionError):
            return 0, ""
        if isinstance(error, SQLAlchemyError):
            log.warning("database busy during a websocket session", exc_info=error)
            return TRY_AGAIN_LATER, BUSY
        if error is not None:
            log.error("websocket session failed", exc_info=error)
            return INTERNAL_ERROR, "server error: reconnect and resume"
    return 0, ""


async def _welcome(
    websocket: WebSocket,
    peer: Peer,
    resume_from: int,
    sessionmaker: Callable[[], AsyncSession],
    server_time: Callable[[], str],
    acknowledge: Acknowledge,
) -> tuple[int, store.Span]:
    """Send the welcome (and a resync when the gap cannot be replayed); return where to start
    and the mailbox's span as read."""
    async with sessionmaker() as session:
        span = await store.mailbox_span(session, peer.stream)
    latest, oldest = span.latest, span.oldest
    welcome = {
        "user_id": peer.user_id,
        "mailbox": peer.stream,
        "server_time": server_time(),
        **(peer.info or {}),
    }
    await websocket.send_text(_control("welcome", latest, welcome))
    reason = _resync_reason(resume_from, latest, oldest, shared=peer.shared)
    if reason is None:
        return resume_from, span
    # The mark passes what the client skips, with nothing proven, before the client learns
    # where it now stands: a reconnect resuming from ``latest`` at once (or at another
    # process, or after this one crashed) then finds the mark there, and its resume proves
    # nothing of what it was never sent.
    await acknowledge(peer, latest, latest)
    await websocket.send_text(_control("resync", latest, {"reason": reason}))
    return latest, span


def _resync_reason(
    resume_from: int, latest: int, oldest: int | None, *, shared: bool = False
) -> str | None:
    if shared and resume_from == 0 and latest > 0:
        # A reader new to a shared mailbox wants the current state, not its whole history.
        return "a shared mailbox starts at its latest message"
    if resume_from > latest:
        return "resume_from is ahead of this server's sequence"
    if resume_from < latest and (oldest is None or oldest > resume_from + 1):
        return "messages after resume_from are past the retention window"
    return None


def _control(kind: str, seq: int, data: dict[str, Any]) -> str:
    # orjson, as the messages are (store.Envelope): the pages' pings make the pong the frame
    # sent most often to an idle socket.
    return orjson.dumps({"type": kind, "seq": seq, "data": data}).decode()


async def _send_loop(session: _Session, after: int, latest: int) -> None:
    subscription = session.subscription
    # Seqs are gap-free, so how far ``last`` moves in a replay is how many messages it sent.
    last = after
    if after < latest:
        last = await _replay(session, after)
        subscription.stats.replayed += last - after
    # Else nothing to read: what was committed by the welcome's read is at most ``latest``,
    # and what commits later is published to the subscription, made before that read (and a
    # message published out of order has its gap filled from the store, as always).
    while True:
        envelope = await subscription.get()
        if envelope is Signal.PONG:
            await session.answer_pings()
            continue
        if envelope is Signal.RECHECK:
            await session.check_access(told=True)
            continue
        if envelope is None:
            caught_up = await _replay(session, last)
            subscription.stats.replayed += caught_up - last
            last = caught_up
            continue
        if envelope.seq <= last:
            continue
        # Nothing new goes to a peer whose access ended (a user disabled, a token revoked or
        # expired), whether or not this process heard of the change.
        await session.check_access()
        if envelope.seq > last + 1:
            filled = await _fill_gap(session, last, envelope)
            subscription.stats.replayed += filled - last
            last = filled
        await session.send(envelope)
        last = envelope.seq


async def _replay(session: _Session, after: int, upto: int | None = None) -> int:
    last = after
    while True:
        async with session.sessionmaker() as reading:
            page = await store.messages_after(
                reading, session.subscription.mailbox, last, upto=upto, limit=REPLAY_PAGE
            )
        if page:
            await session.check_access()
        for envelope in page:
            if envelope.seq != last + 1:
                if upto is not None:
                    # Filling a gap before a live message: what is missing is not readable yet.
                    return last
                # The retention purge removed what follows ``last`` since the welcome looked
                # (or, as it deletes by time, a message whose clock read earlier than the one
                # before it): say so, as the welcome would have, rather than leave the client a
                # silent gap. It reloads its state and carries on from just before this one.
                reason = "messages after resume_from are past the retention window"
                resync = _control("resync", envelope.seq - 1, {"reason": reason})
                await session.websocket.send_text(resync)
            await session.send(envelope)
            last = envelope.seq
        if len(page) < REPLAY_PAGE:
            return last


async def _fill_gap(session: _Session, last: int, envelope: Envelope) -> int:
    # Publishing follows commit order only loosely; the missing seqs are committed already
    # (a mailbox row lock orders them), so read them from the store.
    for delay in (0.0, 0.05, 0.25):
        await asyncio.sleep(delay)
        last = await _replay(session, last, upto=envelope.seq - 1)
        if last == envelope.seq - 1:
            return last
    raise GapError(f"seq {last + 1} to {envelope.seq - 1} not readable")


async def _receive_loop(
    websocket: WebSocket,
    peer: Peer,
    subscription: Subscription,
    acknowledge: Acknowledge,
    admit: Admit | None = None,
) -> None:
    while True:
        frame = await _receive_frame(websocket)
        if admit is not None:
            admit()
        kind = frame.get("type")
        if kind == "ping":
            # The client's own look at the line: the protocol's pings are answered by its
            # browser, unseen by the page, so a page whose server vanished without a word
            # (a host gone, Wi-Fi dropped behind NAT) would show "live" until TCP gave up,
            # minutes later. The sender answers it: its pong's seq is the last one this
            # socket sent, the message before it in the stream. Written from here, it would
            # carry the seq sent when the ping came and could go out after a message the
            # sender was still writing then.
            subscription.ping()
        elif kind == "ack":
            seq = frame.get("seq")
            if not _is_seq(seq):
                raise FrameError(POLICY_VIOLATION, f"ack.seq must be a whole number {SEQS}")
            # An ack proves receipt of what this socket sent, no more: past that it would mark
            # delivered an alert the client has not been sent yet (the store holds it, a
            # busy sender has not got to it), and a later true ack would seem old. Nor what a
            # resync skipped, below: its seqs are not what the client has.
            await acknowledge(peer, min(seq, subscription.sent), subscription.skipped)
        else:
            # Quoted as repr writes it: a control character in it is escaped, not sent back.
            raise FrameError(POLICY_VIOLATION, f"unknown message type {kind!r}")


# A close frame's payload is at most 125 bytes (RFC 6455, 5.5), 2 of them the code: a longer
# reason is no frame at all, and the close failed as an error of the server.
MAX_CLOSE_REASON_BYTES = 123


def close_reason(reason: str) -> str:
    """The reason as a close frame can carry it: cut to MAX_CLOSE_REASON_BYTES of UTF-8 (a
    reason may quote the client's frame, an unknown type of any length)."""
    encoded = reason.encode("utf-8")
    if len(encoded) <= MAX_CLOSE_REASON_BYTES:
        return reason
    return encoded[: MAX_CLOSE_REASON_BYTES - 3].decode("utf-8", "ignore") + "..."


async def _close(
    websocket: WebSocket, code: int, reason: str, *, timeout_s: float | None = None
) -> None:
    if websocket.client_state == WebSocketState.DISCONNECTED:
        return
    try:
        with contextlib.suppress(RuntimeError, WebSocketDisconnect, ConnectionError):
            closing = websocket.close(code=code, reason=close_reason(reason))
            await asyncio.wait_for(closing, timeout_s)
    except TimeoutError:
        # The client stopped reading: the close frame waits behind what it has not taken.
        _abort(websocket)


def _abort(websocket: WebSocket) -> None:
    """Cut the connection under the socket. ASGI has no way to say so: the server's send is
    a method of its protocol object, whose transport is asyncio's (uvicorn). Closing that
    transport would wait for its buffer to drain, which a client that stopped reading never
    lets happen; aborting drops the buffer and the connection."""
    protocol = getattr(getattr(websocket, "_send", None), "__self__", None)
    transport = getattr(protocol, "transport", None)
    if isinstance(transport, asyncio.Transport):
        transport.abort()
