"""What the server processes tell each other: new message batches, changed teams, villages,
duty schedules and users."""

from __future__ import annotations

from alerts import store as mailboxes
from alerts.fanout import Listener
from dispatch.auth.service import USERS_CHANNEL
from dispatch.db import host_timeout
from dispatch.reachability.service import instance_lock_key
from dispatch.rosters.book import DUTY_CHANNEL
from dispatch.runtime import MESSAGES_CHANNEL, Runtime
from dispatch.teams import service as teams
from dispatch.villages.index import VILLAGES_CHANNEL


def listen(runtime: Runtime) -> Listener:
    # Its connection gives a host gone dark up as the pools' do (dispatch.db.give_up_after):
    # this process would otherwise hear nothing of the others, and say it was fine, until
    # its keep-alive query noticed.
    dark = host_timeout(runtime.settings.db_host_timeout_s)
    # It holds this process's lock for as long as it is connected: the others know the process
    # alive by it (dispatch.reachability.service: connected_when_gone, presence_of).
    lock = instance_lock_key(runtime.origin)
    listener = Listener(runtime.settings.database_url, runtime.origin, dark, lock_key=lock)

    async def messages_committed(batch: str) -> None:
        # A read that fails is tried again, and then made up for by a catch-up of every
        # socket from the store (alerts.fanout.Listener): an alert is never left unsent.
        async with runtime.reading() as session:
            envelopes = await mailboxes.batch_messages(session, batch)
        runtime.hub.publish(envelopes)

    async def team_changed(_: str) -> None:
        # Not the team named, but every change up to the newest: announcements of two quick
        # changes are handled concurrently, and whichever runs first applies both, in order.
        async with runtime.reading() as session:
            await runtime.coverage.catch_up(session)

    async def villages_changed(_: str) -> None:
        # One reload at a time (announcements are handled concurrently): ``Villages.reload``.
        await runtime.villages.reload()

    async def duty_changed(_: str) -> None:
        runtime.duty.changed()

    async def user_changed(user_id: str) -> None:
        # The user's access changed (disabled, logged out, password reset) in another process:
        # forget their tokens, and have each of their open sockets judged again; the ones whose
        # token no longer holds are closed (dispatch.realtime). The process that made the
        # change does both once it commits (dispatch.auth.service), as on SQLite.
        runtime.principals.drop_user(user_id)
        runtime.hub.recheck(user_id)

    async def reconnected() -> None:
        # Announcements made while the listener was down are lost; the rows are not.
        runtime.principals.clear()
        async with runtime.reading() as session:
            await runtime.coverage.catch_up(session)
        await runtime.villages.reload()
        runtime.duty.changed()
        # Every socket is judged again, from the rows: a user disabled or logged out in another
        # process meanwhile would otherwise keep an idle socket open until the token expired
        # (user_changed's recheck never came). Before the nudge, so that such a socket is
        # closed before it is sent what it missed. One token lookup a socket, as the nudge
        # costs one replay read a socket.
        runtime.hub.recheck_all()
        runtime.hub.nudge_all()

    listener.on(MESSAGES_CHANNEL, messages_committed)
    listener.on(teams.TEAMS_CHANNEL, team_changed)
    listener.on(VILLAGES_CHANNEL, villages_changed)
    listener.on(DUTY_CHANNEL, duty_changed)
    listener.on(USERS_CHANNEL, user_changed)
    listener.on_reconnect(reconnected)
    return listener
