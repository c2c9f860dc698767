"""The consumer's series exist before their first event, and freshness starts from the database."""

from __future__ import annotations

import ast
import dataclasses
import uuid
from pathlib import Path

from prometheus_client import REGISTRY

from statistics_manager_service import metrics
from statistics_manager_service.context import ServiceContext
from statistics_manager_service.event_consumer import processor
from statistics_manager_service.event_consumer.known_series import declare_known_series, seed_freshness
from statistics_manager_service.storage.engine import session_scope
from statistics_manager_service.storage.tables import Household


def _value(name: str, **labels: str) -> float | None:
    value: float | None = REGISTRY.get_sample_value(name, labels)
    return value


def test_counters_of_known_labels_are_exported_at_zero(context: ServiceContext) -> None:
    prefix = f"known-{uuid.uuid4().hex[:8]}."  # series no other test has made
    settings = dataclasses.replace(context.settings, kafka_topic_prefix=prefix)
    assert (
        _value("statistics_dead_lettered_total", topic=f"{prefix}meter-readings", error="PoisonMessage")
        is None
    )
    declare_known_series(settings)
    for topic in ("meter-readings", "user-account", "grid-signals", "statistics"):
        for reason in ("PoisonMessage", "UnknownEventType", "UnknownDevice", "ErasedUser"):
            assert _value("statistics_dead_lettered_total", topic=f"{prefix}{topic}", error=reason) == 0
    processed = [
        ("meter-readings", "MeterReadings"),
        ("user-account", "UserRegistered"),
        ("user-account", "UserHardDeleted"),
        ("grid-signals", "CarbonIntensity"),
        ("grid-signals", "EnergyPrices"),
        ("statistics", "StatisticsUpdated"),
        ("statistics", "GetUserRealDataEvent"),
    ]
    for topic, event_type in processed:
        assert (
            _value("statistics_events_processed_total", topic=f"{prefix}{topic}", event_type=event_type) == 0
        )
    assert _value("statistics_events_duplicate_total", topic=f"{prefix}user-account") == 0
    for event_type in ("StatisticsUpdated", "DailyStatisticsClosed", "ComputeMockConsumptionCurveEvent"):
        assert _value("statistics_outbox_published_total", event_type=event_type) is not None
    for source in ("hub", "dongle", "smart_meter"):
        assert _value("statistics_readings_ingested_total", source=source) is not None
    for result in ("hit", "miss", "bypass"):
        assert _value("statistics_response_cache_requests_total", result=result) is not None


def test_every_reason_the_processor_dead_letters_with_is_known() -> None:
    """The reasons exported at 0 are those the processor really writes (read from its source)."""
    tree = ast.parse(Path(processor.__file__).read_text(encoding="utf-8"))
    written = {
        node.args[1].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "DeadLetter"
        and isinstance(node.args[1], ast.Constant)
    }
    assert written == set(processor.DEAD_LETTER_REASONS)


def test_freshness_starts_from_the_newest_stored_reading(context: ServiceContext) -> None:
    newest = 1_775_001_234
    with session_scope(context.session_factory) as session:
        for user_id, last in (("household1", newest - 900), ("household2", newest), ("household3", None)):
            session.add(Household(user_id=user_id, last_reading_ts=last, created_at=0, updated_at=0))
    metrics.NEWEST_AGGREGATED_READING.set(0)
    seed_freshness(context)
    assert _value("statistics_newest_aggregated_reading_timestamp_seconds") == newest


def test_freshness_is_left_alone_without_readings(context: ServiceContext) -> None:
    metrics.NEWEST_AGGREGATED_READING.set(42)
    seed_freshness(context)
    assert _value("statistics_newest_aggregated_reading_timestamp_seconds") == 42
