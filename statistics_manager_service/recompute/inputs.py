"""What the engine needs to compute a household's buckets, loaded from storage: contract versions
and calendars, readings with their context, prices and intensities."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session

from statistics_manager_service.aggregation.buckets import compute_buckets
from statistics_manager_service.aggregation.contracts import (
    BEGINNING_S,
    VERSION_COLUMNS,
    Calendars,
    resolve_versions,
)
from statistics_manager_service.aggregation.granularity import BUCKET_SECONDS, SECONDS_PER_DAY
from statistics_manager_service.aggregation.tariffs import TariffBook, price_buckets
from statistics_manager_service.aggregation.windows import context_bounds
from statistics_manager_service.storage.contracts import load_contract_versions
from statistics_manager_service.storage.readings import (
    day_of,
    load_day_readings,
    load_reading_windows,
    neighbour_times,
    source_keys,
)
from statistics_manager_service.storage.signals import load_intensity, load_prices
from statistics_manager_service.storage.tables import Household

DEFAULT_CONTRACTED_KVA = 6.9
WINDOW_COLUMNS = ("user_id", "start_s", "end_s")


def empty_windows() -> pd.DataFrame:
    """Return a frame of (user_id, start_s, end_s) windows with no rows."""
    return pd.DataFrame(
        {
            "user_id": pd.Series(dtype=object),
            "start_s": pd.Series(dtype="int64"),
            "end_s": pd.Series(dtype="int64"),
        }
    )


def household_contracts(
    session: Session, households: dict[str, Household], default_timezone: str
) -> tuple[pd.DataFrame, Calendars]:
    """The households' contract versions as the engine takes them (VERSION_COLUMNS, every field
    resolved) and the local calendars they give.

    A household without a stored version (one known only from its readings) has the contract of
    its row from the beginning.
    """
    stored = load_contract_versions(session, list(households))
    return resolved_contracts(stored, households, default_timezone)


def resolved_contracts(
    stored: pd.DataFrame, households: dict[str, Household], default_timezone: str
) -> tuple[pd.DataFrame, Calendars]:
    """Resolve stored versions (`load_contract_versions`), the households' rows standing in for
    households without any."""
    versioned = set(stored["user_id"])
    unversioned = [h for u, h in households.items() if u not in versioned]
    rows = pd.DataFrame(
        [
            (h.user_id, BEGINNING_S, h.tariff_type, h.contracted_power_kva, h.zone, h.timezone)
            for h in unversioned
        ],
        columns=list(VERSION_COLUMNS),
    )
    frames = [frame for frame in (stored[list(VERSION_COLUMNS)], rows) if not frame.empty]
    versions = pd.concat(frames, ignore_index=True) if frames else rows
    contracts = resolve_versions(
        versions,
        {
            "tariff_type": "simple",
            # Until the account manager says otherwise, a household has the most common contract.
            "contracted_power_kva": DEFAULT_CONTRACTED_KVA,
            "zone": "PT",
            "timezone": default_timezone,
        },
    )
    return contracts, Calendars.of_contracts(contracts)


def reading_spans(households: dict[str, Household], user_ids: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Each user's first and last reading time (float seconds, NaN for a household without any)."""
    first = user_ids.map({u: h.first_reading_ts for u, h in households.items()})
    last = user_ids.map({u: h.last_reading_ts for u, h in households.items()})
    return first.to_numpy(np.float64, na_value=np.nan), last.to_numpy(np.float64, na_value=np.nan)


def clipped(households: dict[str, Household], windows: pd.DataFrame) -> pd.DataFrame:
    """Clip (user_id, start_s, end_s) windows to the buckets of each household's reading span."""
    known = windows[windows["user_id"].isin(list(households))]
    first, last = reading_spans(households, known["user_id"])
    spanned = ~np.isnan(first) & ~np.isnan(last)
    if not spanned.any():
        return empty_windows()
    first_bucket = first[spanned].astype(np.int64) // BUCKET_SECONDS * BUCKET_SECONDS
    last_bucket = last[spanned].astype(np.int64) // BUCKET_SECONDS * BUCKET_SECONDS
    start = np.maximum(known["start_s"].to_numpy(dtype=np.int64)[spanned], first_bucket)
    end = np.minimum(known["end_s"].to_numpy(dtype=np.int64)[spanned], last_bucket + BUCKET_SECONDS)
    frame = pd.DataFrame({"user_id": known["user_id"].to_numpy()[spanned], "start_s": start, "end_s": end})
    return frame[frame["end_s"] > frame["start_s"]].reset_index(drop=True)


def inside_windows(frame: pd.DataFrame, windows: pd.DataFrame, column: str) -> pd.DataFrame:
    """Keep the rows whose `column` lies inside their user's [start_s, end_s) window (one window
    per user)."""
    if frame.empty:
        return frame
    position = pd.Index(windows["user_id"]).get_indexer(frame["user_id"])
    known = position >= 0
    at = np.where(known, position, 0)
    values = frame[column].to_numpy(dtype=np.int64)
    keep = (
        known
        & (values >= windows["start_s"].to_numpy(dtype=np.int64)[at])
        & (values < windows["end_s"].to_numpy(dtype=np.int64)[at])
    )
    return frame[keep].reset_index(drop=True)


def readings_with_context(
    session: Session,
    households: dict[str, Household],
    windows: pd.DataFrame,
    known: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Load what `compute_buckets` needs for each window (`context_bounds`): the readings of the
    household's statistics source in the context, plus the last one before it and the first one
    at or after its end, where any exists.

    Windows are one per household. The day rows holding the context are read whole, except those
    whose readings are `known` (every reading of some day rows, as `store_readings` returns them);
    when history goes on beyond them, one statement per direction finds the nearest reading in
    another day row.
    """
    windows = windows.assign(source=windows["user_id"].map(lambda u: households[u].statistics_source))
    windows = windows.reset_index(drop=True)
    context_start, context_end = context_bounds(
        windows["start_s"].to_numpy(dtype=np.int64), windows["end_s"].to_numpy(dtype=np.int64)
    )
    # Whole day rows: from the one holding the context's start to the one holding its end.
    low, high = day_of(context_start), day_of(context_end) + SECONDS_PER_DAY
    loaded = _day_rows(session, windows, low, high, known)
    bounds = loaded.groupby("user_id")["ts"].agg(["min", "max"])
    lowest = windows["user_id"].map(bounds["min"]).to_numpy(dtype=np.float64, na_value=np.nan)
    highest = windows["user_id"].map(bounds["max"]).to_numpy(dtype=np.float64, na_value=np.nan)
    first, last = reading_spans(households, windows["user_id"])
    start_s = windows["start_s"].to_numpy(dtype=np.float64)
    end_s = windows["end_s"].to_numpy(dtype=np.float64)
    # A comparison with NaN (nothing loaded) is False: then the neighbour is looked up too.
    want_before = (first < start_s) & ~(lowest <= start_s)
    want_after = (last >= end_s) & ~(highest >= end_s)
    extra: list[pd.DataFrame] = []
    for wanted, before, day in ((want_before, True, low), (want_after, False, high - SECONDS_PER_DAY)):
        if not wanted.any():
            continue
        keys = windows.loc[wanted, ["user_id", "source"]].assign(day=day[wanted])
        found = pd.Series(neighbour_times(session, keys, before), index=keys.index, dtype="float64")
        instants = found.dropna().astype("int64")
        if not instants.empty:
            extra.append(
                keys.loc[instants.index, ["user_id", "source"]].assign(start_s=instants, end_s=instants + 1)
            )
    if extra:
        loaded = pd.concat([loaded, load_reading_windows(session, pd.concat(extra, ignore_index=True))])
    return loaded.reset_index(drop=True)


def _day_rows(
    session: Session, windows: pd.DataFrame, low: np.ndarray, high: np.ndarray, known: pd.DataFrame | None
) -> pd.DataFrame:
    """The readings of the day rows from `low` to `high` of each window's household and source,
    taken from `known` where it holds them and read otherwise."""
    if known is None or known.empty:
        return load_reading_windows(session, windows.assign(start_s=low, end_s=high))
    counts = (high - low) // SECONDS_PER_DAY
    window_of = np.repeat(np.arange(len(windows)), counts)
    day_index = np.arange(window_of.size) - np.repeat(np.cumsum(counts) - counts, counts)
    needed = pd.DataFrame(
        {
            "user_id": windows["user_id"].to_numpy(dtype=object)[window_of],
            "source": windows["source"].to_numpy(dtype=object)[window_of],
            "day": low[window_of] + SECONDS_PER_DAY * day_index,
        }
    )
    needed_keys = source_keys(needed["user_id"], needed["source"], needed["day"])
    known_keys = source_keys(known["user_id"], known["source"], day_of(known["ts"]))
    held = known[known_keys.isin(needed_keys)]
    missing = needed[~needed_keys.isin(known_keys)]
    return (
        held if missing.empty else pd.concat([held, load_day_readings(session, missing)], ignore_index=True)
    )


def priced_buckets(
    session: Session,
    book: TariffBook,
    contracts: pd.DataFrame,
    calendars: Calendars,
    windows: pd.DataFrame,
    readings: pd.DataFrame,
    with_update_times: bool = False,
) -> pd.DataFrame:
    """The 15-minute buckets inside the windows, computed from the readings and priced; with
    `with_update_times`, the `updated_at` of the day row holding the reading at or before each
    bucket's start."""
    start_s, end_s = int(windows["start_s"].min()), int(windows["end_s"].max())
    zones = contracts["zone"].unique().tolist()
    prices, intensity = (
        load_prices(session, zones, start_s, end_s),
        load_intensity(session, zones, start_s, end_s),
    )
    priced = price_buckets(buckets_inside(readings, windows), contracts, book, prices, intensity, calendars)
    return _with_update_times(priced, readings) if with_update_times else priced


def buckets_inside(readings: pd.DataFrame, windows: pd.DataFrame) -> pd.DataFrame:
    """Compute the 15-minute buckets inside the windows from the readings (`readings_with_context`)."""
    buckets = compute_buckets(readings.drop(columns=["source", "updated_at"]))
    return inside_windows(buckets, windows, "bucket_start")


def _with_update_times(buckets: pd.DataFrame, readings: pd.DataFrame) -> pd.DataFrame:
    if buckets.empty:
        return buckets.assign(updated_at=pd.Series(dtype="int64"))
    stamps = readings[["user_id", "ts", "updated_at"]].sort_values("ts", kind="stable")
    order = buckets[["user_id", "bucket_start"]].sort_values("bucket_start", kind="stable")
    matched = pd.merge_asof(
        order, stamps, left_on="bucket_start", right_on="ts", by="user_id", direction="backward"
    ).set_index(order.index)["updated_at"]
    return buckets.assign(updated_at=matched.reindex(buckets.index).fillna(0).astype("int64"))
