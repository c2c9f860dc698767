"""Every Prometheus metric of the service, declared once.

With several server processes, `PROMETHEUS_MULTIPROC_DIR` is set before this module is imported
and `/metrics` merges what every process wrote there.
"""

from __future__ import annotations

import os
from collections.abc import Collection

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

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
ROWS_PRUNED = Counter(
    "statistics_rows_pruned_total",
    "Rows deleted by housekeeping once past their retention, by table (processed_events, events).",
    ["table"],
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


def render_metrics() -> tuple[bytes, str]:
    """Return the exposition text of every metric and its content type."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
