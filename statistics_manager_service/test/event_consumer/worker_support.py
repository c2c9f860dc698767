"""Worker processes, database outages and ingestion workloads for the robustness tests.

A `Deployment` is one private PostgreSQL database plus a private topic prefix and consumer
group on a broker; `WorkerProcess` runs ``python -m statistics_manager_service --role worker``
against it, the way production does, so tests can SIGKILL it, restart it and read its
/ready and /metrics endpoints.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from kafka import KafkaConsumer, KafkaProducer
from kafka.structs import TopicPartition
from sqlalchemy.engine import make_url

from statistics_manager_service.context import ServiceContext, build_context
from statistics_manager_service.event_consumer.consumer import CONSUMED_TOPICS, DLQ_TOPIC
from statistics_manager_service.event_consumer.processor import Message
from statistics_manager_service.event_consumer.runner import build_processor
from statistics_manager_service.test.conftest import (
    POSTGRES_ADMIN_URL,
    REPO_ROOT,
    TEST_JWT_KEY,
    create_postgres_database,
    drop_postgres_database,
    make_settings,
)
from statistics_manager_service.test.event_consumer.test_processor import snapshot
from statistics_manager_service.test.support.cli import SERVICE_COMMAND
from statistics_manager_service.test.support.kafka_broker import KafkaBroker, free_port
from statistics_manager_service.test.support.pipeline import envelope, iso, reading

WORKER_COMMAND = (*SERVICE_COMMAND, "--role", "worker")
# Tables whose contents depend on which process ran and when (tariff-book bookkeeping, the
# workers' periodic alert and peer-group jobs), not on the events alone.
PROCESS_TABLES = ("service_state", "alert_progress", "alerts_sent", "peer_groups")


def wait_for(condition: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.1) -> Any:
    """Poll `condition` until it returns something truthy (returned); fail with `what` after the timeout.

    A condition may have a `describe()` attribute telling the state it saw, for the failure message.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            describe = getattr(condition, "describe", None)
            state = f" ({describe()})" if describe else ""
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}{state}")
        time.sleep(interval_s)


# ---- the deployment: database, topics, group ------------------------------------------------


@dataclasses.dataclass
class Deployment:
    """A private database and topic prefix/consumer group on a broker."""

    broker: KafkaBroker
    database_url: str
    context: ServiceContext
    prefix: str
    group: str
    partitions: int

    def topic(self, name: str) -> str:
        """The full name of a topic such as `meter-readings`."""
        return self.prefix + name

    def count(self, sql: str, **params: Any) -> int:
        """Run a counting query on the deployment's database."""
        with self.context.engine.connect() as connection:
            return int(connection.execute(sa.text(sql), params).scalar_one())

    def processed(self, event_type: str) -> int:
        """How many events of a type whose ids are recorded were processed (each id once)."""
        return self.count("SELECT count(*) FROM processed_events WHERE event_type = :t", t=event_type)

    def readings(self) -> int:
        """How many readings are stored."""
        return self.count("SELECT coalesce(sum(reading_count), 0) FROM reading_days")

    def unsent_outbox(self) -> int:
        """How many outbox events the relay has not published yet."""
        return self.count("SELECT count(*) FROM events")

    def processed_ids(self) -> set[str]:
        """Every processed event id."""
        with self.context.engine.connect() as connection:
            return {row[0] for row in connection.execute(sa.text("SELECT event_id FROM processed_events"))}

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every table that events determine, row by row."""
        tables = snapshot(self.context)
        for name in PROCESS_TABLES:
            tables.pop(name, None)
        return tables

    def dead_letters(self, timeout_s: float = 3.0) -> list[Any]:
        """Read the whole dead-letter topic."""
        return read_topic(self.broker, self.topic(DLQ_TOPIC), timeout_s)


@contextmanager
def deployment(broker: KafkaBroker, partitions: int = 3) -> Iterator[Deployment]:
    """A migrated private database and private topics; dropped afterwards."""
    url = create_postgres_database("sm_robust")
    prefix = f"r{uuid.uuid4().hex[:8]}."
    broker.create_topics([prefix + name for name in (*CONSUMED_TOPICS, DLQ_TOPIC)], partitions=partitions)
    context = build_context(make_settings(url, kafka_topic_prefix=prefix))
    try:
        yield Deployment(broker, url, context, prefix, f"group-{prefix}", partitions)
    finally:
        context.engine.dispose()
        drop_postgres_database(url)


@contextmanager
def clean_database() -> Iterator[ServiceContext]:
    """A migrated private database for a reference run; dropped afterwards."""
    url = create_postgres_database("sm_reference")
    context = build_context(make_settings(url))
    try:
        yield context
    finally:
        context.engine.dispose()
        drop_postgres_database(url)


def read_topic(broker: KafkaBroker, topic: str, timeout_s: float) -> list[Any]:
    """Every record of a topic up to its current end (no consumer group)."""
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap_servers, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        assert partitions, f"topic {topic} has no partitions (not created?)"
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        records: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=300).values():
                records.extend(batch)
            highwaters = [consumer.highwater(tp) for tp in partitions]
            if None not in highwaters and all(
                consumer.position(tp) >= (highwater or 0)
                for tp, highwater in zip(partitions, highwaters, strict=True)
            ):
                break
        return records
    finally:
        consumer.close()


# ---- database outages -----------------------------------------------------------------------


def _admin() -> sa.Engine:
    return sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")


def block_database(url: str) -> None:
    """Make a database refuse connections and cut the open ones: an outage as the service sees it."""
    name = make_url(url).database
    engine = _admin()
    try:
        with engine.connect() as connection:
            connection.execute(sa.text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false'))
            connection.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": name},
            )
    finally:
        engine.dispose()


def unblock_database(url: str) -> None:
    """End the outage of `block_database`."""
    name = make_url(url).database
    engine = _admin()
    try:
        with engine.connect() as connection:
            connection.execute(sa.text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true'))
    finally:
        engine.dispose()


@contextmanager
def database_outage(url: str) -> Iterator[None]:
    """The database is unavailable for the body of the block."""
    block_database(url)
    try:
        yield
    finally:
        unblock_database(url)


# ---- worker processes -----------------------------------------------------------------------


class WorkerProcess:
    """`python -m statistics_manager_service --role worker` on a deployment."""

    def __init__(self, deployment: Deployment, log_dir: Path, name: str = "worker", **env: str) -> None:
        self.deployment = deployment
        self.log_dir = log_dir
        self.name = name
        self.extra_env = env
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.starts = 0

    def environment(self) -> dict[str, str]:
        """The worker's settings, as an operator would set them."""
        d = self.deployment
        env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "DATABASE_"))}
        env.update(
            PYTHONPATH=str(REPO_ROOT),
            DATABASE_URL=d.database_url,
            JWT_SIGN_KEY=TEST_JWT_KEY,
            KAFKA_BOOTSTRAP_SERVERS=d.broker.bootstrap_servers,
            KAFKA_TOPIC_PREFIX=d.prefix,
            KAFKA_GROUP_ID=d.group,
            KAFKA_SESSION_TIMEOUT_MS="6000",
            KAFKA_HEARTBEAT_INTERVAL_MS="1000",
            PORT=str(self.port),
            HOST="127.0.0.1",
            WEB_WORKERS="1",
            LOG_LEVEL="WARNING",
        )
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        env.update(self.extra_env)
        return env

    @property
    def log_path(self) -> Path:
        """Where every incarnation's output goes."""
        return self.log_dir / f"{self.name}.log"

    def start(self) -> WorkerProcess:
        """Start a new incarnation on a fresh port."""
        assert not self.alive, "already running"
        self.port = free_port()
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n==== {self.name} start #{self.starts}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                WORKER_COMMAND,
                env=self.environment(),
                cwd=self.log_dir,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        return self

    @property
    def alive(self) -> bool:
        """The process is running."""
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int:
        """The running incarnation's process id."""
        assert self.process is not None
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL: no cleanup, no offset commit, no leave-group."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout_s`; return the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def get(self, path: str, timeout_s: float = 3.0) -> tuple[int, bytes]:
        """GET a path of the worker's HTTP server; (0, b"") when it does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=timeout_s) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()
        except OSError:
            return 0, b""

    def ready(self) -> tuple[int, dict[str, Any]]:
        """The /ready probe's status and body."""
        status, body = self.get("/api/statistics/ready")
        return status, (json.loads(body) if body else {})

    def metric(self, name: str) -> float:
        """Sum a counter or gauge over its labels from /metrics (0 when absent)."""
        status, body = self.get("/metrics")
        if status != 200:
            return 0.0
        total = 0.0
        for line in body.decode().splitlines():
            if line.startswith(name) and not line.startswith("#"):
                head, _, value = line.rpartition(" ")
                if head.split("{")[0] == name:
                    total += float(value)
        return total

    def wait_healthy(self, timeout_s: float = 30.0) -> None:
        """Wait until the worker's HTTP server answers /health."""
        wait_for(
            lambda: self.get("/api/statistics/health", 1.0)[0] == 200 or self._died(),
            timeout_s,
            f"{self.name} to serve /health",
        )

    def _died(self) -> bool:
        if not self.alive:
            raise AssertionError(f"{self.name} exited with {self.process and self.process.returncode}")
        return False

    def log_tail(self, lines: int = 60) -> str:
        """The end of the worker's output."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "<no log>"


@contextmanager
def workers(*processes: WorkerProcess) -> Iterator[tuple[WorkerProcess, ...]]:
    """Make sure worker processes are stopped after the block; show their logs when it fails."""
    try:
        yield processes
    except BaseException:
        for process in processes:
            print(f"---- {process.name} log tail ----\n{process.log_tail()}", file=sys.stderr)
        raise
    finally:
        for process in processes:
            process.stop(timeout_s=10.0)


# ---- workloads ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Event:
    """One message to produce: topic short name, key, value, event id."""

    topic: str
    key: str
    value: bytes
    event_id: str
    event_type: str
    readings: int = 0

    def message(self, prefix: str = "hems.", offset: int = 0) -> Message:
        """The message as the processor sees it."""
        return Message(prefix + self.topic, 0, offset, self.key.encode(), self.value)


def event(topic: str, key: str, event_type: str, payload: dict[str, Any], readings: int = 0) -> Event:
    """Wrap a payload in a plain envelope with a fresh event id."""
    event_id = str(uuid.uuid4())
    return Event(topic, key, envelope(event_type, payload, event_id), event_id, event_type, readings)


START = dt.datetime(2026, 3, 27, 18, 0, tzinfo=dt.UTC)  # runs over the Lisbon DST change
TARIFFS = ("simple", "bi-hourly", "tri-hourly", "dynamic")


def household_ids(count: int, tag: str = "home") -> list[str]:
    """User ids of 10 characters."""
    return [f"{tag[:5]}{index:05d}" for index in range(count)]


def account_events(users: Sequence[str]) -> list[Event]:
    """A registration per household, cycling through the tariffs."""
    return [
        event(
            "user-account",
            user,
            "UserRegistered",
            {
                "user_id": user,
                "tarif_type": TARIFFS[index % len(TARIFFS)],
                "contracted_power": "6.9 kVA",
                "country": "PT",
            },
        )
        for index, user in enumerate(users)
    ]


def signal_events(start: dt.datetime, hours: int, seed: int, zone: str = "PT") -> list[Event]:
    """An hourly carbon-intensity series and import/export price series for a zone."""
    rng = random.Random(seed)
    hourly = [start.replace(minute=0) + dt.timedelta(hours=h) for h in range(hours)]
    series = {
        ("CarbonIntensity", "kind", "actual", "gCO2eq/kWh"): [rng.uniform(80, 300) for _ in hourly],
        ("EnergyPrices", "direction", "import", "EUR/kWh"): [rng.uniform(0.05, 0.3) for _ in hourly],
        ("EnergyPrices", "direction", "export", "EUR/kWh"): [rng.uniform(0.0, 0.08) for _ in hourly],
    }
    return [
        event(
            "grid-signals",
            zone,
            event_type,
            {
                "zone": zone,
                field: value,
                "unit": unit,
                "resolution_minutes": 60,
                "values": [
                    {"timestamp": iso(at), "value": round(v, 4)} for at, v in zip(hourly, values, strict=True)
                ],
            },
        )
        for (event_type, field, value, unit), values in series.items()
    ]


def reading_events(
    users: Sequence[str], readings_per_user: int, per_event: int, interval_s: int, seed: int
) -> list[list[Event]]:
    """Per household, MeterReadings events of consecutive readings of a cumulative register."""
    rng = random.Random(seed)
    result = []
    for user in users:
        register = rng.uniform(1e4, 1e5)
        exported = 0.0
        points = []
        for index in range(readings_per_user):
            if index == readings_per_user // 2 and user.endswith("3"):
                register = rng.uniform(0, 10)  # a meter replacement: the register resets
            register += rng.uniform(0, 60)
            exported += rng.choice((0.0, 0.0, rng.uniform(0, 20)))
            at = START + dt.timedelta(seconds=interval_s * index + rng.randrange(0, 20))
            points.append(reading(at, round(register, 3), round(exported, 3), power_w=rng.uniform(50, 4000)))
        result.append(
            [
                event(
                    "meter-readings",
                    user,
                    "MeterReadings",
                    {"user_id": user, "source": "hub", "readings": points[i : i + per_event]},
                    readings=len(points[i : i + per_event]),
                )
                for i in range(0, len(points), per_event)
            ]
        )
    return result


def interleave(per_user: Sequence[Sequence[Event]], seed: int, late_share: float = 0.1) -> list[Event]:
    """Merge households' streams; a share of each household's events arrives late (out of order)."""
    rng = random.Random(seed)
    streams = []
    for events in per_user:
        ordered = list(events)
        for _ in range(int(len(ordered) * late_share)):
            position = rng.randrange(len(ordered))
            late = ordered.pop(position)
            ordered.insert(min(len(ordered), position + rng.randrange(2, 8)), late)
        streams.append(ordered)
    merged: list[Event] = []
    while any(streams):
        stream = rng.choice([s for s in streams if s])
        merged.append(stream.pop(0))
    return merged


def with_duplicates(events: Sequence[Event], share: float, seed: int) -> list[Event]:
    """Re-send a share of the events (same event id) a little later: at-least-once upstream."""
    rng = random.Random(seed)
    result = list(events)
    for original in rng.sample(list(events), int(len(events) * share)):
        position = result.index(original)
        result.insert(min(len(result), position + rng.randrange(1, 200)), original)
    return result


def produce(broker: KafkaBroker, prefix: str, events: Sequence[Event]) -> None:
    """Send events in order and wait for every acknowledgement."""
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all", linger_ms=5)
    try:
        futures = [producer.send(prefix + e.topic, key=e.key.encode(), value=e.value) for e in events]
        producer.flush(timeout=60)
        for future in futures:
            future.get(timeout=60)
    finally:
        producer.close(timeout=5)


def unique(events: Iterable[Event]) -> list[Event]:
    """The events without re-sent copies, in first-sent order."""
    seen: set[str] = set()
    result = []
    for item in events:
        if item.event_id not in seen:
            seen.add(item.event_id)
            result.append(item)
    return result


def meter_events(events: Iterable[Event]) -> list[Event]:
    """The unique MeterReadings events among `events`."""
    return unique([e for e in events if e.event_type == "MeterReadings"])


def all_stored(d: Deployment, events: Sequence[Event]) -> Callable[[], bool]:
    """A condition: every reading stored, every other event processed (its id recorded)."""
    total = sum(e.readings for e in meter_events(events))
    ids = {e.event_id for e in events if e.event_type != "MeterReadings"}

    def condition() -> bool:
        return d.readings() == total and d.processed_ids() >= ids

    def describe() -> str:
        missing = len(ids - d.processed_ids())
        return f"{d.readings()} of {total} readings, {missing} other events not processed"

    condition.describe = describe  # type: ignore[attr-defined]
    return condition


def expected_tables(events: Sequence[Event], batch_size: int = 50) -> dict[str, list[tuple[Any, ...]]]:
    """The tables a clean run leaves: the unique events, in order, through one processor."""
    with clean_database() as context:
        processor = build_processor(context)
        messages = [item.message(offset=offset) for offset, item in enumerate(unique(events))]
        for start in range(0, len(messages), batch_size):
            assert processor.process(messages[start : start + batch_size]) == []
        tables = snapshot(context)
    for name in PROCESS_TABLES:
        tables.pop(name, None)
    return tables
