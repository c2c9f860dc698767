"""Hourly grid signals of the Portuguese zone: carbon intensity and day-ahead energy prices.

Both follow the same weather as the PV systems: the sun pushes gas off the midday grid (lower
intensity, lower prices), the evening peak brings it back, and windy or wet days (one shared
"renewables" draw per day) are cleaner and cheaper across the board.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from statistics_manager_service.demo import noise
from statistics_manager_service.demo.solar import Weather

# Per month: typical intensity of the Portuguese mix (gCO2eq/kWh) and day-ahead price (EUR/MWh).
MONTHLY_INTENSITY = (165.0, 150.0, 115.0, 95.0, 90.0, 105.0, 125.0, 130.0, 125.0, 135.0, 145.0, 160.0)
MONTHLY_WHOLESALE = (95.0, 70.0, 40.0, 30.0, 35.0, 60.0, 75.0, 80.0, 80.0, 85.0, 95.0, 110.0)
RETAIL_ADDER_EUR_KWH = 0.068  # network access tariffs and the supplier's margin
EXPORT_FEE_EUR_KWH = 0.004
RENEWABLES_STREAM = "pt-renewables"


@dataclasses.dataclass(frozen=True)
class GridSignals:
    """Hourly series, one value per UTC hour starting at `hour_starts_s`."""

    hour_starts_s: np.ndarray
    intensity_g_kwh: np.ndarray
    import_eur_kwh: np.ndarray
    export_eur_kwh: np.ndarray


def grid_signals(sky: Weather, timezone: str) -> GridSignals:
    """Derive the zone's hourly intensity and prices from the quarter-hourly weather of whole hours."""
    hours = len(sky.times) // 4
    solar_share = sky.ghi[: hours * 4].reshape(hours, 4).mean(axis=1) / 1000.0
    starts_s = sky.starts_s[: hours * 4 : 4]
    local = pd.DatetimeIndex(pd.to_datetime(starts_s, unit="s", utc=True)).tz_convert(timezone)
    hour = np.asarray(local.hour, dtype=np.float64) + 0.5
    month = np.asarray(local.month) - 1
    local_days = np.asarray((local.normalize().tz_localize(None) - pd.Timestamp(0)).days)
    renewables = noise.lognormal_factor(RENEWABLES_STREAM, local_days, 0.3)
    evening = np.exp(-(((hour - 20.5) / 2.0) ** 2))
    morning = np.exp(-(((hour - 8.5) / 1.5) ** 2))
    intensity = (
        np.asarray(MONTHLY_INTENSITY)[month]
        / renewables
        * (1.08 - 0.5 * solar_share + 0.15 * evening)
        * noise.lognormal_factor("pt-intensity", local_days * 24 + hour.astype(np.int64), 0.05)
    )
    wholesale = np.clip(
        np.asarray(MONTHLY_WHOLESALE)[month]
        / renewables**1.5
        * (0.9 + 0.4 * evening + 0.15 * morning - 0.9 * solar_share),
        0.0,
        400.0,
    )
    return GridSignals(
        hour_starts_s=starts_s,
        intensity_g_kwh=np.round(np.clip(intensity, 20.0, 450.0), 1),
        import_eur_kwh=np.round(RETAIL_ADDER_EUR_KWH + 1.15 * wholesale / 1000.0, 4),
        export_eur_kwh=np.round(np.maximum(0.9 * wholesale / 1000.0 - EXPORT_FEE_EUR_KWH, 0.0), 4),
    )
