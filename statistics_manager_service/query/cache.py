"""Response bodies kept until their households' data change.

The database announces every change of a household's statistics (see `query/notifications.py`);
the listener calls `invalidate` with the household ids. A body is stored only when no change of
its households was announced while it was computed (the `token` taken before the read still
matches), so a body read before a change can never outlive that change's announcement. While the
listener is not connected the cache is not `live`: it neither answers nor stores.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Hashable, Iterable, Sequence

from statistics_manager_service import metrics

# Counters of announced changes: households share a slot by hash, so a collision only makes a
# body be recomputed; memory stays fixed however many households exist.
_SLOTS = 1 << 16
# Bookkeeping per stored body beyond its bytes (key, index entries), for the size bound.
_ENTRY_OVERHEAD = 256
_OVERHEAD_PER_USER = 64
# While the listener proves after a quiet spell that announcements still arrive (a round trip of
# milliseconds when they do), the cache keeps answering for this long, and stores nothing.
SUSPENDED_ANSWERS_S = 1.0


class ResponseCache:
    """A thread-safe LRU of response bodies bounded by their total size, invalidated per household."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._entries: collections.OrderedDict[Hashable, tuple[bytes, tuple[str, ...]]] = (
            collections.OrderedDict()
        )
        self._keys_by_user: dict[str, set[Hashable]] = {}
        self._changes = [0] * _SLOTS
        self._epoch = 0
        self._live = False
        self._suspended = False
        self._suspended_at = 0.0
        self.size_bytes = 0

    @property
    def live(self) -> bool:
        """Whether the cache may answer: changes are known to be arriving, or were until a moment ago."""
        if not self._live:
            return False
        return not self._suspended or time.monotonic() - self._suspended_at < SUSPENDED_ANSWERS_S

    @property
    def storing(self) -> bool:
        """Whether changes are known to be arriving, so that the cache may also store."""
        return self._live and not self._suspended

    def suspend(self, suspended: bool) -> None:
        """Stop storing for a while and answering after SUSPENDED_ANSWERS_S (kept entries stay), or resume."""
        with self._lock:
            self._suspended = suspended
            self._suspended_at = time.monotonic()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> bytes | None:
        """Return the stored body of `key`, if any and the cache is live."""
        with self._lock:
            if not self.live:
                return None
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def token(self, user_ids: Sequence[str]) -> tuple[int, ...] | None:
        """Take before reading: what `put` checks to know nothing changed meanwhile (None: do not store)."""
        with self._lock:
            return self._current(user_ids) if self.storing else None

    def put(self, key: Hashable, user_ids: Sequence[str], token: tuple[int, ...] | None, body: bytes) -> bool:
        """Store `body` unless a change of `user_ids` was announced since `token` was taken."""
        users = tuple(dict.fromkeys(user_ids))
        cost = _cost(body, users)
        if token is None or cost > self.max_bytes:
            return False
        with self._lock:
            if not self.storing or self._current(user_ids) != token:
                return False
            if key in self._entries:
                self._drop(key)
            self._entries[key] = (body, users)
            for user_id in users:
                self._keys_by_user.setdefault(user_id, set()).add(key)
            self.size_bytes += cost
            while self.size_bytes > self.max_bytes:
                self._drop(next(iter(self._entries)))
            metrics.RESPONSE_CACHE_BYTES.set(self.size_bytes)
            return True

    def _current(self, user_ids: Sequence[str]) -> tuple[int, ...]:
        return (self._epoch, *(self._changes[hash(user_id) % _SLOTS] for user_id in user_ids))

    def invalidate(self, user_ids: Iterable[str]) -> None:
        """Forget every body of these households; bodies being computed for them will not be stored."""
        with self._lock:
            for user_id in user_ids:
                self._changes[hash(user_id) % _SLOTS] += 1
                for key in self._keys_by_user.pop(user_id, ()):
                    if key in self._entries:
                        self._drop(key)
            metrics.RESPONSE_CACHE_BYTES.set(self.size_bytes)

    def reset(self, *, live: bool) -> None:
        """Forget everything (announcements may have been missed) and start or stop answering."""
        with self._lock:
            self._clear()
            self._live = live
            self._suspended = False

    def clear(self) -> None:
        """Forget everything: every household changed."""
        with self._lock:
            self._clear()

    def _clear(self) -> None:
        self._entries.clear()
        self._keys_by_user.clear()
        self.size_bytes = 0
        self._epoch += 1
        metrics.RESPONSE_CACHE_BYTES.set(0)

    def _drop(self, key: Hashable) -> None:
        body, users = self._entries.pop(key)
        self.size_bytes -= _cost(body, users)
        for user_id in users:
            keys = self._keys_by_user.get(user_id)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._keys_by_user[user_id]


def _cost(body: bytes, user_ids: Sequence[str]) -> int:
    """What an entry counts against the size bound: its body, key and index entries."""
    return len(body) + _ENTRY_OVERHEAD + _OVERHEAD_PER_USER * len(user_ids)
