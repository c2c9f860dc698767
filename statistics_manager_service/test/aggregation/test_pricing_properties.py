"""Property: cost and CO2 of any rollup equal the sums over its own buckets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from statistics_manager_service.aggregation import compute_buckets, load_tariff_book, price_buckets, rollup
from statistics_manager_service.aggregation.tariffs import price_buckets_under
from statistics_manager_service.test.aggregation.factories import households, readings, utc

BOOK = load_tariff_book()
MONEY_AND_CO2 = ["energy_cost_eur", "fixed_cost_eur", "export_revenue_eur", "net_cost_eur", "co2_kg"]
ZONES = ["Europe/Lisbon", "Asia/Kolkata", "America/New_York"]
PANDAS_PERIOD = {"day": "D", "month": "M", "year": "Y"}


Case = tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]


@st.composite
def unpriced_buckets(draw: st.DrawFn) -> Case:
    """Draw buckets of one or two households spanning days to months, their contracts, prices and
    carbon intensity."""
    frames, homes = [], []
    for index in range(draw(st.integers(1, 2))):
        user_id = f"user{index}"
        gaps = draw(st.lists(st.integers(900, 4 * 86400), min_size=1, max_size=10))
        first_s = utc(draw(st.sampled_from(["2025-12-28T00:00Z", "2026-03-27T00:00Z", "2026-10-23T00:00Z"])))
        ts = first_s + draw(st.integers(0, 86400)) + np.cumsum([0, *gaps])
        steps_wh = draw(st.lists(st.floats(0, 3000), min_size=ts.size, max_size=ts.size))
        imported = np.cumsum(np.asarray(steps_wh, dtype=np.float64))
        frames.append(readings(ts, imported, imported / 3, user_id=user_id, generated_wh=imported / 2))
        tariff = draw(st.sampled_from(["simple", "bi-hourly", "tri-hourly", "dynamic"]))
        homes.append(
            (user_id, draw(st.sampled_from(ZONES)), tariff, draw(st.sampled_from([3.45, 6.9, 8.0])), "PT")
        )
    week_s = 7 * 86400
    intensity = pd.DataFrame(
        {
            "zone": "PT",
            "kind": "actual",
            "ts": [utc("2026-03-28T00:00Z")],
            "resolution_s": week_s,
            "value": 90.0,
        }
    )
    prices = pd.DataFrame(
        {
            "zone": "PT",
            "direction": "import",
            "ts": [utc("2026-01-01T00:00Z")],
            "resolution_s": week_s,
            "value": 0.11,
        }
    )
    return compute_buckets(pd.concat(frames, ignore_index=True)), households(homes), prices, intensity


@st.composite
def priced_buckets(draw: st.DrawFn) -> tuple[pd.DataFrame, dict[str, str]]:
    """Draw priced buckets for one or two households spanning days to months."""
    buckets, home_frame, prices, intensity = draw(unpriced_buckets())
    zones = dict(zip(home_frame["user_id"], home_frame["timezone"], strict=True))
    return price_buckets(buckets, home_frame, BOOK, prices, intensity), zones


@settings(max_examples=25, deadline=None)
@given(priced_buckets(), st.sampled_from(["day", "month", "year"]))
def test_cost_and_co2_of_a_rollup_is_the_sum_of_its_buckets(
    case: tuple[pd.DataFrame, dict[str, str]], granularity: str
) -> None:
    buckets, zones = case
    rolled = rollup(buckets, zones, granularity)  # type: ignore[arg-type]
    # Independent grouping: pandas' own time-zone conversion and calendar periods.
    local = pd.to_datetime(buckets["bucket_start"], unit="s", utc=True)
    keys = [
        local[buckets["user_id"] == user]
        .dt.tz_convert(zone)
        .dt.tz_localize(None)
        .dt.to_period(PANDAS_PERIOD[granularity])
        for user, zone in zones.items()
    ]
    expected = buckets.groupby([buckets["user_id"], pd.concat(keys).rename("period")])[MONEY_AND_CO2].sum()
    assert len(rolled) == len(expected)
    got = rolled.sort_values(["user_id", "period_start"])[MONEY_AND_CO2].to_numpy()
    assert got == pytest.approx(expected.to_numpy(), rel=1e-9, abs=1e-12)
    assert np.isfinite(got).all()


@settings(max_examples=25, deadline=None)
@given(
    unpriced_buckets(),
    st.lists(
        st.fixed_dictionaries(
            {},
            optional={
                "tariff_type": st.sampled_from(sorted(BOOK.tariffs)),
                "contracted_power_kva": st.sampled_from([1.15, 3.45, 6.9, 41.4]),
            },
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_pricing_under_several_contracts_at_once_equals_pricing_under_each(
    case: Case, variants: list[dict[str, object]]
) -> None:
    """The tariff comparison prices one set of buckets under every option in one call: each
    answer is what pricing under that option alone gives."""
    buckets, home_frame, prices, intensity = case
    contracts = [home_frame.assign(**variant) for variant in variants]
    together = price_buckets_under(buckets, contracts, BOOK, prices, intensity)
    assert len(together) == len(contracts)
    for priced, alone in zip(together, contracts, strict=True):
        pd.testing.assert_frame_equal(priced, price_buckets(buckets, alone, BOOK, prices, intensity))
