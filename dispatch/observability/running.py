"""What a running server adds for operations: metrics, notifiers and presence, started and
stopped with the lifespan; /metrics, the notifier and reachability routes, and the log context."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.errors import MIDDLEWARE_RESPONSES
from dispatch.jobs import service as jobs
from dispatch.jobs.models import Job
from dispatch.notifiers.routes import router as notifiers_router
from dispatch.notifiers.tasks import Notifier
from dispatch.observability.logs import IncidentLogContext, about_incident
from dispatch.observability.metrics import Metrics, serve_metrics
from dispatch.reachability.routes import router as reachability_router
from dispatch.reachability.tasks import PresenceTracker
from dispatch.runtime import Runtime


class Operations:
    def __init__(self, app: FastAPI, runtime: Runtime) -> None:
        self.metrics = Metrics(runtime)
        self.notifier = Notifier(runtime)
        self.presence = PresenceTracker(runtime)
        self._tasks: list[asyncio.Task[None]] = []
        app.state.metrics = self.metrics
        app.state.notifier = self.notifier
        app.state.presence = self.presence

    def job_handlers(self, handlers: Mapping[str, jobs.Handler]) -> dict[str, jobs.Handler]:
        """Every job handler, the notifier's added, each logging with its incident's id."""
        merged = {**handlers, **self.notifier.job_handlers()}
        return {kind: _in_incident_context(handler) for kind, handler in merged.items()}

    def start(self) -> list[asyncio.Task[None]]:
        self.metrics.install()
        self.notifier.start()
        self._tasks = [asyncio.create_task(self.presence.run(), name="presence")]
        if self.metrics.shared is not None:
            shared = asyncio.create_task(self.metrics.share_states(), name="metrics-states")
            self._tasks.append(shared)
        return self._tasks

    async def stop(self) -> None:
        """Before the engine is disposed: the last presence rows, in-flight notifications."""
        for task in self._tasks:
            task.cancel()
        # One that ended by itself was logged then (dispatch.app.watch_task).
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.notifier.stop()
        await self.presence.stop()
        self.metrics.uninstall()


def _in_incident_context(handler: jobs.Handler) -> jobs.Handler:
    async def handle(session: AsyncSession, job: Job, now: datetime) -> str:
        with about_incident(job.incident_id):
            return await handler(session, job, now)

    return handle


def install_operations(app: FastAPI) -> None:
    app.add_middleware(IncidentLogContext)
    app.include_router(notifiers_router)
    app.include_router(reachability_router)
    app.add_api_route(
        "/metrics",
        serve_metrics,
        methods=["GET"],
        tags=["health"],
        response_class=Response,
        summary="Prometheus metrics",
        description="The process's metrics in the Prometheus text format (see docs/deploy.md).",
        responses={
            200: {"description": "the metrics", "content": {CONTENT_TYPE_LATEST: {}}},
            **MIDDLEWARE_RESPONSES,
        },
    )
