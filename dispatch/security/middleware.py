"""Request bodies capped, and NUL characters refused, before the application reads them."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl

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
        if b"%00" in scope.get("raw_path", b""):
            await _nul_refused(send, "path")
            return
        if b"%00" in scope.get("query_string", b""):
            await _nul_refused(send, _form_field_with_nul(scope["query_string"]) or "query")
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
            await _nul_refused(send, _body_field_with_nul(bytes(body), content_type))
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
    body = {"error": "too_large", "detail": detail, "field": "body"}
    await _answer(send, 413, body, close=True)


def _form_field_with_nul(encoded: bytes) -> str | None:
    for name, value in parse_qsl(encoded.decode("latin-1"), keep_blank_values=True):
        if "\x00" in name or "\x00" in value:
            return name.replace("\x00", "") or None
    return None


def _body_field_with_nul(body: bytes, content_type: bytes) -> str:
    """Where the NUL is, for the answer to name it: a JSON member's path, a form's field, or
    the body itself when it does not parse (a raw NUL byte is not JSON either)."""
    if content_type.startswith(_FORM):
        return _form_field_with_nul(body) or "body"
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return "body"
    return _json_path_with_nul(parsed) or "body"


def _json_path_with_nul(document: Any) -> str | None:
    # A stack, not recursion: the body is capped in bytes, not in depth.
    stack: list[tuple[str, Any]] = [("", document)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return path or None
            continue
        if isinstance(value, dict):
            members = [(f"{path}.{k}" if path else str(k), k, v) for k, v in value.items()]
            for name, key, _ in members:
                if "\x00" in key:
                    return name.replace("\x00", "")
            stack.extend((name, item) for name, _, item in reversed(members))
        elif isinstance(value, list):
            named = [(f"{path}.{i}" if path else str(i), item) for i, item in enumerate(value)]
            stack.extend(reversed(named))
    return None


async def _nul_refused(send: Send, field: str) -> None:
    detail = f"{field}: text must not contain NUL (\\u0000) characters"
    await _answer(send, 422, {"error": "invalid_input", "detail": detail, "field": field})


async def _answer(send: Send, status: int, error: dict[str, str], *, close: bool = False) -> None:
    body = json.dumps(error).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
