"""Hand-computed cases for readings -> 15-minute buckets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from statistics_manager_service.aggregation import BUCKET_COLUMNS, compute_buckets, coverage
from statistics_manager_service.test.aggregation.factories import MIDNIGHT_UTC_2026_01_05 as T0
from statistics_manager_service.test.aggregation.factories import readings

MIN = 60


def test_two_readings_half_an_hour_apart_split_evenly() -> None:
    # 0 Wh at 00:00 and 1000 Wh at 00:30: 1 kWh over two buckets -> 0.5 kWh each.
    out = compute_buckets(readings([T0, T0 + 30 * MIN], [0.0, 1000.0]))
    assert list(out.columns) == list(BUCKET_COLUMNS)
    assert out["bucket_start"].tolist() == [T0, T0 + 15 * MIN]
    assert out["energy_imported_kwh"].tolist() == pytest.approx([0.5, 0.5])
    assert out["bucket_start"].dtype == np.int64
    assert (out["bucket_start"] % 900 == 0).all()
    assert out["span_seconds"].tolist() == [900, 900]


def test_reset_counts_the_new_value_from_zero() -> None:
    # 0 @00:00, 1000 @00:15, drop to 200 @00:25 (reset: +200), 500 @00:45 (+300).
    # [00:00,00:15) = 1000 Wh; [00:15,00:30) = 200 + 300*5/20 = 275 Wh; [00:30,00:45) = 300*15/20 = 225 Wh.
    ts = [T0, T0 + 15 * MIN, T0 + 25 * MIN, T0 + 45 * MIN]
    out = compute_buckets(readings(ts, [0.0, 1000.0, 200.0, 500.0]))
    assert out["energy_imported_kwh"].tolist() == pytest.approx([1.0, 0.275, 0.225])
    assert out["reset_detected"].tolist() == [False, True, False]
    assert out["energy_imported_kwh"].sum() == pytest.approx(1.5)  # 1000 + 200 + 300 Wh


def test_reset_in_one_register_is_flagged_even_if_others_grow() -> None:
    ts = [T0, T0 + 10 * MIN, T0 + 20 * MIN]
    out = compute_buckets(readings(ts, [0.0, 10.0, 20.0], exported_wh=[500.0, 600.0, 50.0]))
    # Export: +100, then a reset to 50 counts 50 -> [0,15) = 100 + 50*5/10 = 125 Wh; [15,20] = 25 Wh.
    assert out["energy_exported_kwh"].tolist() == pytest.approx([0.125, 0.025])
    assert out["reset_detected"].tolist() == [False, True]


def test_gap_spreads_energy_and_is_not_measured() -> None:
    # 800 Wh over two hours without readings: 8 buckets of 100 Wh, none measured.
    out = compute_buckets(readings([T0, T0 + 120 * MIN], [0.0, 800.0]))
    assert len(out) == 8
    assert out["energy_imported_kwh"].tolist() == pytest.approx([0.1] * 8)
    assert out["covered_seconds"].tolist() == [0] * 8
    assert coverage(out).tolist() == [0.0] * 8
    # With a 2-hour measured gap, the same interval counts as measured.
    wide = compute_buckets(readings([T0, T0 + 120 * MIN], [0.0, 800.0]), measured_gap_s=7200)
    assert wide["covered_seconds"].tolist() == [900] * 8


def test_partial_first_and_last_buckets() -> None:
    # 0 @00:05, 150 @00:20, 350 @00:40.
    # [00:05,00:15] = 150*10/15 = 100 Wh; [00:15,00:30) = 50 + 200*10/20 = 150 Wh; [00:30,00:40] = 100 Wh.
    ts = [T0 + 5 * MIN, T0 + 20 * MIN, T0 + 40 * MIN]
    out = compute_buckets(readings(ts, [0.0, 150.0, 350.0]))
    assert out["bucket_start"].tolist() == [T0, T0 + 15 * MIN, T0 + 30 * MIN]
    assert out["energy_imported_kwh"].tolist() == pytest.approx([0.1, 0.15, 0.1])
    assert out["span_seconds"].tolist() == [600, 900, 600]
    # 00:05->00:20 (900 s) is measured; 00:20->00:40 (1200 s) is a gap: 600, 300 and 0 s measured.
    assert out["covered_seconds"].tolist() == [600, 300, 0]
    assert out["reading_count"].tolist() == [1, 1, 1]


def test_no_bucket_after_the_last_reading_or_for_a_lone_reading() -> None:
    assert compute_buckets(readings([T0 + 7 * MIN], [10.0])).empty
    out = compute_buckets(readings([T0, T0 + 15 * MIN], [0.0, 10.0]))
    assert out["bucket_start"].tolist() == [T0]  # the bucket starting on the last reading has no time


def test_duplicates_merge_by_max_whatever_the_order() -> None:
    ts = [T0, T0 + 10 * MIN, T0 + 10 * MIN, T0 + 20 * MIN]
    first = readings(ts, [0.0, 100.0, 120.0, 200.0], power_imported_w=[np.nan, 700.0, np.nan, 500.0])
    # The duplicate at 00:10 becomes 120 Wh and 700 W: [0,15) = 120 + 80*5/10 = 160 Wh.
    out = compute_buckets(first)
    assert out["energy_imported_kwh"].tolist() == pytest.approx([0.16, 0.04])
    shuffled = pd.concat([first.iloc[[3, 2, 1, 0, 2]]], ignore_index=True)
    pd.testing.assert_frame_equal(compute_buckets(shuffled), out)


def test_power_sample_and_hold_with_fallback() -> None:
    # Power 1000 W @00:00, 2000 W @00:10, none @00:20, 500 W @00:40; gap limit 900 s.
    # 1000 W holds [0,10), 2000 W holds [10,25) (900 s cap), 500 W from 00:40 on.
    ts = [T0, T0 + 10 * MIN, T0 + 20 * MIN, T0 + 40 * MIN]
    frame = readings(ts, [0.0, 100.0, 200.0, 400.0], power_imported_w=[1000.0, 2000.0, np.nan, 500.0])
    out = compute_buckets(frame)
    # [0,15): (1000*600 + 2000*300) / 900 s; max 2000.
    assert out["power_imported_mean_w"][0] == pytest.approx(1_200_000 / 900)
    assert out["power_imported_max_w"][0] == 2000.0
    assert out["power_seconds"].tolist() == [900, 600, 0]
    # [15,30): 2000 W held for 600 s; no sample inside, the held value is the max.
    assert out["power_imported_mean_w"][1] == pytest.approx(2000.0)
    assert out["power_imported_max_w"][1] == 2000.0
    # [30,40]: no power known: 100 Wh over 600 s = 600 W; the 500 W sample at 00:40 is in the bucket.
    assert out["power_imported_mean_w"][2] == pytest.approx(600.0)
    assert out["power_imported_max_w"][2] == 500.0
    # Without that last sample no sample tells the bucket's peak: the max is unknown, never the mean.
    no_last = compute_buckets(frame.assign(power_imported_w=[1000.0, 2000.0, np.nan, np.nan]))
    assert np.isnan(no_last["power_imported_max_w"][2])
    assert no_last["power_imported_mean_w"][2] == pytest.approx(600.0)
    # A sample with only the import direction counts export as idle.
    assert out["power_exported_mean_w"][0] == 0.0


def test_voltage_statistics_per_bucket() -> None:
    ts = [T0, T0 + 5 * MIN, T0 + 10 * MIN, T0 + 20 * MIN]
    out = compute_buckets(readings(ts, [0.0, 1.0, 2.0, 3.0], voltage_v=[230.0, 232.0, np.nan, 228.0]))
    assert out["voltage_mean_v"][0] == pytest.approx(231.0)
    assert (out["voltage_min_v"][0], out["voltage_max_v"][0], out["voltage_count"][0]) == (230.0, 232.0, 2)
    assert (out["voltage_mean_v"][1], out["voltage_count"][1]) == (228.0, 1)


def test_generation_self_consumption_and_consumption() -> None:
    # Generation reported only from 00:15: the first bucket has none (NaN, self-consumed 0).
    ts = [T0, T0 + 15 * MIN, T0 + 30 * MIN]
    frame = readings(ts, [0.0, 200.0, 300.0], [0.0, 0.0, 100.0], generated_wh=[np.nan, 1000.0, 1400.0])
    out = compute_buckets(frame)
    assert np.isnan(out["energy_generated_kwh"][0])
    assert out["self_consumed_kwh"][0] == 0.0
    assert out["consumption_kwh"][0] == pytest.approx(0.2)
    # [15,30): generated 400 Wh, exported 100 Wh -> self-consumed 300 Wh; consumption 100 + 300 Wh.
    assert out["energy_generated_kwh"][1] == pytest.approx(0.4)
    assert out["self_consumed_kwh"][1] == pytest.approx(0.3)
    assert out["consumption_kwh"][1] == pytest.approx(0.4)


def test_window_emits_only_its_buckets_from_context_readings() -> None:
    ts = [T0 + step * 10 * MIN for step in range(13)]
    frame = readings(ts, [step * 50.0 for step in range(13)])
    full = compute_buckets(frame)
    start, end = T0 + 30 * MIN, T0 + 75 * MIN
    window = compute_buckets(frame, window_start_s=start, window_end_s=end)
    assert window["bucket_start"].tolist() == [T0 + 30 * MIN, T0 + 45 * MIN, T0 + 60 * MIN]
    expected = full[(full["bucket_start"] >= start) & (full["bucket_start"] < end)].reset_index(drop=True)
    pd.testing.assert_frame_equal(window, expected)


def test_many_users_in_one_call_match_one_user_at_a_time() -> None:
    first = readings([T0, T0 + 20 * MIN, T0 + 50 * MIN], [0.0, 80.0, 90.0], user_id="a")
    second = readings([T0 + 3 * MIN, T0 + 9 * MIN], [5.0, 1.0], user_id="b", power_imported_w=[10.0, 20.0])
    both = compute_buckets(pd.concat([second, first], ignore_index=True))
    alone = pd.concat([compute_buckets(first), compute_buckets(second)], ignore_index=True)
    pd.testing.assert_frame_equal(both, alone)


def test_categorical_user_ids_give_the_same_buckets() -> None:
    first = readings([T0, T0 + 20 * MIN], [0.0, 80.0], user_id="b", power_imported_w=[1.0, 2.0])
    second = readings([T0 + 3 * MIN, T0 + 39 * MIN], [5.0, 9.0], user_id="a")
    frame = pd.concat([first, second], ignore_index=True)
    coded = frame.assign(user_id=pd.Categorical(frame["user_id"], categories=["z", "b", "a"]))
    pd.testing.assert_frame_equal(compute_buckets(coded), compute_buckets(frame))


def test_empty_input_and_bad_arguments() -> None:
    empty = compute_buckets(readings([], []))
    assert empty.empty and list(empty.columns) == list(BUCKET_COLUMNS)
    with pytest.raises(ValueError, match="measured_gap_s"):
        compute_buckets(readings([T0], [0.0]), measured_gap_s=0)
    with pytest.raises(ValueError, match="energy_exported_wh"):
        compute_buckets(readings([T0], [0.0]).drop(columns="energy_exported_wh"))
