"""Historic series compared with earlier buckets (`compare_to`), read by the series' own path."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from statistics_manager_service.aggregation.arrays import IntArray
from statistics_manager_service.aggregation.compare import CompareTo, comparison_shift, earlier_bucket_starts
from statistics_manager_service.aggregation.granularity import BUCKET_SECONDS
from statistics_manager_service.aggregation.rollup import period_bounds
from statistics_manager_service.query.params import SeriesRequest
from statistics_manager_service.query.series import Metric, UserSeries, load_series, local_iso
from statistics_manager_service.recompute import StatisticsUpdater


def compared_fields(metric: Metric) -> list[str]:
    """The keys `compare_to` adds to each record; in CSV the earlier fields are flattened."""
    if metric.previous_fields:
        return ["previous_timestamp", *(f"previous_{name}" for name in metric.previous_fields)]
    return ["previous_timestamp", "previous"]


def _requested_span(request: SeriesRequest, zone: str) -> tuple[int, int]:
    """[start of the first bucket, end of the last bucket) of the requested range in `zone`."""
    granularity = request.engine_granularity
    if granularity is None:
        first = request.start_s // BUCKET_SECONDS * BUCKET_SECONDS
        return first, -(-request.end_s // BUCKET_SECONDS) * BUCKET_SECONDS
    return period_bounds(request.start_s, zone, granularity)[0], period_bounds(
        request.end_s - 1, zone, granularity
    )[1]


def load_compared_series(
    session: Session,
    request: SeriesRequest,
    metric: Metric,
    statistics: StatisticsUpdater,
    compare_to: CompareTo,
    flat: bool = False,
) -> list[UserSeries]:
    """`load_series` with each bucket's aligned earlier bucket (`aggregation.compare` defines it).

    Adds `previous_timestamp` and `previous` (the earlier bucket's value, or a dict of the metric's
    `previous_fields`; `null` where no statistics back it) to every record; `flat` spreads such a
    dict over `previous_<field>` keys, for CSV. The earlier buckets of every household are read with
    one more `load_series` call.
    """
    series = load_series(session, request, metric, statistics)
    earlier: dict[str, IntArray] = {}
    for user_series in series:
        span_start, span_end = _requested_span(request, user_series.timezone)
        shift = comparison_shift(span_start, span_end, user_series.timezone, compare_to)
        earlier[user_series.user_id] = earlier_bucket_starts(
            np.asarray(user_series.period_starts, dtype=np.int64),
            user_series.timezone,
            shift,
            request.engine_granularity,
        )
    every_start = np.concatenate([np.empty(0, dtype=np.int64), *earlier.values()])
    found: dict[str, dict[int, dict[str, Any]]] = {}
    if every_start.size:
        earlier_request = dataclasses.replace(
            request, start_s=int(every_start.min()), end_s=int(every_start.max()) + 1, include_quality=False
        )
        for earlier_series in load_series(session, earlier_request, metric, statistics):
            found[earlier_series.user_id] = dict(
                zip(earlier_series.period_starts, earlier_series.metrics, strict=True)
            )
    for user_series in series:
        stamps = local_iso(earlier[user_series.user_id].tolist(), user_series.timezone)
        records = found.get(user_series.user_id, {})
        for record, start, stamp in zip(
            user_series.metrics, earlier[user_series.user_id].tolist(), stamps, strict=True
        ):
            record["previous_timestamp"] = stamp
            _add_previous(record, records.get(start), metric, flat)
    return series


def _add_previous(record: dict[str, Any], earlier: dict[str, Any] | None, metric: Metric, flat: bool) -> None:
    if not metric.previous_fields:
        record["previous"] = None if earlier is None else earlier[metric.value_key]
        return
    values = {name: None if earlier is None else earlier[name] for name in metric.previous_fields}
    if flat:
        record.update({f"previous_{name}": value for name, value in values.items()})
    else:
        record["previous"] = None if earlier is None else values
