"""The websocket endpoint: authentication and acknowledgements wired into the alerts protocol."""

from __future__ import annotations

from fastapi import APIRouter, WebSocket

from alerts import store as mailboxes
from alerts.socket import POLICY_VIOLATION, FrameError, Peer, SocketPolicy, serve_socket
from dispatch.auth import service as auth
from dispatch.errors import Unauthorized
from dispatch.incidents import service as incidents
from dispatch.reachability import service as reachability
from dispatch.runtime import Runtime
from dispatch.schemas import show_time
from dispatch.security.limits import FrameBudget
from dispatch.security.origins import origin_allowed

router = APIRouter()


@router.websocket("/ws")
async def websocket_endpoint(websocket: WebSocket) -> None:
    runtime: Runtime = websocket.app.state.runtime

    async def authenticate(token: str) -> Peer | None:
        async with runtime.sessionmaker() as session:
            try:
                principal = await auth.principal_for_token(
                    session, token, secret=runtime.secret, now=runtime.clock.now()
                )
            except Unauthorized:
                return None
        info = {"role": principal.role.value, "team_id": principal.team_id}
        return Peer(principal.user_id, principal.role.value, info)

    frames = FrameBudget(runtime.settings.ws_frame_burst, runtime.settings.ws_frames_per_s)
    highest_ack = 0

    async def acknowledge(peer: Peer, seq: int) -> None:
        # A socket that floods frames is closed, and a repeated ack costs no database work:
        # one phone cannot starve the others of the database.
        nonlocal highest_ack
        if not frames.spend():
            raise FrameError(POLICY_VIOLATION, "too many frames: slow down and reconnect")
        if seq <= highest_ack:
            return
        highest_ack = seq
        # Three short steps, none holding the mailbox row while it locks dispatches: every
        # other transaction locks dispatches before mailboxes, so this order cannot deadlock.
        # Recording a delivery is idempotent, so a crash between the steps loses nothing.
        async with runtime.sessionmaker() as session:
            after = await mailboxes.acked_seq(session, peer.user_id)
        if seq <= after:
            return
        async with runtime.transaction() as session:
            acked = await mailboxes.refs_between(session, peer.user_id, after, seq)
            refs = [ref for kind, ref in acked if kind == "alert"]
            await incidents.record_deliveries(session, peer.user_id, refs, runtime.clock.now())
            tests = [ref for kind, ref in acked if kind == reachability.TEST_ALERT]
            await reachability.record_test_acks(session, peer.user_id, tests, runtime.clock.now())
        async with runtime.transaction() as session:
            await mailboxes.mark_acked(session, peer.user_id, seq)

    headers = websocket.headers
    allowed = runtime.settings.ws_allowed_origins
    if not origin_allowed(headers.get("origin"), headers.get("host"), allowed):
        # Refused before accept: the handshake is answered 403, no cross-site hijacking.
        await websocket.close(code=POLICY_VIOLATION, reason="origin not allowed")
        return
    await serve_socket(
        websocket,
        hub=runtime.hub,
        sessionmaker=runtime.sessionmaker,
        authenticate=authenticate,
        acknowledge=acknowledge,
        policy=SocketPolicy(hello_timeout_s=runtime.settings.ws_hello_timeout_s),
        server_time=lambda: show_time(runtime.clock.now()),
    )
