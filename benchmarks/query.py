"""Benchmark `/energy-consumption` (one household, one year, `daily`) over HTTP with 16 connections.

1. Creates a PostgreSQL database (127.0.0.1:5432, user postgres, trust auth) and drops it at the end.
2. Loads the measured household through the real handlers (an account event and a year of 15-minute
   readings), then 99 synthetic households copied straight into `households`/`statistics_periods`
   with COPY (a year of daily rows each, the level that is stored).
3. Starts the real service (`python -m statistics_manager_service --role api`, WEB_WORKERS=2) on each
   database twice, with its response cache (the default) and without it (RESPONSE_CACHE_MB=0), and a
   bare Flask app on waitress (one process, 16 threads) returning the service's exact response bytes.
4. Runs `wrk -t2 -c16 --latency` for ~10 s against each in turn, in rounds.

Targets: p99 <= 50 ms; service throughput >= 50% of the bare app's; p50/p99 with 10,000 households
<= 1.2x of those with 100 (judged on the service as configured by default, the cache on; the figures
without the cache are printed beside them). Compare the ratios, not the absolute numbers: wrk, the
servers and PostgreSQL share the machine.

Needs: wrk (Debian package `wrk`), waitress (benchmarks/requirements.txt).
Run: .venv/bin/python benchmarks/query.py   [--duration 10] [--households 10000]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import io
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from databases import ADMIN_URL, benchmark_database

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

# Generated per run: the service refuses every key written in the repository.
JWT_SIGN_KEY = secrets.token_urlsafe(64)
MEASURED_USER = "benchhome1"
YEAR_START = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
YEAR_END = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
QUERY_PATH = (
    "/api/statistics/energy-consumption"
    f"?user_ids={MEASURED_USER}&start_date=2025-01-01T00:00:00Z&end_date=2026-01-01T00:00:00Z&group_by=daily"
)
CORRELATION_ID = "benchmark-query-0001"
SYNTHETIC_GRANULARITIES = ("daily",)  # the stored level; the others are computed from it
CONNECTIONS = 16
WRK_THREADS = 2
SERVICE_WORKERS = 2
BARE_THREADS = 16
TARGET_P99_MS = 50.0
TARGET_THROUGHPUT_SHARE = 0.5
TARGET_GROWTH = 1.2


# --- the bare baseline -------------------------------------------------------------------------


def serve_bare(port: int, body_path: str) -> None:
    """Serve the given bytes from memory at the query path: Flask on waitress, one process, 16 threads."""
    import flask
    import waitress

    body = Path(body_path).read_bytes()
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "task queue depth" at every burst
    app = flask.Flask("bare")

    @app.get("/api/statistics/energy-consumption")
    def energy_consumption() -> flask.Response:
        return flask.Response(body, status=200, mimetype="application/json")

    waitress.serve(app, host="127.0.0.1", port=port, threads=BARE_THREADS, _quiet=True)


# --- database ----------------------------------------------------------------------------------


def year_of_readings() -> list[list[dict[str, Any]]]:
    """Return a year of 15-minute hub readings, one message per local day: a PV home's registers."""
    from statistics_manager_service.test.support.pipeline import reading

    steps = int((YEAR_END - YEAR_START).total_seconds()) // 900
    imported_wh = exported_wh = generated_wh = 0.0
    days: list[list[dict[str, Any]]] = []
    for step in range(steps + 1):
        at = YEAR_START + dt.timedelta(seconds=900 * step)
        if step % 96 == 0:
            days.append([])
        hour = at.hour + at.minute / 60
        sun = max(0.0, 1.0 - abs(hour - 13.0) / 6.0)
        load_w = 250.0 + 600.0 * (7 <= hour < 9 or 18 <= hour < 23) + 40.0 * (step % 7)
        pv_w = 2500.0 * sun * (0.6 + 0.4 * ((at.timetuple().tm_yday * 7) % 10) / 10)
        days[-1].append(
            {
                **reading(
                    at,
                    imported_wh,
                    exported_wh,
                    generated_wh=generated_wh,
                    power_w=max(load_w - pv_w, 0.0),
                    voltage_v=229.0 + step % 5,
                ),
                "power_exported_w": max(pv_w - load_w, 0.0),
            }
        )
        imported_wh += max(load_w - pv_w, 0.0) / 4
        exported_wh += max(pv_w - load_w, 0.0) / 4
        generated_wh += pv_w / 4
    return days


def load_measured_household(database_url: str) -> float:
    """Load the measured household through the real handlers; return the seconds it took."""
    from statistics_manager_service.config import Settings
    from statistics_manager_service.context import build_context
    from statistics_manager_service.test.support.pipeline import account_message, meter_message, process

    started = time.perf_counter()
    context = build_context(Settings(database_url=database_url, jwt_sign_key=JWT_SIGN_KEY).validate())
    try:
        dead = process(
            context,
            [account_message(MEASURED_USER, tarif_type="bi-hourly", contracted_power="6.9 kVA")],
        )
        days = year_of_readings()
        for first in range(0, len(days), 31):  # about a month per consumed batch
            dead += process(context, [meter_message(MEASURED_USER, day) for day in days[first : first + 31]])
        if dead:
            raise RuntimeError(f"the handlers dead-lettered {len(dead)} message(s): {dead[0]}")
    finally:
        context.dispose()
    return time.perf_counter() - started


def _csv_value(value: object) -> str:
    if value is None:
        return r"\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    return str(value)


def add_synthetic_households(database_url: str, first: int, count: int) -> float:
    """COPY `count` synthetic households with the measured one's daily rows; return seconds."""
    import sqlalchemy as sa

    started = time.perf_counter()
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as connection:
            columns = [
                row[0]
                for row in connection.execute(
                    sa.text(
                        "SELECT column_name FROM information_schema.columns "
                        "WHERE table_name = 'statistics_periods' ORDER BY ordinal_position"
                    )
                )
            ]
            rows = connection.execute(
                sa.text(
                    f"SELECT {', '.join(columns)} FROM statistics_periods WHERE user_id = :user_id "
                    "AND granularity IN :granularities ORDER BY granularity, period_start"
                ).bindparams(sa.bindparam("granularities", expanding=True)),
                {"user_id": MEASURED_USER, "granularities": list(SYNTHETIC_GRANULARITIES)},
            ).all()
        # One template per household: the measured rows with a placeholder user id (ids are 10 chars).
        template = "".join(
            "\t".join(["@@@@@@@@@@", *(_csv_value(v) for v in row[1:])]) + "\n" for row in rows
        )
        now = int(time.time())
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            households = "".join(
                f"syn{index:07d}\tsimple\t6.9\tPT\tEurope/Lisbon\t{now}\t{now}\n"
                for index in range(first, first + count)
            )
            cursor.copy_expert(
                "COPY households (user_id, tariff_type, contracted_power_kva, zone, timezone, created_at, "
                "updated_at) FROM STDIN",
                io.StringIO(households),
            )
            for chunk_start in range(first, first + count, 500):
                chunk = "".join(
                    template.replace("@@@@@@@@@@", f"syn{index:07d}")
                    for index in range(chunk_start, min(chunk_start + 500, first + count))
                )
                copy = f"COPY statistics_periods ({', '.join(columns)}) FROM STDIN"
                cursor.copy_expert(copy, io.StringIO(chunk))
            raw.commit()
            raw.driver_connection.autocommit = True  # type: ignore[union-attr]  # VACUUM needs no transaction
            cursor.execute("VACUUM ANALYZE households")
            cursor.execute("VACUUM ANALYZE statistics_periods")
        finally:
            raw.close()
    finally:
        engine.dispose()
    return time.perf_counter() - started


# --- servers -----------------------------------------------------------------------------------


def free_port() -> int:
    """Return a TCP port nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """GET `url`; return the status and body."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def wait_until_up(url: str, process: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    """Poll `url` until it answers 200; fail when the process exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before answering {url}")
        with contextlib.suppress(OSError):
            if fetch(url)[0] == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout_s:.0f} s")


@contextlib.contextmanager
def running(command: list[str], env: dict[str, str], ready_url: str) -> Iterator[subprocess.Popen[bytes]]:
    """Start a server in its own process group, wait until it answers, and stop it on exit."""
    process = subprocess.Popen(command, env=env, cwd=REPO_ROOT, start_new_session=True)
    try:
        wait_until_up(ready_url, process)
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


# --- wrk and CPU accounting --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class WrkResult:
    """What one wrk run measured, with the CPU the servers and PostgreSQL spent per request."""

    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: str | None
    server_cpu_ms: float
    postgres_cpu_ms: float


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # fields after "pid (comm) "


def process_tree_cpu_s(root_pid: int) -> float:
    """Return the user + system CPU seconds of a process and all its descendants so far."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    total_ticks, pending = 0, [root_pid]
    while pending:
        pid = pending.pop()
        fields = _stat_fields(pid)
        if fields is not None:
            total_ticks += int(fields[11]) + int(fields[12])  # utime, stime
        pending += children.get(pid, [])
    return total_ticks / _CLOCK_TICKS


def postgres_cpu_s(database_url: str) -> float:
    """Return the CPU seconds spent so far by the PostgreSQL backends connected to this database."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    engine = sa.create_engine(ADMIN_URL)
    try:
        with engine.connect() as connection:
            pids = connection.execute(
                sa.text("SELECT pid FROM pg_stat_activity WHERE datname = :name AND pid <> pg_backend_pid()"),
                {"name": make_url(database_url).database},
            ).scalars()
            return sum(process_tree_cpu_s(pid) for pid in pids)
    finally:
        engine.dispose()


def run_wrk(
    url: str, headers: dict[str, str], duration_s: int, server_pid: int, database_url: str | None = None
) -> WrkResult:
    """Run wrk with 16 connections for `duration_s`; parse its report and account the CPU used."""
    command = ["wrk", f"-t{WRK_THREADS}", f"-c{CONNECTIONS}", f"-d{duration_s}s", "--latency"]
    command += ["--timeout", "5s"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    server_before = process_tree_cpu_s(server_pid)
    postgres_before = postgres_cpu_s(database_url) if database_url else 0.0
    output = subprocess.run([*command, url], check=True, capture_output=True, text=True).stdout
    server_s = process_tree_cpu_s(server_pid) - server_before
    postgres_s = postgres_cpu_s(database_url) - postgres_before if database_url else 0.0
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", output, re.MULTILINE))
    throughput = re.search(r"Requests/sec:\s+([\d.]+)", output)
    count = re.search(r"(\d+) requests in", output)
    if throughput is None or count is None or set(latency) != {"50", "99"} or int(count.group(1)) == 0:
        raise RuntimeError(f"wrk measured nothing:\n{output}")
    requests = int(count.group(1))
    errors = [
        line.strip() for line in output.splitlines() if line.strip().startswith(("Non-2xx", "Socket errors"))
    ]
    return WrkResult(
        requests_per_s=float(throughput.group(1)),
        p50_ms=_ms(latency["50"]),
        p99_ms=_ms(latency["99"]),
        requests=requests,
        errors="; ".join(errors) or None,
        server_cpu_ms=server_s * 1000 / requests,
        postgres_cpu_ms=postgres_s * 1000 / requests,
    )


HEADER = f"{'run':<38} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'requests':>9} {'CPU ms/request':>15}"


def show(label: str, result: WrkResult) -> None:
    """Print one wrk result as a table row."""
    cpu = f"{result.server_cpu_ms:.2f}"
    if result.postgres_cpu_ms:
        cpu += f" + PG {result.postgres_cpu_ms:.2f}"
    print(
        f"{label:<38} {result.requests_per_s:>7,.0f} {result.p50_ms:>7.1f} {result.p99_ms:>7.1f}"
        f" {result.requests:>9,} {cpu:>15}" + (f"   !! {result.errors}" if result.errors else ""),
        flush=True,
    )


# --- main --------------------------------------------------------------------------------------


def service_env(database_url: str, port: int, cache_mb: int = 64) -> dict[str, str]:
    """The environment of a service process serving `database_url` on `port`."""
    env = {
        **os.environ,
        "RESPONSE_CACHE_MB": str(cache_mb),
        "DATABASE_URL": database_url,
        "JWT_SIGN_KEY": JWT_SIGN_KEY,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "WEB_WORKERS": str(SERVICE_WORKERS),
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(REPO_ROOT),
    }
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


@dataclasses.dataclass(frozen=True)
class Target:
    """One server under test."""

    label: str
    url: str
    pid: int
    database_url: str | None = None


def measure(targets: list[Target], headers: dict[str, str], rounds: int, duration_s: int) -> list[WrkResult]:
    """Measure the targets in turn, `rounds` times (so drifting background load hits all alike).

    Returns, per target, the median of each figure over the rounds.
    """
    print(f"\n{HEADER}")
    results: list[list[WrkResult]] = [[] for _ in targets]
    for round_number in range(rounds):
        for target, measured in zip(targets, results, strict=True):
            if round_number == 0:
                run_wrk(target.url, headers, 2, target.pid)  # warm-up
            result = run_wrk(target.url, headers, duration_s, target.pid, target.database_url)
            measured.append(result)
            show(f"{target.label} [{round_number + 1}]", result)
    medians = []
    for measured in results:
        errors = "; ".join(r.errors for r in measured if r.errors) or None
        medians.append(
            WrkResult(
                requests_per_s=statistics.median(r.requests_per_s for r in measured),
                p50_ms=statistics.median(r.p50_ms for r in measured),
                p99_ms=statistics.median(r.p99_ms for r in measured),
                requests=sum(r.requests for r in measured),
                errors=errors,
                server_cpu_ms=statistics.median(r.server_cpu_ms for r in measured),
                postgres_cpu_ms=statistics.median(r.postgres_cpu_ms for r in measured),
            )
        )
    print(f"\nmedians of {rounds} rounds")
    for target, median in zip(targets, medians, strict=True):
        show(target.label, median)
    return medians


def main() -> int:
    """Run the benchmark and print the numbers and the targets."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured wrk run (default 10)")
    parser.add_argument("--rounds", type=int, default=2, help="measurements of each server (default 2)")
    parser.add_argument("--households", type=int, default=10_000, help="households in the large database")
    parser.add_argument("--serve-bare", nargs=2, metavar=("PORT", "BODY_FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        serve_bare(int(args.serve_bare[0]), args.serve_bare[1])
        return 0
    if shutil.which("wrk") is None:
        print("wrk is missing: apt-get install -y wrk", file=sys.stderr)
        return 2

    from statistics_manager_service.config import Settings
    from statistics_manager_service.tokens import issue_token

    token = issue_token(
        Settings(jwt_sign_key=JWT_SIGN_KEY).validate(), user_id=MEASURED_USER, valid_for_s=3600
    )
    headers = {"Authorization": f"Bearer {token}", "X-Correlation-ID": CORRELATION_ID}
    python = sys.version.split()[0]
    print(f"machine: {os.cpu_count()} cores, Python {python}; wrk -t{WRK_THREADS} -c{CONNECTIONS} --latency")
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        small_db = stack.enter_context(benchmark_database("sm_bench_query"))
        seconds = load_measured_household(small_db)
        print(f"loaded {MEASURED_USER} (a year of 15-minute readings) through the handlers: {seconds:.1f} s")
        seconds = add_synthetic_households(small_db, 1, 99)
        print(f"copied 99 synthetic households in {seconds:.1f} s")
        large_db = stack.enter_context(benchmark_database("sm_bench_query", template_url=small_db))
        seconds = add_synthetic_households(large_db, 100, args.households - 100)
        print(
            f"copied {args.households - 100:,} more synthetic households into a copy of it: {seconds:.1f} s"
        )

        command = [sys.executable, "-m", "statistics_manager_service", "--role", "api"]
        targets: list[Target] = []
        bodies = []
        for cache_mb in (64, 0):
            for database_url, households in ((small_db, 100), (large_db, args.households)):
                port = free_port()
                base = f"http://127.0.0.1:{port}"
                server = stack.enter_context(
                    running(
                        command, service_env(database_url, port, cache_mb), base + "/api/statistics/health"
                    )
                )
                status, body = fetch(base + QUERY_PATH, headers)
                if status != 200:
                    raise RuntimeError(f"the service answered {status}: {body[:300]!r}")
                bodies.append(body)
                label = f"service, {households:,} households{'' if cache_mb else ', no cache'}"
                targets.append(Target(label, base + QUERY_PATH, server.pid, database_url))
        if any(body != bodies[0] for body in bodies):
            raise RuntimeError("the services answer differently")
        print(f"response: {len(bodies[0]):,} bytes, {bodies[0].count(b'slot_number')} buckets")
        body_file = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "body.json"
        body_file.write_bytes(bodies[0])
        port = free_port()
        bare_url = f"http://127.0.0.1:{port}{QUERY_PATH}"
        bare_command = [sys.executable, __file__, "--serve-bare", str(port), str(body_file)]
        bare_server = stack.enter_context(running(bare_command, service_env(small_db, port), bare_url))
        if fetch(bare_url)[1] != bodies[0]:
            raise RuntimeError("the bare app does not return the service's bytes")
        targets.insert(0, Target(f"bare Flask + waitress ({BARE_THREADS} thr.)", bare_url, bare_server.pid))
        bare, small, large, small_uncached, large_uncached = measure(
            targets, headers, args.rounds, args.duration
        )

    print(f"\n{'target (service as configured: cache on)':<42} {'measured':>22}  {'wanted':<9} verdict")
    for name, measured, wanted, ok in verdicts(bare, small, large, args.households):
        print(f"{name:<42} {measured:>22}  {wanted:<9} {'OK' if ok else 'MISSED'}")
    print(f"\n{'the same without the cache (RESPONSE_CACHE_MB=0)':<42} {'measured':>22}  {'wanted':<9}")
    for name, measured, wanted, _ in verdicts(bare, small_uncached, large_uncached, args.households):
        print(f"{name:<42} {measured:>22}  {wanted:<9}")
    print(f"total {time.perf_counter() - started:.0f} s")
    return 1 if any(r.errors for r in (bare, small, large, small_uncached, large_uncached)) else 0


def verdicts(
    bare: WrkResult, small: WrkResult, large: WrkResult, households: int
) -> list[tuple[str, str, str, bool]]:
    """The targets judged on one service configuration: (name, measured, wanted, met)."""
    share, share_large = (
        small.requests_per_s / bare.requests_per_s,
        large.requests_per_s / bare.requests_per_s,
    )
    growth_p50, growth_p99 = large.p50_ms / small.p50_ms, large.p99_ms / small.p99_ms
    growth_cpu = (large.server_cpu_ms + large.postgres_cpu_ms) / (small.server_cpu_ms + small.postgres_cpu_ms)
    worst_p99 = max(small.p99_ms, large.p99_ms)
    thousands = households // 1000
    return [
        (
            "p99 latency (worse database)",
            f"{worst_p99:.1f} ms",
            f"<= {TARGET_P99_MS:.0f} ms",
            worst_p99 <= TARGET_P99_MS,
        ),
        (
            "throughput / bare endpoint",
            f"{share:.2f} ({share_large:.2f} at {thousands}k)",
            f">= {TARGET_THROUGHPUT_SHARE}",
            share >= TARGET_THROUGHPUT_SHARE,
        ),
        (
            f"latency {thousands}k / 100 households",
            f"p50 {growth_p50:.2f}, p99 {growth_p99:.2f}",
            f"<= {TARGET_GROWTH}",
            max(growth_p50, growth_p99) <= TARGET_GROWTH,
        ),
        (f"CPU/request {thousands}k / 100", f"{growth_cpu:.2f}", "(info)", True),
    ]


if __name__ == "__main__":
    sys.exit(main())
