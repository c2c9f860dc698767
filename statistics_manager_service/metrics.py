"""Every Prometheus metric of the service, declared once.

With several server processes, `PROMETHEUS_MULTIPROC_DIR` is set before this module is imported
and `/metrics` merges what every process wrote there, plus the process metrics (CPU, memory,
file descriptors) of each of those processes, labelled by `pid`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
    multiprocess,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

# What the response cache did with a cacheable request (the label of RESPONSE_CACHE_REQUESTS).
RESPONSE_CACHE_RESULTS = ("hit", "miss", "bypass")

# Every label value comes from the code or the configuration: a value a client or a producer
# chooses (a request method, an event type) is reported as this one unless it is a known one,
# so that nobody outside can create time series without bound.
OTHER_LABEL = "other"


def bounded_label(value: str, known: Collection[str]) -> str:
    """Return `value` when it is one of `known`, else the fixed label "other"."""
    return value if value in known else OTHER_LABEL


HTTP_REQUESTS = Counter(
    "statistics_http_requests_total",
    "HTTP requests served, by method, endpoint and status.",
    ["method", "endpoint", "status"],
)
HTTP_LATENCY = Histogram(
    "statistics_http_request_duration_seconds",
    "Time to serve an HTTP request, by method and endpoint.",
    ["method", "endpoint"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
READINGS_INGESTED = Counter(
    "statistics_readings_ingested_total",
    "Meter readings stored (after deduplication within a batch), by source.",
    ["source"],
)
EVENTS_PROCESSED = Counter(
    "statistics_events_processed_total",
    "Events whose effects were committed, by topic and event type.",
    ["topic", "event_type"],
)
EVENTS_DUPLICATE = Counter(
    "statistics_events_duplicate_total",
    "Events skipped because their id was already processed.",
    ["topic"],
)
EVENTS_SKIPPED = Counter(
    "statistics_events_skipped_total",
    "Events on shared topics that this service does not use, by event type (other: a type it does not know).",
    ["topic", "event_type"],
)
DEAD_LETTERED = Counter(
    "statistics_dead_lettered_total",
    "Messages sent to the dead-letter topic, by original topic and error class.",
    ["topic", "error"],
)
DEAD_LETTERS_TRUNCATED = Counter(
    "statistics_dead_letters_truncated_total",
    "Dead letters sent truncated (coordinates, reason, size, an excerpt): too large to send whole.",
)
DEVICE_MOVES = Counter(
    "statistics_device_moves_total",
    "Device ids (dongle API keys, meter ids) that account events moved from one household to another.",
)
BATCH_DURATION = Histogram(
    "statistics_batch_processing_seconds",
    "Time to handle one polled batch, from poll to committed offsets.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
CONSUMER_LAG = Gauge(
    "statistics_consumer_lag",
    "Messages not yet consumed, by topic and partition.",
    ["topic", "partition"],
    multiprocess_mode="livemax",
)
CONSUMER_PAUSED = Gauge(
    "statistics_consumer_paused",
    "1 while consumption is paused because the database or broker is unavailable.",
    multiprocess_mode="livemax",
)
NEWEST_AGGREGATED_READING = Gauge(
    "statistics_newest_aggregated_reading_timestamp_seconds",
    "Epoch seconds of the newest reading included in the statistics (freshness).",
    multiprocess_mode="livemax",
)
RECOMPUTED_BUCKETS = Counter(
    "statistics_recomputed_buckets_total",
    "15-minute buckets recomputed, by cause (readings, prices, intensity, tariffs).",
    ["cause"],
)
OUTBOX_PUBLISHED = Counter(
    "statistics_outbox_published_total",
    "Outbox events published to the broker, by event type.",
    ["event_type"],
)
OUTBOX_PENDING = Gauge(
    "statistics_outbox_pending",
    "Outbox events not yet published.",
    multiprocess_mode="livemax",
)
OUTBOX_FAILED = Counter(
    "statistics_outbox_failed_total",
    "Outbox events kept as failed after their publication attempts, by event type.",
    ["event_type"],
)
OUTBOX_FAILED_KEPT = Gauge(
    "statistics_outbox_failed_events",
    "Outbox events kept as failed, waiting for an operator to retry them.",
    multiprocess_mode="livemax",
)
ROWS_PRUNED = Counter(
    "statistics_rows_pruned_total",
    "Rows deleted by housekeeping once past their retention, by table (processed_events, alerts_sent,"
    " events).",
    ["table"],
)
ALERTS_QUEUED = Counter(
    "statistics_alerts_queued_total",
    "Alerts queued in the outbox by the alert job, by cause (daily_consumption, baseload, voltage).",
    ["cause"],
)
ALERT_CHECK_FAILURES = Counter(
    "statistics_alert_check_failures_total",
    "Households whose unchecked days the alert job passed over because checking them failed.",
)
DB_POOL_IN_USE = Gauge(
    "statistics_db_pool_connections_in_use",
    "Database connections checked out of the pool.",
    multiprocess_mode="livesum",
)
DB_POOL_SIZE = Gauge(
    "statistics_db_pool_size",
    "Database connections the pool holds open.",
    multiprocess_mode="livesum",
)
RESPONSE_CACHE_REQUESTS = Counter(
    "statistics_response_cache_requests_total",
    "Cacheable requests by what the response cache did: hit, miss, or bypass (listener not connected).",
    ["result"],
)
for _result in RESPONSE_CACHE_RESULTS:
    RESPONSE_CACHE_REQUESTS.labels(_result)  # exported at 0, so that `increase()` sees the first one
RESPONSE_CACHE_BYTES = Gauge(
    "statistics_response_cache_bytes",
    "Bytes of response bodies the cache holds.",
    multiprocess_mode="livesum",
)
RESPONSE_CACHE_LIVE = Gauge(
    "statistics_response_cache_live",
    "Server processes whose change listener is connected, so that their response cache answers.",
    multiprocess_mode="livesum",
)
BUILD_INFO = Gauge(
    "statistics_build_info",
    "Always 1: the package version and the source revision of the running service.",
    ["version", "revision"],
    multiprocess_mode="livemax",
)

# prometheus_client names each process's files `<kind>_<pid>.db` in the multiprocess directory.
_PROCESS_FILE = re.compile(r"_(\d+)\.db$")


def record_build_info(version: str, revision: str) -> None:
    """Export which version and revision this process runs."""
    BUILD_INFO.labels(version, revision).set(1)


def _alive(pid: int) -> bool:
    """Whether `pid` runs. A killed process its parent has not reaped yet (a zombie) is gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return not Path("/proc/self/stat").exists()  # ended meanwhile, unless there is no procfs
    except OSError:
        return True
    # The state follows the parenthesised command name, which may itself contain spaces.
    return stat[stat.rfind(")") + 2 : stat.rfind(")") + 3] != "Z"


def process_ids(directory: str) -> tuple[list[int], list[int]]:
    """Return the processes that wrote metrics to `directory`: (alive, gone), each sorted."""
    pids = {
        int(match.group(1))
        for path in Path(directory).glob("*.db")
        if (match := _PROCESS_FILE.search(path.name))
    }
    alive = sorted(pid for pid in pids if _alive(pid))
    return alive, sorted(pids - set(alive))


class ServerProcessesCollector(Collector):
    """The process metrics of every live process writing to a multiprocess directory, by `pid`.

    The multiprocess collector merges only the service's own metrics; a scrape is answered by
    one of the server processes, whose default process collector would describe itself alone.
    """

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def collect(self) -> Iterator[Metric]:
        """Yield one family per process metric, with a sample for each live process."""
        families: dict[str, Metric] = {}
        for pid in process_ids(self.directory)[0]:
            collector = ProcessCollector(pid=lambda pid=pid: pid, registry=None)  # type: ignore[misc]
            for family in collector.collect():
                merged = families.setdefault(
                    family.name, Metric(family.name, family.documentation, family.type)
                )
                for sample in family.samples:
                    merged.add_sample(sample.name, {**sample.labels, "pid": str(pid)}, sample.value)
        yield from families.values()


def _forget_gone_processes(directory: str, gone: Iterable[int]) -> None:
    """Drop the live gauges of processes that ended (a server process restarted, say)."""
    for pid in gone:
        multiprocess.mark_process_dead(pid, directory)


def render_metrics() -> tuple[bytes, str]:
    """Return the exposition text of every metric and its content type."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        _forget_gone_processes(directory, process_ids(directory)[1])
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(ServerProcessesCollector(directory))
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
