"""The background worker threads of a process (the event consumer, the outbox relay) and their stop."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)


class Background:
    """The running worker threads of this process and the event that stops them."""

    def __init__(self) -> None:
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []

    def spawn(self, name: str, target: Callable[[threading.Event], None]) -> None:
        """Run `target(stop_event)` in a daemon thread."""
        thread = threading.Thread(target=target, args=(self.stop_event,), name=name, daemon=True)
        thread.start()
        self.threads.append(thread)

    def stop(self, timeout_s: float = 15.0) -> None:
        """Ask every worker to stop and wait for it."""
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout_s)
            if thread.is_alive():
                logger.warning("background worker %s did not stop in %.0f s", thread.name, timeout_s)
