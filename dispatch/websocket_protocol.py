"""uvicorn's websocket protocol (``websockets-sansio``), with two changes of our own.

**Stopping whatever state a socket is in.** When the server stops, uvicorn sends every open
socket a close frame (1012). A socket whose client's close has just been answered (its
transport closing, not yet gone from the server's connections) can send no second close:
uvicorn's shutdown raises ``InvalidState`` there, and the server stops half-way, its
application's shutdown never run (the acknowledgements gathered in memory not written, the
timers not stopped). Such a socket needs nothing more.

**Pinging only a quiet client.** uvicorn pings every socket every ``ws_ping_interval`` to find
clients gone without a word. A client that spoke within that time is not gone: the pages and
the phones ping the server themselves after ``DISPATCH_WS_CLIENT_PING_S`` of quiet (they cannot
see the protocol's pings), so each idle socket carried both, two frames each way where one
pair proves the line. Pinging only after ``ws_ping_interval`` of silence from the client
leaves a page's socket one pair of frames per interval, and a silent client is still pinged,
and dropped when its pong does not come, as before.

**Letting go of a client the keepalive gave up on.** When a ping goes unanswered, uvicorn sends
its close and closes the transport, which waits for whatever is still unsent to drain. A client
frozen with its connection up (a phone whose system still acknowledges the packets, its window
shut) never takes it: the connection stayed, and nothing told the application, so its leader
stayed connected in the hub (reachable, said the console) until enough messages came to
overflow his queue, months for a leader. The connection is cut instead, as a slow consumer's is
(alerts.socket): the application hears the disconnect at once, and the client resumes from its
cursor when it comes back. So is one that the server closed (a token revoked, say) and whose
answer to the close does not come in time: uvicorn closed the transport then, which waited in
the same way for ever, holding the connection and its buffers. And so is one whose frame was
refused (not UTF-8, too large, not a frame at all) and that reads no more.

**A client this protocol let go of is gone to the application.** Once the protocol closed the
connection on its own (an unanswered ping, a frame refused), uvicorn refused the application's
next write as a misuse of ASGI (RuntimeError) until the connection was lost, a turn of the
event loop or more later: an alert taken up meanwhile failed as a fault of the server, logged
at ERROR with a traceback, a few times in every thousand phones that vanish. Such a write is
told the client disconnected, as it is once the connection is lost.

**A text message that is not UTF-8 is the client's fault.** uvicorn closes its socket with
1007, as it should, but logged "Invalid UTF-8 sequence received from client." at ERROR with a
traceback, so a client's garbage read as a fault of the server. Such a message is refused
here, before uvicorn decodes it, with the same close and one line at INFO without traceback.
"""

from __future__ import annotations

from uvicorn._types import ASGISendEvent
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol


class WebSocketProtocol(WebSocketsSansIOProtocol):
    # The event loop's time when the client's last bytes arrived (any frame, a pong included).
    heard_at = 0.0

    def data_received(self, data: bytes) -> None:
        self.heard_at = self.loop.time()
        super().data_received(data)

    def send_keepalive_ping(self) -> None:
        interval = self.ping_interval
        quiet = self.loop.time() - self.heard_at
        if interval is not None and self.pending_ping_payload is None and quiet < interval:
            # Heard from within the interval: look again when it will have been quiet so long.
            self.ping_timer = self.loop.call_later(interval - quiet, self.send_keepalive_ping)
            return
        super().send_keepalive_ping()

    def keepalive_timeout(self) -> None:
        gave_up = not (self.close_sent or self.transport.is_closing())
        super().keepalive_timeout()
        if gave_up:
            # Its close frame waits behind what the client did not take: drop them both.
            self.transport.abort()

    async def send(self, message: ASGISendEvent) -> None:
        if self.close_sent and self.handshake_complete and self.initial_response is None:
            # Closed by this protocol, not by the application: Starlette lets no write through
            # after the application's own close.
            raise ClientDisconnected()
        timer = self.close_timer
        await super().send(message)
        if self.close_timer is not None and self.close_timer is not timer:
            # The application's close went out: uvicorn closes the transport if no answer
            # comes within close_timeout. Cut it then, whatever is still unsent.
            self.close_timer.cancel()
            self.close_timer = self.loop.call_later(self.close_timeout, self.transport.abort)

    def handle_parser_exception(self) -> None:
        # uvicorn sends its close and closes the transport; what the client does not take
        # keeps that waiting unless the connection is cut, once the close's time is up.
        super().handle_parser_exception()
        if self.close_timer is None:
            self.close_timer = self.loop.call_later(self.close_timeout, self.transport.abort)

    def send_receive_event_to_app(self) -> None:
        if self.curr_msg_data_type == "text" and not self.close_sent:
            data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
            try:
                data.decode()
            except UnicodeDecodeError as error:
                self.frames = []
                self.logger.info(
                    "A websocket client sent a text message that is not UTF-8 (%s at byte %d); "
                    "its socket is closed with 1007.",
                    error.reason,
                    error.start,
                )
                self.conn.send_close(1007)
                self.handle_parser_exception()
                return
            # uvicorn's own, which decodes it again (a message of a few hundred bytes).
            self.frames = [data]
        super().send_receive_event_to_app()

    def shutdown(self) -> None:
        if self.handshake_complete and not self.close_sent and self.transport.is_closing():
            # The client's close came first and was answered as it arrived (handle_close).
            self.stop_keepalive()
            return
        super().shutdown()
