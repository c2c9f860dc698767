"""The always-on power of a household (baseload), estimated from its night-time quarter hours."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from statistics_manager_service.aggregation.arrays import FloatArray, IntArray
from statistics_manager_service.aggregation.granularity import (
    BUCKET_SECONDS,
    SECONDS_PER_DAY,
    WATT_SECONDS_PER_KWH,
)
from statistics_manager_service.aggregation.localtime import wall_seconds

# The quiet hours whose lowest quarter hour shows what never switches off: local 00:00 to 05:00.
NIGHT_END_S = 5 * 3600
BASELOAD_METHOD = (
    "median, over the nights of the range, of each night's lowest 15-minute mean consumption power"
    " between 00:00 and 05:00 local time (only quarter hours wholly backed by readings)"
)


@dataclasses.dataclass(frozen=True)
class BaseloadEstimate:
    """The baseload of a range, how many nights it rests on, and its share of the consumption."""

    baseload_w: float | None
    nights: int
    consumption_kwh: float | None  # over the range's quarter hours with statistics
    baseload_kwh: float | None  # the baseload held over those same quarter hours
    share: float | None


def estimate_baseload(
    bucket_start_s: IntArray, consumption_kwh: FloatArray, covered_s: FloatArray, zone: str
) -> BaseloadEstimate:
    """Estimate the baseload from 15-minute buckets of one household in time zone `zone`."""
    starts = np.asarray(bucket_start_s, dtype=np.int64)
    energy = np.asarray(consumption_kwh, dtype=np.float64)
    measured = ~np.isnan(energy)
    wall = wall_seconds(starts, zone)
    quiet = (
        measured
        & (np.asarray(covered_s, dtype=np.float64) >= BUCKET_SECONDS)
        & (wall % SECONDS_PER_DAY < NIGHT_END_S)
    )
    mean_w = energy[quiet] * WATT_SECONDS_PER_KWH / BUCKET_SECONDS
    nightly_minimum_w = pd.Series(mean_w).groupby(wall[quiet] // SECONDS_PER_DAY).min()
    total_kwh = float(energy[measured].sum()) if measured.any() else None
    if nightly_minimum_w.empty:
        return BaseloadEstimate(None, 0, total_kwh, None, None)
    baseload_w = float(nightly_minimum_w.median())
    baseload_kwh = baseload_w * int(measured.sum()) * BUCKET_SECONDS / WATT_SECONDS_PER_KWH
    share = baseload_kwh / total_kwh if total_kwh else None
    return BaseloadEstimate(baseload_w, int(nightly_minimum_w.size), total_kwh, baseload_kwh, share)


def constant_load_buckets(user_id: str, start_s: int, end_s: int, power_w: float) -> pd.DataFrame:
    """15-minute buckets of a constant grid import of `power_w` over [start_s, end_s), ready to price."""
    starts = np.arange(start_s, end_s, BUCKET_SECONDS, dtype=np.int64)
    energy_kwh = power_w * BUCKET_SECONDS / WATT_SECONDS_PER_KWH
    return pd.DataFrame(
        {
            "user_id": np.full(starts.size, user_id, dtype=object),
            "bucket_start": starts,
            "energy_imported_kwh": np.full(starts.size, energy_kwh),
            "energy_exported_kwh": np.zeros(starts.size),
            "self_consumed_kwh": np.zeros(starts.size),
        }
    )
