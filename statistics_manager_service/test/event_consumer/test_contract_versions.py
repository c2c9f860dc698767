"""Effective-dated contracts through the real broker and PostgreSQL: a change prices the buckets from
its instant on, never before; account events in any order give one history; a time-zone change
renumbers the local days from its transition day on."""

from __future__ import annotations

import datetime as dt
import random
import uuid
from typing import Any

import orjson
import pytest
import yaml

from statistics_manager_service.app import create_app
from statistics_manager_service.context import ServiceContext
from statistics_manager_service.test.conftest import REPO_ROOT
from statistics_manager_service.test.event_consumer.kafka_support import (
    producer,
    publish,
    running_workers,
    wait_until,
)
from statistics_manager_service.test.support.kafka_broker import KafkaBroker
from statistics_manager_service.test.support.pipeline import iso, reading
from statistics_manager_service.test.support.statistics import stored_reading_count
from statistics_manager_service.tokens import issue_token

BUCKET_KWH = 0.2  # every reading below adds 200 Wh to the import register per quarter hour
BOOK = yaml.safe_load((REPO_ROOT / "statistics_manager_service/aggregation/tariffs.yaml").read_text())


def _in_force(entries: list[dict[str, Any]], day: dt.date) -> dict[Any, float]:
    """The tariff book's entry in force on a day (read here from the YAML, not by the service)."""
    current = entries[0]
    for entry in entries:
        if dt.date.fromisoformat(str(entry["valid_from"])) <= day:
            current = entry
    return {key: value for key, value in current.items() if key != "valid_from"}


def _energy_price(tariff: str, day: dt.date, hour: int) -> float:
    prices = _in_force(BOOK["tariffs"][tariff]["energy_prices_eur_per_kwh"], day)
    if tariff == "simple":
        return prices["normal"]
    return prices["vazio"] if hour >= 22 or hour < 8 else prices["fora_vazio"]


def _power_charge(kva: float, day: dt.date) -> float:
    return float(_in_force(BOOK["power_charges_eur_per_day"], day)["by_kva"][kva])


def _readings(start: dt.datetime, end: dt.datetime) -> list[dict[str, Any]]:
    count = int((end - start) / dt.timedelta(minutes=15))
    return [
        reading(start + dt.timedelta(minutes=15 * i), 1000.0 + 1000 * BUCKET_KWH * i)
        for i in range(count + 1)
    ]


def _account(event_type: str, payload: dict[str, Any], sent: dt.datetime) -> bytes:
    return orjson.dumps(
        {"eventId": str(uuid.uuid4()), "eventType": event_type, "timestamp": iso(sent), "payload": payload}
    )


def _publish_readings(
    context: ServiceContext, broker: KafkaBroker, users: list[str], rows: list[dict[str, Any]]
) -> None:
    with producer(broker) as output:
        publish(
            output,
            context.settings.topic("meter-readings"),
            [
                (
                    user,
                    orjson.dumps(
                        {
                            "eventId": str(uuid.uuid4()),
                            "eventType": "MeterReadings",
                            "payload": {"user_id": user, "source": "hub", "readings": rows[i : i + 2000]},
                        }
                    ),
                )
                for user in users
                for i in range(0, len(rows), 2000)
            ],
        )


def _get(client: Any, context: ServiceContext, path: str) -> Any:
    headers = {
        "X-Correlation-ID": str(uuid.uuid4()),
        "Authorization": "Bearer " + issue_token(context.settings, service=True),
    }
    response = client.get("/api/statistics" + path, headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.json()


def _daily_costs(
    client: Any, context: ServiceContext, user: str, start: str, end: str
) -> list[dict[str, Any]]:
    body = _get(
        client, context, f"/energy-cost?user_ids={user}&start_date={start}&end_date={end}&group_by=daily"
    )
    metrics: list[dict[str, Any]] = body[0]["metrics"]
    return metrics


def test_a_change_mid_month_prices_only_the_buckets_from_its_instant_on(
    kafka_ctx: ServiceContext, kafka_broker: KafkaBroker
) -> None:
    user = "contract01"
    start, end = dt.datetime(2025, 12, 1, tzinfo=dt.UTC), dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
    app = create_app(kafka_ctx.settings, context=kafka_ctx, validate_responses=True)
    topic = kafka_ctx.settings.topic("user-account")
    registered = {
        "user_id": user,
        "tarif_type": "simple",
        "contracted_power": "3.45 kVA",
        "country": "PT",
        "modified_timestamp": "2025-11-02T09:00:00+00:00",
    }
    with running_workers(kafka_ctx), app.test_client() as client, producer(kafka_broker) as output:
        publish(
            output,
            topic,
            [(user, _account("UserRegistered", registered, dt.datetime(2025, 11, 2, 9, tzinfo=dt.UTC)))],
        )
        _publish_readings(kafka_ctx, kafka_broker, [user], _readings(start, end))
        wait_until(lambda: stored_reading_count(kafka_ctx) == 62 * 96 + 1, what="every reading stored")
        monthly_before = _get(
            client,
            kafka_ctx,
            f"/energy-cost?user_ids={user}&start_date=2025-12-01T00:00:00Z&end_date=2026-01-01T00:00:00Z&group_by=monthly",
        )
        daily_before = _daily_costs(client, kafka_ctx, user, "2025-12-01T00:00:00Z", "2026-02-01T00:00:00Z")
        assert len(daily_before) == 62

        # Moved to bi-hourly and 6.9 kVA at noon on 14 January, said with an offset; sent later.
        updated = {
            **registered,
            "tarif_type": "bi-hourly",
            "contracted_power": "6.9 kVA",
            "effective_from": "2026-01-14T13:00:00+01:00",
            "modified_timestamp": "2026-01-20T08:00:00Z",
        }
        publish(
            output,
            topic,
            [(user, _account("UserUpdated", updated, dt.datetime(2026, 1, 20, 8, tzinfo=dt.UTC)))],
        )
        wait_until(
            lambda: (
                _get(client, kafka_ctx, f"/contract-history?user_id={user}")[-1]["tariff_type"] == "bi-hourly"
            ),
            what="the new contract version",
        )
        wait_until(
            lambda: (
                _daily_costs(client, kafka_ctx, user, "2026-01-31T00:00:00Z", "2026-02-01T00:00:00Z")
                != daily_before[-1:]
            ),
            what="the days after the change recomputed",
        )
        daily_after = _daily_costs(client, kafka_ctx, user, "2025-12-01T00:00:00Z", "2026-02-01T00:00:00Z")
        monthly_after = _get(
            client,
            kafka_ctx,
            f"/energy-cost?user_ids={user}&start_date=2025-12-01T00:00:00Z&end_date=2026-01-01T00:00:00Z&group_by=monthly",
        )
        history = _get(client, kafka_ctx, f"/contract-history?user_id={user}")

    # Every day before the change, and December as a month, answer exactly as before.
    assert daily_after[:44] == daily_before[:44]
    assert monthly_after == monthly_before
    assert [
        (v["effective_from"], v["effective_source"], v["tariff_type"], v["contracted_power_kva"])
        for v in history
    ] == [
        ("2025-11-02T09:00:00Z", "modified_timestamp", "simple", 3.45),
        ("2026-01-14T12:00:00Z", "effective_from", "bi-hourly", 6.9),
    ]
    assert history[1]["cycle"] == BOOK["tariffs"]["bi-hourly"]["schedule"]

    # Ground truth from the tariff book: Lisbon is on UTC in winter; 96 quarter hours a day.
    def expected(day: dt.date, contract_at: Any) -> tuple[float, float]:
        energy = fixed = 0.0
        for quarter in range(96):
            tariff, kva = contract_at(quarter)
            energy += BUCKET_KWH * _energy_price(tariff, day, quarter // 4)
            fixed += _power_charge(kva, day) / 96
        return energy, fixed

    old, new = ("simple", 3.45), ("bi-hourly", 6.9)
    for position, record in enumerate(daily_after):
        day = dt.date(2025, 12, 1) + dt.timedelta(days=position)
        assert record["timestamp"] == f"{day.isoformat()}T00:00:00+00:00"
        if day < dt.date(2026, 1, 14):
            contract_at: Any = lambda _quarter: old  # noqa: E731
        elif day == dt.date(2026, 1, 14):
            contract_at = lambda quarter: old if quarter < 48 else new  # noqa: E731
        else:
            contract_at = lambda _quarter: new  # noqa: E731
        energy, fixed = expected(day, contract_at)
        assert record["energy_cost"] == pytest.approx(energy, abs=1e-6), day
        assert record["fixed_cost"] == pytest.approx(fixed, abs=1e-6), day
    # The change day as the brief's example: half simple at 3.45 kVA, half bi-hourly at 6.9 kVA.
    change_day = daily_after[44]
    assert change_day["fixed_cost"] == pytest.approx((0.1840 + 0.3530) / 2, abs=1e-6)
    assert change_day["energy_cost"] == pytest.approx(
        48 * 0.2 * 0.1651 + 40 * 0.2 * 0.2031 + 8 * 0.2 * 0.1055, abs=1e-6
    )


VERSIONS = [
    # (effective_from or None, modified_timestamp, tariff, power, time zone)
    (None, "2026-03-01T00:00:00Z", "simple", "3.45 kVA", None),
    ("2026-03-03T06:00:00Z", "2026-03-02T10:00:00Z", "tri-hourly", "5.75 kVA", None),
    # The same effective instant, modified later: this one wins whatever the order.
    ("2026-03-03T06:00:00Z", "2026-03-02T11:00:00Z", "bi-hourly", "5.75 kVA", None),
    ("2026-03-05T18:00:00Z", "2026-03-04T10:00:00Z", "bi-hourly", "10.35 kVA", "Europe/Madrid"),
    ("2026-03-07T00:00:00Z", "2026-03-06T10:00:00Z", "simple", "6.9 kVA", None),
]


def _version_event(user: str, index: int) -> bytes:
    effective, modified, tariff, power, timezone = VERSIONS[index]
    payload: dict[str, Any] = {
        "user_id": user,
        "tarif_type": tariff,
        "contracted_power": power,
        "country": "PT",
        "modified_timestamp": modified,
    }
    if effective is not None:
        payload["effective_from"] = effective
    if timezone is not None:
        payload["timezone"] = timezone
    return _account(
        "UserUpdated" if index else "UserRegistered", payload, dt.datetime.fromisoformat(modified)
    )


def test_account_events_in_any_order_give_one_history_and_the_same_statistics(
    kafka_ctx: ServiceContext, kafka_broker: KafkaBroker
) -> None:
    orders = [list(range(len(VERSIONS)))]
    shuffler = random.Random(20260309)
    while len(orders) < 4:
        order = orders[0][:]
        shuffler.shuffle(order)
        if order not in orders:
            orders.append(order)
    users = [f"shuffled{n:02d}" for n in range(len(orders))]
    rows = _readings(dt.datetime(2026, 3, 1, tzinfo=dt.UTC), dt.datetime(2026, 3, 9, tzinfo=dt.UTC))
    app = create_app(kafka_ctx.settings, context=kafka_ctx, validate_responses=True)
    with running_workers(kafka_ctx), app.test_client() as client, producer(kafka_broker) as output:
        _publish_readings(kafka_ctx, kafka_broker, users, rows)
        wait_until(
            lambda: stored_reading_count(kafka_ctx) == len(users) * len(rows), what="every reading stored"
        )
        # Versions arrive after the readings, each household's in its own order (one partition each).
        publish(
            output,
            kafka_ctx.settings.topic("user-account"),
            [
                (user, _version_event(user, index))
                for user, order in zip(users, orders, strict=True)
                for index in order
            ],
        )

        def histories() -> list[Any]:
            return [_get(client, kafka_ctx, f"/contract-history?user_id={user}") for user in users]

        wait_until(lambda: all(len(history) == 4 for history in histories()), what="every version stored")

        def statistics(user: str) -> Any:
            return [
                _get(
                    client,
                    kafka_ctx,
                    f"/energy-cost?user_ids={user}&start_date=2026-03-01T00:00:00Z&end_date=2026-03-09T00:00:00Z&group_by={level}",
                )[0]["metrics"]
                for level in ("daily", "hourly")
            ]

        # The last version is applied last in none of the shuffled orders necessarily: wait for
        # every household's statistics to settle on those of the in-order household.
        wait_until(
            lambda: all(statistics(user) == statistics(users[0]) for user in users), what="equal statistics"
        )
        answers = histories()

    assert all(history == answers[0] for history in answers)
    assert [
        (v["effective_from"], v["tariff_type"], v["contracted_power_kva"], v["timezone"]) for v in answers[0]
    ] == [
        ("2026-03-01T00:00:00Z", "simple", 3.45, "Europe/Lisbon"),
        ("2026-03-03T06:00:00Z", "bi-hourly", 5.75, "Europe/Lisbon"),
        ("2026-03-05T18:00:00Z", "bi-hourly", 10.35, "Europe/Madrid"),
        ("2026-03-07T00:00:00Z", "simple", 6.9, "Europe/Madrid"),
    ]
    assert [v["effective_source"] for v in answers[0]] == ["modified_timestamp"] + ["effective_from"] * 3


def test_a_time_zone_change_renumbers_the_days_from_its_transition_day_on(
    kafka_ctx: ServiceContext, kafka_broker: KafkaBroker
) -> None:
    user = "movinghome"
    rows = _readings(dt.datetime(2026, 3, 1, tzinfo=dt.UTC), dt.datetime(2026, 3, 10, tzinfo=dt.UTC))
    app = create_app(kafka_ctx.settings, context=kafka_ctx, validate_responses=True)
    topic = kafka_ctx.settings.topic("user-account")
    base = {"user_id": user, "tarif_type": "simple", "contracted_power": "6.9 kVA", "country": "PT"}
    with running_workers(kafka_ctx), app.test_client() as client, producer(kafka_broker) as output:
        # No modified_timestamp and no effective_from: the envelope's time dates each version.
        publish(
            output, topic, [(user, _account("UserRegistered", base, dt.datetime(2026, 2, 1, tzinfo=dt.UTC)))]
        )
        _publish_readings(kafka_ctx, kafka_broker, [user], rows)
        wait_until(lambda: stored_reading_count(kafka_ctx) == len(rows), what="every reading stored")
        url = f"/energy-consumption?user_ids={user}&start_date=2026-03-01T00:00:00Z&end_date=2026-03-10T00:00:00Z&group_by=daily"
        before = _get(client, kafka_ctx, url)[0]["metrics"]
        costs_before = _daily_costs(client, kafka_ctx, user, "2026-03-01T00:00:00Z", "2026-03-10T00:00:00Z")
        moved = {**base, "timezone": "Europe/Berlin"}
        publish(
            output,
            topic,
            [(user, _account("UserUpdated", moved, dt.datetime(2026, 3, 5, 15, tzinfo=dt.UTC)))],
        )
        wait_until(
            lambda: (
                _get(client, kafka_ctx, f"/contract-history?user_id={user}")[-1]["timezone"]
                == "Europe/Berlin"
            ),
            what="the new time zone",
        )
        wait_until(lambda: _get(client, kafka_ctx, url)[0]["metrics"] != before, what="the days renumbered")
        after = _get(client, kafka_ctx, url)[0]["metrics"]
        costs_after = _daily_costs(client, kafka_ctx, user, "2026-03-01T00:00:00Z", "2026-03-10T00:00:00Z")
        history = _get(client, kafka_ctx, f"/contract-history?user_id={user}")

    assert [(v["effective_from"], v["effective_source"]) for v in history] == [
        ("2026-02-01T00:00:00Z", "event_time"),
        ("2026-03-05T15:00:00Z", "event_time"),
    ]
    # Lisbon is UTC+0 and Berlin UTC+1 in early March. Days before 5 March stay Lisbon days (the
    # same instants; answers now speak Berlin's offset); 5 March runs from Lisbon's midnight to
    # Berlin's next one (23 h); later days are Berlin days.
    starts = [dt.datetime.fromisoformat(record["timestamp"]).astimezone(dt.UTC) for record in after]
    expected_starts = [dt.datetime(2026, 3, d, tzinfo=dt.UTC) for d in range(1, 6)] + [
        dt.datetime(2026, 3, d, 23, tzinfo=dt.UTC) for d in range(5, 9)
    ]
    assert starts[: len(expected_starts)] == expected_starts
    hours = [24, 24, 24, 24, 23, 24, 24, 24, 24]
    for record, length_h in zip(after, hours, strict=False):
        assert record["value"] == pytest.approx(length_h * 4 * BUCKET_KWH, abs=1e-9)
    assert [r["value"] for r in after[:4]] == [r["value"] for r in before[:4]]
    assert costs_after[:4] == [
        {**record, "timestamp": after[n]["timestamp"]} for n, record in enumerate(costs_before[:4])
    ]
    # The transition day pays one day's power charge, like any other day.
    assert costs_after[4]["fixed_cost"] == pytest.approx(_power_charge(6.9, dt.date(2026, 3, 5)), abs=1e-6)
    # Energy is conserved across the renumbering.
    assert sum(r["value"] for r in after) == pytest.approx(sum(r["value"] for r in before), abs=1e-6)
