"""The alert job against real databases: readings go in through the consumer, the job runs, and the
outbox holds exactly the alerts the readings call for, with numbers computed here by hand."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
import sqlalchemy as sa
from pyerse.comercializador import Opcao_Horaria

from statistics_manager_service import metrics
from statistics_manager_service.context import ServiceContext
from statistics_manager_service.event_consumer.alerts import AlertJob, alert_event_id
from statistics_manager_service.storage.alerts import AlertKey, alert_candidates, sent_alerts
from statistics_manager_service.storage.engine import session_scope
from statistics_manager_service.storage.tables import AlertProgress, OutboxEvent
from statistics_manager_service.tariff_loading import updater_for
from statistics_manager_service.test.controllers.test_bill import pyerse_total
from statistics_manager_service.test.support.pipeline import (
    PREFIX,
    account_message,
    meter_message,
    process,
    reading,
)

USER = "alerthome1"
LISBON = ZoneInfo("Europe/Lisbon")
DAY = dt.date(2026, 11, 23)  # a Monday; its baseline Mondays: 26 Oct, 2, 9 and 16 Nov (all WET)
STEP = dt.timedelta(minutes=5)
BASE_POWER_W = 400.0

# Power (W) at a local instant; None: no reading there.
Profile = Callable[[dt.datetime], float | None]
# Voltage (V) at a local instant.
Voltages = Callable[[dt.datetime], float]


def constant_power(at: dt.datetime) -> float | None:
    return BASE_POWER_W


def nominal_voltage(at: dt.datetime) -> float:
    return 230.0


def feed(
    context: ServiceContext,
    first_day: dt.date,
    power: Profile = constant_power,
    voltage: Voltages = nominal_voltage,
    user_id: str = USER,
) -> None:
    """Send readings every 5 minutes from `first_day` to 00:15 after DAY, through the consumer."""
    at = dt.datetime.combine(first_day, dt.time(), LISBON)
    end = dt.datetime.combine(DAY + dt.timedelta(days=1), dt.time(0, 15), LISBON)
    register_wh, readings = 1_000.0, []
    while at <= end:
        watts = power(at)
        if watts is not None:
            readings.append(reading(at.astimezone(dt.UTC), register_wh, voltage_v=voltage(at)))
        register_wh += (BASE_POWER_W if watts is None else watts) * STEP.total_seconds() / 3600
        at += STEP
    prefix = context.settings.kafka_topic_prefix
    for start in range(0, len(readings), 2000):
        sent = meter_message(user_id, readings[start : start + 2000])
        # Through the consumer's own processor, on the topics of this context.
        consumed = dataclasses.replace(sent, topic=prefix + sent.topic.removeprefix(PREFIX))
        assert process(context, [consumed]) == []


def run_job(context: ServiceContext, **overrides: Any) -> int:
    settings = dataclasses.replace(context.settings, **overrides)
    return AlertJob(context.session_factory, settings, updater_for(context).book).run_once()


def alert_rows(context: ServiceContext) -> list[dict[str, Any]]:
    """The alert events in the outbox, with their Debezium columns."""
    with context.engine.connect() as connection:
        rows = connection.execute(
            sa.select(OutboxEvent)
            .where(OutboxEvent.type.in_(["ConsumptionAnomalyDetected", "VoltageOutOfRange"]))
            .order_by(OutboxEvent.seq)
        ).mappings()
        return [dict(row) for row in rows]


def day_profile(night_w: float, day_w: float) -> Profile:
    """BASE_POWER_W every day but DAY, which draws `night_w` from 00:00 to 05:00 and `day_w` after."""

    def power(at: dt.datetime) -> float | None:
        if at.date() != DAY:
            return BASE_POWER_W
        return night_w if at.hour < 5 else day_w

    return power


def day_kwh(night_w: float, day_w: float) -> float:
    return (night_w * 5 + day_w * 19) / 1000


FIRST_DAY = DAY - dt.timedelta(days=28)
BASELINE_KWH = BASE_POWER_W * 24 / 1000  # 9.6


def test_a_day_above_its_weekday_baseline_gives_one_consumption_alert(context: ServiceContext) -> None:
    day_w = (1.6 * BASELINE_KWH * 1000 - BASE_POWER_W * 5) / 19  # the whole day at 1.6 times 9.6 kWh
    feed(context, FIRST_DAY, day_profile(BASE_POWER_W, day_w))
    assert day_kwh(BASE_POWER_W, day_w) == pytest.approx(15.36)

    assert run_job(context) == 1
    [row] = alert_rows(context)
    payload = orjson.loads(row["payload"])
    key = AlertKey(USER, "daily_consumption", DAY)
    assert (row["id"], row["type"], row["aggregatetype"], row["aggregateid"]) == (
        alert_event_id(key),
        "ConsumptionAnomalyDetected",
        "statistics",
        USER,
    )
    assert row["status"] == "pending" and isinstance(row["timestamp"], int)
    assert uuid.UUID(row["id"]).version == 5
    assert payload == {
        "user_id": USER,
        "date": "2026-11-23",
        "timezone": "Europe/Lisbon",
        "start": "2026-11-23T00:00:00+00:00",
        "end": "2026-11-24T00:00:00+00:00",
        "cause": "daily_consumption",
        "detail": payload["detail"],
        "observed": pytest.approx(15.36, abs=1e-6),
        "baseline": pytest.approx(9.6, abs=1e-6),
        "ratio": pytest.approx(1.6, abs=1e-6),
        "factor": 1.5,
        "unit": "kWh",
        "baseline_days": ["2026-10-26", "2026-11-02", "2026-11-09", "2026-11-16"],
    }
    assert "1.60 times" in payload["detail"]


def test_a_day_below_the_factor_gives_no_alert_and_is_not_checked_again(context: ServiceContext) -> None:
    day_w = (1.4 * BASELINE_KWH * 1000 - BASE_POWER_W * 5) / 19
    feed(context, FIRST_DAY, day_profile(BASE_POWER_W, day_w))
    assert run_job(context) == 0
    assert alert_rows(context) == []
    with session_scope(context.session_factory) as session:
        assert alert_candidates(session, "", 10) == []
        assert session.get(AlertProgress, USER) is not None
    # A lower factor finds it, once the day is looked at again.
    with context.engine.begin() as connection:
        connection.execute(sa.delete(AlertProgress))
    assert run_job(context, alert_consumption_factor=1.3) == 1


def test_checking_again_or_by_two_workers_publishes_once(context: ServiceContext) -> None:
    day_w = (1.6 * BASELINE_KWH * 1000 - BASE_POWER_W * 5) / 19
    feed(context, FIRST_DAY, day_profile(BASE_POWER_W, day_w))
    with session_scope(context.session_factory) as session:
        candidates = alert_candidates(session, "", 10)
    job = AlertJob(context.session_factory, context.settings, updater_for(context).book)
    # Two workers that listed the same households before either committed.
    for _ in range(2):
        with session_scope(context.session_factory) as session:
            job.check(session, candidates)
    assert job.run_once() == 0
    with context.engine.begin() as connection:  # a lost progress record: the day is checked again
        connection.execute(sa.delete(AlertProgress))
    assert job.run_once() == 0
    # The readings delivered again: nothing new either.
    feed(context, DAY - dt.timedelta(days=1), day_profile(BASE_POWER_W, day_w))
    assert job.run_once() == 0
    assert [row["type"] for row in alert_rows(context)] == ["ConsumptionAnomalyDetected"]
    with session_scope(context.session_factory) as session:
        assert sent_alerts(session, [USER]) == [AlertKey(USER, "daily_consumption", DAY)]


def test_a_baseline_day_with_poor_coverage_means_no_comparison(context: ServiceContext) -> None:
    day_w = (1.6 * BASELINE_KWH * 1000 - BASE_POWER_W * 5) / 19
    profile = day_profile(BASE_POWER_W, day_w)

    def with_gap(at: dt.datetime) -> float | None:
        if at.date() == dt.date(2026, 11, 9) and 8 <= at.hour < 12:
            return None  # 4 hours without readings: 83% of the day covered
        return profile(at)

    feed(context, FIRST_DAY, with_gap)
    assert run_job(context) == 0
    assert alert_rows(context) == []


def test_a_baseload_jump_gives_one_baseload_alert(context: ServiceContext) -> None:
    feed(context, FIRST_DAY, day_profile(700.0, BASE_POWER_W))
    assert day_kwh(700.0, BASE_POWER_W) / BASELINE_KWH < 1.5  # the day as a whole is no anomaly

    assert run_job(context) == 1
    [row] = alert_rows(context)
    payload = orjson.loads(row["payload"])
    assert row["id"] == alert_event_id(AlertKey(USER, "baseload", DAY))
    assert (payload["cause"], payload["unit"], payload["factor"]) == ("baseload", "W", 1.5)
    assert payload["observed"] == pytest.approx(700.0, abs=1e-6)
    assert payload["baseline"] == pytest.approx(400.0, abs=1e-6)
    assert payload["ratio"] == pytest.approx(1.75, abs=1e-6)


def test_without_enough_weeks_of_history_there_is_no_baseline(context: ServiceContext) -> None:
    feed(context, DAY - dt.timedelta(days=21), day_profile(700.0, 1000.0))  # three baseline weeks of four
    assert run_job(context) == 0
    assert run_job(context, alert_baseline_weeks=3) == 0  # checked already
    with context.engine.begin() as connection:
        connection.execute(sa.delete(AlertProgress))
    assert run_job(context, alert_baseline_weeks=3) == 2  # the day and the night


def spike(at_time: dt.time, volts: float, other: float = 230.0) -> Voltages:
    """Nominal voltage, but `volts` for the 10 minutes from `at_time` on DAY."""

    def voltage(at: dt.datetime) -> float:
        start = dt.datetime.combine(DAY, at_time, LISBON)
        return volts if start <= at < start + dt.timedelta(minutes=10) else other

    return voltage


def test_a_ten_minute_window_at_260_volts_gives_one_voltage_alert(context: ServiceContext) -> None:
    def voltage(at: dt.datetime) -> float:
        start = dt.datetime.combine(DAY, dt.time(14, 10), LISBON)
        if start <= at < start + dt.timedelta(minutes=10):
            return 258.0 if at == start else 262.0  # mean 260
        return 230.0

    feed(context, DAY - dt.timedelta(days=1), voltage=voltage)
    assert run_job(context) == 1
    [row] = alert_rows(context)
    payload = orjson.loads(row["payload"])
    assert row["type"] == "VoltageOutOfRange"
    assert row["id"] == alert_event_id(AlertKey(USER, "voltage", DAY))
    assert payload == {
        "user_id": USER,
        "date": "2026-11-23",
        "timezone": "Europe/Lisbon",
        "start": "2026-11-23T00:00:00+00:00",
        "end": "2026-11-24T00:00:00+00:00",
        "cause": "voltage",
        "detail": payload["detail"],
        "low_limit_v": 207.0,
        "high_limit_v": 253.0,
        "unit": "V",
        "interval_minutes": 10,
        "intervals_measured": 144,
        "intervals_outside": 1,
        "intervals_below": 0,
        "intervals_above": 1,
        "worst_mean_v": 260.0,
        "worst_interval_start": "2026-11-23T14:10:00+00:00",
        "worst_interval_end": "2026-11-23T14:20:00+00:00",
    }


@pytest.mark.parametrize("volts", [207.0, 253.0])
def test_voltage_at_the_band_limits_is_not_alerted(context: ServiceContext, volts: float) -> None:
    feed(context, DAY - dt.timedelta(days=1), voltage=spike(dt.time(14, 10), volts))
    assert run_job(context) == 0
    assert alert_rows(context) == []
    assert run_job(context, alert_voltage_max_v=252.9, alert_voltage_min_v=207.1) == 0  # checked already


def test_a_narrower_band_and_the_causes_setting_are_followed(context: ServiceContext) -> None:
    feed(context, DAY - dt.timedelta(days=1), voltage=spike(dt.time(3, 0), 250.0))
    assert run_job(context, alert_causes=("daily_consumption", "baseload")) == 0
    with context.engine.begin() as connection:
        connection.execute(sa.delete(AlertProgress))
    assert run_job(context, alert_voltage_max_v=245.0) == 1
    assert orjson.loads(alert_rows(context)[0]["payload"])["worst_mean_v"] == 250.0


def budget_rows(context: ServiceContext) -> list[dict[str, Any]]:
    with context.engine.connect() as connection:
        rows = connection.execute(
            sa.select(OutboxEvent)
            .where(OutboxEvent.type == "BillProjectionExceeded")
            .order_by(OutboxEvent.seq)
        ).mappings()
        return [dict(row) for row in rows]


@pytest.mark.parametrize("margin_eur", [-5.0, 5.0])
def test_a_projection_above_the_budget_gives_one_alert_per_period(
    context: ServiceContext, margin_eur: float
) -> None:
    """A constant 400 W, 9.6 kWh a day: at the end of 23 November the November period (30 days,
    simple tariff, 6.9 kVA) is projected at 288 kWh, priced here by pyerse."""
    expected_eur = pyerse_total(6.9, Opcao_Horaria.SIMPLES, {"normal": 30 * BASELINE_KWH}, 30, False)
    budget = round(expected_eur + margin_eur, 2)
    terms = account_message(
        USER,
        tarif_type="simple",
        contracted_power="6.9 kVA",
        effective_from="2020-01-01T00:00:00Z",
        bill_budget=budget,
    )
    assert process(context, [terms]) == []
    feed(context, dt.date(2026, 11, 1))

    queued = run_job(context, alert_causes=("bill_projection",))
    rows = budget_rows(context)
    if margin_eur > 0:
        assert queued == 0 and rows == []
        return
    assert queued == 1
    [row] = rows
    payload = orjson.loads(row["payload"])
    # Keyed by the period's first day: the days after it that are still over budget add nothing.
    assert row["id"] == alert_event_id(AlertKey(USER, "bill_projection", dt.date(2026, 11, 1)))
    assert payload["date"] == DAY.isoformat() and payload["period"] == "2026-11"
    assert payload["budget"] == budget and payload["currency"] == "EUR"
    projected = payload["projected_after_taxes"]
    assert projected["expected"] == pytest.approx(expected_eur, abs=0.05)
    assert projected["low"] <= projected["expected"] <= projected["high"]
    assert payload["so_far_after_taxes"] < projected["expected"]
    with context.engine.begin() as connection:
        connection.execute(sa.delete(AlertProgress))
    assert run_job(context, alert_causes=("bill_projection",)) == 0
    assert len(budget_rows(context)) == 1


def test_a_rule_that_fails_for_a_household_leaves_its_other_rules_alone(context: ServiceContext) -> None:
    """A tariff book without taxes cannot price a bill: the budget rule fails for this household,
    and its consumption alert is published all the same."""
    budget = account_message(USER, effective_from="2020-01-01T00:00:00Z", bill_budget=1.0)
    assert process(context, [budget]) == []
    day_w = (1.6 * BASELINE_KWH * 1000 - BASE_POWER_W * 5) / 19
    feed(context, FIRST_DAY, day_profile(BASE_POWER_W, day_w))
    untaxed = dataclasses.replace(updater_for(context).book, taxes=())
    failures = metrics.ALERT_CHECK_FAILURES._value.get()
    settings = dataclasses.replace(context.settings, alert_causes=("daily_consumption", "bill_projection"))
    assert AlertJob(context.session_factory, settings, untaxed).run_once() == 1
    assert [row["type"] for row in alert_rows(context)] == ["ConsumptionAnomalyDetected"]
    assert metrics.ALERT_CHECK_FAILURES._value.get() == failures + 1
