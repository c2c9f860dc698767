"""Benchmark the aggregation engine alone (no database, no broker).

1. Throughput: 1,000,000 raw readings (1,000 users x 1,000) -> 15-minute buckets, as readings/s,
   next to a bare numpy pass over the same arrays (the least work any implementation must do).
2. Late data: one late reading for a household with one month vs one year of history, recomputed
   the way the service does it: only the window between the reading's neighbours, then the
   rollups of the periods it touches from their child rows. Child rows come from in-memory tables
   through binary search, standing in for the database's (user_id, start) index.

Times are best-of-N wall-clock; compare the ratios printed, not absolute numbers.
Run: .venv/bin/python benchmarks/aggregation.py
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd

from statistics_manager_service.aggregation import (
    ROLLUP_SOURCE,
    affected_periods,
    compute_buckets,
    late_data_window,
    period_bounds,
    rollup,
)
from statistics_manager_service.aggregation.windows import context_bounds

START_S = 1_767_225_600  # 2026-01-01T00:00:00Z
ZONE = "Europe/Lisbon"
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


@dataclass
class History:
    """One household's stored readings and every aggregate level, sorted by start."""

    readings: pd.DataFrame
    reading_ts: np.ndarray
    levels: dict[str, pd.DataFrame]  # "bucket", "hour", "day", "week", "month", "year"


def build_history(days: int) -> History:
    """Compute a household's whole history once, as storage would hold it."""
    frame = fleet_readings(1, days * 1440, 60)
    frame["user_id"] = "house00001"
    buckets = compute_buckets(frame)
    zones = {"house00001": ZONE}
    hours = rollup(buckets, zones, "hour")
    day_rows = rollup(hours, zones, "day")
    months = rollup(day_rows, zones, "month")
    levels = {
        "bucket": buckets.rename(columns={"bucket_start": "period_start"}),
        "hour": hours,
        "day": day_rows,
        "week": rollup(day_rows, zones, "week"),
        "month": months,
        "year": rollup(months, zones, "year"),
    }
    return History(frame, frame["ts"].to_numpy(), levels)


def stored_children(table: pd.DataFrame, start_s: int, end_s: int) -> pd.DataFrame:
    """Return stored rows with start in [start_s, end_s) by binary search (an index range scan)."""
    starts = table["period_start"].to_numpy()
    return table.iloc[np.searchsorted(starts, start_s) : np.searchsorted(starts, end_s)]


def children_with(fresh: pd.DataFrame, table: pd.DataFrame, start_s: int, end_s: int) -> pd.DataFrame:
    """Return the child rows of a period: freshly computed ones replace stored ones."""
    stored = stored_children(table, start_s, end_s)
    keep = ~stored["period_start"].isin(fresh["period_start"])
    inside = fresh[(fresh["period_start"] >= start_s) & (fresh["period_start"] < end_s)]
    return pd.concat([stored[keep], inside]).sort_values("period_start")


def recompute_after_late_reading(history: History, late: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Recompute what one late reading changes: its window's buckets, then each touched period."""
    late_s = int(late["ts"].iloc[0])
    ts = history.reading_ts
    at = int(np.searchsorted(ts, late_s))
    previous_s = ts[at - 1] if at > 0 else late_s
    following_s = ts[at] if at < ts.size else late_s
    window = late_data_window(
        np.array([late_s]), np.array([late_s]), np.array([previous_s]), np.array([following_s])
    )
    start_s, end_s = int(window[0][0]), int(window[1][0])
    load_from_s, load_until_s = context_bounds(np.array([start_s]), np.array([end_s]))
    first = max(int(np.searchsorted(ts, load_from_s[0])) - 1, 0)
    last = min(int(np.searchsorted(ts, load_until_s[0])) + 1, ts.size)
    context = pd.concat([history.readings.iloc[first:last], late], ignore_index=True)
    fresh = {
        "bucket": compute_buckets(context, start_s, end_s).rename(columns={"bucket_start": "period_start"})
    }
    zones = {"house00001": ZONE}
    touched = affected_periods(fresh["bucket"].rename(columns={"period_start": "bucket_start"}), zones)
    # Finer levels first, so each level rolls up from freshly recomputed children.
    for granularity, source in ROLLUP_SOURCE.items():
        parts = []
        for period_start in touched[granularity]["period_start"].to_numpy():
            period_from, period_until = period_bounds(int(period_start), ZONE, granularity)
            children = children_with(fresh[source], history.levels[source], period_from, period_until)
            if source == "bucket":
                children = children.rename(columns={"period_start": "bucket_start"})
            parts.append(rollup(children, zones, granularity))
        fresh[granularity] = pd.concat(parts, ignore_index=True)
    return fresh


def late_data() -> None:
    """Print recompute times after one late reading, one month vs one year of history."""
    print("\n== late reading: recompute window + touched periods (1-min readings) ==")
    results = {}
    for label, days in (("month", 31), ("year", 365)):
        history = build_history(days)
        # A reading that arrives late, between two stored ones 10 days before the end of history.
        late_s = int(history.reading_ts[-10 * 1440] - 30)
        late = history.readings.iloc[[-10 * 1440]].assign(
            ts=late_s, energy_imported_wh=lambda f: f["energy_imported_wh"] - 1
        )
        fresh = recompute_after_late_reading(history, late)
        best, median = timed(partial(recompute_after_late_reading, history, late), 15)
        naive, _ = timed(partial(compute_buckets, history.readings), 3)
        results[label] = best
        rollup_rows = sum(len(rows) for level, rows in fresh.items() if level != "bucket")
        print(
            f"{label:5s} of history ({len(history.readings):>7,d} readings, "
            f"{len(history.levels['bucket']):>6,d} buckets): late reading -> "
            f"{len(fresh['bucket'])} bucket(s) + {rollup_rows} rollup rows in best {best * 1000:6.1f} ms "
            f"(median {median * 1000:6.1f}); "
            f"full recompute of all buckets {naive * 1000:7.1f} ms"
        )
    print(f"ratio year/month (incremental) = {results['year'] / results['month']:.2f} (target <= 1.5)")


if __name__ == "__main__":
    throughput()
    late_data()
