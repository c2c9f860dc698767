"""Benchmark the levels computed when asked for against the stored one, through the real API.

One household gets a year of 15-minute hub readings through `StatisticsUpdater.apply_readings`.
Then `/energy-cost` (every cost column, so pricing runs) is asked for, through the app with the
response cache off, at each level over the range a client would chart: quarter hours over a day,
hours over a week and a month, days over a year (the stored level: the baseline), weeks, months
and years. Each is the median of repeated requests; the ratio is against the stored daily year.

PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth); a database is created and dropped.
Run: .venv/bin/python benchmarks/computed_levels.py [--repeats 30]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from databases import benchmark_database
from late_reading import apply, history

from statistics_manager_service.app import create_app
from statistics_manager_service.context import build_context
from statistics_manager_service.test.conftest import make_settings
from statistics_manager_service.test.support.pipeline import account_message, process
from statistics_manager_service.tokens import issue_token

USER = "levelhome1"
CASES = (
    ("15_mins", "2026-06-10T00:00:00Z", "2026-06-11T00:00:00Z", "quarter hours over a day"),
    ("hourly", "2026-06-10T00:00:00Z", "2026-06-17T00:00:00Z", "hours over a week"),
    ("hourly", "2026-06-01T00:00:00Z", "2026-07-01T00:00:00Z", "hours over a month"),
    ("daily", "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z", "days over a year (stored)"),
    ("weekly", "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z", "weeks over a year"),
    ("monthly", "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z", "months over a year"),
    ("yearly", "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z", "the year"),
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeats", type=int, default=30, help="requests per level")
    args = parser.parse_args()
    with benchmark_database("sm_bench_levels") as url:
        context = build_context(make_settings(url))
        try:
            assert process(context, [account_message(USER, tarif_type="tri-hourly")]) == []
            readings = history(USER, 365, np.random.default_rng(7))
            print(f"{len(readings):,} readings stored in {apply(context, readings):.1f} s")
            headers = {
                "Authorization": f"Bearer {issue_token(context.settings, service=True)}",
                "X-Correlation-ID": "levels",
            }
            medians: dict[str, float] = {}
            with create_app(context.settings, context=context).test_client() as client:
                for group, start, end, label in CASES:
                    url = f"/api/statistics/energy-cost?user_ids={USER}&start_date={start}&end_date={end}"
                    url += f"&group_by={group}"
                    samples, buckets = [], 0
                    for _ in range(args.repeats + 2):
                        started = time.perf_counter()
                        response = client.get(url, headers=headers)
                        samples.append(time.perf_counter() - started)
                        assert response.status_code == 200, response.text
                        buckets = len(response.json()[0]["metrics"])
                    medians[label] = statistics.median(samples[2:])
                    print(f"{label:<28} {buckets:>5} buckets  median {medians[label] * 1000:6.1f} ms")
            baseline = medians["days over a year (stored)"]
            print("\nmedian / stored days over a year:")
            for label, value in medians.items():
                print(f"  {label:<28} {value / baseline:5.2f}")
        finally:
            context.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
