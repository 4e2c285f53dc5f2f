"""The application object: the websocket endpoint served past the HTTP layers, and every
HTTP request's time of arrival.

A websocket stays inside the ASGI call it arrived in for as long as it is open, so every layer
it went through stays suspended in its call stack for hours: Starlette's error and exception
middleware, FastAPI's telemetry, body-limit and exit-stack middleware, ours (body limit,
incident log context), the router and the included routers, and FastAPI's route wrapper with
its exit stacks. That came to about 12 KiB of the 41 KiB each idle socket cost at 10k sockets.
None of those layers does anything for a websocket: they act on HTTP requests or render HTTP
error bodies, and the endpoint takes no dependencies. So a websocket at a path registered here
goes straight to its endpoint; everything else, the lifespan included, goes through the stack
as FastAPI builds it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

WebSocketEndpoint = Callable[[WebSocket], Coroutine[Any, Any, None]]

# The scope's key for the server's time at which an HTTP request came in.
RECEIVED_AT = "dispatch.received_at"


class DispatchApp(FastAPI):
    """FastAPI, with websocket endpoints that skip the middleware stack and the router."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._direct_websockets: dict[str, WebSocketEndpoint] = {}

    def serve_websocket_directly(self, path: str, endpoint: WebSocketEndpoint) -> None:
        """Hand websockets at ``path`` to ``endpoint`` itself. Its route stays declared on its
        router as well, listed with the others; the endpoint must take the websocket alone,
        since nothing resolves dependencies for it here."""
        if len(inspect.signature(endpoint).parameters) != 1:
            raise TypeError(f"{endpoint.__name__} must take the websocket and nothing else")
        self._direct_websockets[path] = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            # Before anything can keep the request waiting (its body, a connection from the
            # pool, the token's lookup): a hop's time is when its call came in.
            runtime = getattr(self.state, "runtime", None)
            if runtime is not None:
                scope[RECEIVED_AT] = runtime.clock.now()
        # Under a root path the router decides, as before.
        if scope["type"] == "websocket" and not (self.root_path or scope.get("root_path")):
            endpoint = self._direct_websockets.get(scope["path"])
            if endpoint is not None:
                # What Starlette sets before its stack: ``websocket.app`` is this application.
                scope["app"] = self
                await endpoint(WebSocket(scope, receive, send))
                return
        await super().__call__(scope, receive, send)
