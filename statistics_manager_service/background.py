"""The background worker threads of a process (the event consumer, the outbox relay) and their stop."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from statistics_manager_service.storage.engine import TRANSIENT_ERRORS

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


def run_every(stop: threading.Event, interval_s: float, what: str, once: Callable[[], object]) -> None:
    """Run `once` now and then every `interval_s` (start to start) until stopped. The database
    being away postpones a round; any other failure is logged, and the next round tries again."""
    while not stop.is_set():
        started = time.monotonic()
        try:
            once()
        except TRANSIENT_ERRORS as error:
            logger.warning("%s postponed: %s", what, str(error).splitlines()[0])
        except Exception:
            logger.exception("%s failed; trying again at the next round", what)
        stop.wait(max(0.0, interval_s - (time.monotonic() - started)))
