"""Consumption curves for forecast-vs-real: a deterministic mock curve and forecast fetching."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from statistics_manager_service.aggregation.localtime import local_day_bounds

logger = logging.getLogger(__name__)

# A typical household's share of daily consumption per hour (sums to 1): night low, morning and
# evening peaks. Used only for the mock curve that demos and integration tests ask for.
_HOURLY_SHARE = np.array(
    [
        2.6,
        2.2,
        2.0,
        1.9,
        1.9,
        2.2,
        3.2,
        4.8,
        5.0,
        4.2,
        3.9,
        4.0,
        4.4,
        4.3,
        3.9,
        3.7,
        4.0,
        5.0,
        6.6,
        7.6,
        7.4,
        6.3,
        5.0,
        3.7,
    ]
)
_HOURLY_SHARE = _HOURLY_SHARE / _HOURLY_SHARE.sum()
MOCK_DAILY_KWH = 9.5


class ForecastUnavailable(Exception):
    """The forecast API cannot answer now (no connection, a timeout, 429 or 5xx): try again later."""


class ForecastRejected(Exception):
    """The forecast API refused the request or answered something unusable: asking again will not help."""


@dataclasses.dataclass(frozen=True)
class FetchedForecast:
    """What the forecast API answered for an event: its values, or why they cannot be used."""

    values: tuple[tuple[dt.datetime, float], ...] = ()
    rejected: str | None = None


def local_day_holding(instant: dt.datetime, tz: str) -> tuple[int, int, dt.date]:
    """Return the epoch bounds of the local day containing `instant`, and that day."""
    day = instant.astimezone(ZoneInfo(tz)).date()
    return (*local_day_bounds(day, tz), day)


def mock_curves(
    user_id: str, day_start_s: int, day_end_s: int, interval_s: int, tz: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (starts, forecast kWh, real kWh) for one local day; the same inputs give the same curve."""
    starts = np.arange(day_start_s, day_end_s, interval_s, dtype=np.int64)
    seed = int.from_bytes(hashlib.sha256(f"{user_id}:{day_start_s}".encode()).digest()[:8], "big")
    rng = np.random.default_rng(seed)
    # Integrate the hourly profile over each interval, in local wall-clock hours.
    local = pd.to_datetime(starts, unit="s", utc=True).tz_convert(tz)
    minutes = np.asarray(local.hour * 60 + local.minute, dtype=np.int64)
    share_per_minute = np.repeat(_HOURLY_SHARE / 60.0, 60)
    cumulative = np.concatenate([[0.0], np.cumsum(share_per_minute)])
    length_min = interval_s // 60
    ends = np.minimum(minutes + length_min, 1440)
    scale = MOCK_DAILY_KWH * (0.85 + 0.3 * rng.random())
    forecast = scale * (cumulative[ends] - cumulative[minutes])
    real = np.clip(forecast * (1 + rng.normal(0.0, 0.12, size=forecast.size)), 0.0, None)
    return starts, np.round(forecast, 6), np.round(real, 6)


def fetch_forecast(
    url: str, user_id: str, day: dt.date, timeout_s: float, max_body_bytes: int, attempts: int = 3
) -> list[tuple[dt.datetime, float]]:
    """GET the forecast of a household's day from the forecast API, with timeout and retries.

    Raise ForecastUnavailable when the API stays unreachable, ForecastRejected when its answer is
    a client error, larger than `max_body_bytes` or not a forecast.
    """
    query = urllib.parse.urlencode({"user_id": user_id, "forecast_day": day.isoformat()})
    target = f"{url}{'&' if '?' in url else '?'}{query}"
    last_error = "no attempt made"
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(target, timeout=timeout_s) as response:
                body = _bounded_body(response, max_body_bytes)
        except urllib.error.HTTPError as error:
            if 400 <= error.code < 500 and error.code != 429:
                raise ForecastRejected(
                    f"forecast API answered HTTP {error.code} for {user_id} on {day}"
                ) from None
            last_error = f"HTTP {error.code}"
        except (urllib.error.URLError, TimeoutError, OSError) as error:
            last_error = str(getattr(error, "reason", error))
        else:
            return _parsed_forecast(body, user_id, day)
        time.sleep(min(0.2 * 2**attempt, 2.0))
    raise ForecastUnavailable(f"forecast API unavailable for {user_id} on {day}: {last_error}")


def _bounded_body(response: Any, max_body_bytes: int) -> bytes:
    """Read at most `max_body_bytes` of a response; refuse a larger one."""
    too_large = ForecastRejected(
        f"forecast body is larger than FORECAST_API_MAX_BODY_BYTES ({max_body_bytes} bytes)"
    )
    declared = response.headers.get("Content-Length")
    if declared is not None and declared.isdigit() and int(declared) > max_body_bytes:
        raise too_large
    body: bytes = response.read(max_body_bytes + 1)
    if len(body) > max_body_bytes:
        raise too_large
    return body


def _parsed_forecast(body: bytes, user_id: str, day: dt.date) -> list[tuple[dt.datetime, float]]:
    """The (instant, kWh) values of a forecast document; ForecastRejected when it is not one."""
    try:
        document = json.loads(body)
        values = document.get("values", document) if isinstance(document, dict) else document
        parsed = []
        for item in values:
            instant = dt.datetime.fromisoformat(str(item["timestamp"]).replace("Z", "+00:00"))
            if instant.tzinfo is None:
                instant = instant.replace(tzinfo=dt.UTC)
            energy = float(item["energy_kwh"])
            if not np.isfinite(energy) or energy < 0:
                raise ValueError(f"energy_kwh {energy} is not a non-negative number")
            parsed.append((instant, energy))
    except (ValueError, KeyError, TypeError) as error:
        raise ForecastRejected(f"malformed forecast for {user_id} on {day}: {error}") from None
    return parsed
