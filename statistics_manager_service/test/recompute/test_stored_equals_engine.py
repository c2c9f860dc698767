"""The stored shape answers exactly what the pure engine computes from the same readings.

Random households (gaps, meter resets, PV, DST days) send their readings in random batches, in
random order, with duplicates, through the consumer's processor. Then the stored days, and the
quarter hours, hours and months computed from storage, must equal the engine run once over every
reading the test sent (`compute_buckets`, `price_buckets`, `rollup`), computed here without the
database.
"""

from __future__ import annotations

import datetime as dt
import random

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from statistics_manager_service.aggregation import compute_buckets, price_buckets, rollup
from statistics_manager_service.context import ServiceContext
from statistics_manager_service.storage.households import HOUSEHOLD_COLUMNS
from statistics_manager_service.tariff_loading import updater_for
from statistics_manager_service.test.conftest import clear_tables
from statistics_manager_service.test.support.pipeline import account_message, meter_message, process, reading
from statistics_manager_service.test.support.statistics import statistics_rows

LISBON = "Europe/Lisbon"
# Local days around both of Lisbon's DST changes and an ordinary one.
DAYS = (dt.datetime(2026, 3, 28, 22, tzinfo=dt.UTC), dt.datetime(2026, 10, 24, 21, tzinfo=dt.UTC))
COMPARED = (
    "energy_imported_kwh",
    "energy_exported_kwh",
    "consumption_kwh",
    "self_consumed_kwh",
    "power_imported_mean_w",
    "power_imported_max_w",
    "voltage_mean_v",
    "covered_seconds",
    "span_seconds",
    "reading_count",
    "energy_cost_eur",
    "fixed_cost_eur",
    "net_cost_eur",
    "co2_kg",
)


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[dict[str, object]], int]:
    """A household's readings over about two days: irregular cadence, maybe a gap, a reset, PV."""
    start = draw(st.sampled_from(DAYS)) + dt.timedelta(minutes=draw(st.integers(0, 180)))
    count = draw(st.integers(3, 160))
    steps = draw(st.lists(st.integers(60, 1800), min_size=count, max_size=count))
    gap_at = draw(st.integers(0, count - 1))
    gap_s = draw(st.sampled_from([0, 0, 3 * 3600, 20 * 3600]))
    reset_at = draw(st.sampled_from([None, draw(st.integers(1, count - 1))]))
    pv = draw(st.booleans())
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    at, imported, exported, generated = start, 5_000.0, 0.0, 0.0
    readings = []
    for index, step in enumerate(steps):
        at += dt.timedelta(seconds=step + (gap_s if index == gap_at else 0))
        imported = 10.0 if index == reset_at else imported + float(rng.integers(0, 400))
        if pv:
            made = float(rng.integers(0, 300))
            generated += made
            exported += float(rng.integers(0, int(made) + 1))
        readings.append(
            reading(
                at,
                imported,
                exported,
                generated if pv else None,
                power_w=round(float(rng.gamma(2.0, 300.0)), 1),
                voltage_v=round(float(rng.normal(231.0, 1.5)), 1),
            )
        )
    return readings, seed


def _engine_frame(readings: list[dict[str, object]], user_id: str) -> pd.DataFrame:
    frame = pd.DataFrame(readings)
    stamps = frame.pop("timestamp").tolist()
    frame["ts"] = [int(dt.datetime.fromisoformat(str(stamp)).timestamp()) for stamp in stamps]
    frame.insert(0, "user_id", user_id)
    return frame


def _expected(readings: pd.DataFrame, context: ServiceContext) -> dict[str, pd.DataFrame]:
    """The engine over every reading, without the database."""
    homes = pd.DataFrame([("prophouse1", LISBON, "bi-hourly", 6.9, "PT")], columns=HOUSEHOLD_COLUMNS)
    empty = pd.DataFrame({"zone": [], "ts": [], "resolution_s": [], "value": []})
    prices = empty.assign(direction=pd.Series(dtype=object))
    intensity = empty.assign(kind=pd.Series(dtype=object))
    book = updater_for(context).book
    quarters = price_buckets(compute_buckets(readings), homes, book, prices, intensity)
    zones = {"prophouse1": LISBON}
    days = rollup(quarters, zones, "day")
    return {
        "15_mins": quarters.rename(columns={"bucket_start": "period_start"}),
        "hourly": rollup(quarters, zones, "hour"),
        "daily": days,
        "monthly": rollup(days, zones, "month"),
    }


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.generate, Phase.target],  # each example costs a database: no shrinking
)
@given(history=histories(), delivery=st.integers(0, 2**31))
def test_stored_statistics_equal_the_engine_over_every_reading(
    context: ServiceContext, history: tuple[list[dict[str, object]], int], delivery: int
) -> None:
    readings, _ = history
    rng = random.Random(delivery)
    sent = readings + rng.sample(readings, len(readings) // 4)  # a quarter delivered twice
    rng.shuffle(sent)
    batches = []
    while sent:
        size = rng.randint(1, 40)
        batches.append(sent[:size])
        sent = sent[size:]
    _deliver_and_compare(context, readings, batches)


def test_a_reading_after_a_gap_over_midnight_recomputes_the_day_before(context: ServiceContext) -> None:
    before = [reading(DAYS[0] + dt.timedelta(hours=12, minutes=15 * i), 1000.0 + 100 * i) for i in range(8)]
    after = [reading(DAYS[0] + dt.timedelta(hours=32, minutes=15 * i), 9000.0 + 100 * i) for i in range(8)]
    # The day before the gap is stored first; the energy over the gap reaches back into it.
    _deliver_and_compare(context, before + after, [before, after], messages_per_call=1)


def _deliver_and_compare(
    context: ServiceContext,
    readings: list[dict[str, object]],
    batches: list[list[dict[str, object]]],
    messages_per_call: int = 3,
) -> None:
    clear_tables(context.engine)
    context.forget_loaded_state()
    account = account_message("prophouse1", tarif_type="bi-hourly", contracted_power="6.9 kVA")
    assert process(context, [account]) == []
    for start in range(0, len(batches), messages_per_call):  # one consumed batch each
        chunks = batches[start : start + messages_per_call]
        messages = [meter_message("prophouse1", chunk) for chunk in chunks]
        assert process(context, messages) == []

    expected = _expected(_engine_frame(readings, "prophouse1"), context)
    for level, frame in expected.items():
        stored = statistics_rows(context, level, list(COMPARED))
        assert stored["period_start"].tolist() == frame["period_start"].tolist(), level
        for column in COMPARED:
            got = stored[column].to_numpy(dtype=np.float64, na_value=np.nan)
            want = frame[column].to_numpy(dtype=np.float64, na_value=np.nan)
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9, err_msg=f"{level} {column}")
