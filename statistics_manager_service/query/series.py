"""Historic series: one indexed read for every requested household, shaped for the API."""

from __future__ import annotations

import bisect
import dataclasses
import functools
import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from statistics_manager_service.aggregation.arrays import FloatArray
from statistics_manager_service.aggregation.granularity import BUCKET_SECONDS, WATT_SECONDS_PER_KWH, Level
from statistics_manager_service.aggregation.localtime import format_local_iso, utc_text
from statistics_manager_service.aggregation.rollup import Granularity, period_bounds, period_starts
from statistics_manager_service.exception_handling_utils.errors import UserNotFound
from statistics_manager_service.query.params import SeriesRequest
from statistics_manager_service.recompute import StatisticsUpdater
from statistics_manager_service.storage.households import load_households
from statistics_manager_service.storage.tables import Household, StatisticsPeriod


@dataclasses.dataclass(frozen=True)
class Metric:
    """Which stored column a series reports, in which unit, with which extra fields."""

    column: str
    units: str
    extras: tuple[tuple[str, str], ...] = ()
    value_key: str = "value"
    skip_missing: bool = False  # power and voltage buckets without samples are left out
    # With `compare_to`, `previous` holds these fields of the earlier bucket; empty: its value.
    previous_fields: tuple[str, ...] = ()


# The energy balance (Home Assistant's energy model): field -> column; the ratios are 0 to 1.
BALANCE_FIELDS = (
    ("consumption", "consumption_kwh"),
    ("grid_import", "energy_imported_kwh"),
    ("grid_export", "energy_exported_kwh"),
    ("generation", "energy_generated_kwh"),
    ("self_consumed", "measured_self_consumed_kwh"),
    ("self_sufficiency", "self_sufficiency"),
    ("self_consumption_ratio", "self_consumption_ratio"),
)

METRICS: dict[str, Metric] = {
    "consumption": Metric("consumption_kwh", "kWh"),
    "injection": Metric("energy_exported_kwh", "kWh"),
    # The household's consumption power (grid import + self-consumed generation), consistent with
    # its consumption energy; grid import power stays beside it.
    "power_consumption": Metric(
        "consumption_mean_w",
        "W",
        (
            ("max", "consumption_max_w"),
            ("grid_import", "power_imported_mean_w"),
            ("grid_import_max", "power_imported_max_w"),
        ),
        skip_missing=True,
    ),
    "power_injection": Metric(
        "power_exported_mean_w", "W", (("max", "power_exported_max_w"),), skip_missing=True
    ),
    "voltage": Metric(
        "voltage_mean_v", "V", (("min", "voltage_min_v"), ("max", "voltage_max_v")), skip_missing=True
    ),
    "cost": Metric(
        "net_cost_eur",
        "EUR",
        (
            ("energy_cost", "energy_cost_eur"),
            ("fixed_cost", "fixed_cost_eur"),
            ("export_revenue", "export_revenue_eur"),
            ("net_cost", "net_cost_eur"),
        ),
    ),
    "co2": Metric("co2_kg", "kgCO2eq", (("avoided", "co2_avoided_kg"),)),
    "balance": Metric(
        "consumption_kwh", "kWh", BALANCE_FIELDS, previous_fields=tuple(n for n, _ in BALANCE_FIELDS)
    ),
    "real_energy": Metric("consumption_kwh", "kWh", value_key="energy"),
}
QUALITY_COLUMNS = ("covered_seconds", "reading_count", "reset_detected", "updated_at")


def _consumption_mean_w(columns: dict[str, Sequence[Any]]) -> list[float | None]:
    """Consumption energy over the seconds the bucket's statistics span: the mean power."""
    energy = np.array(columns["consumption_kwh"], dtype=np.float64)
    span = np.array(columns["span_seconds"], dtype=np.float64)
    return _nullable(
        np.divide(energy * WATT_SECONDS_PER_KWH, span, out=np.full(span.size, np.nan), where=span > 0)
    )


def _consumption_max_w(columns: dict[str, Sequence[Any]]) -> list[float | None]:
    """The highest sampled consumption power: the import power samples' maximum where the grid
    supplied all the consumption (nothing self-consumed); unknown (None) otherwise, and where no
    power sample fell in the bucket."""
    sampled = np.array(columns["power_imported_max_w"], dtype=np.float64)
    self_consumed = np.nan_to_num(np.array(columns["self_consumed_kwh"], dtype=np.float64))
    return _nullable(np.where(self_consumed > 0, np.nan, sampled))


def _floats(values: Sequence[Any]) -> FloatArray:
    """A column as float64, None as NaN."""
    return np.array(values, dtype=np.float64)


def _nullable(values: FloatArray) -> list[float | None]:
    """Values as JSON numbers, NaN as null."""
    return [None if value != value else value for value in values.tolist()]


def _measured_self_consumed_kwh(columns: dict[str, Sequence[Any]]) -> list[float | None]:
    """Self-consumed generation where a generation register tells it; None (not measured) elsewhere."""
    generated = _floats(columns["energy_generated_kwh"])
    return _nullable(np.where(np.isnan(generated), np.nan, _floats(columns["self_consumed_kwh"])))


def _share(numerator: FloatArray, denominator: FloatArray) -> list[float | None]:
    """numerator / denominator; None where either is unknown or the denominator is not positive."""
    usable = ~np.isnan(numerator) & (denominator > 0)  # NaN > 0 is False
    return _nullable(np.divide(numerator, denominator, out=np.full(numerator.size, np.nan), where=usable))


def _self_sufficiency(columns: dict[str, Sequence[Any]]) -> list[float | None]:
    """The share of consumption covered by the household's own generation."""
    self_consumed = _floats(_measured_self_consumed_kwh(columns))
    return _share(self_consumed, _floats(columns["consumption_kwh"]))


def _self_consumption_ratio(columns: dict[str, Sequence[Any]]) -> list[float | None]:
    """The share of generation used in the home rather than exported."""
    self_consumed = _floats(_measured_self_consumed_kwh(columns))
    return _share(self_consumed, _floats(columns["energy_generated_kwh"]))


_SELF_CONSUMED_INPUTS = ("self_consumed_kwh", "energy_generated_kwh")
# Columns a series reports that are computed from stored ones when shaping: name -> (inputs, function).
DERIVED_COLUMNS: dict[str, tuple[tuple[str, ...], Any]] = {
    "consumption_mean_w": (("consumption_kwh", "span_seconds"), _consumption_mean_w),
    "consumption_max_w": (("power_imported_max_w", "self_consumed_kwh"), _consumption_max_w),
    "measured_self_consumed_kwh": (_SELF_CONSUMED_INPUTS, _measured_self_consumed_kwh),
    "self_sufficiency": ((*_SELF_CONSUMED_INPUTS, "consumption_kwh"), _self_sufficiency),
    "self_consumption_ratio": (_SELF_CONSUMED_INPUTS, _self_consumption_ratio),
}
DECIMALS = 6
# Formatted local timestamps per zone, shared by every request of this process: at most
# _LOCAL_ISO_ZONES x _LOCAL_ISO_LIMIT texts (a year of 15-minute buckets is 35,040 of them).
_LOCAL_ISO_LIMIT = 100_000
_LOCAL_ISO_ZONES = 16
_local_iso_cache: dict[str, dict[int, str]] = {}


@dataclasses.dataclass(frozen=True)
class UserSeries:
    """The buckets of one household, ready to serialize."""

    user_id: str
    timezone: str
    metrics: list[dict[str, Any]]
    period_starts: Sequence[int] = ()  # each record's bucket start, epoch seconds


def household_timezones(session: Session, user_ids: Sequence[str], default_timezone: str) -> dict[str, str]:
    """Return each household's time zone; raise 404 for the first unknown user."""
    frame = load_households(session, user_ids, default_timezone)
    zones = dict(zip(frame["user_id"].tolist(), frame["timezone"].tolist(), strict=True))
    for user_id in user_ids:
        if user_id not in zones:
            raise UserNotFound(user_id)
    return zones


@functools.lru_cache(maxsize=4096)
def _aligned_start(start_s: int, zone: str, granularity: Granularity) -> int:
    """Return the start of the local bucket holding `start_s` (pure, so remembered)."""
    starts = period_starts(np.array([start_s], dtype=np.int64), np.array([zone], dtype=object), granularity)
    return int(starts[0])


def aligned_starts(start_s: int, zones: dict[str, str], granularity: Granularity | None) -> dict[str, int]:
    """Return, per user, the start of the local bucket containing `start_s` (buckets overlap the range)."""
    if granularity is None:
        return dict.fromkeys(zones, start_s // BUCKET_SECONDS * BUCKET_SECONDS)
    return {user_id: _aligned_start(start_s, zone, granularity) for user_id, zone in zones.items()}


def local_iso(instants_s: Sequence[int], zone: str) -> list[str]:
    """Format instants like `format_local_iso`, remembering each zone's texts."""
    cache = _local_iso_cache.get(zone)
    if cache is None or len(cache) > _LOCAL_ISO_LIMIT:
        if cache is None and len(_local_iso_cache) >= _LOCAL_ISO_ZONES:
            _local_iso_cache.clear()
        cache = _local_iso_cache[zone] = {}
    texts = [cache.get(instant) for instant in instants_s]
    missing = [position for position, text in enumerate(texts) if text is None]
    if missing:
        instants = np.array([instants_s[position] for position in missing], dtype=np.int64)
        fresh = format_local_iso(instants, zone).tolist()
        for position, instant, text in zip(missing, instants.tolist(), fresh, strict=True):
            texts[position] = text
            cache[instant] = text
    return texts  # type: ignore[return-value]


@functools.lru_cache(maxsize=64)
def _series_statement(columns: tuple[str, ...]) -> sa.Select[Any]:
    """Households with their periods in a range: one indexed read, cached compiled by SQLAlchemy."""
    households = Household.__table__
    periods = StatisticsPeriod.__table__
    in_range = sa.and_(
        periods.c.user_id == households.c.user_id,
        periods.c.granularity == sa.bindparam("granularity"),
        periods.c.period_start >= sa.bindparam("low_s"),
        periods.c.period_start < sa.bindparam("end_s"),
    )
    return (
        sa.select(
            households.c.user_id,
            households.c.timezone,
            periods.c.period_start,
            *(periods.c[column] for column in columns),
        )
        .select_from(households.outerjoin(periods, in_range))
        .where(households.c.user_id.in_(sa.bindparam("user_ids", expanding=True)))
        .order_by(households.c.user_id, periods.c.period_start)
    )


def load_series(
    session: Session, request: SeriesRequest, metric: Metric, statistics: StatisticsUpdater
) -> list[UserSeries]:
    """Return one series per requested household, in request order; 404 for the first unknown user.

    Stored periods (days): one indexed read gives each household's time zone and every period that
    may overlap the range; periods before the household's local bucket holding the start are then
    dropped. Other levels are computed from the stored readings (quarter hours, hours) or days
    (weeks, months, years) of the range, also with one indexed read.
    """
    reported = [metric.column, *(column for _, column in metric.extras)]
    if request.include_quality:
        reported += [c for c in QUALITY_COLUMNS if c not in reported]
    derived = [column for column in reported if column in DERIVED_COLUMNS]
    columns = [column for column in reported if column not in DERIVED_COLUMNS]
    columns = list(dict.fromkeys(columns + [i for name in derived for i in DERIVED_COLUMNS[name][0]]))
    # A bucket overlapping the range starts after `start - longest`, so one range read finds it.
    low_s = request.start_s - request.level.longest_s
    if request.level.stored:
        table = _stored_table(session, request, columns, low_s)
    else:
        table = _computed_table(session, request, columns, statistics, low_s)
    # Rows arrive grouped by household (ORDER BY user_id): find where each household's run starts.
    user_column = table["user_id"]
    firsts = [i for i in range(len(user_column)) if i == 0 or user_column[i] != user_column[i - 1]]
    ends = [*firsts[1:], len(user_column)] if firsts else []
    runs = {user_column[low]: (low, high) for low, high in zip(firsts, ends, strict=True)}
    for user_id in request.user_ids:
        if user_id not in runs:
            raise UserNotFound(user_id)
    zone_column = table["timezone"]
    zones = {
        user_id: statistics.default_timezone if zone_column[low] is None else zone_column[low]
        for user_id, (low, _) in runs.items()
    }
    starts = aligned_starts(request.start_s, zones, request.engine_granularity)
    series = []
    for user_id in request.user_ids:
        low, high = runs[user_id]
        period_starts = table["period_start"][low:high]
        if period_starts[0] is None:  # a household without periods: one row from the outer join
            low = high
        else:  # drop the periods before the local bucket holding the start
            low += bisect.bisect_left(period_starts, starts[user_id])
        selected = {name: table[name][low:high] for name in ("period_start", *columns)}
        for name in derived:
            selected[name] = DERIVED_COLUMNS[name][1](selected)
        if metric.skip_missing:
            present = [value is not None for value in selected[metric.column]]
            selected = {name: list(itertools.compress(values, present)) for name, values in selected.items()}
        records = shape_records(selected, zones[user_id], metric, request.include_quality, request.level)
        series.append(UserSeries(user_id, zones[user_id], records, selected["period_start"]))
    return series


def _stored_table(
    session: Session, request: SeriesRequest, columns: list[str], low_s: int
) -> dict[str, Sequence[Any]]:
    """Columns of the stored periods that may overlap the range, ordered by household and start."""
    rows = (
        session.connection()
        .execute(
            _series_statement(tuple(columns)),
            {
                "user_ids": sorted(request.user_ids),
                "granularity": request.level.name,
                "low_s": low_s,
                "end_s": request.end_s,
            },
        )
        .all()
    )
    names = ["user_id", "timezone", "period_start", *columns]
    return dict(zip(names, zip(*rows, strict=True), strict=True)) if rows else dict.fromkeys(names, ())


def _computed_table(
    session: Session, request: SeriesRequest, columns: list[str], statistics: StatisticsUpdater, low_s: int
) -> dict[str, Sequence[Any]]:
    """`_stored_table` for the levels that are not stored, computed when asked for."""
    households = (
        session.connection()
        .execute(
            sa.select(Household.__table__.c.user_id, Household.__table__.c.timezone)
            .where(Household.__table__.c.user_id.in_(sorted(request.user_ids)))
            .order_by(Household.__table__.c.user_id)
        )
        .all()
    )
    periods = statistics.period_statistics(
        session,
        [user_id for user_id, _ in households],
        low_s,
        request.end_s,
        request.level,
        with_update_times="updated_at" in columns,
    )
    by_user: dict[str, dict[str, list[Any]]] = {}
    if not periods.empty:
        values = {
            name: periods[name].astype(object).where(periods[name].notna(), None).tolist()
            for name in ("user_id", "period_start", *columns)
        }
        for position, user_id in enumerate(values["user_id"]):
            into = by_user.setdefault(user_id, {name: [] for name in ("period_start", *columns)})
            for name in into:
                into[name].append(values[name][position])
    names = ["user_id", "timezone", "period_start", *columns]
    table: dict[str, Sequence[Any]] = {}
    columns_of: dict[str, list[Any]] = {name: [] for name in names}
    for user_id, timezone in households:
        found = by_user.get(user_id)
        count = len(found["period_start"]) if found else 1  # no period: one row, as the outer join gives
        columns_of["user_id"] += [user_id] * count
        columns_of["timezone"] += [timezone] * count
        for name in ("period_start", *columns):
            columns_of[name] += found[name] if found else [None]
    table.update(columns_of)
    return table


def _rounded(values: Sequence[Any], decimals: int) -> list[float | None]:
    """Round like pandas/numpy (not Python's round) and turn missing values into None."""
    rounded: list[float] = np.round(np.array(values, dtype=np.float64), decimals).tolist()
    return [None if value != value else value for value in rounded]  # NaN is the only x != x


# The fields `include_quality` adds to each record, in order.
QUALITY_FIELDS = ("coverage", "reading_count", "reset_detected", "last_updated")


def record_fields(metric: Metric, include_quality: bool) -> list[str]:
    """The keys of every record `shape_records` makes for `metric`, in order."""
    fields = ["timestamp", metric.value_key, "units", "slot_number", *(name for name, _ in metric.extras)]
    return fields + list(QUALITY_FIELDS) if include_quality else fields


def bucket_durations(period_start_s: Sequence[int], zone: str, level: Level) -> FloatArray:
    """The whole duration of each bucket of `level` starting at `period_start_s` (DST-aware)."""
    starts = np.asarray(period_start_s, dtype=np.int64)
    if level.engine is None:
        return np.full(starts.size, float(BUCKET_SECONDS))
    period_start, period_end = period_bounds(starts, zone, level.engine)
    return (period_end - period_start).astype(np.float64)


def shape_records(
    by_column: dict[str, Sequence[Any]], zone: str, metric: Metric, include_quality: bool, level: Level
) -> list[dict[str, Any]]:
    """Turn one household's period columns (`period_start` and stored columns) into API metric dicts."""
    if not by_column["period_start"]:
        return []
    value_key, units = metric.value_key, metric.units
    # A dict display per record is several times faster than dict(zip(names, values)).
    records = [
        {"timestamp": stamp, value_key: value, "units": units, "slot_number": slot}
        for slot, stamp, value in zip(
            range(1, len(by_column["period_start"]) + 1),
            local_iso(by_column["period_start"], zone),
            _rounded(by_column[metric.column], DECIMALS),
            strict=True,
        )
    ]
    extra_fields: list[tuple[str, Sequence[Any]]] = [
        (name, _rounded(by_column[column], DECIMALS)) for name, column in metric.extras
    ]
    if include_quality:
        # The share of the bucket's whole duration backed by readings: a month whose data starts
        # on the 2nd, or today at noon, is < 1.
        duration = bucket_durations(by_column["period_start"], zone, level)
        covered = np.array(by_column["covered_seconds"], dtype=np.float64)
        coverage = np.round(np.minimum(covered / duration, 1.0), 4)
        extra_fields += [
            ("coverage", _nullable(coverage.astype(np.float64))),
            ("reading_count", np.array(by_column["reading_count"], dtype=np.int64).tolist()),
            ("reset_detected", [bool(value) for value in by_column["reset_detected"]]),
            (
                "last_updated",
                [utc_text(int(ts)) for ts in by_column["updated_at"]],
            ),
        ]
    for name, values in extra_fields:
        for record, value in zip(records, values, strict=True):
            record[name] = value
    return records
