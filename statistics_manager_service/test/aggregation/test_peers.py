"""The pure peer-group rules: power bands, percentiles by hand, a value placed among them."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from statistics_manager_service.aggregation.peers import (
    MIN_PEERS,
    PERCENTILES,
    group_percentiles,
    has_pv,
    peer_groups,
    percentile_rank,
    power_band,
    published_percentile,
)


def test_power_bands_follow_the_erse_ladder() -> None:
    ladder = [1.15, 2.3, 3.45, 4.6, 5.75, 6.9, 10.35, 13.8, 17.25, 20.7, 27.6, 34.5, 41.4]
    assert list(power_band(np.array(ladder))) == [
        *["1.15-3.45"] * 3,
        *["4.6-6.9"] * 3,
        *["10.35-13.8"] * 2,
        *["17.25-20.7"] * 2,
        *["27.6-41.4"] * 3,
    ]
    # A non-standard power joins the band whose range holds it.
    assert list(power_band(np.array([3.5, 7.0, 15.0, 25.0]))) == [
        "4.6-6.9",
        "10.35-13.8",
        "17.25-20.7",
        "27.6-41.4",
    ]


def test_pv_is_a_generation_register_or_exported_energy() -> None:
    generated = np.array([np.nan, 0.0, np.nan, 12.0])
    exported = np.array([0.0, 0.0, 3.5, np.nan])
    assert list(has_pv(generated, exported)) == [False, True, True, True]


def test_percentiles_of_ten_values_by_hand() -> None:
    values = [10.0 * i + 1.234 for i in range(10)]  # 1.234, 11.234, ..., 91.234
    kept = group_percentiles(np.array(values))
    assert len(kept) == 99
    # p20 lies at position 0.2 x 9 = 1.8: 11.234 + 0.8 x 10; the median halfway between 41.234 and 51.234.
    assert kept[PERCENTILES.index(20)] == pytest.approx(19.2)
    assert kept[PERCENTILES.index(50)] == pytest.approx(46.2)
    # p1 at position 0.09 and p99 at 8.91: neither is the lowest or highest value itself.
    assert kept[0] == pytest.approx(2.1) and kept[-1] == pytest.approx(90.3)


def test_the_shown_median_and_20th_percentile_blend_several_households() -> None:
    """With eleven households the interpolated median is the 6th household's own consumption; the
    one shown is the mean of the 5th, 6th and 7th."""
    values = [10.0 * i + 1.234 for i in range(11)]  # 1.234, 11.234, ..., 101.234
    assert np.percentile(values, 50) == values[5]
    assert published_percentile(np.array(values), 50) == pytest.approx(
        round((41.234 + 51.234 + 61.234) / 3, 1)
    )
    # p20 at position 2: the 2nd, 3rd and 4th lowest; with ten, at 1.8: 0.8, 1.8 and 2.8 interpolated.
    assert published_percentile(np.array(values), 20) == pytest.approx(21.2)
    ten = values[:10]
    assert published_percentile(np.array(ten), 20) == pytest.approx(round((9.234 + 19.234 + 29.234) / 3, 1))
    group = peer_groups(
        pd.DataFrame(
            {
                "zone": "PT",
                "tariff_type": "simple",
                "power_band": "1.15-3.45",
                "pv": False,
                "consumption_kwh": values,
            }
        )
    )[0]
    assert (group.median_kwh, group.efficient_kwh) == (51.2, 21.2)


@given(
    st.lists(
        st.floats(min_value=0.0, max_value=5000.0, allow_nan=False),
        min_size=MIN_PEERS,
        max_size=60,
        unique=True,
    ),
    st.sampled_from([20, 50]),
)
def test_no_shown_percentile_is_read_off_one_household(values: list[float], rank: int) -> None:
    """What is shown is the mean of the interpolated consumption at the rank and one place either
    side (by hand: the two households around each position); it takes at least three households,
    and lies within their range."""
    shown = published_percentile(np.array(values), rank)
    ordered = sorted(values)
    position = rank / 100 * (len(values) - 1)

    def at(place: float) -> float:
        below = int(place)
        above = min(below + 1, len(ordered) - 1)
        return ordered[below] + (place - below) * (ordered[above] - ordered[below])

    assert shown == pytest.approx(
        sum(at(place) for place in (position - 1, position, position + 1)) / 3, abs=0.05
    )
    blended = ordered[max(int(np.floor(position - 1)), 0) : int(np.ceil(position + 1)) + 1]
    assert len(blended) >= 3
    assert min(blended) - 0.05 <= shown <= max(blended) + 0.05


def test_groups_below_the_minimum_keep_only_their_count() -> None:
    rows = pd.DataFrame(
        {
            "zone": "PT",
            "tariff_type": "simple",
            "power_band": ["1.15-3.45"] * MIN_PEERS + ["4.6-6.9"] * (MIN_PEERS - 1),
            "pv": False,
            "consumption_kwh": np.arange(2 * MIN_PEERS - 1, dtype=float) + 0.5,
        }
    )
    small, large = sorted(peer_groups(rows), key=lambda group: group.households)
    assert (large.power_band, large.households) == ("1.15-3.45", MIN_PEERS)
    assert large.percentiles_kwh is not None
    assert (small.power_band, small.households, small.percentiles_kwh) == ("4.6-6.9", MIN_PEERS - 1, None)


@given(
    st.lists(
        st.floats(min_value=0.0, max_value=5000.0, allow_nan=False),
        min_size=MIN_PEERS,
        max_size=60,
        unique=True,
    )
)
def test_each_household_is_placed_near_its_rank(values: list[float]) -> None:
    ordered = sorted(values)
    kept = group_percentiles(np.array(values))
    spacing = min(b - a for a, b in itertools.pairwise(ordered))
    for rank, value in enumerate(ordered):
        placed = percentile_rank(value, kept)
        assert 0.0 <= placed <= 100.0
        if spacing > 1.0:  # well above the 0.1 kWh rounding: the rank shows through exactly
            assert placed == pytest.approx(100.0 * rank / (len(values) - 1), abs=1.0)


def test_a_value_on_a_run_of_equal_percentiles_takes_its_middle() -> None:
    kept = tuple([1.0] * 49 + [2.0] * 50)
    assert percentile_rank(1.0, kept) == pytest.approx(25.0)
    assert percentile_rank(1.5, kept) == pytest.approx(49.5)
    assert percentile_rank(0.5, kept) == 0.0 and percentile_rank(2.5, kept) == 100.0
