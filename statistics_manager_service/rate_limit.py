"""A token bucket per caller, held by one server process: bursts pass, a steady flood waits."""

from __future__ import annotations

import collections
import math
import threading
import time
from collections.abc import Callable

# Callers remembered at most; the longest idle is forgotten first (its bucket was full anyway
# unless it called within the last few minutes).
MAX_TRACKED_CALLERS = 10_000


class TokenBuckets:
    """`burst` calls at once per caller, refilled at `per_minute` calls a minute."""

    def __init__(self, per_minute: int, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_second = per_minute / 60.0
        self.burst = float(burst)
        self.clock = clock
        self._buckets: collections.OrderedDict[str, tuple[float, float]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def take(self, caller: str) -> int:
        """Spend one of `caller`'s tokens; return 0 when allowed, else the seconds until one is due."""
        now = self.clock()
        with self._lock:
            tokens, last = self._buckets.pop(caller, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.per_second)
            if tokens >= 1.0:
                self._remember(caller, tokens - 1.0, now)
                return 0
            self._remember(caller, tokens, now)
            return max(1, math.ceil((1.0 - tokens) / self.per_second))

    def _remember(self, caller: str, tokens: float, now: float) -> None:
        self._buckets[caller] = (tokens, now)
        while len(self._buckets) > MAX_TRACKED_CALLERS:
            self._buckets.popitem(last=False)
