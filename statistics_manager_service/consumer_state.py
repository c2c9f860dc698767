"""The event consumer's state, published where every process of the pod can read it.

With several server processes, `/ready` is answered by a process that does not run the
consumer (the supervising process does). The consumer therefore publishes its state to a small
file in a directory the supervising process shares with its server processes; `/ready` in any of
them reads it. Without a directory (one process, tests) the state is kept in memory.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import time
from pathlib import Path

logger = logging.getLogger(__name__)

STATE_FILE_NAME = "consumer-state.json"
# Set by the supervising process for its server processes: the pod's role and the state directory.
ROLE_ENV = "STATISTICS_MANAGER_ROLE"
STATE_DIR_ENV = "STATISTICS_MANAGER_STATE_DIR"
# How often an idle consumer refreshes its heartbeat at most.
HEARTBEAT_INTERVAL_S = 1.0


@dataclasses.dataclass(frozen=True)
class ConsumerState:
    """What the consumer last reported: `running`, `paused` or `restarting`, and why."""

    state: str
    # What paused it (`broker`, `database`) or restarted it (an error class): words, never hosts.
    cause: str | None
    # Wall-clock seconds: the last sign of life, and the last time it was caught up or committed a batch.
    heartbeat_s: float
    progress_s: float
    lag: int = 0


class ConsumerStateBoard:
    """Where the consumer writes its state and `/ready` reads it."""

    def __init__(self, directory: Path | None = None) -> None:
        self.path = None if directory is None else directory / STATE_FILE_NAME
        self._latest: ConsumerState | None = None
        self._lock = threading.Lock()

    def publish(self, state: ConsumerState) -> None:
        """Record the consumer's state (atomically: a reader never sees half a file)."""
        with self._lock:
            self._latest = state
            if self.path is None:
                return
            temporary = self.path.with_suffix(f".{os.getpid()}.tmp")
            try:
                temporary.write_text(json.dumps(dataclasses.asdict(state)), encoding="utf-8")
                os.replace(temporary, self.path)
            except OSError as error:
                logger.warning("cannot write the consumer state to %s: %s", self.path, error)

    def read(self) -> ConsumerState | None:
        """The consumer's last reported state; None before it has reported."""
        if self.path is None:
            return self._latest
        try:
            return ConsumerState(**json.loads(self.path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as error:
            logger.warning("cannot read the consumer state from %s: %s", self.path, error)
            return None


def now_s() -> float:
    """Wall-clock seconds, comparable between processes."""
    return time.time()
