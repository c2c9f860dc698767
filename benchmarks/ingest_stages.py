"""Benchmark the stages of batch ingestion in one process, to show where the time goes.

`ingest.py` measures the whole worker behind the real broker. This script takes the same fleet and
the same MeterReadings messages (a local day of 96 readings per message) and runs the production
code in-process, batch by batch (500 messages, as KAFKA_MAX_POLL_RECORDS), without Kafka, each
stage on its own fresh PostgreSQL database:

1. decode: parse each message's envelope and validate the readings of the batch at once
   (`parse_envelope`, `plain_meter_readings`), as the consumer does; no database;
2. store only: 1, then the households, the order-independent merge and the day rows written
   (`ensure_households`, `merge_duplicates`, `store_readings`): the floor of the storage shape when
   nothing is computed;
3. the consumer's whole transaction (`BatchProcessor.process`): 2, plus the windows, the local days
   recomputed and priced, the announcements and the outbox rows;
and the raw `COPY` of the same rows into a table of a row per reading (as `ingest.py`).

Each stage prints readings/s and its share of the COPY rate; the difference between stages is what
the next step costs. Compare the shares, not the absolute rates (the machine is shared).

PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth); the databases are created and dropped.
Run: .venv/bin/python benchmarks/ingest_stages.py [--households 1000] [--days 7] [--batch 500]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from databases import benchmark_database
from ingest import (
    PER_DAY,
    TARGET_COPY_SHARE,
    copy_buffer,
    make_fleet,
    messages_of,
    migrated_database,
    raw_copy,
)

from statistics_manager_service.context import build_context
from statistics_manager_service.event_consumer.envelope import parse_envelope
from statistics_manager_service.event_consumer.processor import Message
from statistics_manager_service.event_consumer.runner import build_processor
from statistics_manager_service.models.meter_readings import plain_meter_readings
from statistics_manager_service.storage.engine import session_scope
from statistics_manager_service.storage.households import ensure_households
from statistics_manager_service.storage.readings import merge_duplicates, store_readings
from statistics_manager_service.tariff_loading import updater_for
from statistics_manager_service.test.conftest import make_settings

TOPIC = "meter-readings"
Stage = Callable[[str, list[list[Message]]], float]


def batches_of(messages: list[tuple[bytes, bytes]], size: int) -> list[list[Message]]:
    """Cut the messages into consumer batches, as records of one partition would arrive."""
    records = [Message(TOPIC, 0, offset, key, value) for offset, (key, value) in enumerate(messages)]
    return [records[first : first + size] for first in range(0, len(records), size)]


def decode(batch: Sequence[Message]) -> pd.DataFrame:
    """Parse and validate a batch the way the consumer does; return its readings as one frame."""
    payloads = [parse_envelope(message.value, message.headers).payload for message in batch]
    owners, columns = plain_meter_readings(payloads, time.time())
    if any(owner is None for owner in owners):
        raise SystemExit("a benchmark message failed validation")
    user_ids = np.array([owner["user_id"] for owner in owners if owner is not None], dtype=object)
    return pd.DataFrame(
        {
            "user_id": user_ids[columns.event],
            "source": "hub",
            "ts": columns.ts.astype(np.int64),
            **columns.numbers,
        }
    )


def decode_only(database_url: str, batches: list[list[Message]]) -> float:
    """Stage 1: seconds to decode and validate every batch."""
    del database_url
    started = time.perf_counter()
    for batch in batches:
        decode(batch)
    return time.perf_counter() - started


def store_only(database_url: str, batches: list[list[Message]]) -> float:
    """Stage 2: seconds to decode every batch and store its readings in their day rows."""
    context = build_context(make_settings(database_url))
    try:
        started = time.perf_counter()
        for batch in batches:
            frame = decode(batch)
            with session_scope(context.session_factory) as session:
                ensure_households(session, frame["user_id"].unique().tolist())
                store_readings(session, merge_duplicates(frame))
        return time.perf_counter() - started
    finally:
        context.dispose()


def whole_transaction(database_url: str, batches: list[list[Message]]) -> float:
    """Stage 3: seconds for the consumer's processor to apply every batch."""
    context = build_context(make_settings(database_url))
    try:
        updater_for(context)
        processor = build_processor(context)
        started = time.perf_counter()
        for batch in batches:
            if processor.process(batch):
                raise SystemExit("a benchmark message was dead-lettered")
        return time.perf_counter() - started
    finally:
        context.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--households", type=int, default=1000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--batch", type=int, default=500, help="messages per consumer batch")
    args = parser.parse_args()
    fleet = make_fleet(args.households, args.days)
    batches = batches_of(messages_of(fleet, PER_DAY), args.batch)
    readings = fleet.readings
    print(f"{args.households:,} households x {args.days} days: {readings:,} readings, {len(batches)} batches")
    stages: list[tuple[str, Stage]] = [
        ("1 decode and validate", decode_only),
        ("2 + merge and store day rows", store_only),
        ("3 + recompute, announce (whole transaction)", whole_transaction),
    ]
    with migrated_database() as template:
        with benchmark_database("sm_bench_copy") as url:
            copy_s = raw_copy(url, copy_buffer(fleet))
        copy_rate = readings / copy_s
        print(f"{'stage':<46} {'seconds':>8} {'readings/s':>11} {'of COPY':>8} {'us/reading':>11}")
        baseline = "raw COPY of a row per reading"
        print(f"{baseline:<46} {copy_s:8.2f} {copy_rate:11,.0f} {1:8.0%} {1e6 / copy_rate:11.2f}")
        for name, stage in stages:
            with benchmark_database("sm_bench_stage", template) as url:
                seconds = stage(url, batches)
            rate = readings / seconds
            print(f"{name:<46} {seconds:8.2f} {rate:11,.0f} {rate / copy_rate:8.0%} {1e6 / rate:11.2f}")
    print(f"(the batch target of ingest.py: end to end >= {TARGET_COPY_SHARE:.0%} of the COPY rate)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
