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

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from alerts import store
from alerts.hub import Hub, Subscription
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


@dataclass(frozen=True)
class Peer:
    """Who is on the other end, as the application's authenticator saw it, and the mailbox
    the socket reads: the user's own, or (``mailbox``) one shared by many readers."""

    user_id: str
    label: str = ""
    info: dict[str, Any] | None = None
    mailbox: str | None = None

    @property
    def stream(self) -> str:
        return self.mailbox or self.user_id

    @property
    def shared(self) -> bool:
        return self.stream != self.user_id


Authenticate = Callable[[str], Awaitable[Peer | None]]
Acknowledge = Callable[[Peer, int], Awaitable[None]]


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
    try:
        await _converse(
            websocket, peer, resume_from, subscription, sessionmaker, acknowledge, server_time
        )
    finally:
        hub.unsubscribe(subscription)


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


# Seqs are stored as 64-bit integers: a larger one in a frame can name no message, and bound
# into a statement it would fail the write it rides (every acknowledgement gathered with it).
MAX_SEQ = 2**63 - 1
SEQS = "from 0 to 2^63-1"


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
        frame = json.loads(text)
    except ValueError:
        raise FrameError(INVALID_PAYLOAD, "frames must be JSON") from None
    if not isinstance(frame, dict):
        raise FrameError(INVALID_PAYLOAD, "frames must be JSON objects")
    return frame


async def _converse(
    websocket: WebSocket,
    peer: Peer,
    resume_from: int,
    subscription: Subscription,
    sessionmaker: Callable[[], AsyncSession],
    acknowledge: Acknowledge,
    server_time: Callable[[], str],
) -> None:
    try:
        start_after, latest = await _welcome(
            websocket, peer, resume_from, sessionmaker, server_time
        )
    except SQLAlchemyError:
        log.warning("database busy while welcoming a websocket", exc_info=True)
        await _close(websocket, TRY_AGAIN_LATER, BUSY)
        return
    if 0 < resume_from <= latest:
        # Resuming after N says the client holds every message up to N: an ack of N. Its own
        # ack may have died with a server process before it was written, and the client
        # sends none for what it already had.
        await acknowledge(peer, resume_from)
    sender = asyncio.create_task(
        _send_loop(websocket, subscription, sessionmaker, start_after, latest)
    )
    receiver = asyncio.create_task(_receive_loop(websocket, peer, acknowledge))
    # A future, not a task waiting on an event: one object less for every idle socket.
    overflow = subscription.overflow_signal()
    tasks: set[asyncio.Future[Any]] = {sender, receiver, overflow}
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    code, reason = _closing(done, overflow)
    if code:
        await _close(websocket, code, reason)


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
) -> tuple[int, int]:
    """Send the welcome (and a resync when the gap cannot be replayed); return where to start
    and the mailbox's latest seq as read."""
    async with sessionmaker() as session:
        latest, oldest = await store.mailbox_span(session, peer.stream)
    welcome = {
        "user_id": peer.user_id,
        "mailbox": peer.stream,
        "server_time": server_time(),
        **(peer.info or {}),
    }
    await websocket.send_text(_control("welcome", latest, welcome))
    reason = _resync_reason(resume_from, latest, oldest, shared=peer.shared)
    if reason is None:
        return resume_from, latest
    await websocket.send_text(_control("resync", latest, {"reason": reason}))
    return latest, latest


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
    return json.dumps({"type": kind, "seq": seq, "data": data}, ensure_ascii=False)


async def _send_loop(
    websocket: WebSocket,
    subscription: Subscription,
    sessionmaker: Callable[[], AsyncSession],
    after: int,
    latest: int,
) -> None:
    # Seqs are gap-free, so how far ``last`` moves in a replay is how many messages it sent.
    last = after
    if after < latest:
        last = await _replay(websocket, subscription.mailbox, sessionmaker, after)
        subscription.stats.replayed += last - after
    # Else nothing to read: what was committed by the welcome's read is at most ``latest``,
    # and what commits later is published to the subscription, made before that read (and a
    # message published out of order has its gap filled from the store, as always).
    while True:
        envelope = await subscription.get()
        if envelope is None:
            caught_up = await _replay(websocket, subscription.mailbox, sessionmaker, last)
            subscription.stats.replayed += caught_up - last
            last = caught_up
            continue
        if envelope.seq <= last:
            continue
        if envelope.seq > last + 1:
            filled = await _fill_gap(websocket, subscription.mailbox, sessionmaker, last, envelope)
            subscription.stats.replayed += filled - last
            last = filled
        await websocket.send_text(envelope.encode())
        last = envelope.seq


async def _replay(
    websocket: WebSocket,
    mailbox: str,
    sessionmaker: Callable[[], AsyncSession],
    after: int,
    upto: int | None = None,
) -> int:
    last = after
    while True:
        async with sessionmaker() as session:
            page = await store.messages_after(session, mailbox, last, upto=upto, limit=REPLAY_PAGE)
        for envelope in page:
            await websocket.send_text(envelope.encode())
            last = envelope.seq
        if len(page) < REPLAY_PAGE:
            return last


async def _fill_gap(
    websocket: WebSocket,
    mailbox: str,
    sessionmaker: Callable[[], AsyncSession],
    last: int,
    envelope: Envelope,
) -> int:
    # Publishing follows commit order only loosely; the missing seqs are committed already
    # (a mailbox row lock orders them), so read them from the store.
    for delay in (0.0, 0.05, 0.25):
        await asyncio.sleep(delay)
        last = await _replay(websocket, mailbox, sessionmaker, last, upto=envelope.seq - 1)
        if last == envelope.seq - 1:
            return last
    raise GapError(f"seq {last + 1} to {envelope.seq - 1} not readable")


async def _receive_loop(websocket: WebSocket, peer: Peer, acknowledge: Acknowledge) -> None:
    while True:
        frame = await _receive_frame(websocket)
        kind = frame.get("type")
        if kind == "ack":
            seq = frame.get("seq")
            if not _is_seq(seq):
                raise FrameError(POLICY_VIOLATION, f"ack.seq must be a whole number {SEQS}")
            await acknowledge(peer, int(seq))
        else:
            raise FrameError(POLICY_VIOLATION, f"unknown message type {kind!r}")


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    if websocket.client_state == WebSocketState.DISCONNECTED:
        return
    with contextlib.suppress(RuntimeError, WebSocketDisconnect, ConnectionError):
        await websocket.close(code=code, reason=reason)
