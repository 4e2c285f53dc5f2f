"""The hub: which sockets read each mailbox, and a bounded queue in front of each of them.

A socket reads one mailbox: its user's own, or one shared by many readers (an operators' board,
say). Messages are routed by mailbox; who is connected is still counted by user.

Publishing never waits on a socket. A consumer whose queue fills up is cut off; it catches up
from its mailbox when it reconnects, so dropping it loses nothing and slows no one else.
"""

from __future__ import annotations

import asyncio
import enum
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from alerts.store import Envelope


@dataclass
class HubStats:
    """Counts kept for monitoring; read, never reset."""

    # Messages a socket was sent from the store rather than live (resume, catch-up).
    replayed: int = 0


class Signal(enum.Enum):
    """What a socket's sender is told besides messages."""

    # The server should look at this socket's access again: its user's access changed, or
    # its token is about to expire.
    RECHECK = "recheck"
    # The client pinged (``Subscription.ping``): answer with a pong carrying the seq of what
    # the socket wrote last.
    PONG = "pong"


# A message to send, a nudge (None: "look in the store", after this process may have missed a
# publish) or a signal.
Item = Envelope | Signal | None


class Subscription:
    """One open socket's place in the hub: a bounded queue and an overflow signal.

    Built from one deque and futures made only while someone waits, rather than an
    asyncio.Queue and an Event (five deques of ~760 bytes each): most sockets sit idle, and at
    ten thousand of them every kilobyte per socket is ten megabytes.
    """

    __slots__ = (
        "_getter",
        "_items",
        "_overflow",
        "label",
        "mailbox",
        "overflowed",
        "pings",
        "queue_size",
        "sent",
        "skipped",
        "stats",
        "user_id",
    )

    def __init__(
        self,
        user_id: str,
        label: str,
        queue_size: int,
        stats: HubStats | None = None,
        mailbox: str | None = None,
    ) -> None:
        self.user_id = user_id
        # The mailbox this socket reads: its user's own unless it reads a shared one.
        self.mailbox = mailbox or user_id
        self.label = label
        self.stats = stats or HubStats()
        self.queue_size = queue_size
        self.overflowed = False
        # The highest seq this socket has handed to its client: an ack can prove no more.
        self.sent = 0
        # The seq the welcome's resync told the client to carry on from: this socket sent it
        # nothing up to there (the client reloads its state instead), so its acks prove
        # nothing of those. (A resync during a replay skips only messages the retention purge
        # removed: nothing is left of them to prove, and what was sent before it still is.)
        self.skipped = 0
        # The client's pings not answered yet: its sender answers them with pongs as soon as
        # the frame it is writing is out, ahead of the messages waiting, so that each pong
        # carries the seq of the message just before it in the stream.
        self.pings = 0
        self._items: deque[Item] | None = None
        self._getter: asyncio.Future[None] | None = None
        self._overflow: asyncio.Future[None] | None = None

    def offer(self, envelope: Item) -> None:
        if self.overflowed:
            return
        if self._items is None:
            self._items = deque()
        if len(self._items) >= self.queue_size:
            self.overflowed = True
            if self._overflow is not None and not self._overflow.done():
                self._overflow.set_result(None)
            return
        self._items.append(envelope)
        if self._getter is not None and not self._getter.done():
            self._getter.set_result(None)

    def ping(self) -> None:
        """The client pinged: have the sender answer (Signal.PONG), ahead of what is queued.
        Counted rather than queued: a pong is no message, and takes no place in the queue."""
        self.pings += 1
        if self._getter is not None and not self._getter.done():
            self._getter.set_result(None)

    async def get(self) -> Item:
        """The next envelope (or nudge, or signal), waiting for one if there is none; a ping
        not answered yet comes first."""
        while not self._items and not self.pings:
            self._getter = asyncio.get_running_loop().create_future()
            try:
                await self._getter
            finally:
                self._getter = None
        if self.pings:
            return Signal.PONG
        assert self._items is not None
        envelope = self._items.popleft()
        if not self._items:
            # An idle socket keeps no empty deque around.
            self._items = None
        return envelope

    def overflow_signal(self) -> asyncio.Future[None]:
        """A future done once this subscription overflowed: await it beside the socket's tasks."""
        if self._overflow is None:
            self._overflow = asyncio.get_running_loop().create_future()
            if self.overflowed:
                self._overflow.set_result(None)
        return self._overflow


class Hub:
    def __init__(self, queue_size: int = 1000, clock: Callable[[], datetime] | None = None) -> None:
        self.queue_size = queue_size
        self._by_mailbox: dict[str, set[Subscription]] = {}
        self._sockets_of: Counter[str] = Counter()
        self.stats = HubStats()
        self._clock = clock
        # When each user last opened or closed a socket here (given a clock), until whoever
        # watches presence has recorded it (``forget_seen``).
        self.last_seen: dict[str, datetime] = {}
        # Users who opened or closed a socket since the last take_changed().
        self._changed: set[str] = set()
        # Users whose last socket here the server closed as it stopped (1012), none since.
        self.closed_for_restart: set[str] = set()

    def subscribe(self, user_id: str, label: str = "", mailbox: str | None = None) -> Subscription:
        subscription = Subscription(user_id, label, self.queue_size, self.stats, mailbox)
        self._by_mailbox.setdefault(subscription.mailbox, set()).add(subscription)
        self._sockets_of[user_id] += 1
        self.closed_for_restart.discard(user_id)
        self._seen(user_id)
        return subscription

    def unsubscribe(self, subscription: Subscription, *, for_restart: bool = False) -> None:
        """``for_restart``: the server closed the socket as it stops (its client reconnects
        to the server that comes back, or to another process)."""
        self._seen(subscription.user_id)
        readers = self._by_mailbox.get(subscription.mailbox)
        if readers is None or subscription not in readers:
            return
        readers.discard(subscription)
        if not readers:
            del self._by_mailbox[subscription.mailbox]
        self._sockets_of[subscription.user_id] -= 1
        if self._sockets_of[subscription.user_id] <= 0:
            del self._sockets_of[subscription.user_id]
            if for_restart:
                self.closed_for_restart.add(subscription.user_id)

    def publish(self, envelopes: Iterable[Envelope]) -> None:
        # Envelope.user_id is the mailbox the message was stored in.
        overflowed: list[Subscription] = []
        for envelope in envelopes:
            for subscription in self._by_mailbox.get(envelope.user_id, ()):
                subscription.offer(envelope)
                if subscription.overflowed:
                    overflowed.append(subscription)
        self._drop(overflowed)

    def nudge_all(self) -> None:
        """Make every socket catch up from the store (after fan-out was interrupted)."""
        self._offer_all(None, lambda _: True)

    def nudge(self, mailboxes: Iterable[str]) -> None:
        """Make the sockets reading these mailboxes catch up from the store: messages to them
        may have been stored without being published here (a commit whose outcome is
        unknown). A socket with nothing new to read sends nothing."""
        by_mailbox = self._by_mailbox
        chosen = [s for mailbox in set(mailboxes) for s in by_mailbox.get(mailbox, ())]
        self._offer(None, chosen)

    def recheck(self, user_id: str) -> None:
        """Have every socket of ``user_id`` ask the server whether its access still holds
        (the user's access changed); one whose access ended is closed."""
        self._offer_all(Signal.RECHECK, lambda s: s.user_id == user_id)

    def recheck_all(self) -> None:
        """Have every socket ask the server whether its access still holds (changes of access
        may have been missed: fan-out was interrupted)."""
        self._offer_all(Signal.RECHECK, lambda _: True)

    def _offer_all(self, item: Item, which: Callable[[Subscription], bool]) -> None:
        self._offer(item, [s for subs in self._by_mailbox.values() for s in subs if which(s)])

    def _offer(self, item: Item, chosen: list[Subscription]) -> None:
        for subscription in chosen:
            subscription.offer(item)
        self._drop([s for s in chosen if s.overflowed])

    def _drop(self, overflowed: list[Subscription]) -> None:
        # An overflowed socket is gone for the hub at once: it is sent nothing more and no
        # longer counts as connected, even while closing it waits on a client that stopped
        # reading (its socket unsubscribes again when it ends, which changes nothing).
        for subscription in overflowed:
            self.unsubscribe(subscription)

    def _seen(self, user_id: str) -> None:
        self._changed.add(user_id)
        if self._clock is not None:
            self.last_seen[user_id] = self._clock()

    def forget_seen(self, user_id: str, at: datetime) -> None:
        """Forget when ``user_id`` was last seen, recorded elsewhere as ``at``, unless he has
        a socket here or opened or closed one since. Kept, every user who ever connected would
        stay in memory for the life of the process."""
        if user_id not in self._sockets_of and self.last_seen.get(user_id) == at:
            del self.last_seen[user_id]

    def take_changed(self) -> set[str]:
        """Who opened or closed a socket since the last call: whoever watches presence looks
        at those instead of every connected user (thousands, twice a second)."""
        changed, self._changed = self._changed, set()
        return changed

    def mark_changed(self, user_ids: Iterable[str]) -> None:
        """Hand users back to the next ``take_changed`` (their change could not be recorded)."""
        self._changed.update(user_ids)

    def connected_users(self) -> set[str]:
        return set(self._sockets_of)

    def is_connected(self, user_id: str) -> bool:
        return user_id in self._sockets_of

    def count_by_label(self) -> Counter[str]:
        return Counter(s.label for subs in self._by_mailbox.values() for s in subs)
