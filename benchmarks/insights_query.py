"""Benchmark `/bill` and `/tariff-comparison` beside the `/energy-consumption` series, over HTTP.

The same household as `query.py` (a year of 15-minute readings through the real handlers, a
bi-hourly 6.9 kVA contract) on a fresh PostgreSQL database; the real service (`--role api`,
WEB_WORKERS=2) is measured with `wrk -t2 -c16 --latency`, first with the response cache on as
configured, then with it off (every request computes its answer), on:

- the series of `query.py` (a year of daily consumption), the baseline of this run;
- `/bill` of one closed month (June 2025): every quarter hour of the month priced, taxes applied;
- `/tariff-comparison` over the whole year: the year's quarter hours priced under every option of
  the tariff book, and the power advice.

Both insights are kept in the response cache like the series (until the household's data, or for
the comparison any zone's prices, change). Each is compared with the series of the same server both
ways: its p99 against the series' target (<= 50 ms) and its throughput as a share of the series'.
Without the cache the figures show what a first request costs. Compare the ratios, not the
absolute numbers: wrk, the service and PostgreSQL share the machine.

Needs: wrk (Debian package `wrk`).
Run: .venv/bin/python benchmarks/insights_query.py   [--duration 10] [--rounds 1]
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import time

from databases import benchmark_database
from query import (
    JWT_SIGN_KEY,
    MEASURED_USER,
    QUERY_PATH,
    TARGET_P99_MS,
    Target,
    fetch,
    free_port,
    load_measured_household,
    measure,
    running,
    service_env,
)

BILL_PATH = f"/api/statistics/bill?user_id={MEASURED_USER}&period=2025-06"
COMPARISON_PATH = (
    f"/api/statistics/tariff-comparison?user_id={MEASURED_USER}"
    "&start_date=2025-01-01T00:00:00Z&end_date=2026-01-01T00:00:00Z"
)


def main() -> int:
    """Run the benchmark and print the figures against the series of the same run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured wrk run (default 10)")
    parser.add_argument("--rounds", type=int, default=1, help="measurements of each endpoint (default 1)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is missing: apt-get install -y wrk", file=sys.stderr)
        return 2

    from statistics_manager_service.config import Settings
    from statistics_manager_service.tokens import issue_token

    token = issue_token(Settings(jwt_sign_key=JWT_SIGN_KEY).validate(), user_id=MEASURED_USER)
    headers = {"Authorization": f"Bearer {token}", "X-Correlation-ID": "benchmark-insights-0001"}
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        database_url = stack.enter_context(benchmark_database("sm_bench_insights"))
        seconds = load_measured_household(database_url)
        print(f"loaded {MEASURED_USER} (a year of 15-minute readings) through the handlers: {seconds:.1f} s")
        verdicts = []
        for cache_mb in (64, 0):
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            command = [sys.executable, "-m", "statistics_manager_service", "--role", "api"]
            env = service_env(database_url, port, cache_mb)
            with running(command, env, base + "/api/statistics/health") as server:
                suffix = "" if cache_mb else ", no cache"
                targets = []
                for label, path in (
                    (f"series: a year of daily consumption{suffix}", QUERY_PATH),
                    (f"bill of June 2025{suffix}", BILL_PATH),
                    (f"tariff comparison over 2025{suffix}", COMPARISON_PATH),
                ):
                    status, body = fetch(base + path, headers)
                    if status != 200:
                        raise RuntimeError(f"{path} answered {status}: {body[:300]!r}")
                    print(f"{label}: {len(body):,} bytes")
                    targets.append(Target(label, base + path, server.pid, database_url))
                verdicts.append((suffix, *measure(targets, headers, args.rounds, args.duration)))

    print(f"\n{'endpoint':<32} {'p99 ms':>8} {'target':>8} {'verdict':>8} {'req/s / series':>15}")
    errors = False
    for suffix, series, bill, comparison in verdicts:
        for label, result in (("series", series), ("/bill", bill), ("/tariff-comparison", comparison)):
            verdict = "OK" if result.p99_ms <= TARGET_P99_MS else "MISSED"
            share = result.requests_per_s / series.requests_per_s
            figures = f"{result.p99_ms:>8.1f} {TARGET_P99_MS:>8.0f} {verdict:>8} {share:>15.2f}"
            print(f"{label + suffix:<32} {figures}")
            errors = errors or bool(result.errors)
    print(f"total {time.perf_counter() - started:.0f} s")
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
