"""Property tests for buckets against a slow, obviously-correct reference written here."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statistics_manager_service.aggregation import compute_buckets
from statistics_manager_service.test.aggregation.factories import MIDNIGHT_UTC_2026_01_05 as T0

GAPS_S = st.one_of(st.sampled_from([1, 59, 300, 899, 900, 901, 1800, 7300]), st.integers(1, 4000))
STEP = st.one_of(
    st.tuples(st.just("grow"), st.floats(0, 400, allow_nan=False)),
    st.tuples(st.just("reset"), st.floats(0, 50, allow_nan=False)),
)
POWER = st.one_of(st.none(), st.floats(0, 5000, allow_nan=False))


@st.composite
def user_readings(draw: st.DrawFn, user_id: str) -> pd.DataFrame:
    """Draw one user's readings: random gaps, growth, resets and optional power."""
    n = draw(st.integers(1, 18))
    ts = (
        T0
        + draw(st.integers(0, 3600))
        + np.cumsum([0, *draw(st.lists(GAPS_S, min_size=n - 1, max_size=n - 1))])
    )
    register = [draw(st.floats(0, 1e6, allow_nan=False))]
    for kind, amount in draw(st.lists(STEP, min_size=n - 1, max_size=n - 1)):
        register.append(register[-1] + amount if kind == "grow" else amount)
    # Half the time every reading has power (the common dongle case), else some have none.
    sometimes = POWER if draw(st.booleans()) else st.floats(0, 5000, allow_nan=False)
    power = [
        np.nan if value is None else value for value in draw(st.lists(sometimes, min_size=n, max_size=n))
    ]
    return pd.DataFrame(
        {
            "user_id": user_id,
            "ts": ts.astype(np.int64),
            "energy_imported_wh": register,
            "energy_exported_wh": np.linspace(0, 10 * n, n),
            "energy_generated_wh": np.nan,
            "power_imported_w": power,
            "power_exported_w": np.nan,
            "voltage_v": np.nan,
        }
    )


@st.composite
def many_users(draw: st.DrawFn) -> pd.DataFrame:
    """Draw readings for one to three users."""
    users = [draw(user_readings(f"user{index}")) for index in range(draw(st.integers(1, 3)))]
    return pd.concat(users, ignore_index=True)


def reference_total_wh(values: list[float]) -> float:
    """Sum a register's energy, counting a drop as a restart from zero."""
    total = 0.0
    for before, after in itertools.pairwise(values):
        total += after - before if after >= before else after
    return total


def reference_register(ts: list[int], values: list[float], at: float) -> float:
    """Evaluate the reset-corrected register at an instant by walking the readings."""
    total = 0.0
    for index in range(1, len(ts)):
        before, after = values[index - 1], values[index]
        step = after - before if after >= before else after
        if at >= ts[index]:
            total += step
        elif at > ts[index - 1]:
            total += step * (at - ts[index - 1]) / (ts[index] - ts[index - 1])
    return total


def reference_user(frame: pd.DataFrame, gap_s: int) -> pd.DataFrame:
    """Compute one user's buckets by brute force (per-second power, per-bucket loops)."""
    frame = frame.sort_values("ts")
    ts, values = frame["ts"].tolist(), frame["energy_imported_wh"].tolist()
    power = frame["power_imported_w"].to_numpy()
    first, last = ts[0], ts[-1]
    held = np.full(last - first, np.nan)  # held import power for each second of the span
    samples = [index for index in range(len(ts)) if not np.isnan(power[index])]
    for position, index in enumerate(samples):
        until = ts[samples[position + 1]] if position + 1 < len(samples) else ts[index] + gap_s
        until = min(until, ts[index] + gap_s, last)
        held[ts[index] - first : until - first] = power[index]
    measured = np.zeros(last - first, dtype=bool)
    for before, after in itertools.pairwise(ts):
        measured[before - first : after - first] = after - before <= gap_s
    rows = []
    for start in range(first - first % 900, last, 900):
        a, b = max(start, first), min(start + 900, last)
        if b <= a:
            continue  # a lone reading spans no time
        seconds = held[a - first : b - first]
        known = seconds[~np.isnan(seconds)]
        energy_kwh = (reference_register(ts, values, b) - reference_register(ts, values, a)) / 1000
        rows.append(
            {
                "bucket_start": start,
                "energy_imported_kwh": energy_kwh,
                "power_imported_mean_w": known.mean() if known.size else energy_kwh * 3.6e6 / (b - a),
                "power_seconds": known.size,
                "span_seconds": b - a,
                "covered_seconds": int(measured[a - first : b - first].sum()),
                "reading_count": sum(start <= t < start + 900 for t in ts),
            }
        )
    return pd.DataFrame(rows)


@settings(max_examples=60, deadline=None)
@given(many_users(), st.sampled_from([300, 900, 3600]))
def test_buckets_match_a_brute_force_reference(frame: pd.DataFrame, gap_s: int) -> None:
    out = compute_buckets(frame, measured_gap_s=gap_s)
    for user_id, user_frame in frame.groupby("user_id"):
        got = out[out["user_id"] == user_id].reset_index(drop=True)
        expected = reference_user(user_frame, gap_s)
        if expected.empty:
            assert got.empty
            continue
        assert got["bucket_start"].tolist() == expected["bucket_start"].tolist()
        for name in ("span_seconds", "covered_seconds", "reading_count", "power_seconds"):
            assert got[name].tolist() == expected[name].tolist(), name
        for name in ("energy_imported_kwh", "power_imported_mean_w"):
            assert got[name].to_numpy() == pytest.approx(expected[name].to_numpy(), rel=1e-9, abs=1e-6), name


@settings(max_examples=80, deadline=None)
@given(many_users())
def test_energy_is_conserved_and_never_negative(frame: pd.DataFrame) -> None:
    out = compute_buckets(frame)
    assert (out["energy_imported_kwh"] >= 0).all()
    for user_id, user_frame in frame.groupby("user_id"):
        total_kwh = out.loc[out["user_id"] == user_id, "energy_imported_kwh"].sum()
        expected_wh = reference_total_wh(user_frame.sort_values("ts")["energy_imported_wh"].tolist())
        assert total_kwh == pytest.approx(expected_wh / 1000, rel=1e-9, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(many_users(), st.integers(0, 2**32 - 1))
def test_shuffled_and_duplicated_delivery_gives_identical_output(frame: pd.DataFrame, seed: int) -> None:
    rng = np.random.default_rng(seed)
    again = frame.iloc[rng.integers(0, len(frame), size=len(frame))]
    delivered = pd.concat([frame, again], ignore_index=True).sample(frac=1.0, random_state=rng)
    pd.testing.assert_frame_equal(compute_buckets(delivered), compute_buckets(frame))


@settings(max_examples=60, deadline=None)
@given(many_users(), st.integers(0, 40), st.integers(1, 40))
def test_a_window_equals_the_same_slice_of_a_full_computation(
    frame: pd.DataFrame, first_bucket: int, width: int
) -> None:
    start = T0 - T0 % 900 + first_bucket * 900
    end = start + width * 900
    full = compute_buckets(frame)
    expected = full[(full["bucket_start"] >= start) & (full["bucket_start"] < end)].reset_index(drop=True)
    window = compute_buckets(frame, window_start_s=start, window_end_s=end)
    pd.testing.assert_frame_equal(window, expected, check_exact=False, rtol=1e-12, atol=1e-9)
