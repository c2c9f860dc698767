"""The batch processor against real databases: effectively-once storage checked against an oracle."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from statistics_manager_service import metrics
from statistics_manager_service.context import ServiceContext
from statistics_manager_service.event_consumer import handlers
from statistics_manager_service.event_consumer.handlers import KNOWN_EVENT_TYPES
from statistics_manager_service.event_consumer.processor import BatchProcessor, Message
from statistics_manager_service.storage.engine import session_scope
from statistics_manager_service.storage.tables import Base, ConsumptionCurve, Household, StatisticsPeriod
from statistics_manager_service.test.conftest import clear_tables
from statistics_manager_service.test.support.oracle import bucket_energy_kwh
from statistics_manager_service.test.support.pipeline import (
    account_message,
    envelope,
    iso,
    message,
    meter_message,
    process,
    reading,
    signal_message,
)
from statistics_manager_service.test.support.statistics import statistics_rows

START = dt.datetime(2026, 3, 28, 0, 0, tzinfo=dt.UTC)  # the Lisbon DST day 2026-03-29 is inside


def household_readings(seed: int, days: int = 3) -> list[dict[str, Any]]:
    """Irregular readings with a register reset (meter replacement) and a 5-hour gap."""
    rng = random.Random(seed)
    readings = []
    register = rng.uniform(1e5, 5e5)
    at = START
    end = START + dt.timedelta(days=days)
    while at < end:
        if START + dt.timedelta(hours=30) <= at < START + dt.timedelta(hours=35):
            at += dt.timedelta(minutes=15)
            continue  # the gap
        if at == START + dt.timedelta(hours=50):
            register = rng.uniform(0, 50)  # the new meter
        register += rng.uniform(0, 400)
        readings.append(
            reading(at, round(register, 3), power_w=rng.uniform(100, 3000), voltage_v=rng.uniform(225, 235))
        )
        at += dt.timedelta(minutes=rng.choice((5, 10, 15, 15, 15, 20)))
    return readings


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def snapshot(context: ServiceContext) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows, without the columns that record when something happened."""
    volatile = {
        "updated_at",
        "processed_at",
        "created_at",
        "timestamp",
        "id",
        "seq",
        "payload",
        "computed_at",
    }
    result = {}
    with context.engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            if table.name in ("events", "processed_events"):
                continue
            columns = [c for c in table.columns if c.name not in volatile]
            rows = connection.execute(sa.select(*columns).order_by(*table.primary_key.columns)).all()
            result[table.name] = [tuple(row) for row in rows]
    return result


def assert_same_tables(
    left: dict[str, list[tuple[Any, ...]]], right: dict[str, list[tuple[Any, ...]]]
) -> None:
    """Equal row for row; floats equal up to summation-order noise (1e-9)."""
    assert left.keys() == right.keys()
    for name in left:
        assert len(left[name]) == len(right[name]), name
        for row_left, row_right in zip(left[name], right[name], strict=True):
            for value_left, value_right in zip(row_left, row_right, strict=True):
                if isinstance(value_right, float):
                    assert value_left == pytest.approx(value_right, rel=1e-9, abs=1e-9), (
                        name,
                        row_left,
                        row_right,
                    )
                else:
                    assert value_left == value_right, (name, row_left, row_right)


USERS = ("house00001", "house00002", "house00003")


def test_duplicated_shuffled_and_replayed_delivery_equals_one_clean_delivery(context: ServiceContext) -> None:
    per_user = {user: household_readings(seed) for seed, user in enumerate(USERS)}
    accounts = [
        account_message(user, tarif_type=tariff, contracted_power="6.9 kVA")
        for user, tariff in zip(USERS, ("simple", "bi-hourly", "tri-hourly"), strict=True)
    ]
    events = [
        (user, f"{user}-{index}", chunk)
        for user, readings in per_user.items()
        for index, chunk in enumerate(_chunks(readings, 24))
    ]

    assert process(context, accounts) == []
    for batch in _chunks(events, 10):
        assert process(context, [meter_message(u, chunk, event_id=eid) for u, eid, chunk in batch]) == []
    clean = snapshot(context)

    clear_tables(context.engine)
    rng = random.Random(7)
    messy = events + rng.sample(events, len(events) // 10)  # 10% duplicates
    rng.shuffle(messy)
    assert process(context, accounts) == []
    for replay in range(2):  # the whole stream delivered twice, in random batches
        order = messy[:] if replay == 0 else rng.sample(messy, len(messy))
        while order:
            size = rng.randint(1, 15)
            batch, order = order[:size], order[size:]
            assert process(context, [meter_message(u, chunk, event_id=eid) for u, eid, chunk in batch]) == []
    assert_same_tables(snapshot(context), clean)


def _stored(context: ServiceContext, granularity: str, column: str) -> dict[tuple[str, int], float]:
    rows = statistics_rows(context, granularity, [column])
    return {
        (user, int(start)): float(value) for user, start, value in rows.itertuples(index=False, name=None)
    }


def test_buckets_and_local_days_match_an_independent_oracle(context: ServiceContext) -> None:
    per_user = {user: household_readings(seed) for seed, user in enumerate(USERS)}
    # Late and out of order: the second half of each household's day arrives first.
    messages = [account_message(user) for user in USERS]
    for user, readings in per_user.items():
        halves = _chunks(readings, len(readings) // 2 + 1)
        messages += [meter_message(user, halves[1]), meter_message(user, halves[0])]
    assert process(context, messages) == []

    stored = _stored(context, "15_mins", "energy_imported_kwh")
    for user, readings in per_user.items():
        expected = bucket_energy_kwh(
            (int(dt.datetime.fromisoformat(r["timestamp"]).timestamp()), r["energy_imported_wh"])
            for r in readings
        )
        got = {start: value for (u, start), value in stored.items() if u == user}
        assert set(got) == set(expected)
        for start, kwh in expected.items():
            assert got[start] == pytest.approx(kwh, abs=1e-9), (user, start)
            assert got[start] >= 0

        # Local days in Europe/Lisbon: 2026-03-29 has 23 hours (92 buckets).
        daily = {
            start: value
            for (u, start), value in _stored(context, "daily", "energy_imported_kwh").items()
            if u == user
        }
        dst_day = int(
            dt.datetime(2026, 3, 29, tzinfo=dt.UTC).timestamp()
        )  # local midnight (UTC+0 until 01:00)
        next_day = int(dt.datetime(2026, 3, 29, 23, tzinfo=dt.UTC).timestamp())  # local midnight at UTC+1
        assert set(daily) >= {dst_day, next_day}
        assert next_day - dst_day == 23 * 3600
        assert daily[dst_day] == pytest.approx(
            sum(v for s, v in expected.items() if dst_day <= s < next_day), abs=1e-9
        )
        assert sum(daily.values()) == pytest.approx(sum(expected.values()), abs=1e-9)


def _count(context: ServiceContext, table: type[Base], **where: object) -> int:
    with context.engine.connect() as connection:
        statement = sa.select(sa.func.count()).select_from(table)
        for name, value in where.items():
            statement = statement.where(getattr(table, name) == value)
        return int(connection.execute(statement).scalar_one())


def test_poison_messages_are_dead_lettered_and_the_rest_processed(context: ServiceContext) -> None:
    good = [reading(START + dt.timedelta(minutes=15 * i), 100.0 * i) for i in range(4)]
    corpus: list[tuple[Message, str]] = [
        (message("meter-readings", b"not json at all"), "not JSON"),
        (message("meter-readings", b"[1, 2, 3]"), "not an object"),
        (message("meter-readings", None), "tombstone"),
        (
            message("meter-readings", envelope("MeterReadingz", {"user_id": "house00001"})),
            "unknown event type",
        ),
        (message("grid-signals", envelope("SolarFlare", {"zone": "PT"})), "unknown event type"),
        (message("statistics", envelope("SomethingElse", {})), "unknown event type"),
        (meter_message("short", good), "user_id"),
        (meter_message("house00001", [{**good[0], "energy_imported_wh": -5}]), "energy_imported_wh"),
        (meter_message("house00001", [{**good[0], "energy_imported_wh": "lots"}]), "energy_imported_wh"),
        (
            message(
                "meter-readings",
                b'{"eventType": "MeterReadings", "payload": {"user_id": "house00001", "source": "hub", "readings": [{"timestamp": "2026-03-28T00:00:00Z", "energy_imported_wh": NaN, "energy_exported_wh": 0}]}}',
            ),
            "not JSON",
        ),
        (meter_message("house00001", [{**good[0], "timestamp": "yesterday"}]), "timestamp"),
        (meter_message("house00001", [{**good[0], "timestamp": "1999-12-31T00:00:00Z"}]), "timestamp"),
        (meter_message("house00001", [{**good[0], "timestamp": "2099-01-01T00:00:00Z"}]), "future"),
        (meter_message("house00001", good, source="toaster"), "source"),
        (meter_message("house00001", []), "readings"),
        (
            message(
                "meter-readings",
                envelope(
                    "MeterReadings", {"device_id": "unknown-dongle", "source": "dongle", "readings": good}
                ),
            ),
            "device id",
        ),
        (
            signal_message(
                "CarbonIntensity",
                {
                    "zone": "PT",
                    "kind": "guess",
                    "values": [{"timestamp": "2026-03-28T00:00:00Z", "value": 100}],
                },
            ),
            "kind",
        ),
        (
            signal_message(
                "EnergyPrices",
                {
                    "zone": "PT",
                    "direction": "import",
                    "unit": "USD/MWh",
                    "values": [{"timestamp": "2026-03-28T00:00:00Z", "value": 1}],
                },
            ),
            "unit",
        ),
        (account_message("house00001", contracted_power="a lot"), "contracted_power"),
        (account_message("house00001", timezone="Mars/Olympus"), "timezone"),
    ]
    valid = [account_message("house00002"), meter_message("house00002", good)]
    dead = sorted(
        process(context, [valid[0], *[m for m, _ in corpus], valid[1]]), key=lambda d: d.message.offset
    )
    assert [d.message.offset for d in dead] == [m.offset for m, _ in corpus]
    for letter, (_, expected) in zip(dead, corpus, strict=True):
        assert expected.lower() in letter.reason.lower(), letter.reason
    quarter_hours = statistics_rows(context, "15_mins", ["energy_imported_kwh"])
    assert (quarter_hours["user_id"] == "house00002").sum() == 3


def _skipped_labels() -> set[str]:
    return {
        sample.labels["event_type"]
        for family in metrics.EVENTS_SKIPPED.collect()
        for sample in family.samples
        if sample.name.endswith("_total")
    }


def test_unused_account_events_are_skipped_and_counted(context: ServiceContext) -> None:
    before = metrics.EVENTS_SKIPPED.labels("hems.user-account", "other")._value.get()
    dead = process(
        context,
        [account_message("house00001", "UserConfirmed"), account_message("house00001", "UserSoftDeleted")],
    )
    assert dead == []
    assert metrics.EVENTS_SKIPPED.labels("hems.user-account", "other")._value.get() == before + 2


def test_event_types_chosen_by_producers_yield_a_bounded_set_of_labels(context: ServiceContext) -> None:
    misplaced = metrics.EVENTS_SKIPPED.labels("hems.user-account", "CarbonIntensity")._value.get()
    dead = process(
        context,
        [account_message("house00001", f"Invented{number:04d}") for number in range(300)]
        + [
            account_message("house00001", "CarbonIntensity")
        ],  # a known type on the wrong topic keeps its name
    )
    assert dead == []
    assert _skipped_labels() <= KNOWN_EVENT_TYPES | {"MeterReadings", "other"}
    assert metrics.EVENTS_SKIPPED.labels("hems.user-account", "CarbonIntensity")._value.get() == misplaced + 1


def test_erasure_removes_everything_and_refuses_later_readings(context: ServiceContext) -> None:
    user = "house00009"
    good = [reading(START + dt.timedelta(minutes=15 * i), 100.0 * i, power_w=200) for i in range(8)]
    assert (
        process(
            context,
            [
                account_message(user, api_key="dongle-key-9", meter_id="PT0002000123"),
                meter_message(user, good),
            ],
        )
        == []
    )
    assert _count(context, StatisticsPeriod, user_id=user) > 0
    assert process(context, [account_message(user, "UserHardDeleted")]) == []
    with context.engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            for column_name in ("user_id", "aggregateid"):
                if column_name in table.columns and table.name != "erased_users":
                    left = connection.execute(
                        sa.select(sa.func.count()).select_from(table).where(table.c[column_name] == user)
                    ).scalar_one()
                    assert left == 0, table.name
        assert connection.execute(sa.text("select count(*) from device_mappings")).scalar_one() == 0
    late = process(
        context, [meter_message(user, good[:2]), account_message(user, "UserUpdated", tarif_type="simple")]
    )
    assert [d.error_class for d in late] == ["ErasedUser", "PoisonMessage"]
    assert "erased" in late[1].reason


def test_readings_by_device_id_reach_the_mapped_household(context: ServiceContext) -> None:
    good = [reading(START + dt.timedelta(minutes=15 * i), 50.0 * i) for i in range(5)]
    mapping = account_message("house00004", "UserAddedDongleApiKey", api_key="dongle-abc")
    by_device = message(
        "meter-readings",
        envelope("MeterReadings", {"device_id": "dongle-abc", "source": "dongle", "readings": good}),
    )
    assert process(context, [mapping, by_device]) == []
    total = sum(_stored(context, "15_mins", "energy_imported_kwh").values())
    assert total == pytest.approx(0.2)  # (200 Wh - 0 Wh) / 1000


def test_late_carbon_intensity_recomputes_co2_and_a_later_value_replaces_it(context: ServiceContext) -> None:
    user = "house00005"
    readings = [reading(START + dt.timedelta(minutes=15 * i), 250.0 * i) for i in range(9)]  # 1 kWh per hour
    assert process(context, [account_message(user), meter_message(user, readings)]) == []
    hour = {
        "zone": "PT",
        "kind": "actual",
        "resolution_minutes": 60,
        "values": [{"timestamp": "2026-03-28T00:00:00Z", "value": 200.0}],
    }
    assert process(context, [signal_message("CarbonIntensity", hour)]) == []
    hourly = _stored(context, "hourly", "co2_kg")
    first_hour = int(START.timestamp())
    assert hourly[(user, first_hour)] == pytest.approx(1.0 * 200.0 / 1000)  # 1 kWh × 200 g/kWh
    corrected = {**hour, "values": [{"timestamp": "2026-03-28T00:00:00Z", "value": 120.0}]}
    assert process(context, [signal_message("CarbonIntensity", corrected)]) == []
    assert _stored(context, "hourly", "co2_kg")[(user, first_hour)] == pytest.approx(0.12)
    daily = _stored(context, "daily", "co2_kg")
    assert sum(v for (u, _), v in daily.items() if u == user) == pytest.approx(
        sum(v for (u, _), v in _stored(context, "15_mins", "co2_kg").items() if u == user)
    )


def test_dynamic_prices_price_the_dynamic_household(context: ServiceContext) -> None:
    user = "house00006"
    readings = [reading(START + dt.timedelta(minutes=15 * i), 250.0 * i) for i in range(9)]
    prices = {
        "zone": "PT",
        "direction": "import",
        "resolution_minutes": 60,
        "values": [
            {"timestamp": "2026-03-28T00:00:00Z", "value": 0.30},
            {"timestamp": "2026-03-28T01:00:00Z", "value": -0.05},
        ],
    }
    assert (
        process(
            context,
            [
                account_message(user, tarif_type="dynamic"),
                meter_message(user, readings),
                signal_message("EnergyPrices", prices),
            ],
        )
        == []
    )
    cost = _stored(context, "hourly", "energy_cost_eur")
    assert cost[(user, int(START.timestamp()))] == pytest.approx(1.0 * 0.30)
    assert cost[(user, int(START.timestamp()) + 3600)] == pytest.approx(1.0 * -0.05)  # negative prices pay


def test_announcements_are_written_to_the_outbox(context: ServiceContext) -> None:
    user = "house00007"
    first_day = [reading(START + dt.timedelta(minutes=15 * i), 10.0 * i) for i in range(90)]
    next_day = [reading(START + dt.timedelta(minutes=15 * i), 10.0 * i) for i in range(90, 110)]
    assert process(context, [account_message(user), meter_message(user, first_day)]) == []
    assert process(context, [meter_message(user, next_day)]) == []
    with session_scope(context.session_factory) as session:
        types = [t for (t,) in session.execute(sa.text("select type from events order by seq"))]
    assert types.count("StatisticsUpdated") == 2
    assert types.count("DailyStatisticsClosed") == 1


def test_a_better_source_replaces_the_statistics(context: ServiceContext) -> None:
    user = "house00008"
    hub = [reading(START + dt.timedelta(minutes=15 * i), 100.0 * i) for i in range(5)]
    meter = [reading(START + dt.timedelta(minutes=15 * i), 200.0 * i) for i in range(5)]
    assert process(context, [account_message(user), meter_message(user, hub, source="hub")]) == []
    assert sum(_stored(context, "15_mins", "energy_imported_kwh").values()) == pytest.approx(0.4)
    assert process(context, [meter_message(user, meter, source="smart_meter")]) == []
    assert sum(_stored(context, "15_mins", "energy_imported_kwh").values()) == pytest.approx(0.8)
    assert (
        process(
            context, [meter_message(user, [reading(START + dt.timedelta(hours=2), 5000.0)], source="hub")]
        )
        == []
    )
    assert sum(_stored(context, "15_mins", "energy_imported_kwh").values()) == pytest.approx(0.8)


def test_a_message_failing_unexpectedly_is_isolated_by_halves(context: ServiceContext, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A handler error nobody foresaw fails the batch; halves are retried until only that message fails."""
    real_upsert = handlers.household_store.upsert_household
    real_apply = BatchProcessor._apply
    transactions: list[int] = []

    def upsert(session: Any, user_id: str, fields: Any) -> None:
        if user_id == "brokenhome":
            raise RuntimeError("disk on fire")
        real_upsert(session, user_id, fields)

    def apply(self: BatchProcessor, session: Any, messages: Any) -> Any:
        transactions.append(len(messages))
        return real_apply(self, session, messages)

    monkeypatch.setattr(handlers.household_store, "upsert_household", upsert)
    monkeypatch.setattr(BatchProcessor, "_apply", apply)
    users = [f"isolated{i:02d}" for i in range(63)]
    batch = [account_message(user) for user in users[:40]] + [account_message("brokenhome")]
    batch += [account_message(user) for user in users[40:]]
    dead = process(context, batch)
    assert [(d.message.key, d.error_class, d.reason) for d in dead] == [
        (b"brokenhome", "RuntimeError", "disk on fire")
    ]
    with context.engine.connect() as connection:
        stored = set(connection.execute(sa.select(Household.user_id)).scalars())
    assert stored == set(users)
    # The whole batch, two halves per level down to 8 messages (64 = 8 x 2^3), then those 8 one
    # by one: 15 transactions, where one per message would be 65.
    assert transactions[0] == len(batch) and transactions.count(1) == 8
    assert len(transactions) == 1 + 2 * 3 + 8


@pytest.mark.parametrize("timezone", ["Pacific/Kiritimati", "Pacific/Pago_Pago", "Europe/Lisbon"])
def test_a_forecast_is_stored_for_its_local_day_in_any_time_zone(
    context: ServiceContext, timezone: str
) -> None:
    """Its 24 hourly values from the household's local midnight, also 14 hours east or 11 west of UTC."""
    user = "house00031"
    midnight = dt.datetime.combine(dt.date(2026, 3, 10), dt.time(), ZoneInfo(timezone))
    forecast = {
        "user_id": user,
        "forecast_day": "2026-03-10",
        "interval_minutes": 60,
        "values": [
            {"timestamp": iso(midnight + dt.timedelta(hours=hour)), "energy_kwh": 0.5} for hour in range(24)
        ],
    }
    event = message("statistics", envelope("ForecastComputedEvent", forecast), user)
    assert process(context, [account_message(user, timezone=timezone), event]) == []
    with session_scope(context.session_factory) as session:
        stored = sorted(
            session.scalars(
                sa.select(ConsumptionCurve.ts).where(
                    ConsumptionCurve.user_id == user, ConsumptionCurve.kind == "forecast"
                )
            )
        )
    assert stored == [int((midnight + dt.timedelta(hours=hour)).timestamp()) for hour in range(24)]
