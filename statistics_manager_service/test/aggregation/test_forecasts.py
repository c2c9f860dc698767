"""The built-in baseline: the same weekday's quarter hours over four weeks, matched by wall clock."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from statistics_manager_service.aggregation.forecasts import history_days, weekday_baseline

LISBON = "Europe/Lisbon"
ZONE = ZoneInfo(LISBON)
QUARTER = dt.timedelta(minutes=15)


def _quarters(day: dt.date) -> list[dt.datetime]:
    """The instants the quarter hours of a local day start at, walked in UTC."""
    start = dt.datetime.combine(day, dt.time(), ZONE).astimezone(dt.UTC)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), ZONE).astimezone(dt.UTC)
    instants = []
    while start < end:
        instants.append(start)
        start += QUARTER
    return instants


def _wall(instant: dt.datetime) -> tuple[int, int]:
    local = instant.astimezone(ZONE)
    return local.hour, local.minute


def _history(days: list[dt.date], kwh: Callable[[dt.date, dt.datetime], float | None]) -> pd.DataFrame:
    rows = [
        (int(instant.timestamp()), kwh(day, instant))
        for day in days
        for instant in _quarters(day)
        if kwh(day, instant) is not None
    ]
    return pd.DataFrame(rows, columns=["bucket_start", "consumption_kwh"])


def test_each_quarter_hour_is_the_mean_of_the_four_previous_same_weekdays() -> None:
    day = dt.date(2026, 11, 20)  # a Friday; the oldest week is still in summer time (UTC+1)
    weeks = [day - dt.timedelta(weeks=k) for k in (4, 3, 2, 1)]
    assert history_days(day) == weeks
    ignored = [day - dt.timedelta(weeks=5), day - dt.timedelta(days=1), day]

    def kwh(past: dt.date, instant: dt.datetime) -> float | None:
        if past in ignored:
            return 1000.0  # not a history day: must not count
        hour, minute = _wall(instant)
        if past == weeks[1] and hour == 0:
            return None  # a week without the first hour: that hour averages the other three
        return 0.1 * (weeks.index(past) + 1) + 0.001 * (hour * 4 + minute // 15)

    forecast = weekday_baseline(_history(weeks + ignored, kwh), day, LISBON)

    expected = {}
    for instant in _quarters(day):
        hour, minute = _wall(instant)
        values = [0.1, 0.3, 0.4] if hour == 0 else [0.1, 0.2, 0.3, 0.4]
        expected[int(instant.timestamp())] = sum(values) / len(values) + 0.001 * (hour * 4 + minute // 15)
    assert forecast.day == day
    assert forecast.history_weeks == 4
    assert forecast.starts_s.tolist() == list(expected)
    assert forecast.energies_kwh.tolist() == pytest.approx(list(expected.values()), abs=1e-12)


def test_fewer_weeks_use_what_exists_and_none_gives_an_empty_forecast() -> None:
    day = dt.date(2026, 11, 20)
    last_week = day - dt.timedelta(weeks=1)
    forecast = weekday_baseline(_history([last_week], lambda _d, _i: 0.2), day, LISBON)
    assert forecast.history_weeks == 1
    assert forecast.energies_kwh.tolist() == pytest.approx([0.2] * 96)

    empty = pd.DataFrame(
        {"bucket_start": pd.Series(dtype="int64"), "consumption_kwh": pd.Series(dtype=float)}
    )
    nothing = weekday_baseline(empty, day, LISBON)
    assert nothing.history_weeks == 0
    assert nothing.starts_s.size == 0 and nothing.energies_kwh.size == 0
    only_gaps = weekday_baseline(_history([last_week], lambda _d, _i: np.nan), day, LISBON)
    assert only_gaps.history_weeks == 0 and only_gaps.starts_s.size == 0


def test_a_fall_back_day_repeats_its_hour_and_a_spring_forward_week_lacks_one() -> None:
    # 2026-10-25: clocks go back at 02:00, 01:00-01:59 happens twice; the day has 100 quarter hours.
    fall_back = dt.date(2026, 10, 25)
    weeks = history_days(fall_back)
    forecast = weekday_baseline(_history(weeks, lambda _d, i: _wall(i)[0] + 0.0), fall_back, LISBON)
    assert forecast.starts_s.size == 100
    by_instant = dict(zip(forecast.starts_s.tolist(), forecast.energies_kwh.tolist(), strict=True))
    for instant in _quarters(fall_back):
        assert by_instant[int(instant.timestamp())] == pytest.approx(_wall(instant)[0])

    # 2026-04-05: its history holds 2026-03-29, when 01:00-01:59 did not exist.
    after_spring = dt.date(2026, 4, 5)
    weeks = history_days(after_spring)
    assert dt.date(2026, 3, 29) in weeks

    def kwh(past: dt.date, _instant: dt.datetime) -> float:
        return 1.0 if past == dt.date(2026, 3, 29) else 2.0

    forecast = weekday_baseline(_history(weeks, kwh), after_spring, LISBON)
    assert forecast.history_weeks == 4
    for start_s, energy in zip(forecast.starts_s.tolist(), forecast.energies_kwh.tolist(), strict=True):
        hour, _ = _wall(dt.datetime.fromtimestamp(start_s, dt.UTC))
        assert energy == pytest.approx(2.0 if hour == 1 else 7.0 / 4)


def test_a_history_frame_without_its_columns_is_refused() -> None:
    with pytest.raises(ValueError, match="consumption_kwh"):
        weekday_baseline(pd.DataFrame({"bucket_start": [0]}), dt.date(2026, 11, 20), LISBON)
