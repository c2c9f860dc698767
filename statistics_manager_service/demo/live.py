"""Keep the demo alive: feed the households' readings as wall time passes, through the same loader.

Every `DEMO_LIVE_INTERVAL_S` (a quarter hour by default, on the quarter hours) the loader runs
again with the current time: today's readings event now reaches the quarter hour that has just
started, so it is new, and its readings merge into the stored day by instant. Grid signals,
tomorrow's baseline forecast and the days of a new date follow the same way.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from statistics_manager_service.demo.loader import load_demo_data

if TYPE_CHECKING:
    from statistics_manager_service.context import ServiceContext

logger = logging.getLogger(__name__)


def seconds_to_next_tick(interval_s: float, now_s: float) -> float:
    """Return how long to wait for the next multiple of `interval_s` of wall time."""
    return interval_s - now_s % interval_s


def feed_live(context: ServiceContext, stop: threading.Event) -> None:
    """Load the demo's new readings every interval until `stop` is set (a zero interval: never)."""
    interval_s = context.settings.demo_live_interval_s
    if interval_s <= 0:
        return
    logger.info("demo: new readings every %.0f s of wall time", interval_s)
    while not stop.wait(seconds_to_next_tick(interval_s, time.time())):
        try:
            load = load_demo_data(context, stop=stop, peer_groups=False)
        except Exception:  # a failed tick is logged; the next one catches up
            logger.exception("demo: loading the newest readings failed; the next tick retries")
            continue
        if load.events_sent:
            logger.info(
                "demo: %d new events up to %s (%d refused) in %.1f s",
                load.events_sent,
                time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(load.span.end_s)),
                load.dead_letters,
                load.seconds,
            )
