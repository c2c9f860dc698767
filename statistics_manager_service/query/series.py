"""Historic series: one indexed read for every requested household, shaped for the API."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session

from statistics_manager_service.aggregation.localtime import format_local_iso
from statistics_manager_service.aggregation.rollup import Granularity, period_starts
from statistics_manager_service.exception_handling_utils.errors import UserNotFound
from statistics_manager_service.query.params import SeriesRequest
from statistics_manager_service.storage.households import load_households
from statistics_manager_service.storage.periods import load_periods


@dataclasses.dataclass(frozen=True)
class Metric:
    """Which stored column a series reports, in which unit, with which extra fields."""

    column: str
    units: str
    extras: tuple[tuple[str, str], ...] = ()
    value_key: str = "value"
    skip_missing: bool = False  # power and voltage buckets without samples are left out


METRICS: dict[str, Metric] = {
    "consumption": Metric("consumption_kwh", "kWh"),
    "injection": Metric("energy_exported_kwh", "kWh"),
    "power_consumption": Metric(
        "power_imported_mean_w", "W", (("max", "power_imported_max_w"),), skip_missing=True
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
    "real_energy": Metric("consumption_kwh", "kWh", value_key="energy"),
}
QUALITY_COLUMNS = ("span_seconds", "covered_seconds", "reading_count", "reset_detected", "updated_at")
DECIMALS = 6


@dataclasses.dataclass(frozen=True)
class UserSeries:
    """The buckets of one household, ready to serialize."""

    user_id: str
    timezone: str
    metrics: list[dict[str, Any]]


def household_timezones(session: Session, user_ids: Sequence[str], default_timezone: str) -> dict[str, str]:
    """Return each household's time zone; raise 404 for the first unknown user."""
    frame = load_households(session, user_ids, default_timezone)
    zones = dict(zip(frame["user_id"].tolist(), frame["timezone"].tolist(), strict=True))
    for user_id in user_ids:
        if user_id not in zones:
            raise UserNotFound(user_id)
    return zones


def aligned_starts(start_s: int, zones: dict[str, str], granularity: Granularity | None) -> dict[str, int]:
    """Return, per user, the start of the local bucket containing `start_s` (buckets overlap the range)."""
    if granularity is None:
        return dict.fromkeys(zones, start_s // 900 * 900)
    users = list(zones)
    starts = period_starts(
        np.full(len(users), start_s, dtype=np.int64),
        np.array([zones[u] for u in users], dtype=object),
        granularity,
    )
    return dict(zip(users, starts.tolist(), strict=True))


def load_series(
    session: Session, request: SeriesRequest, metric: Metric, default_timezone: str
) -> list[UserSeries]:
    """Return one series per requested household, in request order."""
    zones = household_timezones(session, request.user_ids, default_timezone)
    starts = aligned_starts(request.start_s, zones, request.engine_granularity)
    columns = [metric.column, *(column for _, column in metric.extras)]
    if request.include_quality:
        columns += [c for c in QUALITY_COLUMNS if c not in columns]
    frame = load_periods(
        session,
        request.user_ids,
        request.granularity,
        min(starts.values()),
        request.end_s,
        list(dict.fromkeys(columns)),
    )
    frame = frame[frame["period_start"].to_numpy() >= frame["user_id"].map(starts).to_numpy(dtype=np.int64)]
    if metric.skip_missing:
        frame = frame[frame[metric.column].notna()]
    return shape_series(frame, request.user_ids, zones, metric, request.include_quality)


def shape_series(
    frame: pd.DataFrame,
    user_ids: Sequence[str],
    zones: dict[str, str],
    metric: Metric,
    include_quality: bool,
) -> list[UserSeries]:
    """Turn stored period rows into API metric dicts, numbered from 1 per user."""
    body = pd.DataFrame(
        {
            "timestamp": format_local_iso(
                frame["period_start"].to_numpy(dtype=np.int64),
                frame["user_id"].map(zones).to_numpy(dtype=object),
            ).to_numpy(),
            metric.value_key: frame[metric.column].astype("float64").round(DECIMALS).to_numpy(),
            "units": metric.units,
            "slot_number": frame.groupby("user_id", sort=False).cumcount().to_numpy() + 1,
        }
    )
    for name, column in metric.extras:
        body[name] = frame[column].astype("float64").round(DECIMALS).to_numpy()
    if include_quality:
        span = frame["span_seconds"].astype("float64").to_numpy()
        covered = frame["covered_seconds"].astype("float64").to_numpy()
        body["coverage"] = np.round(np.divide(covered, span, out=np.zeros_like(span), where=span > 0), 4)
        body["reading_count"] = frame["reading_count"].astype("int64").to_numpy()
        body["reset_detected"] = frame["reset_detected"].astype(bool).to_numpy()
        body["last_updated"] = [
            dt.datetime.fromtimestamp(int(ts), dt.UTC).isoformat().replace("+00:00", "Z")
            for ts in frame["updated_at"].tolist()
        ]
    body = body.astype(object).where(body.notna(), None)
    records = body.to_dict("records")
    per_user: dict[str, list[dict[str, Any]]] = {user_id: [] for user_id in user_ids}
    for user_id, record in zip(frame["user_id"].tolist(), records, strict=True):
        per_user[user_id].append(record)  # type: ignore[arg-type]
    return [UserSeries(user_id, zones[user_id], per_user[user_id]) for user_id in user_ids]
