"""The intake baseline: a bare FastAPI endpoint that parses the same body and inserts one row
with asyncpg, served by uvicorn with the same settings as ``dispatch serve``.

Run: ``python -m bench.bare_intake --port PORT --dsn postgresql://...``
"""

from __future__ import annotations

import argparse
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import uvicorn
from fastapi import FastAPI, Request
from pydantic import BaseModel, Field


class Location(BaseModel):
    lon: float = Field(ge=-180, le=180)
    lat: float = Field(ge=-90, le=90)
    crs: str = "wgs84"


class Body(BaseModel):
    location: Location
    category: str
    description: str | None = None


class Created(BaseModel):
    id: str


def create_app(dsn: str) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await asyncpg.create_pool(dsn, min_size=10, max_size=20)
        async with pool.acquire() as connection:
            await connection.execute(
                "CREATE TABLE IF NOT EXISTS bare_incidents (id text PRIMARY KEY, lon float8,"
                " lat float8, category text, description text, reported_at timestamptz)"
            )
        app.state.pool = pool
        yield
        await pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.post("/api/v1/incidents", status_code=201)
    async def report(body: Body, request: Request) -> Created:
        incident_id = uuid.uuid4().hex
        await request.app.state.pool.execute(
            "INSERT INTO bare_incidents VALUES ($1, $2, $3, $4, $5, now())",
            incident_id,
            body.location.lon,
            body.location.lat,
            body.category,
            body.description,
        )
        return Created(id=incident_id)

    return app


def app_from_environment() -> FastAPI:
    """The factory each worker process calls when the baseline runs several."""
    return create_app(os.environ["BENCH_BARE_DSN"])


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    os.environ["BENCH_BARE_DSN"] = args.dsn
    # The same server settings as ``dispatch serve`` with as many workers.
    uvicorn.run(
        "bench.bare_intake:app_from_environment",
        factory=True,
        host="127.0.0.1",
        port=args.port,
        workers=args.workers,
        loop="uvloop" if args.workers > 1 else "auto",
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        proxy_headers=True,
        # dispatch serve logs every request at info; so does the baseline.
        log_level="info",
    )
