"""Benchmark the aggregation engine alone (no database, no broker).

Throughput: 1,000,000 raw readings (1,000 users x 1,000) -> 15-minute buckets, as readings/s, next
to a bare numpy pass over the same arrays (the least work any implementation must do). The cost of
a late reading through the real recomputation path is `benchmarks/late_reading.py`.

Times are best-of-N wall-clock; compare the ratios printed, not absolute numbers.
Run: .venv/bin/python benchmarks/aggregation.py
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import pandas as pd

from statistics_manager_service.aggregation import compute_buckets

START_S = 1_767_225_600  # 2026-01-01T00:00:00Z
rng = np.random.default_rng(20260101)


def timed(action: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Return the best and median wall-clock seconds of running action."""
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return min(samples), statistics.median(samples)


def fleet_readings(users: int, per_user: int, cadence_s: int) -> pd.DataFrame:
    """Return realistic readings: jittered cadence, half the homes with PV, power and voltage."""
    n = users * per_user
    steps = np.full((users, per_user), cadence_s) + rng.integers(
        -cadence_s // 10, cadence_s // 10 + 1, (users, per_user)
    )
    steps[:, 0] = rng.integers(0, 900, users)
    ts = START_S + np.cumsum(steps, axis=1)
    power_w = rng.gamma(2.0, 300.0, (users, per_user))
    imported_wh = np.cumsum(power_w * cadence_s / 3600, axis=1)
    has_pv = (np.arange(users) % 2 == 0)[:, None]
    generated_wh = np.where(
        has_pv, np.cumsum(rng.uniform(0, 1500, (users, per_user)) * cadence_s / 3600, axis=1), np.nan
    )
    exported_wh = np.where(has_pv, generated_wh * 0.4, 0.0)
    return pd.DataFrame(
        {
            "user_id": np.repeat([f"user{index:06d}" for index in range(users)], per_user),
            "ts": ts.ravel(),
            "energy_imported_wh": imported_wh.ravel(),
            "energy_exported_wh": exported_wh.ravel(),
            "energy_generated_wh": generated_wh.ravel(),
            "power_imported_w": power_w.ravel(),
            "power_exported_w": np.where(has_pv, power_w * 0.2, np.nan).ravel(),
            "voltage_v": rng.normal(231.0, 2.0, n),
        }
    )


def bare_numpy_pass(readings: pd.DataFrame) -> None:
    """Touch the same arrays once: per-register differences, running sums, a bucket histogram."""
    ts = readings["ts"].to_numpy()
    for name in ("energy_imported_wh", "energy_exported_wh", "energy_generated_wh"):
        np.cumsum(np.maximum(np.diff(readings[name].to_numpy()), 0.0))
    np.bincount((ts - ts.min()) // 900)


def throughput() -> None:
    """Print readings/s for raw readings -> buckets."""
    print("== throughput: 1,000,000 readings -> 15-minute buckets ==")
    for label, cadence_s, shuffle, categorical in (
        ("1-min dongle cadence, sorted (storage order)", 60, False, False),
        ("15-min hub cadence, sorted (storage order)", 900, False, False),
        ("1-min cadence, shuffled + 1% duplicates", 60, True, False),
        ("  same, user_id as Categorical", 60, True, True),
    ):
        frame = fleet_readings(1000, 1000, cadence_s)
        if shuffle:
            extra = frame.sample(frac=0.01, random_state=1)
            frame = pd.concat([frame, extra]).sample(frac=1.0, random_state=2).reset_index(drop=True)
        if categorical:
            frame["user_id"] = frame["user_id"].astype("category")
        n = len(frame)
        buckets = len(compute_buckets(frame))
        best, median = timed(partial(compute_buckets, frame), 5)
        base, _ = timed(partial(bare_numpy_pass, frame), 5)
        print(
            f"{label:48s} {n:>9,d} readings -> {buckets:>9,d} buckets: best {best * 1000:7.1f} ms "
            f"(median {median * 1000:6.1f}) = {n / best / 1e6:5.2f} M readings/s; "
            f"bare numpy pass {base * 1000:6.1f} ms, engine/bare = {best / base:4.1f}x"
        )


if __name__ == "__main__":
    throughput()
