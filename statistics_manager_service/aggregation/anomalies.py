"""Alert rules on one completed local day of a household: pure functions of its statistics and samples."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from statistics_manager_service.aggregation.arrays import FloatArray, IntArray
from statistics_manager_service.aggregation.localtime import wall_seconds

# The causes of alerts, by the name the payloads and ALERT_CAUSES use.
ALERT_CAUSES: tuple[str, ...] = ("daily_consumption", "baseload", "voltage", "bill_projection")
# EN 50160: the 10-minute mean of the supply voltage stays within the nominal voltage +/- 10%.
NOMINAL_VOLTAGE_V = 230.0
VOLTAGE_INTERVAL_S = 600
# A day counts (as a baseline day, or as the day observed) when readings back this share of it.
MIN_DAY_COVERAGE = 0.9


@dataclasses.dataclass(frozen=True)
class Excess:
    """An observed value above its baseline by more than the factor allowed."""

    observed: float
    baseline: float
    ratio: float


def excess_over_baseline(observed: float | None, baseline: float | None, factor: float) -> Excess | None:
    """Compare a value with its baseline; an Excess when it is more than `factor` times it.

    No baseline, or a baseline of zero (nothing to be a multiple of), is never an excess.
    """
    if observed is None or baseline is None or math.isnan(observed) or math.isnan(baseline):
        return None
    if baseline <= 0:
        return None
    ratio = observed / baseline
    return Excess(observed, baseline, ratio) if ratio > factor else None


def is_well_covered(value: float | None, coverage: float | None) -> bool:
    """Whether a day's value is there and readings back at least MIN_DAY_COVERAGE of the day."""
    if value is None or coverage is None or math.isnan(value):
        return False
    return coverage >= MIN_DAY_COVERAGE


def baseline_of(
    values: Sequence[float | None], coverages: Sequence[float | None], wanted: int
) -> float | None:
    """The median of the baseline days' values; None unless all `wanted` days are there and each
    is backed by readings over at least MIN_DAY_COVERAGE of its length."""
    if wanted < 1 or len(values) != wanted or len(coverages) != wanted:
        return None
    if not all(is_well_covered(value, coverage) for value, coverage in zip(values, coverages, strict=True)):
        return None
    return float(np.median(np.asarray(values, dtype=np.float64)))


@dataclasses.dataclass(frozen=True)
class VoltageExcursion:
    """The 10-minute voltage means of a day outside the band, and the worst of them."""

    intervals_measured: int
    intervals_below: int
    intervals_above: int
    worst_start_s: int
    worst_mean_v: float

    @property
    def intervals_outside(self) -> int:
        """Count the intervals below or above the band."""
        return self.intervals_below + self.intervals_above


def ten_minute_means(ts_s: IntArray, voltage_v: FloatArray, zone: str) -> tuple[IntArray, FloatArray]:
    """The mean of the voltage samples in each local 10-minute interval holding any (starts, means).

    Intervals start on the local wall clock's multiples of 10 minutes (also in zones whose offset
    is not a multiple of 10 minutes); a sample belongs to [start, start + 10 min).
    """
    ts = np.asarray(ts_s, dtype=np.int64)
    values = np.asarray(voltage_v, dtype=np.float64)
    sampled = ~np.isnan(values)
    ts, values = ts[sampled], values[sampled]
    if ts.size == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
    starts = ts - wall_seconds(ts, zone) % VOLTAGE_INTERVAL_S
    means = pd.Series(values).groupby(starts).mean()
    interval_starts: IntArray = means.index.to_numpy(dtype=np.int64)
    interval_means: FloatArray = np.asarray(means.to_numpy(), dtype=np.float64)
    return interval_starts, interval_means


def voltage_excursion(
    ts_s: IntArray, voltage_v: FloatArray, zone: str, low_v: float, high_v: float
) -> VoltageExcursion | None:
    """The day's 10-minute means outside [low_v, high_v] (the limits themselves are inside);
    None when every mean is inside. The worst is the mean farthest outside, the earliest of equals."""
    starts, means = ten_minute_means(ts_s, voltage_v, zone)
    below, above = means < low_v, means > high_v
    if not (below.any() or above.any()):
        return None
    distance = np.where(below, low_v - means, np.where(above, means - high_v, -np.inf))
    worst = int(np.argmax(distance))
    return VoltageExcursion(
        intervals_measured=int(means.size),
        intervals_below=int(below.sum()),
        intervals_above=int(above.sum()),
        worst_start_s=int(starts[worst]),
        worst_mean_v=float(means[worst]),
    )
