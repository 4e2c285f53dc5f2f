"""A server stopping while a client's close is under way stops cleanly: uvicorn's own protocol
raised there, and the server's shutdown stopped half-way."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import uvicorn
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.client import ClientProtocol
from websockets.frames import CloseCode
from websockets.protocol import State
from websockets.uri import parse_uri

from dispatch.websocket_protocol import WebSocketProtocol


async def accept_then_wait(scope: Any, receive: Any, send: Any) -> None:
    """A websocket endpoint that accepts and waits for the client to leave."""
    assert scope["type"] == "websocket"
    await receive()
    await send({"type": "websocket.accept"})
    while (await receive())["type"] != "websocket.disconnect":
        pass


async def closing_socket(protocol_class: type[WebSocketsSansIOProtocol]) -> Any:
    """The server's side of a real socket whose client has sent its close and read the answer:
    the moment a stopping server may find it in."""
    config = uvicorn.Config(accept_then_wait, ws=protocol_class, ws_per_message_deflate=False)
    config.load()
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    loop = asyncio.get_running_loop()
    _, server = await loop.connect_accepted_socket(
        lambda: protocol_class(config, ServerState(), {}), sock=ours
    )
    client = ClientProtocol(parse_uri("ws://127.0.0.1/ws"))
    client.send_request(client.connect())
    for data in client.data_to_send():
        await loop.sock_sendall(theirs, data)
    while client.state is not State.OPEN:
        client.receive_data(await loop.sock_recv(theirs, 4096))
    client.send_close(CloseCode.NORMAL_CLOSURE)
    for data in client.data_to_send():
        await loop.sock_sendall(theirs, data)
    # The server answers the close as it arrives, and closes its transport.
    client.receive_data(await loop.sock_recv(theirs, 4096))
    assert client.close_rcvd is not None
    theirs.close()
    return server


async def test_a_socket_whose_close_was_just_answered_stops_quietly() -> None:
    server = await closing_socket(WebSocketProtocol)
    # Where uvicorn's own shutdown tries a second close frame and raises InvalidState.
    assert server.handshake_complete and not server.close_sent
    assert server.transport.is_closing() and server.conn.state is not State.OPEN
    server.shutdown()
