"""Benchmark the cost of one late reading through the real recomputation path, against PostgreSQL.

Two households get 15-minute hub readings through `StatisticsUpdater.apply_readings` (as the
consumer applies them): one a month of history, the other a year. Then, alternating between the
two, late readings arrive one per transaction, each between two stored readings ten days before
the end of the history (a register value between its neighbours'). Each is timed from the start
of its transaction to its commit: storing it into its day row, the window it can change, the
local day recomputed from its readings and written back.

Target: the median cost with a year of history <= 1.5x the median with a month.

PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth); a database is created and dropped.
Run: .venv/bin/python benchmarks/late_reading.py [--trials 40]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pandas as pd
from databases import benchmark_database

from statistics_manager_service.context import ServiceContext, build_context
from statistics_manager_service.storage.engine import session_scope
from statistics_manager_service.storage.households import ensure_households
from statistics_manager_service.tariff_loading import updater_for
from statistics_manager_service.test.conftest import make_settings

START_S = 1_767_225_600  # 2026-01-01T00:00:00Z
QUARTER_S = 900
HISTORIES = {"month": ("monthhome1", 31), "year": ("yearhome01", 365)}
TARGET_RATIO = 1.5


def history(user_id: str, days: int, rng: np.random.Generator) -> pd.DataFrame:
    """A household's 15-minute readings over `days`: registers in Wh, power and voltage."""
    count = days * 96 + 1
    ts = START_S + QUARTER_S * np.arange(count, dtype=np.int64)
    imported = np.cumsum(rng.integers(20, 300, count)).astype(np.float64)
    return pd.DataFrame(
        {
            "user_id": user_id,
            "source": "hub",
            "ts": ts,
            "energy_imported_wh": imported,
            "energy_exported_wh": np.zeros(count),
            "energy_generated_wh": np.full(count, np.nan),
            "power_imported_w": np.round(rng.gamma(2.0, 300.0, count), 1),
            "power_exported_w": np.full(count, np.nan),
            "voltage_v": np.round(rng.normal(231.0, 1.5, count), 1),
        }
    )


def late_reading(readings: pd.DataFrame, trial: int) -> pd.DataFrame:
    """A reading between two stored ones ten days (plus `trial` quarter hours) before the end."""
    at = len(readings) - 1 - 10 * 96 + trial
    before, after = readings.iloc[at - 1], readings.iloc[at]
    reading = before.copy()
    reading["ts"] = int(before["ts"]) + QUARTER_S // 2
    reading["energy_imported_wh"] = (before["energy_imported_wh"] + after["energy_imported_wh"]) / 2
    return pd.DataFrame([reading]).astype({"ts": "int64"})


def apply(context: ServiceContext, readings: pd.DataFrame) -> float:
    """Apply readings in one transaction, as a consumer batch does; return the seconds it took."""
    updater = updater_for(context)
    started = time.perf_counter()
    with session_scope(context.session_factory) as session:
        ensure_households(session, readings["user_id"].unique().tolist())
        updater.apply_readings(session, readings)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--trials", type=int, default=40, help="late readings per household")
    args = parser.parse_args()
    rng = np.random.default_rng(20261202)
    with benchmark_database("sm_bench_late") as url:
        context = build_context(make_settings(url))
        try:
            stored = {}
            for label, (user_id, days) in HISTORIES.items():
                stored[label] = history(user_id, days, rng)
                seconds = apply(context, stored[label])
                print(f"{label}: {days} days, {len(stored[label]):,} readings stored in {seconds:.1f} s")
            samples: dict[str, list[float]] = {label: [] for label in HISTORIES}
            for trial in range(args.trials + 3):
                for label in HISTORIES:
                    seconds = apply(context, late_reading(stored[label], trial))
                    if trial >= 3:  # the first ones warm caches and plans
                        samples[label].append(seconds)
            medians = {label: statistics.median(values) for label, values in samples.items()}
            for label, values in samples.items():
                print(
                    f"one late reading, a {label} of history: median {medians[label] * 1000:.1f} ms"
                    f" (min {min(values) * 1000:.1f}, max {max(values) * 1000:.1f}; {len(values)} trials)"
                )
            ratio = medians["year"] / medians["month"]
            verdict = "met" if ratio <= TARGET_RATIO else "NOT met"
            print(f"ratio year / month = {ratio:.2f} (target <= {TARGET_RATIO}: {verdict})")
        finally:
            context.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
