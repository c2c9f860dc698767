"""Property: recomputing only the window of a late reading gives what a full recompute gives."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statistics_manager_service.aggregation import compute_buckets, context_bounds, late_data_window
from statistics_manager_service.test.aggregation.factories import MIDNIGHT_UTC_2026_01_05 as T0
from statistics_manager_service.test.aggregation.factories import readings
from statistics_manager_service.test.aggregation.test_buckets_properties import user_readings


def stored_context(stored: pd.DataFrame, load_from_s: int, load_until_s: int) -> pd.DataFrame:
    """Select what storage would load: the range plus the nearest reading on either side."""
    ts = stored["ts"]
    inside = (ts >= load_from_s) & (ts < load_until_s)
    before = stored[ts < load_from_s].nlargest(1, "ts")
    after = stored[ts >= load_until_s].nsmallest(1, "ts")
    return pd.concat([before, stored[inside], after])


def check_late_reading(frame: pd.DataFrame, late_index: int, gap_s: int) -> None:
    """Assert the window recompute of frame.iloc[late_index] arriving last matches a full one."""
    late = frame.iloc[[late_index]]
    stored = frame.drop(index=frame.index[late_index])
    late_s = int(late["ts"].iloc[0])
    earlier, later = stored["ts"][stored["ts"] < late_s], stored["ts"][stored["ts"] > late_s]
    previous_s = int(earlier.max()) if len(earlier) else late_s
    following_s = int(later.min()) if len(later) else late_s
    one = np.array([late_s])
    start, end = late_data_window(one, one, np.array([previous_s]), np.array([following_s]), gap_s)
    load_from, load_until = context_bounds(start, end, gap_s)
    context = pd.concat([stored_context(stored, int(load_from[0]), int(load_until[0])), late])

    window = compute_buckets(context, int(start[0]), int(end[0]), measured_gap_s=gap_s)
    after = compute_buckets(frame, measured_gap_s=gap_s)
    inside = (after["bucket_start"] >= start[0]) & (after["bucket_start"] < end[0])
    expected = after[inside].reset_index(drop=True)
    pd.testing.assert_frame_equal(window, expected, check_exact=False, rtol=1e-9, atol=1e-9)
    # Nothing outside the window moved.
    before = compute_buckets(stored, measured_gap_s=gap_s)
    untouched = (before["bucket_start"] < start[0]) | (before["bucket_start"] >= end[0])
    pd.testing.assert_frame_equal(
        before[untouched].reset_index(drop=True),
        after[~inside].reset_index(drop=True),
        check_exact=False,
        rtol=1e-9,
        atol=1e-9,
    )


def test_late_power_sample_holds_past_the_following_reading() -> None:
    # The late 900 W sample at 00:05 holds until 01:05 (gap 3600 s): past the 00:10 reading without power.
    ts = [T0, T0 + 300, T0 + 600, T0 + 5000]
    frame = readings(ts, [0.0, 10.0, 20.0, 90.0], power_imported_w=[100.0, 900.0, np.nan, np.nan])
    check_late_reading(frame, late_index=1, gap_s=3600)


def test_late_reading_can_clear_the_following_readings_reset_flag() -> None:
    # 1000 Wh then 500 Wh at 00:15 is a reset, until a late 400 Wh at 00:07:30 makes it growth.
    ts = [T0, T0 + 450, T0 + 900, T0 + 1800]
    frame = readings(ts, [1000.0, 400.0, 500.0, 600.0])
    check_late_reading(frame, late_index=1, gap_s=900)


@settings(max_examples=80, deadline=None)
@given(user_readings("user1"), st.sampled_from([300, 900, 3600]), st.data())
def test_late_reading_window_matches_full_recompute(
    frame: pd.DataFrame, gap_s: int, data: st.DataObject
) -> None:
    check_late_reading(frame, data.draw(st.integers(0, len(frame) - 1)), gap_s)


@pytest.mark.parametrize("late_index", [0, 2])
def test_window_of_a_reading_before_the_first_or_after_the_last(late_index: int) -> None:
    frame = readings([T0 + 100, T0 + 600, T0 + 4000], [0.0, 5.0, 50.0])
    check_late_reading(frame, late_index=late_index, gap_s=900)
