"""Waiting between retries: exponential backoff that a stop request interrupts."""

from __future__ import annotations

import threading

MAX_BACKOFF_S = 30.0


class Backoff:
    """Exponential backoff that a stop request interrupts."""

    def __init__(self, stop: threading.Event, first_s: float = 0.5, max_s: float = MAX_BACKOFF_S) -> None:
        self.stop = stop
        self.first_s = first_s
        self.max_s = max_s
        self.current_s = first_s

    def wait(self) -> None:
        """Sleep the current delay (or until stopped) and double it."""
        self.stop.wait(self.next_delay())

    def next_delay(self) -> float:
        """Return the delay to wait now, and double the next one."""
        delay = self.current_s
        self.current_s = min(self.current_s * 2, self.max_s)
        return delay

    def reset(self) -> None:
        """Start again from the first delay."""
        self.current_s = self.first_s
