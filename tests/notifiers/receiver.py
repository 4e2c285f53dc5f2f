"""A real HTTP receiver on a real port, standing in for a webhook, a group robot or a gateway."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from tests.conftest import free_port


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Answers each request with the next scripted (status, body: JSON, or bytes as they are);
    the last one repeats."""

    answers: Sequence[tuple[int, Any]] = ((200, {"errcode": 0, "errmsg": "ok"}),)
    requests: list[Received] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    _server: uvicorn.Server | None = None
    _task: asyncio.Task[None] | None = None
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        body = await request.body()
        self.requests.append(
            Received(
                request.method,
                request.url.path,
                dict(request.query_params),
                {k.lower(): v for k, v in request.headers.items()},
                body,
            )
        )
        status, answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        self._arrived.set()
        # Bytes are answered as they are (a receiver that answers with a binary body).
        reply = (
            Response(answer, status_code=status, media_type="application/octet-stream")
            if isinstance(answer, bytes)
            else JSONResponse(answer, status_code=status)
        )
        await reply(scope, receive, send)

    async def start(self) -> None:
        config = uvicorn.Config(self, host="127.0.0.1", port=self.port, log_level="warning")
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[Received]:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.requests) < count:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(f"{len(self.requests)} requests arrived, not {count}")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)
        return self.requests


@dataclass
class HeldReceiver(Receiver):
    """Answers as a Receiver does, but only once ``release`` is set: a slow SMS gateway, still
    working on a request while the server's clock moves on."""

    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def held_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                await self.release.wait()
            await send(message)

        await super().__call__(scope, receive, held_send)

    async def stop(self) -> None:
        self.release.set()
        await super().stop()


@dataclass
class Dribbler:
    """A receiver that answers 200, but sends its header a byte every 0.25 s for ``seconds``:
    no single read waits long, the answer as a whole takes that long. ``outcome`` is set once
    its answer ended: "finished" (every byte sent) or "hung up" (the client closed first)."""

    port: int
    seconds: float
    outcome: str | None = None
    _ended: asyncio.Event = field(default_factory=asyncio.Event)
    _server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def ended(self, timeout: float = 30.0) -> str:
        """How the answer ended, once it has (``timeout``: only a guard against a hang)."""
        await asyncio.wait_for(self._ended.wait(), timeout)
        assert self.outcome is not None
        return self.outcome

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Pad: " + b"x" * int(self.seconds * 4)
        answer += b"\r\n\r\n{}"
        head = answer[: answer.index(b"X-Pad: ") + len(b"X-Pad: ")]
        outcome = "hung up"
        with contextlib.suppress(Exception):
            await reader.readuntil(b"\r\n\r\n")
            # The client sends nothing more: the end of its side is it closing the connection.
            closed = asyncio.ensure_future(reader.read())
            writer.write(head)
            await writer.drain()
            for byte in answer[len(head) :]:
                if closed.done():
                    break
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.25)
            else:
                outcome = "finished"
            closed.cancel()
        writer.close()
        if self.outcome is None:
            self.outcome = outcome
            self._ended.set()
