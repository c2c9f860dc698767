"""Demo data: a year of realistic households loaded through the consumer's own handlers.

`python -m statistics_manager_service --demo` calls `load_demo` before serving, then `live.feed_live`
keeps adding the newest readings while it serves. Fifteen Lisbon homes
(with and without PV, every tariff type, a meter replacement, a dongle that goes offline) report a
reading every quarter hour, next to the zone's hourly carbon intensity and day-ahead prices.
Demand follows the BDEW H0 standard load profile; PV output comes from pvlib when it is installed
(`pip install -r demo-requirements.txt`) and from a built-in clear-sky approximation otherwise.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from statistics_manager_service.demo.households import HOUSEHOLDS
from statistics_manager_service.demo.loader import DEFAULT_DAYS, TIMEZONE, DemoLoad, load_demo_data
from statistics_manager_service.demo.solar import BUILT_IN, available_model, describe
from statistics_manager_service.tokens import issue_token

if TYPE_CHECKING:
    from statistics_manager_service.config import Settings
    from statistics_manager_service.context import ServiceContext

__all__ = ["load_demo", "load_demo_data"]

logger = logging.getLogger(__name__)

TOKEN_VALID_S = 7 * 86400
TOKEN_IN_LOGS = "<printed on standard output, not logged>"


def load_demo(context: ServiceContext, *, days: int = DEFAULT_DAYS, now: dt.datetime | None = None) -> None:
    """Load the demo households (skipping what is already loaded), then print how to try them."""
    if available_model() == BUILT_IN:
        logger.info(
            "demo: pvlib is not installed; PV output uses the built-in clear-sky approximation "
            "(pip install -r demo-requirements.txt for pvlib)"
        )
    logger.info(
        "demo: loading up to %d days of %d households through the event handlers", days, len(HOUSEHOLDS)
    )
    load = load_demo_data(context, days=days, now=now)
    if load.stale:
        logger.warning(
            "demo: this database's demo was generated with %s, which is not installed; serving it "
            "without extending it to today (delete the database to generate it afresh)",
            load.model,
        )
    elif load.events_sent:
        logger.info(
            "demo: %d of %d events processed in %.1f s (%d refused); PV model: %s",
            load.events_sent,
            load.events_planned,
            load.seconds,
            load.dead_letters,
            describe(load.model),
        )
    else:
        logger.info(
            "demo: all %d events were already loaded (checked in %.2f s)", load.events_planned, load.seconds
        )
    token = issue_token(context.settings, service=True, valid_for_s=TOKEN_VALID_S)
    # The token goes to the terminal only: log lines end up in shared log stores.
    logger.info("%s", introduction(context.settings, load, TOKEN_IN_LOGS))
    print(introduction(context.settings, load, token), flush=True)


def _live_line(settings: Settings) -> str:
    if settings.demo_live_interval_s <= 0:
        return "Live readings are off (DEMO_LIVE_INTERVAL_S=0): the demo stays as loaded"
    return (
        f"Live: new readings every {settings.demo_live_interval_s:g} s of wall time "
        "(DEMO_LIVE_INTERVAL_S), and each household's baseline forecast of tomorrow"
    )


def introduction(settings: Settings, load: DemoLoad, token: str) -> str:
    """Return what a newcomer needs: who the demo users are, the token, and calls to try."""
    zone = ZoneInfo(TIMEZONE)
    first = dt.datetime.fromtimestamp(load.span.start_s, zone).date()
    last = dt.datetime.fromtimestamp(load.span.end_s, zone)
    host = "localhost" if settings.host in ("0.0.0.0", "::", "") else settings.host
    base = f"http://{host}:{settings.port}/api/statistics"
    week_ago = (last.date() - dt.timedelta(days=7)).isoformat() + "T00:00:00Z"
    consumption = f"{base}/energy-consumption?" + urlencode(
        {"user_ids": "demohome02,demohome04", "group_by": "daily", "start_date": week_ago}, safe=",:"
    )
    summary = f"{base}/statistics-summary?" + urlencode({"user_id": "demohome04"})
    peers = f"{base}/peer-comparison?" + urlencode({"user_id": "demohome01"})
    lines = [
        "",
        f"Demo data: {len(HOUSEHOLDS)} households in {TIMEZONE}, {first} to {last:%Y-%m-%d %H:%M}, "
        f"a reading every 15 minutes; PV by {describe(load.model)}",
        _live_line(settings),
        "  user id     what it is",
    ]
    lines += [
        f"  {h.user_id}  {h.description} ({h.contracted_power}, ~{h.annual_kwh:,.0f} kWh/year)"
        for h in HOUSEHOLDS
    ]
    lines += [
        "",
        f"Service token (may read every household, valid {TOKEN_VALID_S // 86400} days):",
        f"  {token}",
        "",
        f"Swagger UI: {base}/ui/  (Authorize: paste the token; send any X-Correlation-ID)",
        "Try:",
        f"  {consumption}",
        f"  {summary}",
        f"  {peers}",
        f'  curl -H "Authorization: Bearer {token}" -H "X-Correlation-ID: demo-1" "{summary}"',
        "",
    ]
    return "\n".join(lines)
