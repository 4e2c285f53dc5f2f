"""The notifier at work: job handlers for the checks and attempts, requests made off the
database, and one HTTP client for the life of the process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from datetime import datetime

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.db import after_commit
from dispatch.jobs import service as jobs
from dispatch.jobs.models import Job
from dispatch.notifiers import service
from dispatch.notifiers.channels import Channel, Notice, configured_channels, failure
from dispatch.observability.logs import about_incident, mask_phone
from dispatch.runtime import Runtime

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, runtime: Runtime, channels: Sequence[Channel] | None = None) -> None:
        self.runtime = runtime
        self.channels = {
            c.name: c
            for c in (configured_channels(runtime.settings) if channels is None else channels)
        }
        self._client: httpx.AsyncClient | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self._grace: service.Grace | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.channels)

    def start(self) -> None:
        if not self.enabled:
            return
        settings = self.runtime.settings
        self._client = httpx.AsyncClient(timeout=settings.notify_timeout_s)
        self._grace = service.Grace(
            seconds=settings.notify_reconnect_grace_s,
            started_at=self.runtime.clock.now(),
            instance=self.runtime.origin,
            stale_after_s=3 * settings.presence_heartbeat_s,
            alone=settings.is_sqlite,
        )
        # From now on every unit of work of this server watches the alerts it enqueues.
        info = dict(self.runtime.sessionmaker.kw.get("info") or {})
        info[service.AFTER_KEY] = settings.notify_after_s
        self.runtime.sessionmaker.configure(info=info)
        log.info("notifiers on: %s", ", ".join(self.channels))

    async def stop(self) -> None:
        for task in list(self._sending):
            task.cancel()
        for task in list(self._sending):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._client is not None:
            await self._client.aclose()

    def job_handlers(self) -> dict[str, jobs.Handler]:
        return {service.CHECK: self._check, service.SEND: self._send}

    async def _check(self, session: AsyncSession, job: Job, now: datetime) -> str:
        assert job.incident_id is not None
        with about_incident(job.incident_id):
            outcome = await service.check_acknowledged(
                session,
                incident_id=job.incident_id,
                user_id=str(job.data["user_id"]),
                seq=int(job.data["seq"]),
                dispatch_id=str(job.data["dispatch_id"]),
                channels=[(c.name, c.needs_phone) for c in self.channels.values()],
                now=now,
                grace=self._grace,
                held=job.data.get("held"),
                held_until=service.held_until_of(job.data),
            )
            if outcome.startswith("unacknowledged"):
                log.warning(
                    "alert of dispatch %s not acknowledged by leader %s: %s",
                    job.data["dispatch_id"],
                    job.data["user_id"],
                    outcome,
                )
            elif outcome.startswith("held"):
                log.info(
                    "alert of dispatch %s to leader %s: %s",
                    job.data["dispatch_id"],
                    job.data["user_id"],
                    outcome,
                )
        return outcome

    async def _send(self, session: AsyncSession, job: Job, now: datetime) -> str:
        settings = self.runtime.settings
        notice = await service.begin_attempt(
            session,
            str(job.data["notification_id"]),
            now,
            max_attempts=settings.notify_max_attempts,
            backoff_s=settings.notify_backoff_s,
            timeout_s=settings.notify_timeout_s,
            configured=self.channels.keys(),
        )
        if isinstance(notice, str):
            if notice.startswith("failed"):
                with about_incident(job.incident_id):
                    log.error("notification %s %s", job.data["notification_id"], notice)
            elif notice.startswith("stopped"):
                with about_incident(job.incident_id):
                    log.info("notification %s %s", job.data["notification_id"], notice)
            return notice
        channel = self.channels[notice.channel]
        after_commit(session, lambda: self._spawn(channel, notice))
        return f"attempt {notice.attempt} over {channel.name}"

    def _spawn(self, channel: Channel, notice: Notice) -> None:
        task = asyncio.get_running_loop().create_task(
            self._deliver(channel, notice), name=f"notify-{channel.name}"
        )
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _deliver(self, channel: Channel, notice: Notice) -> None:
        """One request, made while no database connection is held, then its record."""
        assert self._client is not None
        settings = self.runtime.settings
        with about_incident(notice.incident_id):
            started = self.runtime.clock.now()
            began = time.perf_counter()
            # The client's timeout bounds each connect, write and read, not their sum: a
            # receiver that dribbles its answer a byte at a time would hold one attempt as long
            # as it liked (and the retry, due once this attempt is over, would wait for it).
            limit = asyncio.timeout(settings.notify_timeout_s)
            try:
                async with limit:
                    result = await channel.send(self._client, notice, started)
            except Exception as error:
                if limit.expired():
                    result = failure(
                        None, f"TimeoutError: no answer within {settings.notify_timeout_s:g} s"
                    )
                else:  # a channel's own bug must still be recorded
                    log.exception("notifier %s raised", channel.name)
                    result = failure(None, f"{type(error).__name__}: {error}")
            duration_ms = (time.perf_counter() - began) * 1000
            try:
                async with self.runtime.transaction() as session:
                    outcome = await service.record_attempt(
                        session,
                        notice,
                        channel.name,
                        result,
                        started=started,
                        now=self.runtime.clock.now(),
                        duration_ms=duration_ms,
                        max_attempts=settings.notify_max_attempts,
                        backoff_s=settings.notify_backoff_s,
                    )
            except Exception:
                # The next attempt is already scheduled; it will settle the notification.
                log.exception("could not record notifier attempt %d", notice.attempt)
                return
            line = "notifier %s attempt %d for leader %s (%s): %s%s"
            args = (
                channel.name,
                notice.attempt,
                notice.leader_id,
                mask_phone(notice.phone) or "no phone",
                outcome,
                f" ({result.error})" if result.error else "",
            )
            if result.ok:
                log.info(line, *args)
            else:
                log.warning(line, *args)
