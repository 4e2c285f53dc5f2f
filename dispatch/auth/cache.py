"""Who a bearer token speaks for, remembered in this process: a repeated token costs no query.

An entry is dropped when its user's access changes: in the process that made the change once it
commits, and in the other processes when the announcement on ``USERS_CHANNEL`` arrives
(``dispatch/fanout.py``). Each entry also lives at most ``ttl_s`` seconds, a backstop for changes
made past the API (directly in the database). The token's own expiry is not judged here: the
caller judges it on every use, by the server clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from dispatch.auth.service import Principal

MAX_ENTRIES = 10_000


@dataclass(frozen=True, slots=True)
class _Entry:
    principal: Principal
    # The token's "exp" claim, in seconds since the epoch.
    expires: float
    # When the entry was stored, on ``timer``.
    cached_at: float


class Principals:
    """token -> Principal, bounded in size and age. ``ttl_s`` 0 keeps nothing."""

    def __init__(
        self,
        ttl_s: float,
        max_entries: int = MAX_ENTRIES,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        # Monotonic: a wall clock stepped back must not keep an entry alive longer.
        self._timer = timer
        # Insertion order is age order: the first entry is the oldest.
        self._entries: dict[str, _Entry] = {}
        self._generation = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def generation(self) -> int:
        """Changes with every drop. Read it before a lookup and hand it to ``put``: a lookup
        that a change overtook may have read the old rows, and its answer is not kept."""
        return self._generation

    def get(self, token: str) -> tuple[Principal, float] | None:
        """The principal and the token's expiry (epoch seconds), if known and young enough."""
        entry = self._entries.get(token)
        if entry is not None and self._timer() - entry.cached_at >= self.ttl_s:
            del self._entries[token]
            entry = None
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        return entry.principal, entry.expires

    def age(self, token: str) -> float | None:
        """How long ago the rows behind ``token``'s entry were read, if it has one."""
        entry = self._entries.get(token)
        return None if entry is None else self._timer() - entry.cached_at

    def put(self, token: str, principal: Principal, expires: float, generation: int) -> None:
        if self.ttl_s <= 0 or generation != self._generation:
            return
        self._entries.pop(token, None)
        self._entries[token] = _Entry(principal, expires, self._timer())
        if len(self._entries) > self.max_entries:
            del self._entries[next(iter(self._entries))]

    def drop_user(self, user_id: str) -> None:
        """Forget every token of ``user_id``: its access changed."""
        self._generation += 1
        # A scan: changes are rare (logout, an admin's edit), lookups are not.
        stale = [t for t, e in self._entries.items() if e.principal.user_id == user_id]
        for token in stale:
            del self._entries[token]

    def clear(self) -> None:
        """Forget everything: changes may have been missed."""
        self._generation += 1
        self._entries.clear()
