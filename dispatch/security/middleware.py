"""Request bodies capped, and NUL characters refused, before the application reads them."""

from __future__ import annotations

import json
import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# A NUL character, as JSON writes it (an unescaped backslash before u0000) or a form does.
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
_FORM = b"application/x-www-form-urlencoded"


class BodyLimit:
    """ASGI middleware: a body over the cap is answered 413 and never reaches a route.

    A declared Content-Length over the cap is refused before a byte is read; a streamed
    (chunked) body is counted as it arrives and refused as soon as it passes the cap. Routes
    then read the body from memory. The caps are the settings ``max_body_bytes`` (JSON and
    forms) and ``max_upload_bytes`` (the file upload routes named in ``uploads``), read from
    the running settings at each request, per route: Starlette's RequestBodyLimitMiddleware
    takes one fixed number per route at import time, before the settings exist.

    Text with a NUL character (in the path, the query or a JSON or form body) is refused with
    422: PostgreSQL cannot store it in a text column, and no name, number or note needs one.
    """

    def __init__(self, app: ASGIApp, uploads: tuple[str, ...] = ()) -> None:
        self.app = app
        self.uploads = frozenset(uploads)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        settings = scope["app"].state.runtime.settings
        upload = scope.get("path", "") in self.uploads
        limit: int = settings.max_upload_bytes if upload else settings.max_body_bytes
        if b"%00" in scope.get("raw_path", b"") or b"%00" in scope.get("query_string", b""):
            await _nul_refused(send)
            return
        content_type = b""
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await _too_large(send, limit)
                return
            if name == b"content-type":
                content_type = value.lower()
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > limit:
                await _too_large(send, limit)
                return
            if not message.get("more_body", False):
                break
        if not upload and _has_nul(bytes(body), content_type):
            await _nul_refused(send)
            return
        await self.app(scope, _replay(bytes(body), receive), send)


def _has_nul(body: bytes, content_type: bytes) -> bool:
    if b"\x00" in body or _JSON_NUL.search(body) is not None:
        return True
    return content_type.startswith(_FORM) and b"%00" in body


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            # After the body: whatever comes next (the client going away).
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def _too_large(send: Send, limit: int) -> None:
    detail = f"the request body is larger than {limit} bytes"
    # The rest of the body is not read: the connection cannot be reused.
    await _answer(send, 413, {"error": "too_large", "detail": detail}, close=True)


async def _nul_refused(send: Send) -> None:
    detail = "text must not contain NUL (\\u0000) characters"
    await _answer(send, 422, {"error": "invalid_input", "detail": detail})


async def _answer(send: Send, status: int, error: dict[str, str], *, close: bool = False) -> None:
    body = json.dumps(error).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
