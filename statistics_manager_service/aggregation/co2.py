"""Carbon intensity per bucket (actual, else forecast, else the zone default) and CO2 footprint."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from statistics_manager_service.aggregation.arrays import FloatArray, IntArray, ObjectArray
from statistics_manager_service.aggregation.steps import step_values

DEFAULT_ZONE_KEY = "default"


def carbon_intensity_g_per_kwh(
    zones: ObjectArray,
    instants_s: IntArray,
    carbon_intensity: pd.DataFrame,
    defaults_g_per_kwh: Mapping[str, float],
) -> FloatArray:
    """Return the grid's gCO2eq/kWh for each zone and instant.

    `carbon_intensity` has columns zone, kind ('actual' | 'forecast'), ts, resolution_s, value.
    A measured value beats a forecast of the same interval; with neither, the zone default applies.
    """
    default = defaults_g_per_kwh.get(DEFAULT_ZONE_KEY, np.nan)
    zone_defaults = pd.Series(zones, dtype=object).map(dict(defaults_g_per_kwh))
    intensity = np.array(zone_defaults.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)
    intensity[np.isnan(intensity)] = default
    if carbon_intensity.empty:
        return intensity
    kinds = carbon_intensity["kind"].to_numpy(dtype=object)
    for kind in ("forecast", "actual"):  # actual last, so it overrides the forecast
        rows = carbon_intensity[kinds == kind]
        found = step_values(rows["zone"].to_numpy(dtype=object), rows, zones, instants_s)
        intensity[~np.isnan(found)] = found[~np.isnan(found)]
    return intensity


def co2_columns(
    imported_kwh: FloatArray, self_consumed_kwh: FloatArray, intensity_g_per_kwh: FloatArray
) -> dict[str, FloatArray]:
    """Return the footprint of grid imports and the emissions avoided by self-consumption (kg)."""
    return {
        "co2_kg": imported_kwh * intensity_g_per_kwh / 1000.0,
        "co2_avoided_kg": self_consumed_kwh * intensity_g_per_kwh / 1000.0,
    }
