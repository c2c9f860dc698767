"""Outages: the broker or the database goes away while a worker process is ingesting.

During the outage the worker process stays up and its /ready says what is wrong; afterwards
every event produced (before, during and after the outage) is stored exactly once, nothing is
dead-lettered, the outbox drains, and the tables equal a clean run of the same events.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer
from kafka.structs import TopicPartition

from statistics_manager_service.app import create_app
from statistics_manager_service.context import ServiceContext, build_context
from statistics_manager_service.event_consumer.consumer import CONSUMED_TOPICS, EventConsumer
from statistics_manager_service.event_consumer.runner import build_processor
from statistics_manager_service.test.conftest import make_settings
from statistics_manager_service.test.event_consumer.test_processor import assert_same_tables
from statistics_manager_service.test.event_consumer.worker_support import (
    START,
    Deployment,
    Event,
    WorkerProcess,
    account_events,
    all_stored,
    database_outage,
    deployment,
    expected_tables,
    household_ids,
    interleave,
    meter_events,
    produce,
    reading_events,
    signal_events,
    wait_for,
    with_duplicates,
    workers,
)
from statistics_manager_service.test.support.kafka_broker import KafkaBroker

OUTAGE_S = 6.0  # how long the dependency stays away after the worker has noticed


def _workload(tag: str, seed: int, households: int = 8) -> tuple[list[Event], list[Event], list[Event]]:
    """Before, during and after the outage: a duplicated, partly late stream of households."""
    users = household_ids(households, tag)
    streams = reading_events(users, readings_per_user=600, per_event=30, interval_s=300, seed=seed)
    events = with_duplicates(interleave(streams, seed), 0.1, seed)
    signals = signal_events(START, hours=60, seed=seed)
    third = len(events) // 3
    return (
        account_events(users) + events[:third],
        events[third : 2 * third] + signals[:2],
        events[2 * third :] + signals[2:],
    )


def _degraded(worker: WorkerProcess, check: str) -> Callable[[], dict[str, Any] | None]:
    """A condition: /ready answers 503 naming `check` (the worker must stay up meanwhile)."""

    def probe() -> dict[str, Any] | None:
        assert worker.alive, f"the worker exited during the outage:\n{worker.log_tail()}"
        status, body = worker.ready()
        return body if status == 503 and check in body.get("errors", {}) else None

    return probe


def _stay_down(worker: WorkerProcess) -> None:
    """Keep the outage going for a while; the worker must not exit."""
    deadline = time.monotonic() + OUTAGE_S
    while time.monotonic() < deadline:
        assert worker.alive, f"the worker exited during the outage:\n{worker.log_tail()}"
        time.sleep(0.5)


def _assert_recovered(d: Deployment, worker: WorkerProcess, events: Sequence[Event], pid: int) -> None:
    wait_for(all_stored(d, events), 120, "every reading stored after the outage")
    wait_for(lambda: worker.ready()[0] == 200, 60, "/ready to report ready again")
    wait_for(lambda: d.unsent_outbox() == 0, 60, "the outbox to drain")
    assert worker.alive and worker.pid == pid and worker.starts == 1, "the worker process was replaced"
    assert d.dead_letters() == []
    assert_same_tables(d.snapshot(), expected_tables(events))


def _state(context: ServiceContext) -> str | None:
    """What the consumer last reported itself as (None: nothing yet)."""
    reported = context.consumer_state.read()
    return None if reported is None else reported.state


@pytest.mark.slow
def test_database_outage_pauses_the_worker_which_then_stores_everything_once(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    before, during, after = _workload("dbout", seed=11)
    with deployment(kafka_broker) as d, workers(WorkerProcess(d, tmp_path)) as (worker,):
        worker.start().wait_healthy()
        pid = worker.pid
        produce(kafka_broker, d.prefix, before)
        wait_for(all_stored(d, before), 90, "the first part stored")
        assert worker.ready()[0] == 200

        produce(kafka_broker, d.prefix, during[: len(during) // 2])
        first_part = sum(e.readings for e in meter_events(before))
        wait_for(lambda: d.readings() > first_part, 60, "the worker to consume the second part")
        with database_outage(d.database_url):  # cuts the worker's connections mid-transaction
            produce(kafka_broker, d.prefix, during[len(during) // 2 :])
            body = wait_for(_degraded(worker, "consumer"), 60, "/ready to report the paused consumer")
            assert body["status"] == "degraded"
            assert body["checks"]["database"] == "unavailable"
            assert body["checks"]["consumer"] == "paused"
            assert worker.metric("statistics_consumer_paused") == 1
            _stay_down(worker)
        produce(kafka_broker, d.prefix, after)
        _assert_recovered(d, worker, before + during + after, pid)


@pytest.mark.slow
def test_broker_outage_pauses_the_worker_which_then_stores_everything_once(
    kafka_broker_factory: Callable[..., KafkaBroker], tmp_path: Path
) -> None:
    broker = kafka_broker_factory()
    broker.require_control()
    before, during, after = _workload("brout", seed=12)
    with deployment(broker) as d, workers(WorkerProcess(d, tmp_path)) as (worker,):
        worker.start().wait_healthy()
        pid = worker.pid
        produce(broker, d.prefix, before)
        wait_for(all_stored(d, before), 90, "the first part stored")
        produce(broker, d.prefix, during)
        first_part = sum(e.readings for e in meter_events(before))
        wait_for(lambda: d.readings() > first_part, 60, "the worker to consume the second part")
        with broker.outage():  # SIGKILL: the broker crashes mid-stream
            body = wait_for(_degraded(worker, "broker"), 60, "/ready to report the broker")
            assert body["checks"]["broker"] == "unavailable"
            _stay_down(worker)
        produce(broker, d.prefix, after)
        _assert_recovered(d, worker, before + during + after, pid)


class _Member:
    """Another member of the consumer group that fetches but never processes or commits."""

    def __init__(self, broker: KafkaBroker, d: Deployment) -> None:
        self.consumer = KafkaConsumer(
            *(d.topic(name) for name in CONSUMED_TOPICS),
            bootstrap_servers=broker.bootstrap_servers,
            group_id=d.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=3000,
            heartbeat_interval_ms=500,
        )
        self.assignment: set[TopicPartition] = set()
        self.leave = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while not self.leave.is_set():
                self.consumer.poll(timeout_ms=200)
                self.assignment = set(self.consumer.assignment())
        finally:
            self.consumer.close(autocommit=False)  # leaves the group at once

    def close(self) -> None:
        self.leave.set()
        self.thread.join(30)


class _ObservedConsumer(EventConsumer):
    """The service's consumer, with its Kafka client visible to the test."""

    client: KafkaConsumer | None = None

    def _make_consumer(self) -> KafkaConsumer:
        self.client = super()._make_consumer()
        return self.client

    def assignment(self) -> set[TopicPartition]:
        return set(self.client.assignment()) if self.client is not None else set()


@pytest.mark.slow
def test_partitions_moving_while_the_consumer_waits_out_an_outage_are_neither_lost_nor_fatal(
    kafka_broker: KafkaBroker,
) -> None:
    """A paused consumer gains partitions (a member leaves) and loses some (a member joins);
    their records must not be dropped, and the consumer must not die resuming them."""
    before, during, after = _workload("pause", seed=14, households=12)
    with deployment(kafka_broker, partitions=4) as d:
        settings = make_settings(
            d.database_url,
            kafka_bootstrap_servers=kafka_broker.bootstrap_servers,
            kafka_topic_prefix=d.prefix,
            kafka_group_id=d.group,
            kafka_session_timeout_ms=3000,
            kafka_heartbeat_interval_ms=500,
            kafka_max_poll_records=20,
        )
        context = build_context(settings)
        every_partition = {
            TopicPartition(d.topic(t), p) for t in CONSUMED_TOPICS for p in range(d.partitions)
        }
        consumer = _ObservedConsumer(context, build_processor(context))
        stop = threading.Event()
        thread = threading.Thread(target=consumer.run, args=(stop,), name="event-consumer", daemon=True)
        thread.start()
        other = _Member(kafka_broker, d)
        try:
            produce(kafka_broker, d.prefix, before)
            wait_for(
                lambda: other.assignment and consumer.assignment() == every_partition - other.assignment,
                60,
                "two members",
            )
            wait_for(lambda: d.readings() > 0, 60, "the consumer to get going")
            with (
                database_outage(d.database_url),
                create_app(settings, context=context).test_client() as client,
            ):
                produce(kafka_broker, d.prefix, during)
                wait_for(lambda: _state(context) == "paused", 60, "the consumer to pause")
                ready = client.get("/api/statistics/ready")
                assert ready.status_code == 503
                assert ready.json()["checks"] == {
                    "database": "unavailable",
                    "broker": "ok",
                    "consumer": "paused",
                }

                other.close()  # its partitions, with unprocessed records, move to the paused consumer
                wait_for(
                    lambda: consumer.assignment() == every_partition,
                    60,
                    "the consumer to take every partition",
                )
                joining = _Member(kafka_broker, d)  # and now some move away again
                wait_for(
                    lambda: joining.assignment and len(consumer.assignment()) < len(every_partition),
                    60,
                    "a rebalance",
                )
                joining.close()
                wait_for(lambda: consumer.assignment() == every_partition, 60, "every partition back")
                assert thread.is_alive(), "the consumer thread died"
            produce(kafka_broker, d.prefix, after)
            events = before + during + after
            wait_for(all_stored(d, events), 120, "every reading stored after the outage")
            wait_for(lambda: _state(context) == "running", 30, "recovery")
            with create_app(settings, context=context).test_client() as client:
                assert client.get("/api/statistics/ready").status_code == 200
            assert thread.is_alive()
            assert d.dead_letters() == []
            assert_same_tables(d.snapshot(), expected_tables(events))
        finally:
            stop.set()
            thread.join(30)
            other.close()
            context.engine.dispose()
