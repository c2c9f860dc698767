"""Start and stop the background workers a role runs: the event consumer and the outbox relay."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from statistics_manager_service.app import ServiceContext

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


def start_background(context: ServiceContext, role: str) -> Background:
    """Start what `role` runs in the background (nothing for `api`)."""
    background = Background()
    if role == "api":
        return background
    from statistics_manager_service.event_consumer.runner import start_workers

    start_workers(context, background)
    return background
