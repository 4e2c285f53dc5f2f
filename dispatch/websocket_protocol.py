"""uvicorn's websocket protocol (``websockets-sansio``), stopping whatever state a socket is in.

When the server stops, uvicorn sends every open socket a close frame (1012). A socket whose
client's close has just been answered (its transport closing, not yet gone from the server's
connections) can send no second close: uvicorn's shutdown raises ``InvalidState`` there, and
the server stops half-way, its application's shutdown never run (the acknowledgements gathered
in memory not written, the timers not stopped). Such a socket needs nothing more.
"""

from __future__ import annotations

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol


class WebSocketProtocol(WebSocketsSansIOProtocol):
    def shutdown(self) -> None:
        if self.handshake_complete and not self.close_sent and self.transport.is_closing():
            # The client's close came first and was answered as it arrived (handle_close).
            self.stop_keepalive()
            return
        super().shutdown()
