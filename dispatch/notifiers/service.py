"""Reaching a leader whose phone has not acknowledged an alert.

Each alert stored for a leader schedules a check ``notify_after_s`` later (a durable job). If
the leader's phone has not acknowledged it by then (and nobody accepted the dispatch), one
notification per configured channel is created, and each is tried by a job: the job stores the
attempt number and the next try before the request is made outside the transaction, so a crash
mid-request loses nothing — the next try is already on record. That try is due once the
request's time limit and then the backoff have passed, so that it never goes out while the
gateway may still be working on this one; a failure recorded sooner brings it forward to the
backoff after that failure. Every attempt is a row; the final outcome is an incident event,
``notified`` or ``notify_failed``. The operators' board is told every outcome (notified,
failed, stopped), every notification begun and every failed attempt but the last (``pending``,
with its attempts so far), in a ``notification.updated`` message staged in the same
transaction: written with its commit and published once it has committed, never before; the
alerts to the leaders carry none of it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from alerts import store as mailboxes
from alerts.store import Envelope, Outgoing
from dispatch.auth import service as auth
from dispatch.auth.models import User
from dispatch.db import falls_due, new_id
from dispatch.errors import InvalidInput, NotFound
from dispatch.incidents.event_facts import NO_FACTS, RING_OPERATOR, facts_of
from dispatch.incidents.models import Dispatch, Incident, IncidentEvent, IncidentStatus
from dispatch.jobs import service as jobs
from dispatch.jobs.models import Job, JobStatus
from dispatch.notifiers.channels import Notice, Result, error_text
from dispatch.notifiers.models import Notification, NotificationAttempt, NotificationStatus
from dispatch.reachability import service as reachability
from dispatch.schemas import show_time
from dispatch.teams.models import Team

CHECK = "notify.check"
SEND = "notify.send"
# Put in every session of a server with notifiers configured: how long an alert may go
# unacknowledged. Sessions without it (the CLI, a server with no channel) schedule nothing.
AFTER_KEY = "notifiers.after_s"
# The board's message of a notification's outcome.
NEWS = "notification.updated"


def watch_alerts(session: AsyncSession, envelopes: Sequence[Envelope], now: datetime) -> None:
    """Schedule the acknowledgement check of every alert message just enqueued."""
    after_s = session.info.get(AFTER_KEY)
    if after_s is None:
        return
    due = now + timedelta(seconds=float(after_s))
    for envelope in envelopes:
        if envelope.type != "alert" or envelope.ref is None:
            continue
        incident_id = str(envelope.data["incident"]["id"])
        data = {"user_id": envelope.user_id, "seq": envelope.seq, "dispatch_id": envelope.ref}
        jobs.schedule(session, jobs.new_job(CHECK, due, incident_id=incident_id, data=data))


@dataclass(frozen=True)
class Grace:
    """The checking process's reconnection grace (DISPATCH_NOTIFY_RECONNECT_GRACE_S)."""

    seconds: float
    # When this process started, and its presence rows' name.
    started_at: datetime
    instance: str
    # A process whose heartbeat is older than this died.
    stale_after_s: float
    # No other process can be running (SQLite): any other one died or stopped.
    alone: bool = False


async def check_acknowledged(
    session: AsyncSession,
    *,
    incident_id: str,
    user_id: str,
    seq: int,
    dispatch_id: str,
    channels: Sequence[tuple[str, bool]],
    now: datetime,
    grace: Grace | None = None,
    held: str | None = None,
    held_until: datetime | None = None,
) -> str:
    """The check step: if the alert is still unacknowledged, start one notification a channel.

    ``channels`` are (name, needs a phone number) in the order they are tried.

    Unless the check was held already (``held`` says why, ``held_until`` until when), a
    leader whose phone was connected to a server process when it went away (stopped or died)
    is given ``grace`` to reconnect from when the server was back (its stop, for a process
    that kept running; this process's start, for one that started since): his phone,
    reconnecting, acknowledges what it missed. The check is looked at again then, and a
    notification it begins says why it waited, and until when.
    """
    answered = await _answered(session, incident_id, dispatch_id, user_id, since_seq=seq)
    if answered is not None:
        return f"not needed: {answered}"
    if grace is not None and held is None:
        hold = await _reconnection_hold(session, user_id, now, grace)
        if hold is not None:
            data = {
                "user_id": user_id,
                "seq": seq,
                "dispatch_id": dispatch_id,
                "held": hold[1],
                "held_until": hold[0].isoformat(),
            }
            jobs.schedule(session, jobs.new_job(CHECK, hold[0], incident_id=incident_id, data=data))
            await session.flush()
            return hold[1]
    phone = await session.scalar(select(User.phone).where(User.id == user_id))
    started: list[str] = []
    for name, needs_phone in channels:
        notification = Notification(
            id=new_id(),
            incident_id=incident_id,
            dispatch_id=dispatch_id,
            user_id=user_id,
            channel=name,
            status=NotificationStatus.PENDING.value,
            attempts=0,
            created_at=now,
            finished_at=None,
            held=held,
            held_until=held_until,
        )
        session.add(notification)
        if needs_phone and not phone:
            _finish(notification, now, ok=False)
            await _settled(session, notification, now, error="no phone number on file")
            continue
        data = {"notification_id": notification.id}
        jobs.schedule(session, jobs.new_job(SEND, now, incident_id=incident_id, data=data))
        # The operators learn now that the leader's phone did not answer, and over which
        # channels he is being sought: a failing gateway's last retry settles it only after
        # the tier's minute has passed.
        await _tell_board(session, notification, now)
        started.append(name)
    await session.flush()
    if not started:
        return "unacknowledged: no channel can reach the leader"
    return f"unacknowledged: notifying over {', '.join(started)}"


def held_until_of(data: dict[str, Any]) -> datetime | None:
    """Until when a held check waited, from its job's data: None from one a release before
    held (it wrote no ``held_until``), or from a value that is not an aware ISO 8601 time."""
    text = data.get("held_until")
    if not isinstance(text, str):
        return None
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        return None
    return at if at.tzinfo is not None else None


async def _reconnection_hold(
    session: AsyncSession, user_id: str, now: datetime, grace: Grace
) -> tuple[datetime, str] | None:
    """Until when, and why, the leader's check waits for his phone to reconnect, or None.

    Looked at only for a check that would begin notifications: one query, rarely."""
    if grace.seconds <= 0:
        return None
    gone = await reachability.connected_when_gone(
        session,
        user_id,
        instance=grace.instance,
        now=now,
        stale_after_s=grace.stale_after_s,
        alone=grace.alone,
    )
    if gone is None:
        return None
    until = max(gone, grace.started_at) + timedelta(seconds=grace.seconds)
    if until <= now:
        return None
    why = (
        f"held until {show_time(until)}: the leader's phone was connected to a server process "
        f"that went away at {show_time(gone)}, and was given {grace.seconds:g} s to reconnect "
        "once the server was back"
    )
    return until, why


async def begin_attempt(
    session: AsyncSession,
    notification_id: str,
    now: datetime,
    *,
    max_attempts: int,
    backoff_s: float,
    timeout_s: float,
    configured: Collection[str],
) -> Notice | str:
    """Claim the next attempt of a notification: a Notice to send, or why there is none.

    The try after this one is scheduled here, before anything is sent: if this attempt fails
    or is lost, that job makes the next one (and past the last, records the failure). It is
    due ``timeout_s`` (the longest this attempt's request may take) plus the backoff from now:
    a gateway slow to answer is not sent the text a second time while it may still send the
    first, nor is the notification given up while its last request may still succeed.

    ``configured``: the channels this process can send over.
    """
    notification = await session.get(Notification, notification_id, with_for_update=True)
    if notification is None:
        return "not needed: the notification is gone"
    if notification.status != NotificationStatus.PENDING.value:
        return f"not needed: already {notification.status}"
    if notification.channel not in configured:
        # Switched off by a restart without its setting: an attempt counted here would never
        # be made, and the notification would end "no success after 5 attempts", tried once.
        _stop(notification, now)
        await _tell_board(session, notification, now)
        await session.flush()
        return f"stopped: {notification.channel} is no longer configured"
    # A retry waits seconds to minutes: the leader may have answered meanwhile, and a text
    # about an alert he accepted, or an incident closed, would only mislead him.
    answered = await _answered(
        session, notification.incident_id, notification.dispatch_id, notification.user_id
    )
    if answered is not None:
        _stop(notification, now)
        await _tell_board(session, notification, now)
        await session.flush()
        return f"stopped: {answered}"
    if notification.attempts >= max_attempts:
        error = f"no success after {notification.attempts} attempts"
        _finish(notification, now, ok=False)
        await _settled(session, notification, now, error=error)
        await session.flush()
        return f"failed: {error}"
    notification.attempts += 1
    wait_s = timeout_s + backoff_wait_s(backoff_s, notification.attempts)
    retry_at = now + timedelta(seconds=wait_s)
    # ``after_attempt``: the attempt whose recorded failure may bring this job forward.
    data = {"notification_id": notification.id, "after_attempt": notification.attempts}
    retry = jobs.new_job(SEND, retry_at, incident_id=notification.incident_id, data=data)
    jobs.schedule(session, retry)
    await session.flush()
    return await _notice(session, notification, now)


def backoff_wait_s(backoff_s: float, attempt: int) -> float:
    """How long after attempt ``attempt`` has ended the next one waits: doubled each time."""
    return float(backoff_s * 2 ** (attempt - 1))


async def _answered(
    session: AsyncSession, incident_id: str, dispatch_id: str, user_id: str, since_seq: int = 0
) -> str | None:
    """Why the leader need not be reached about the alert any more, or None."""
    dispatch = await session.get(Dispatch, dispatch_id)
    incident = await session.get(Incident, incident_id)
    if dispatch is None or incident is None:
        return "the dispatch is gone"
    # This leader's phone, not the team's: the dispatch's delivered_at is the first delivery
    # to any of its leaders, and another leader's ack says nothing of this one's phone. Nor
    # does his mark alone: a resync moves it past alerts the phone was never sent (it reloads
    # its state instead, and the alert is sent again: a copy he acknowledges counts).
    if await mailboxes.received(session, user_id, dispatch_id, since_seq=since_seq):
        return "acknowledged"
    if dispatch.accepted_at is not None:
        return "the dispatch was accepted"
    if dispatch.arrived_at is not None:
        # Recorded by radio: the team is on scene, its phone never answered and need not.
        return "the team arrived"
    if incident.status == IncidentStatus.CLOSED.value:
        return "the incident is closed"
    # A dismissed guard's account is disabled: his phone is texted no more, as it is sent no
    # alert again after a resync (incidents.service.send_alert_again).
    leaders = await auth.leaders_by_team(session, [dispatch.team_id])
    if user_id not in leaders.get(dispatch.team_id, []):
        return "no longer an enabled leader of the team"
    return None


async def record_attempt(
    session: AsyncSession,
    notice: Notice,
    channel: str,
    result: Result,
    *,
    started: datetime,
    now: datetime,
    duration_ms: float,
    max_attempts: int,
    backoff_s: float,
) -> str:
    """Keep the attempt; on success, or on the last failure, settle the notification. Its
    error, from outside whichever channel or gateway made it, is kept as ``error_text``.

    A failure brings the next try forward to the backoff after ``now``: the attempt is over,
    and the time limit it was given need not be waited out. A success that comes after the
    notification was given up (its record held up past the follow-up) makes it ``notified``
    after all, with a ``notified`` event after the ``notify_failed`` one: the leader was
    reached, and the timeline keeps both in the order they were learned.
    """
    error = None if result.error is None else error_text(result.error)
    if not result.ok:
        # Before the notification's row is locked: the job runner locks the job, then the
        # notification, and the two orders could wait for each other.
        await _bring_retry_forward(
            session, notice, now + timedelta(seconds=backoff_wait_s(backoff_s, notice.attempt))
        )
    session.add(
        NotificationAttempt(
            notification_id=notice.notification_id,
            channel=channel,
            attempt=notice.attempt,
            at=started,
            ok=result.ok,
            status_code=result.status_code,
            error=error,
            duration_ms=round(duration_ms, 3),
        )
    )
    notification = await session.get(Notification, notice.notification_id, with_for_update=True)
    assert notification is not None
    outcome = "retrying" if notice.attempt < max_attempts else "failed"
    if result.ok and notification.status == NotificationStatus.FAILED.value:
        _finish(notification, now, ok=True)
        await _settled(session, notification, now, status_code=result.status_code)
        outcome = "notified after it was given up"
    elif notification.status != NotificationStatus.PENDING.value:
        outcome = f"already {notification.status}"
    elif result.ok:
        _finish(notification, started, ok=True)
        await _settled(session, notification, started, status_code=result.status_code)
        outcome = "notified"
    elif notice.attempt >= max_attempts:
        _finish(notification, started, ok=False)
        await _settled(session, notification, started, error=error)
    else:
        # Still sought: the consoles say how many tries have failed, and why the last did.
        await _tell_board(session, notification, started, error=error)
    await session.flush()
    return outcome


async def _bring_retry_forward(session: AsyncSession, notice: Notice, due_at: datetime) -> None:
    """Bring the try after ``notice`` forward to ``due_at``, if it is still to come and due
    later than that."""
    candidates = await session.execute(
        select(Job.id, Job.data).where(
            Job.kind == SEND,
            Job.incident_id == notice.incident_id,
            Job.status == JobStatus.PENDING.value,
        )
    )
    ids = [
        job_id
        for job_id, data in candidates
        if data.get("notification_id") == notice.notification_id
        and data.get("after_attempt") == notice.attempt
    ]
    if not ids:
        return
    # A job being fired now is done once its lock is let go: left as it is.
    await session.execute(
        update(Job)
        .where(Job.id.in_(ids), Job.status == JobStatus.PENDING.value, Job.due_at > due_at)
        .values(due_at=due_at)
        .execution_options(synchronize_session=False)
    )
    falls_due(session, due_at)


def _stop(notification: Notification, now: datetime) -> None:
    notification.status = NotificationStatus.STOPPED.value
    notification.finished_at = now


def _finish(
    notification: Notification, now: datetime, *, ok: bool, error: str | None = None
) -> None:
    notification.status = (NotificationStatus.NOTIFIED if ok else NotificationStatus.FAILED).value
    notification.finished_at = now


async def _settled(
    session: AsyncSession,
    notification: Notification,
    now: datetime,
    *,
    status_code: int | None = None,
    error: str | None = None,
) -> None:
    """A notification's outcome: on the incident's timeline, and to the operators' board."""
    _outcome_event(session, notification, now, status_code=status_code, error=error)
    await _tell_board(session, notification, now, error=error)


async def _tell_board(
    session: AsyncSession, notification: Notification, now: datetime, *, error: str | None = None
) -> None:
    """Tell the operators' consoles how the notification ended (notified, failed, stopped),
    or that it is still being tried (pending: begun, or its attempts so far failed).

    Staged: written as the transaction's last write and published once it has committed, so a
    console never hears of an outcome that is not on record; the board's mailbox, which every
    report locks, is held for the commit alone. Only the notifier's own transactions (its jobs
    and the records of its requests) stage it: an alert to a leader does no more than before.
    """
    leader_name = await session.scalar(select(User.name).where(User.id == notification.user_id))
    news = {
        "notification_id": notification.id,
        "incident_id": notification.incident_id,
        "dispatch_id": notification.dispatch_id,
        "user_id": notification.user_id,
        "leader_name": leader_name,
        "channel": notification.channel,
        "status": notification.status,
        "attempts": notification.attempts,
        "at": show_time(now),
        "error": error,
        "held": notification.held,
        "held_until": _shown(notification.held_until),
    }
    mailboxes.stage(session, [Outgoing(auth.BOARD_MAILBOX, NEWS, news)], now=now)


def _shown(at: datetime | None) -> str | None:
    return show_time(at) if at is not None else None


def _outcome_event(
    session: AsyncSession,
    notification: Notification,
    now: datetime,
    *,
    status_code: int | None = None,
    error: str | None = None,
) -> None:
    ok = notification.status == NotificationStatus.NOTIFIED.value
    data: dict[str, Any] = {
        "channel": notification.channel,
        "dispatch_id": notification.dispatch_id,
        "user_id": notification.user_id,
        "notification_id": notification.id,
        "attempts": notification.attempts,
    }
    if ok:
        data["status_code"] = status_code
    else:
        data["error"] = error
    if notification.held is not None:
        data["held"] = notification.held
        data["held_until"] = _shown(notification.held_until)
    session.add(
        IncidentEvent(
            incident_id=notification.incident_id,
            at=now,
            type="notified" if ok else "notify_failed",
            actor_id=None,
            data=data,
        )
    )


async def _notice(session: AsyncSession, notification: Notification, now: datetime) -> Notice:
    dispatch = await session.get(Dispatch, notification.dispatch_id)
    incident = await session.get(Incident, notification.incident_id)
    leader = await session.get(User, notification.user_id)
    assert dispatch is not None and incident is not None and leader is not None
    team = await session.get(Team, dispatch.team_id)
    # Of a team an operator added by hand (加派), what he said with it: the leader reads it
    # on the way, and a text may be all he reads.
    noted = await facts_of(session, [dispatch.id]) if dispatch.ring == RING_OPERATOR else {}
    return Notice(
        notification_id=notification.id,
        channel=notification.channel,
        attempt=notification.attempts,
        incident_id=incident.id,
        category=incident.category,
        reported_at=incident.reported_at,
        lon=incident.lon,
        lat=incident.lat,
        dispatch_id=dispatch.id,
        team_id=dispatch.team_id,
        team_name=team.name if team is not None else "",
        tier=dispatch.tier,
        distance_m=dispatch.distance_m,
        alerted_at=dispatch.alerted_at,
        leader_id=leader.id,
        leader_name=leader.name,
        phone=leader.phone,
        unacknowledged_for_s=round((now - dispatch.alerted_at).total_seconds(), 1),
        note=noted.get(dispatch.id, NO_FACTS).note,
    )


async def leader_names(session: AsyncSession, user_ids: Collection[str]) -> dict[str, str]:
    """The names of these users, by id."""
    if not user_ids:
        return {}
    rows = await session.execute(select(User.id, User.name).where(User.id.in_(set(user_ids))))
    return {user_id: name for user_id, name in rows}


async def notification_attempts(
    session: AsyncSession, incident_id: str
) -> list[tuple[Notification, list[NotificationAttempt]]]:
    notifications = list(
        await session.scalars(
            select(Notification)
            .where(Notification.incident_id == incident_id)
            .order_by(Notification.created_at, Notification.channel)
        )
    )
    ids = [n.id for n in notifications]
    attempts: dict[str, list[NotificationAttempt]] = {i: [] for i in ids}
    if ids:
        for attempt in await session.scalars(
            select(NotificationAttempt)
            .where(NotificationAttempt.notification_id.in_(ids))
            .order_by(NotificationAttempt.attempt, NotificationAttempt.id)
        ):
            attempts[attempt.notification_id].append(attempt)
    return [(n, attempts[n.id]) for n in notifications]


async def set_phone(session: AsyncSession, user_id: str, phone: str | None) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id!r} does not exist", field="user_id")
    if phone is not None and user.role != "leader":
        raise InvalidInput("phone: only team leaders are notified by phone", field="phone")
    user.phone = phone
    await session.flush()
    return user
