"""Rollups in the household's local time: DST days, half-hour zones, ISO weeks, associativity."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statistics_manager_service.aggregation import (
    Granularity,
    compute_buckets,
    covering_periods,
    format_local_iso,
    period_bounds,
    rollup,
)
from statistics_manager_service.test.aggregation.factories import readings, utc

LISBON = {"user000001": "Europe/Lisbon"}


def regular_buckets(start: str, end: str, user_id: str = "user000001") -> pd.DataFrame:
    """Return buckets from readings every 15 minutes adding 100 Wh each."""
    ts = np.arange(utc(start), utc(end) + 1, 900)
    return compute_buckets(readings(ts, np.arange(ts.size) * 100.0, user_id=user_id))


def local_day(rows: pd.DataFrame, day_start: str, day_end: str) -> pd.DataFrame:
    """Return rows whose start lies in [day_start, day_end)."""
    start_column = "period_start" if "period_start" in rows else "bucket_start"
    inside = (rows[start_column] >= utc(day_start)) & (rows[start_column] < utc(day_end))
    return rows[inside]


def test_spring_forward_day_in_lisbon_has_23_hours_and_92_buckets() -> None:
    buckets = regular_buckets("2026-03-28T00:00Z", "2026-03-31T00:00Z")
    # Local 2026-03-29 runs from 00:00 WET (00:00Z) to 00:00 WEST (23:00Z).
    assert len(local_day(buckets, "2026-03-29T00:00Z", "2026-03-29T23:00Z")) == 92
    hours = rollup(buckets, LISBON, "hour")
    assert len(local_day(hours, "2026-03-29T00:00Z", "2026-03-29T23:00Z")) == 23
    days = rollup(buckets, LISBON, "day").set_index("period_start")
    assert days.loc[utc("2026-03-29T00:00Z"), "span_seconds"] == 23 * 3600
    assert days.loc[utc("2026-03-29T00:00Z"), "energy_imported_kwh"] == pytest.approx(9.2)  # 92 x 100 Wh
    assert period_bounds(utc("2026-03-29T12:00Z"), "Europe/Lisbon", "day") == (
        utc("2026-03-29T00:00Z"),
        utc("2026-03-29T23:00Z"),
    )


def test_fall_back_day_in_lisbon_has_25_hours_and_100_buckets() -> None:
    buckets = regular_buckets("2026-10-24T00:00Z", "2026-10-27T00:00Z")
    # Local 2026-10-25 runs from 00:00 WEST (24th 23:00Z) to 00:00 WET (25th 24:00Z).
    assert len(local_day(buckets, "2026-10-24T23:00Z", "2026-10-26T00:00Z")) == 100
    hours = local_day(rollup(buckets, LISBON, "hour"), "2026-10-24T23:00Z", "2026-10-26T00:00Z")
    assert len(hours) == 25
    repeated = format_local_iso(hours["period_start"], "Europe/Lisbon").tolist()
    # The 01:00 local hour happens twice, once in summer time and once in winter time.
    assert "2026-10-25T01:00:00+01:00" in repeated and "2026-10-25T01:00:00+00:00" in repeated
    days = rollup(buckets, LISBON, "day").set_index("period_start")
    assert days.loc[utc("2026-10-24T23:00Z"), "span_seconds"] == 25 * 3600


@pytest.mark.parametrize("zone", ["Asia/Kolkata", "Australia/Adelaide"])
def test_half_hour_zones_start_local_hours_at_half_past_utc(zone: str) -> None:
    buckets = regular_buckets("2026-01-05T00:00Z", "2026-01-06T00:00Z")
    hours = rollup(buckets, {"user000001": zone}, "hour")
    assert (hours["period_start"] % 3600 == 1800).all()
    assert (hours["span_seconds"].iloc[1:-1] == 3600).all()
    days = rollup(buckets, {"user000001": zone}, "day")
    # Kolkata is UTC+05:30, Adelaide UTC+10:30 in January: local midnights at 18:30Z and 13:30Z.
    expected_minute = {"Asia/Kolkata": 18 * 60 + 30, "Australia/Adelaide": 13 * 60 + 30}[zone]
    assert ((days["period_start"] % 86400) // 60 == expected_minute).all()


def test_iso_weeks_start_on_monday_and_months_and_years_are_local() -> None:
    sunday = utc("2026-01-11T12:00Z")
    assert period_bounds(sunday, "Europe/Lisbon", "week") == (
        utc("2026-01-05T00:00Z"),
        utc("2026-01-12T00:00Z"),
    )
    # 2026-06-30T23:30Z is already July 1st in Lisbon (UTC+1).
    assert period_bounds(utc("2026-06-30T23:30Z"), "Europe/Lisbon", "month")[0] == utc("2026-06-30T23:00Z")
    # 2026-12-31T19:00Z is already 2027 in Kolkata.
    assert period_bounds(utc("2026-12-31T19:00Z"), "Asia/Kolkata", "year")[0] == utc("2026-12-31T18:30Z")
    starts, ends = period_bounds(np.array([utc("2026-02-10T00:00Z")]), "Europe/Lisbon", "month")
    assert (ends - starts).tolist() == [28 * 86400]


def test_rollup_sums_weights_and_extremes() -> None:
    rows = pd.DataFrame(
        {
            "user_id": ["u", "u", "u"],
            "bucket_start": [utc("2026-01-05T10:00Z"), utc("2026-01-05T10:15Z"), utc("2026-01-05T10:30Z")],
            "energy_imported_kwh": [0.1, 0.2, 0.3],
            "energy_generated_kwh": [np.nan, np.nan, np.nan],
            "power_imported_mean_w": [100.0, 400.0, 999.0],
            "power_imported_max_w": [150.0, 900.0, 999.0],
            "power_seconds": [900, 300, 0],
            "voltage_mean_v": [230.0, 240.0, np.nan],
            "voltage_min_v": [229.0, 235.0, np.nan],
            "voltage_count": [3, 1, 0],
            "span_seconds": [900, 900, 900],
            "reset_detected": [False, True, False],
            "net_cost_eur": [0.01, 0.02, 0.03],
        }
    )
    hour = rollup(rows, {"u": "UTC"}, "hour").iloc[0]
    assert hour["energy_imported_kwh"] == pytest.approx(0.6)
    assert np.isnan(hour["energy_generated_kwh"])  # no generation reported at all stays unknown
    assert hour["power_imported_mean_w"] == pytest.approx((100 * 900 + 400 * 300) / 1200)  # 175 W
    assert hour["power_imported_max_w"] == 999.0
    assert hour["voltage_mean_v"] == pytest.approx((230 * 3 + 240) / 4)
    assert hour["voltage_min_v"] == 229.0
    assert (hour["power_seconds"], hour["voltage_count"], hour["span_seconds"]) == (1200, 4, 2700)
    assert bool(hour["reset_detected"]) is True
    assert hour["net_cost_eur"] == pytest.approx(0.06)
    assert "bucket_start" not in hour.index


def test_rollup_falls_back_to_energy_over_span_without_power() -> None:
    rows = pd.DataFrame(
        {
            "user_id": ["u", "u"],
            "bucket_start": [0, 900],
            "energy_imported_kwh": [0.25, 0.5],
            "power_imported_mean_w": [1000.0, 2000.0],
            "power_seconds": [0, 0],
            "span_seconds": [900, 900],
        }
    )
    # 0.75 kWh over 1800 s = 1500 W.
    assert rollup(rows, {"u": "UTC"}, "hour")["power_imported_mean_w"].tolist() == pytest.approx([1500.0])


def test_covering_periods_reach_from_the_period_of_the_start_to_the_end_of_the_last() -> None:
    windows = pd.DataFrame(
        {
            "user_id": ["a", "b"],
            "start_s": [utc("2026-03-28T23:15Z"), utc("2026-03-29T10:00Z")],
            "end_s": [utc("2026-03-29T10:15Z"), utc("2026-03-29T10:15Z") + 1],
        }
    )
    zones = pd.Series({"a": "Europe/Lisbon", "b": "UTC"})
    days = covering_periods(windows, zones, "day")
    # Lisbon's spring DST day has 23 hours; the window's end is exclusive, its last instant counts.
    assert days.values.tolist() == [
        ["a", utc("2026-03-28T00:00Z"), utc("2026-03-29T23:00Z")],
        ["b", utc("2026-03-29T00:00Z"), utc("2026-03-30T00:00Z")],
    ]
    hours = covering_periods(windows, zones, "hour")
    assert hours["start_s"].tolist() == [utc("2026-03-28T23:00Z"), utc("2026-03-29T10:00Z")]
    assert hours["end_s"].tolist() == [utc("2026-03-29T11:00Z"), utc("2026-03-29T11:00Z")]
    weeks = covering_periods(windows, zones, "week")
    assert weeks.loc[0, "start_s"] == utc("2026-03-23T00:00Z")  # Monday, still winter time
    assert weeks.loc[0, "end_s"] == utc("2026-03-29T23:00Z")  # next Monday 00:00 in summer time


def test_format_local_iso_uses_each_rows_zone() -> None:
    instants = pd.Series([utc("2026-07-01T00:00Z"), utc("2026-07-01T00:00Z")], index=[7, 8])
    text = format_local_iso(instants, pd.Series(["Europe/Lisbon", "Asia/Kolkata"]))
    assert text.tolist() == ["2026-07-01T01:00:00+01:00", "2026-07-01T05:30:00+05:30"]
    assert text.index.tolist() == [7, 8]


def test_rollup_rejects_bad_input() -> None:
    rows = regular_buckets("2026-01-05T00:00Z", "2026-01-05T01:00Z")
    with pytest.raises(ValueError, match="granularity"):
        rollup(rows, LISBON, "decade")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="user000001"):
        rollup(rows, {"someone-else": "UTC"}, "day")


ZONES = ["Europe/Lisbon", "Asia/Kolkata", "Australia/Adelaide", "America/New_York"]
STARTS = ["2025-12-20T00:00Z", "2026-03-20T00:00Z", "2026-10-15T00:00Z", "2026-02-25T00:00Z"]


@st.composite
def household_buckets(draw: st.DrawFn) -> tuple[pd.DataFrame, dict[str, str]]:
    """Draw buckets of up to three users in different zones across DST and year ends."""
    frames, zones = [], {}
    for index in range(draw(st.integers(1, 3))):
        user_id = f"user{index}"
        zones[user_id] = draw(st.sampled_from(ZONES))
        gaps = draw(st.lists(st.integers(600, 5 * 86400), min_size=1, max_size=12))
        ts = utc(draw(st.sampled_from(STARTS))) + draw(st.integers(0, 86400)) + np.cumsum([0, *gaps])
        energy = np.cumsum(draw(st.lists(st.floats(0, 5000), min_size=ts.size, max_size=ts.size)))
        frames.append(readings(ts, energy, user_id=user_id, voltage_v=np.full(ts.size, 231.0)))
    return compute_buckets(pd.concat(frames, ignore_index=True)), zones


@settings(max_examples=25, deadline=None)
@given(household_buckets())
def test_rollup_of_rollups_equals_direct_rollup(case: tuple[pd.DataFrame, dict[str, str]]) -> None:
    buckets, zones = case
    hours = rollup(buckets, zones, "hour")
    days = rollup(hours, zones, "day")
    months = rollup(days, zones, "month")
    chains: dict[Granularity, pd.DataFrame] = {
        "day": days,
        "week": rollup(days, zones, "week"),
        "month": months,
        "year": rollup(months, zones, "year"),
    }
    for granularity, chained in chains.items():
        direct = rollup(buckets.sample(frac=1.0, random_state=1), zones, granularity)
        pd.testing.assert_frame_equal(chained, direct, check_exact=False, rtol=1e-9, atol=1e-9)
