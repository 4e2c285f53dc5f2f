"""The report-to-alert baseline: a minimal ``websockets`` server doing ``broadcast()``.

Leaders connect and say hello with their user id as token; a control connection sends
``{"recipients": [...], "payload": "..."}`` and the server broadcasts the payload to those
recipients. No database, no queue, no protocol beyond that: the floor for fan-out in Python.

Run: ``python -m bench.baseline_ws --port PORT``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource

from websockets.asyncio.server import ServerConnection, broadcast, serve

connections: dict[str, ServerConnection] = {}


async def handler(websocket: ServerConnection) -> None:
    hello = json.loads(await websocket.recv())
    if hello.get("type") == "control":
        async for raw in websocket:
            message = json.loads(raw)
            recipients = [connections[u] for u in message["recipients"] if u in connections]
            broadcast(recipients, message["payload"])
        return
    user_id = str(hello["token"])
    connections[user_id] = websocket
    await websocket.send(json.dumps({"type": "welcome", "seq": 0, "data": {"user_id": user_id}}))
    try:
        async for _ in websocket:
            pass
    finally:
        if connections.get(user_id) is websocket:
            del connections[user_id]


async def main(port: int) -> None:
    async with serve(
        handler,
        "127.0.0.1",
        port,
        compression=None,
        ping_interval=20,
        ping_timeout=20,
        max_size=64 * 1024,
        backlog=4096,
    ) as server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        import uvloop

        uvloop.run(main(args.port))
    except ImportError:
        asyncio.run(main(args.port))
