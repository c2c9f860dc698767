"""The alert rules' arithmetic, against hand-computed cases and an independent per-sample oracle."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statistics_manager_service.aggregation.anomalies import (
    MIN_DAY_COVERAGE,
    baseline_of,
    excess_over_baseline,
    ten_minute_means,
    voltage_excursion,
)


def _epoch(zone: str, *fields: int) -> int:
    return int(dt.datetime(*fields, tzinfo=ZoneInfo(zone)).timestamp())  # type: ignore[misc]


def test_an_excess_is_strictly_above_the_factor() -> None:
    excess = excess_over_baseline(16.0, 10.0, 1.5)
    assert excess is not None
    assert (excess.observed, excess.baseline, excess.ratio) == (16.0, 10.0, pytest.approx(1.6))
    assert excess_over_baseline(15.0, 10.0, 1.5) is None  # exactly the factor: not above it
    assert excess_over_baseline(14.0, 10.0, 1.5) is None
    assert excess_over_baseline(5.0, 0.0, 1.5) is None  # nothing to be a multiple of
    assert excess_over_baseline(None, 10.0, 1.5) is None
    assert excess_over_baseline(16.0, None, 1.5) is None


def test_the_baseline_is_the_median_of_complete_well_covered_days() -> None:
    assert baseline_of([10.0, 12.0, 30.0, 11.0], [1.0, 1.0, 0.95, 1.0], 4) == pytest.approx(11.5)
    assert baseline_of([10.0, 12.0, 11.0], [1.0, 1.0, 1.0], 4) is None  # a day missing
    assert baseline_of([10.0, 12.0, None, 11.0], [1.0, 1.0, 1.0, 1.0], 4) is None
    below = MIN_DAY_COVERAGE - 0.01
    assert baseline_of([10.0, 12.0, 13.0, 11.0], [1.0, below, 1.0, 1.0], 4) is None
    assert baseline_of([10.0, 12.0, 13.0, 11.0], [1.0, MIN_DAY_COVERAGE, 1.0, 1.0], 4) == pytest.approx(11.5)


def test_ten_minute_means_follow_the_local_clock() -> None:
    zone = "Europe/Lisbon"
    at = _epoch(zone, 2026, 11, 23, 14, 10)
    ts = np.array([at - 60, at, at + 300, at + 599, at + 600], dtype=np.int64)
    volts = np.array([230.0, 258.0, 262.0, 260.0, np.nan])
    starts, means = ten_minute_means(ts, volts, zone)
    assert starts.tolist() == [at - 600, at]
    assert means.tolist() == [230.0, pytest.approx(260.0)]


def test_ten_minute_intervals_start_on_the_wall_clock_in_a_quarter_hour_offset_zone() -> None:
    zone = "Asia/Kathmandu"  # UTC+05:45: wall-clock 10-minute marks are not UTC ones
    at = _epoch(zone, 2026, 11, 23, 14, 10)
    assert at % 600 != 0
    starts, means = ten_minute_means(np.array([at + 1, at + 599], np.int64), np.array([240.0, 250.0]), zone)
    assert starts.tolist() == [at] and means.tolist() == [245.0]


def test_the_band_limits_themselves_are_inside() -> None:
    zone = "Europe/Lisbon"
    at = _epoch(zone, 2026, 11, 23, 0, 0)
    ts = np.array([at, at + 600, at + 1200], dtype=np.int64)
    assert voltage_excursion(ts, np.array([207.0, 253.0, 230.0]), zone, 207.0, 253.0) is None
    excursion = voltage_excursion(ts, np.array([206.9, 253.0, 260.0]), zone, 207.0, 253.0)
    assert excursion is not None
    assert (excursion.intervals_below, excursion.intervals_above, excursion.intervals_measured) == (1, 1, 3)
    assert (excursion.worst_start_s, excursion.worst_mean_v) == (at + 1200, 260.0)  # 7 V out, not 0.1


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 86_399), st.floats(190.0, 270.0, allow_nan=False)), min_size=1, max_size=60
    )
)
def test_ten_minute_means_equal_a_sample_by_sample_oracle(samples: list[tuple[int, float]]) -> None:
    zone = "Europe/Lisbon"
    midnight = _epoch(zone, 2026, 11, 23, 0, 0)  # WET: the local clock is UTC here
    sums: dict[int, list[float]] = {}
    for offset, volts in samples:
        sums.setdefault(midnight + offset - offset % 600, []).append(volts)
    ts = np.array([midnight + offset for offset, _ in samples], dtype=np.int64)
    starts, means = ten_minute_means(ts, np.array([v for _, v in samples]), zone)
    assert starts.tolist() == sorted(sums)
    assert means.tolist() == pytest.approx([sum(sums[s]) / len(sums[s]) for s in sorted(sums)])
    excursion = voltage_excursion(ts, np.array([v for _, v in samples]), zone, 207.0, 253.0)
    outside = [s for s in sorted(sums) if not 207.0 <= sum(sums[s]) / len(sums[s]) <= 253.0]
    assert (excursion is None) == (not outside)
    if excursion is not None:
        assert excursion.intervals_outside == len(outside)
