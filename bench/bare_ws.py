"""A bare FastAPI websocket endpoint under uvicorn with the same websocket settings as
``dispatch serve``: hello in, welcome out, then it only listens. The floor for memory per
connection that uvicorn and Starlette set before any state of ours.

Run: ``python -m bench.bare_ws --port PORT``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource

import uvicorn
from fastapi import FastAPI, WebSocket, WebSocketDisconnect


def create_app() -> FastAPI:
    app = FastAPI()

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        with contextlib.suppress(WebSocketDisconnect):
            hello = json.loads(await websocket.receive_text())
            welcome = {"type": "welcome", "seq": 0, "data": {"user_id": hello.get("token")}}
            await websocket.send_text(json.dumps(welcome))
            while True:
                await websocket.receive_text()

    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    uvicorn.run(
        create_app(),
        host="127.0.0.1",
        port=args.port,
        ws="websockets-sansio",
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        ws_per_message_deflate=False,
        ws_max_size=64 * 1024,
        log_level="warning",
    )
