"""Benchmark ingestion end to end: meter readings through the real broker into PostgreSQL.

For each scenario the script
1. creates a PostgreSQL database (127.0.0.1:5432, user postgres, trust auth), dropped at the end, and
   starts the real Kafka-protocol broker (tansu, in-memory storage) with the service's topics;
2. starts the real worker (`python -m statistics_manager_service --role worker`: consumer and outbox
   relay; KAFKA_MAX_POLL_RECORDS=500 unless --max-poll-records says otherwise; --workers N starts N
   of them in one consumer group), waits until each has joined the group (has stored a warm-up
   account event from its partitions), then produces the readings (key = user id,
   day by day as live meters would send them) and stops the clock when every household's newest
   reading is aggregated; it then checks that `reading_days` holds every reading and that the local
   days of `statistics_periods` add up to the registers' differences, and prints the bytes stored
   per reading (every table and index of the database, after the run);
3. measures, on the same data, a bare kafka-python loop that consumes the same topic from the start
   and decodes every message (orjson), and a raw `COPY` of the same rows (buffer prepared beforehand)
   into an empty table of a row per reading with a primary key on (user_id, source, ts).

Targets on storage: <= 100 bytes per reading.

Scenarios: `batch` sends a local day (96 readings) per message, 1,000 households x 7 days (672,000
readings); `single` sends one reading per message, 100 households x 7 days (67,200 readings: the full
size would be 672,000 messages). Targets: batch end to end >= 40% of the COPY rate; single end to end
>= 30% of the bare consume rate. Everything shares the machine (broker, PostgreSQL, worker, this
script): compare the ratios, not the absolute numbers.

Run: .venv/bin/python benchmarks/ingest.py   [--scenario batch|single|both] [--households 1000]
     [--single-households 100] [--days 7] [--max-poll-records 500] [--workers 1] [--profile DIR]
     (--profile DIR: py-spy, `pip install py-spy`, samples each worker into DIR)
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import io
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from databases import benchmark_database

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

# Generated per run: the service refuses every key written in the repository.
JWT_SIGN_KEY = secrets.token_urlsafe(64)
START = dt.datetime(2026, 5, 4, tzinfo=dt.UTC)  # a Monday; Lisbon is UTC+1 then
STEP_S = 900
PER_DAY = 96
TIMEZONE = "Europe/Lisbon"  # the default time zone of households without an account
PARTITIONS = 6  # as in Docker-compose
MAX_POLL_RECORDS = 500
WORKERS = 1  # worker processes in the consumer group
TOPICS = ("meter-readings", "user-account", "grid-signals", "statistics", "statistics.dlq")
WARMUP_PREFIX = "warm"  # warm-up households: warm<round, 4 digits><partition, 2 digits>
TARGET_COPY_SHARE = 0.40  # batch scenario: end to end vs raw COPY
TARGET_BYTES_PER_READING = 100  # every table and index, after the run
TARGET_CONSUME_SHARE = 0.30  # single scenario: end to end vs bare consume loop
TIMEOUT_S = 400.0


@dataclasses.dataclass(frozen=True)
class Fleet:
    """Readings of `households` homes over `days` days, as arrays of shape (households, steps)."""

    user_ids: list[str]
    ts: np.ndarray
    imported_wh: np.ndarray
    exported_wh: np.ndarray
    generated_wh: np.ndarray  # NaN for homes without PV
    power_imported_w: np.ndarray
    power_exported_w: np.ndarray  # NaN for homes without PV
    voltage_v: np.ndarray

    @property
    def readings(self) -> int:
        """Count the readings."""
        return int(self.ts.size)


@dataclasses.dataclass(frozen=True)
class Scenario:
    """One measured configuration."""

    name: str
    households: int
    days: int
    per_message: int


@dataclasses.dataclass(frozen=True)
class Result:
    """What one scenario measured (readings/s unless said otherwise)."""

    scenario: Scenario
    readings: int
    messages: int
    end_to_end_s: float
    produce_s: float
    worker_cpu_s: float
    consume_s: float
    copy_s: float

    def rate(self, seconds: float) -> float:
        """Readings per second over `seconds`."""
        return self.readings / seconds


# --- data ----------------------------------------------------------------------------------------


def make_fleet(households: int, days: int, seed: int = 20260504) -> Fleet:
    """Return 15-minute readings: a load with morning and evening peaks, PV on every other home."""
    rng = np.random.default_rng(seed)
    steps = days * PER_DAY
    ts = int(START.timestamp()) + STEP_S * np.arange(steps, dtype=np.int64)
    hour = ((ts % 86_400) / 3600.0 + 1.0) % 24.0  # local (UTC+1) hour
    peak = ((hour >= 7) & (hour < 9)) | ((hour >= 18) & (hour < 23))
    load_w = rng.gamma(2.0, 150.0, (households, steps)) + 600.0 * peak
    sun = np.clip(1.0 - np.abs(hour - 13.0) / 6.0, 0.0, None)
    has_pv = (np.arange(households) % 2 == 0)[:, None]
    pv_w = np.where(has_pv, 2500.0 * sun * rng.uniform(0.5, 1.0, (households, steps)), 0.0)
    imported_w = np.maximum(load_w - pv_w, 0.0)
    exported_w = np.maximum(pv_w - load_w, 0.0)
    base = rng.uniform(1e5, 5e6, (households, 1))

    def register(power_w: np.ndarray, start: np.ndarray | float) -> np.ndarray:
        wh = start + np.cumsum(power_w * STEP_S / 3600.0, axis=1) - power_w[:, :1] * STEP_S / 3600.0
        return np.round(wh, 3)

    return Fleet(
        user_ids=[f"bench{index:05d}" for index in range(households)],
        ts=np.broadcast_to(ts, (households, steps)).copy(),
        imported_wh=register(imported_w, base),
        exported_wh=register(exported_w, base / 10),
        generated_wh=np.where(has_pv, register(pv_w, base / 5), np.nan),
        power_imported_w=np.round(imported_w, 1),
        power_exported_w=np.where(has_pv, np.round(exported_w, 1), np.nan),
        voltage_v=np.round(rng.normal(231.0, 2.0, (households, steps)), 1),
    )


def _iso(epoch_s: int) -> str:
    return dt.datetime.fromtimestamp(epoch_s, dt.UTC).isoformat().replace("+00:00", "Z")


def messages_of(fleet: Fleet, per_message: int) -> list[tuple[bytes, bytes]]:
    """Return (key, value) MeterReadings messages in time order: all homes' first chunk, then the next."""
    import orjson

    stamps = [_iso(int(t)) for t in fleet.ts[0]]
    arrays = {
        "energy_imported_wh": fleet.imported_wh,
        "energy_exported_wh": fleet.exported_wh,
        "energy_generated_wh": fleet.generated_wh,
        "power_imported_w": fleet.power_imported_w,
        "power_exported_w": fleet.power_exported_w,
        "voltage_v": fleet.voltage_v,
    }
    names = list(arrays)
    per_home: list[list[dict[str, Any]]] = []
    for home in range(len(fleet.user_ids)):
        values = {name: arrays[name][home].tolist() for name in names}
        with_pv = not np.isnan(fleet.generated_wh[home, 0])
        present = [n for n in names if with_pv or n not in ("energy_generated_wh", "power_exported_w")]
        per_home.append(
            [
                {"timestamp": stamps[step], **{name: values[name][step] for name in present}}
                for step in range(len(stamps))
            ]
        )
    result = []
    for first in range(0, len(stamps), per_message):
        for home, user_id in enumerate(fleet.user_ids):
            body = {
                "eventId": f"{user_id}-{first}",
                "eventType": "MeterReadings",
                "timestamp": stamps[first],
                "payload": {
                    "user_id": user_id,
                    "source": "hub",
                    "readings": per_home[home][first : first + per_message],
                },
            }
            result.append((user_id.encode(), orjson.dumps(body)))
    return result


def copy_buffer(fleet: Fleet) -> str:
    """The rows of `fleet` in COPY text format (NULL as \\N), in the baseline table's column order."""
    columns = [
        np.repeat(np.array(fleet.user_ids, dtype=object), fleet.ts.shape[1]),
        np.full(fleet.readings, "hub", dtype=object),
        fleet.ts.ravel().astype(str).astype(object),
    ]
    for values in (
        fleet.imported_wh,
        fleet.exported_wh,
        fleet.generated_wh,
        fleet.power_imported_w,
        fleet.power_exported_w,
        fleet.voltage_v,
    ):
        flat = values.ravel()
        text = np.array([repr(v) for v in flat.tolist()], dtype=object)
        text[np.isnan(flat)] = r"\N"
        columns.append(text)
    lines = ["\t".join(row) for row in zip(*columns, strict=True)]
    return "\n".join(lines) + "\n"


def expected_days(fleet: Fleet) -> tuple[int, float]:
    """Return the count of local days with readings and the total imported kWh (register differences)."""
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(TIMEZONE)
    first = dt.datetime.fromtimestamp(int(fleet.ts[0, 0]), zone).date()
    last = dt.datetime.fromtimestamp(int(fleet.ts[0, -1]), zone).date()
    days = (last - first).days + 1
    kwh = float((fleet.imported_wh[:, -1] - fleet.imported_wh[:, 0]).sum() / 1000.0)
    return days * len(fleet.user_ids), kwh


# --- infrastructure ------------------------------------------------------------------------------


@contextlib.contextmanager
def migrated_database() -> Iterator[str]:
    """Create an empty, migrated database, yield its URL, and drop it afterwards."""
    import sqlalchemy as sa

    from statistics_manager_service.storage import migrate

    with benchmark_database("sm_bench_ingest") as url:
        engine = sa.create_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        yield url


def free_port() -> int:
    """Return a TCP port nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float, interval_s: float = 0.1) -> None:
    """Poll `condition` until it holds; fail with `what` after the timeout."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def running_workers(env: dict[str, str], count: int) -> Iterator[list[tuple[subprocess.Popen[bytes], int]]]:
    """Start `count` `--role worker` processes, each in its own process group and on its own port;
    wait for their /health; stop them on exit. Yields (process, port) pairs."""
    command = [sys.executable, "-m", "statistics_manager_service", "--role", "worker"]
    started: list[tuple[subprocess.Popen[bytes], int]] = []

    def healthy(process: subprocess.Popen[bytes], port: int) -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"a worker exited with {process.returncode}")
        url = f"http://127.0.0.1:{port}/api/statistics/health"
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
        return False

    try:
        for _ in range(count):
            port = free_port()
            process = subprocess.Popen(
                command, env={**env, "PORT": str(port)}, cwd=REPO_ROOT, start_new_session=True
            )
            started.append((process, port))
        for process, port in started:
            wait_for(lambda: healthy(process, port), "a worker's /health", 60.0, 0.2)  # noqa: B023
        yield started
    finally:
        for process, _ in started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process, _ in started:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def processed_account_events(port: int) -> float:
    """The user-account events a worker has processed, from its /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        body = response.read().decode()
    total = 0.0
    for line in body.splitlines():
        if line.startswith("statistics_events_processed_total{") and 'user-account"' in line:
            total += float(line.rpartition(" ")[2])
    return total


@contextlib.contextmanager
def profiled_all(pids: list[int], output: Path | None) -> Iterator[None]:
    """`profiled` for every worker: DIR/worker-<scenario>.txt, or -1, -2, … with several."""
    with contextlib.ExitStack() as stack:
        for index, pid in enumerate(pids, start=1):
            path = output
            if output is not None and len(pids) > 1:
                path = output.with_name(f"{output.stem}-{index}{output.suffix}")
            stack.enter_context(profiled(pid, path))
        yield


@contextlib.contextmanager
def profiled(pid: int, output: Path | None) -> Iterator[None]:
    """Sample the worker with py-spy while the block runs (when an output path is given)."""
    if output is None:
        yield
        return
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    command = [
        spy,
        "record",
        "--pid",
        str(pid),
        "--format",
        "raw",
        "--rate",
        "50",
        "--idle",
        "--output",
        str(output),
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)


# --- measurements --------------------------------------------------------------------------------


def warm_up(producer: Any, topic: str, ports: list[int], scalar: Callable[..., Any]) -> None:
    """Send account events to every partition until every worker has stored one of its own.

    Then each worker has been assigned its partitions: the group has settled.
    """
    import orjson

    deadline = time.monotonic() + 90.0
    for round_ in range(1000):
        users = [f"{WARMUP_PREFIX}{round_:04d}{partition:02d}" for partition in range(PARTITIONS)]
        for partition, user_id in enumerate(users):
            body = {
                "eventId": f"warm-up-{user_id}",
                "eventType": "UserRegistered",
                "payload": {"user_id": user_id},
            }
            producer.send(topic, key=user_id.encode(), value=orjson.dumps(body), partition=partition)
        producer.flush(timeout=30)
        wait_for(
            lambda: scalar("SELECT count(*) FROM households WHERE user_id = ANY(:u)", u=users) == len(users),  # noqa: B023
            "the workers to join their group and store the warm-up events",
            90.0,
            0.2,
        )
        if all(processed_account_events(port) > 0 for port in ports):
            return
        if time.monotonic() > deadline:
            raise RuntimeError("a worker got no partition of the warm-up topic")
        time.sleep(1.0)
    raise RuntimeError("the workers did not settle")


def end_to_end(
    database_url: str,
    bootstrap: str,
    prefix: str,
    fleet: Fleet,
    messages: list[tuple[bytes, bytes]],
    profile: Path | None,
) -> tuple[float, float, float]:
    """Produce `messages` to a running worker; return (seconds to aggregated, produce seconds, worker CPU)."""
    import sqlalchemy as sa
    from kafka import KafkaProducer

    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "JWT_SIGN_KEY": JWT_SIGN_KEY,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_TOPIC_PREFIX": prefix,
        "KAFKA_GROUP_ID": f"{prefix}group",
        "KAFKA_SESSION_TIMEOUT_MS": "6000",  # tansu holds the first join for half of it
        "KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
        "KAFKA_MAX_POLL_RECORDS": str(MAX_POLL_RECORDS),
        "RUN_MIGRATIONS_ON_START": "false",
        "HOST": "127.0.0.1",
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(REPO_ROOT),
    }
    engine = sa.create_engine(database_url)
    last_ts = int(fleet.ts[0, -1])

    def scalar(sql: str, **params: Any) -> Any:
        with engine.connect() as connection:
            return connection.execute(sa.text(sql), params).scalar()

    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=10, batch_size=512 * 1024, max_request_size=4 << 20
    )
    try:
        with running_workers(env, WORKERS) as started:
            warm_up(producer, f"{prefix}user-account", [port for _, port in started], scalar)
            pids = [process.pid for process, _ in started]
            cpu_before = sum(cpu_seconds(pid) for pid in pids)
            topic = f"{prefix}meter-readings"
            with profiled_all(pids, profile):
                started_at = time.perf_counter()
                for key, value in messages:
                    producer.send(topic, key=key, value=value)
                producer.flush(timeout=TIMEOUT_S)
                produced = time.perf_counter() - started_at
                wait_for(
                    lambda: (
                        scalar("SELECT count(*) FROM households WHERE last_reading_ts = :t", t=last_ts)
                        == len(fleet.user_ids)
                    ),
                    "every household's newest reading aggregated",
                    TIMEOUT_S,
                    0.05,
                )
                elapsed = time.perf_counter() - started_at
            worker_cpu = sum(cpu_seconds(pid) for pid in pids) - cpu_before
        readings = scalar(
            "SELECT coalesce(sum(reading_count), 0) FROM reading_days WHERE user_id NOT LIKE :w",
            w=WARMUP_PREFIX + "%",
        )
        if readings != fleet.readings:
            raise RuntimeError(f"reading_days holds {readings} readings, not {fleet.readings}")
        with engine.connect() as connection:
            sizes = connection.execute(
                sa.text(
                    "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c"
                    " JOIN pg_namespace n ON n.oid = c.relnamespace"
                    " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'm') ORDER BY 2 DESC"
                )
            ).all()
        stored_bytes = sum(int(size) for _, size in sizes)
        print(
            "  bytes per reading by table: "
            + ", ".join(f"{name} {int(size) / fleet.readings:.1f}" for name, size in sizes[:5]),
            flush=True,
        )
        days, kwh = expected_days(fleet)
        with engine.connect() as connection:
            stored_days, stored_kwh = connection.execute(
                sa.text(
                    "SELECT count(*), sum(energy_imported_kwh) FROM statistics_periods "
                    "WHERE granularity = 'daily'"
                )
            ).one()
        if stored_days != days or abs(float(stored_kwh) - kwh) > 1e-6 * kwh:
            raise RuntimeError(
                f"daily statistics: {stored_days} days, {stored_kwh} kWh; expected {days}, {kwh}"
            )
    finally:
        producer.close()
        engine.dispose()
    return elapsed, produced, worker_cpu, stored_bytes


def bare_consume(bootstrap: str, topic: str, expected_messages: int) -> tuple[float, int]:
    """Consume `topic` from the start and decode every message; return (seconds, readings seen)."""
    import orjson
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, max_poll_records=MAX_POLL_RECORDS
    )
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        seen = readings = 0
        deadline = time.monotonic() + TIMEOUT_S
        started = time.perf_counter()
        while seen < expected_messages:
            if time.monotonic() > deadline:
                raise RuntimeError(f"consumed only {seen} of {expected_messages} messages")
            for records in consumer.poll(timeout_ms=500, max_records=MAX_POLL_RECORDS).values():
                for record in records:
                    readings += len(orjson.loads(record.value)["payload"]["readings"])
                seen += len(records)
        return time.perf_counter() - started, readings
    finally:
        consumer.close()


def raw_copy(database_url: str, buffer: str) -> float:
    """COPY prepared rows into an empty table of a row per reading; return seconds."""
    import sqlalchemy as sa

    engine = sa.create_engine(database_url)
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute(
            "CREATE TABLE copy_baseline (user_id varchar(10), source varchar(16), ts bigint,"
            " energy_imported_wh float8 NOT NULL, energy_exported_wh float8 NOT NULL,"
            " energy_generated_wh float8, power_imported_w float8, power_exported_w float8,"
            " voltage_v float8, PRIMARY KEY (user_id, source, ts))"
        )
        raw.commit()
        started = time.perf_counter()
        cursor.copy_expert("COPY copy_baseline FROM STDIN", io.StringIO(buffer))
        raw.commit()
        elapsed = time.perf_counter() - started
        cursor.execute("DROP TABLE copy_baseline")
        raw.commit()
    finally:
        raw.close()
        engine.dispose()
    return elapsed


def run_scenario(scenario: Scenario, profile_dir: Path | None) -> Result:
    """Measure one scenario on a fresh database and a fresh broker."""
    from statistics_manager_service.test.support.kafka_broker import KafkaBroker

    fleet = make_fleet(scenario.households, scenario.days)
    messages = messages_of(fleet, scenario.per_message)
    buffer = copy_buffer(fleet)
    print(
        f"\n[{scenario.name}] {scenario.households:,} households x {scenario.days} days: "
        f"{fleet.readings:,} readings in {len(messages):,} messages of {scenario.per_message}, "
        f"{sum(len(v) for _, v in messages) / 1e6:.0f} MB",
        flush=True,
    )
    profile = None if profile_dir is None else profile_dir / f"worker-{scenario.name}.txt"
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    with KafkaBroker(storage="memory") as broker, migrated_database() as database_url:
        broker.create_topics([prefix + name for name in TOPICS], partitions=PARTITIONS)
        elapsed, produced, worker_cpu, stored_bytes = end_to_end(
            database_url, broker.bootstrap_servers, prefix, fleet, messages, profile
        )
        print(
            f"  end to end {elapsed:.1f} s (producing took {produced:.1f} s; worker CPU {worker_cpu:.1f} s)"
        )
        print(
            f"  stored: {stored_bytes / 1e6:.1f} MB in all tables and indexes,"
            f" {stored_bytes / fleet.readings:.0f} bytes per reading (target <= {TARGET_BYTES_PER_READING})",
            flush=True,
        )
        consumed, seen = bare_consume(broker.bootstrap_servers, f"{prefix}meter-readings", len(messages))
        if seen != fleet.readings:
            raise RuntimeError(f"the bare loop decoded {seen} readings, not {fleet.readings}")
        print(f"  bare consume {consumed:.2f} s", flush=True)
        copied = raw_copy(database_url, buffer)
        print(f"  raw COPY {copied:.2f} s", flush=True)
    return Result(scenario, fleet.readings, len(messages), elapsed, produced, worker_cpu, consumed, copied)


def report(results: list[Result]) -> None:
    """Print the rates, the ratios and the targets."""
    print(
        f"\n{'scenario':<34} {'end to end':>11} {'bare consume':>13} {'raw COPY':>10}"
        f" {'e2e/COPY':>9} {'e2e/consume':>12}"
    )
    for result in results:
        e2e, consume, copy = (result.rate(s) for s in (result.end_to_end_s, result.consume_s, result.copy_s))
        label = f"{result.scenario.name}: {result.readings:,} readings, {result.scenario.per_message}/msg"
        rates = f"{e2e:>11,.0f} {consume:>13,.0f} {copy:>10,.0f}"
        print(f"{label:<34} {rates} {e2e / copy:>9.0%} {e2e / consume:>12.0%}")
    print("(readings/s)")
    for result in results:
        e2e = result.rate(result.end_to_end_s)
        if result.scenario.per_message > 1:
            share, target, against = e2e / result.rate(result.copy_s), TARGET_COPY_SHARE, "raw COPY"
        else:
            share, target, against = e2e / result.rate(result.consume_s), TARGET_CONSUME_SHARE, "bare consume"
        verdict = "met" if share >= target else "NOT met"
        print(
            f"target {result.scenario.name}: end to end >= {target:.0%} of {against}: {share:.0%} ({verdict})"
        )


def main() -> int:
    """Run the chosen scenarios and print the numbers and the targets."""
    global MAX_POLL_RECORDS, WORKERS  # one setting for the whole run
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--scenario", choices=("batch", "single", "both"), default="both")
    parser.add_argument("--households", type=int, default=1000, help="households of the batch scenario")
    parser.add_argument(
        "--single-households", type=int, default=100, help="households of the single scenario"
    )
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--max-poll-records", type=int, default=MAX_POLL_RECORDS, help="records per batch")
    parser.add_argument("--workers", type=int, default=WORKERS, help="worker processes in the group")
    parser.add_argument(
        "--profile", type=Path, help="write py-spy raw stacks of the workers to this directory"
    )
    args = parser.parse_args()
    MAX_POLL_RECORDS = args.max_poll_records
    WORKERS = args.workers
    scenarios = []
    if args.scenario in ("batch", "both"):
        scenarios.append(Scenario("batch", args.households, args.days, PER_DAY))
    if args.scenario in ("single", "both"):
        scenarios.append(Scenario("single", args.single_households, args.days, 1))
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    print(
        f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; "
        f"{PARTITIONS} partitions, KAFKA_MAX_POLL_RECORDS={MAX_POLL_RECORDS}, "
        f"{WORKERS} worker process{'es' if WORKERS > 1 else ''}"
    )
    started = time.perf_counter()
    results = [run_scenario(scenario, args.profile) for scenario in scenarios]
    report(results)
    print(f"\nwhole run: {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
