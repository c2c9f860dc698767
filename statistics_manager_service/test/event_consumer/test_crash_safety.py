"""Crash safety: a worker process SIGKILLed again and again while it ingests.

100,000 readings from 50 households (with 10% of the messages delivered twice, a share of
them late, registrations and grid signals mixed in) are produced up front. A worker process
is started and, at least 20 times, killed with SIGKILL at a random moment: most kills come
0.5-2 s after the incarnation has committed its first batch (mid-transaction, between the
database commit and the offset commit, while the relay publishes...), some during start-up
and the group join. Each kill is followed at once by a restart. In the end the database must
hold exactly the readings produced, every event processed once, nothing dead-lettered, and
tables equal to a clean single run of the unique events.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from statistics_manager_service.context import ServiceContext, build_context
from statistics_manager_service.event_consumer.consumer import EventConsumer
from statistics_manager_service.event_consumer.processor import BatchProcessor, DeadLetter, Message
from statistics_manager_service.event_consumer.runner import build_processor
from statistics_manager_service.test.conftest import make_settings
from statistics_manager_service.test.event_consumer.test_processor import assert_same_tables, snapshot
from statistics_manager_service.test.event_consumer.worker_support import (
    PROCESS_TABLES,
    START,
    WorkerProcess,
    account_events,
    all_stored,
    clean_database,
    deployment,
    event,
    household_ids,
    interleave,
    meter_events,
    produce,
    reading_events,
    signal_events,
    unique,
    wait_for,
    with_duplicates,
    workers,
)
from statistics_manager_service.test.support.kafka_broker import KafkaBroker
from statistics_manager_service.test.support.pipeline import reading

HOUSEHOLDS = 50
READINGS_PER_HOUSEHOLD = 2000  # one a minute: 100,000 readings
READINGS_PER_EVENT = 40
DUPLICATE_SHARE = 0.10
KILLS = 20
# A killed member stays in the group until its session expires; a short session keeps the
# restarts quick (the new incarnation joins as the old one's session runs out).
FAST_GROUP = {
    "KAFKA_SESSION_TIMEOUT_MS": "2000",
    "KAFKA_HEARTBEAT_INTERVAL_MS": "400",
    "KAFKA_MAX_POLL_RECORDS": "50",
    # Small batches, so that the kills fall among many of them; still two polls per batch or so
    # (a message of 40 readings takes a few KB), so that gathered batches are killed too.
    "KAFKA_BATCH_MAX_BYTES": "262144",
}


def _workload(seed: int) -> list[Any]:
    users = household_ids(HOUSEHOLDS, "crash")
    streams = reading_events(users, READINGS_PER_HOUSEHOLD, READINGS_PER_EVENT, interval_s=60, seed=seed)
    readings = with_duplicates(interleave(streams, seed), DUPLICATE_SHARE, seed)
    signals = signal_events(START, hours=36, seed=seed)
    middle = len(readings) // 2
    return account_events(users) + readings[:middle] + signals + readings[middle:]


class _Reference(threading.Thread):
    """The clean run, computed meanwhile in another (already migrated) database."""

    def __init__(self, context: ServiceContext, events: list[Any]) -> None:
        super().__init__(name="clean-run", daemon=True)
        self.context = context
        self.events = events
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            processor = build_processor(self.context)
            messages = [item.message(offset=offset) for offset, item in enumerate(unique(self.events))]
            for start in range(0, len(messages), 200):
                assert processor.process(messages[start : start + 200]) == []
        except BaseException as error:  # noqa: BLE001 - reported by tables()
            self.error = error

    def tables(self) -> dict[str, Any]:
        self.join(300)
        assert not self.is_alive(), "the clean run did not finish"
        assert self.error is None, self.error
        tables = snapshot(self.context)
        for name in PROCESS_TABLES:
            tables.pop(name, None)
        return tables


def _state(context: ServiceContext) -> str | None:
    """What the consumer last reported itself as (None: nothing yet)."""
    reported = context.consumer_state.read()
    return None if reported is None else reported.state


@pytest.mark.slow
def test_a_worker_killed_again_and_again_stores_every_reading_exactly_once(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    rng = random.Random(20260525)
    events = _workload(seed=5)
    meters = meter_events(events)
    total_readings = sum(e.readings for e in meters)
    assert total_readings >= 100_000
    assert len(events) - len(unique(events)) >= DUPLICATE_SHARE * len(meters)

    with (
        clean_database() as clean,
        deployment(kafka_broker, partitions=3) as d,
        workers(WorkerProcess(d, tmp_path, "crash", **FAST_GROUP)) as (worker,),
    ):
        reference = _Reference(clean, events)
        reference.start()
        produce(kafka_broker, d.prefix, events)
        done = all_stored(d, events)
        kills: list[dict[str, float]] = []
        began = time.monotonic()
        while len(kills) < KILLS and not done():
            started = time.monotonic()
            before = d.readings()
            # Ahead of the kills planned: kill sooner, so that the kills spread over the whole run.
            ahead = before / total_readings > (len(kills) + 1) / (KILLS + 4)
            worker.start()
            if len(kills) % 5 == 4:  # now and then: during start-up, the group join or the first batch
                time.sleep(rng.uniform(0.2, 1.5 if ahead else 4.0))
                progress_s = float("nan")
            else:
                wait_for(
                    lambda before=before: d.readings() > before or done(),
                    90,
                    "the restarted worker to commit a batch",
                    interval_s=0.05,
                )
                progress_s = time.monotonic() - started
                # 0.5-2 s of processing; at once when ingestion runs ahead of the kills planned
                ahead = d.readings() / total_readings > (len(kills) + 1) / (KILLS + 4)
                time.sleep(0.0 if ahead else rng.uniform(0.5, 2.0))
            assert worker.alive, f"the worker exited by itself:\n{worker.log_tail()}"
            worker.kill()
            kills.append({"first_commit_s": progress_s, "alive_s": time.monotonic() - started})
        stored_when_killing_ended = d.readings()
        worker.start()
        wait_for(done, 240, "every reading stored after the last restart")
        finished = time.monotonic() - began

        assert len(kills) >= KILLS, f"ingestion finished after only {len(kills)} kills"
        assert d.readings() == total_readings
        wait_for(lambda: d.unsent_outbox() == 0, 60, "the outbox to drain")
        assert d.dead_letters() == []
        assert_same_tables(d.snapshot(), reference.tables())

    joins = [k["first_commit_s"] for k in kills if k["first_commit_s"] == k["first_commit_s"]]
    print(
        f"\n{len(kills)} SIGKILLs over {total_readings} readings "
        f"({len(events) - len(unique(events))} duplicate messages); "
        f"{stored_when_killing_ended} readings stored when the kills ended; done after {finished:.0f} s; "
        f"restart to first commit: min {min(joins):.1f} s, median {sorted(joins)[len(joins) // 2]:.1f} s, "
        f"max {max(joins):.1f} s"
    )


class _FaultyProcessor(BatchProcessor):
    """The real processor, with a bug that an event keyed "explode" triggers."""

    def _apply(self, session: Session, messages: Sequence[Message]) -> list[DeadLetter]:
        if any(message.key == b"explode" for message in messages):
            raise RuntimeError("a bug in a handler")
        return super()._apply(session, messages)


def test_a_message_that_crashes_the_processor_is_dead_lettered_and_the_consumer_lives_on(
    kafka_broker: KafkaBroker,
) -> None:
    """An unexpected exception (not an outage, not a validation error) for a batch of one must
    neither stop consumption nor be retried forever: the message goes to the dead-letter topic."""
    users = household_ids(3, "fault")
    streams = reading_events(users, readings_per_user=120, per_event=20, interval_s=300, seed=31)
    good = [e for stream in streams for e in stream]
    payload = {"user_id": "faulty0000", "source": "hub", "readings": [reading(START, 1.0)]}
    bad = event("meter-readings", "explode", "MeterReadings", payload)
    with deployment(kafka_broker) as d:
        settings = make_settings(
            d.database_url,
            kafka_bootstrap_servers=kafka_broker.bootstrap_servers,
            kafka_topic_prefix=d.prefix,
            kafka_group_id=d.group,
            kafka_max_poll_records=1,  # every batch is a single message
        )
        context = build_context(settings)
        base = build_processor(context)
        consumer = EventConsumer(context, _FaultyProcessor(base.session_factory, base.services, d.prefix))
        stop = threading.Event()
        thread = threading.Thread(target=consumer.run, args=(stop,), name="event-consumer", daemon=True)
        thread.start()
        try:
            produce(kafka_broker, d.prefix, [*good[:3], bad, *good[3:]])
            wait_for(all_stored(d, good), 90, "the other events stored")
            dead = wait_for(lambda: d.dead_letters(), 30, "the dead letter")
            assert [record.value for record in dead] == [bad.value]
            headers = dict(dead[0].headers)
            assert headers["dlq.error.class"] == b"RuntimeError"
            assert headers["dlq.error.message"] == b"a bug in a handler"
            assert thread.is_alive()
            assert _state(context) in (None, "running")
        finally:
            stop.set()
            thread.join(30)
            context.engine.dispose()
