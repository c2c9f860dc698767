"""Keep stored statistics equal to what the engine computes from the stored readings.

A change (new or late readings, a price, an intensity, a tariff correction) names a window of
15-minute buckets per household; the local days holding those buckets are recomputed from their
readings, and the weeks, months and years holding those days from the stored days. Quarter
hours and hours are not stored: `bucket_statistics` computes them from the readings, by the
same path, when they are asked for. The cost of one late reading does not grow with history.
"""

from __future__ import annotations

import dataclasses
import logging
import zlib
from collections.abc import Sequence

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.orm import Session

from statistics_manager_service import metrics
from statistics_manager_service.aggregation.buckets import compute_buckets
from statistics_manager_service.aggregation.rollup import Granularity, period_bounds, period_starts, rollup
from statistics_manager_service.aggregation.tariffs import TariffBook, price_buckets
from statistics_manager_service.storage.households import HOUSEHOLD_COLUMNS
from statistics_manager_service.storage.periods import load_period_windows_reusing, upsert_periods
from statistics_manager_service.storage.readings import (
    DAY_S,
    day_of,
    load_reading_windows,
    merge_duplicates,
    neighbour_times,
    reading_span,
    store_readings,
)
from statistics_manager_service.storage.signals import load_intensity, load_prices
from statistics_manager_service.storage.tables import Household, StatisticsPeriod

logger = logging.getLogger(__name__)

BUCKET_S = 900
SOURCE_PRIORITY = ("smart_meter", "hub", "dongle")
DEFAULT_CONTRACTED_KVA = 6.9
# Readings loaded on each side of a window; a longer gap costs one extra lookup.
CONTEXT_S = 3 * 3600
# (stored granularity, engine granularity, the stored granularity it is rolled up from); days are
# rolled up from the 15-minute buckets computed in memory.
ROLLUPS: tuple[tuple[str, Granularity, str], ...] = (
    ("weekly", "week", "daily"),
    ("monthly", "month", "daily"),
    ("yearly", "year", "monthly"),
)
# PostgreSQL advisory locks of this service: (namespace, key of a grid zone).
ZONE_LOCK_NAMESPACE = 0x534D


@dataclasses.dataclass(frozen=True)
class Recomputed:
    """What a recomputation rewrote: per household, the range of 15-minute buckets."""

    windows: pd.DataFrame  # user_id, start_s, end_s
    readings_stored: int = 0

    @property
    def bucket_count(self) -> int:
        """Count the 15-minute buckets in the windows."""
        if self.windows.empty:
            return 0
        return int(((self.windows["end_s"] - self.windows["start_s"]) // BUCKET_S).sum())


def _empty_windows() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": pd.Series(dtype=object),
            "start_s": pd.Series(dtype="int64"),
            "end_s": pd.Series(dtype="int64"),
        }
    )


def _zone_key(zone: str) -> int:
    """A grid zone's advisory lock key (a signed 32-bit integer)."""
    return zlib.crc32(zone.encode()) - 2**31


def _priority(source: str | None) -> int:
    return SOURCE_PRIORITY.index(source) if source in SOURCE_PRIORITY else len(SOURCE_PRIORITY)


class StatisticsUpdater:
    """Apply readings and signal changes to the stored statistics, inside the caller's transaction;
    compute quarter hours and hours from the stored readings when asked."""

    def __init__(self, book: TariffBook, default_timezone: str) -> None:
        self.book = book
        self.default_timezone = default_timezone

    # ---- entry points -------------------------------------------------------------------

    def apply_readings(self, session: Session, readings: pd.DataFrame) -> Recomputed:
        """Store readings idempotently, then recompute the days and periods they touch."""
        if readings.empty:
            return Recomputed(_empty_windows())
        # Held before the day rows are read and rewritten: no other transaction merges into them.
        households = self._lock(session, readings["user_id"].unique().tolist())
        incoming = merge_duplicates(readings)
        stored_days = store_readings(session, incoming)
        for source, count in incoming.groupby("source").size().items():
            metrics.READINGS_INGESTED.labels(str(source)).inc(int(count))
        touched = incoming.groupby(["user_id", "source"], sort=True)["ts"].agg(["min", "max"]).reset_index()
        windows = self._reading_windows(session, households, touched, stored_days)
        recomputed = self._recompute(session, households, windows, cause="readings")
        metrics.NEWEST_AGGREGATED_READING.set(max(int(incoming["ts"].max()), 0))
        return dataclasses.replace(recomputed, readings_stored=len(incoming))

    def recompute_windows(self, session: Session, windows: pd.DataFrame, cause: str) -> Recomputed:
        """Recompute explicit (user_id, start_s, end_s) ranges, e.g. after a price or intensity change."""
        if windows.empty:
            return Recomputed(_empty_windows())
        households = self._lock(session, windows["user_id"].unique().tolist())
        return self._recompute(session, households, self._clipped(households, windows), cause=cause)

    def rebuild(self, session: Session, user_ids: Sequence[str], cause: str) -> Recomputed:
        """Recompute the whole history of households."""
        windows = pd.DataFrame({"user_id": list(user_ids), "start_s": 0, "end_s": 2**62})
        return self.recompute_windows(session, windows, cause)

    def bucket_statistics(
        self,
        session: Session,
        user_ids: Sequence[str],
        start_s: int,
        end_s: int,
        granularity: Granularity | None,
    ) -> pd.DataFrame:
        """Compute the priced 15-minute buckets (granularity None) or local hours of households
        that start in [start_s, end_s), from the stored readings; `period_start` and `updated_at`
        (of the newest day row the period's readings come from) included."""
        statement = sa.select(Household).where(Household.user_id.in_(sorted(set(user_ids))))
        households = {h.user_id: h for h in session.scalars(statement)}
        windows = pd.DataFrame({"user_id": list(households), "start_s": start_s, "end_s": end_s})
        windows = self._clipped(households, windows)
        if windows.empty:
            return _empty_statistics()
        frame = self._household_frame(households)
        if granularity is not None:
            timezones = frame.set_index("user_id")["timezone"]
            windows = _affected_periods(windows, timezones, granularity)
        readings = self._readings_with_context(session, households, windows)
        priced = self._priced_buckets(session, frame, windows, readings)
        if granularity is not None:
            priced = rollup(priced, frame.set_index("user_id")["timezone"], granularity)
            priced = _inside_windows(priced, windows, "period_start")
        else:
            priced = priced.rename(columns={"bucket_start": "period_start"})
        return _with_update_times(priced, readings)

    # ---- households and windows ---------------------------------------------------------

    def lock_zone(self, session: Session, zone: str) -> None:
        """Hold a grid zone's signals exclusively until the transaction ends (PostgreSQL).

        Call it before listing the zone's households to recompute after a signal change: it
        waits for the transactions that read the zone's signals (they hold the zone shared,
        see `_lock`) and makes later ones wait, so no household, not even one created by a
        concurrent transaction, keeps statistics computed from the replaced values.
        """
        if session.get_bind().dialect.name == "postgresql":
            session.execute(
                sa.text("SELECT pg_advisory_xact_lock(:namespace, :key)"),
                {"namespace": ZONE_LOCK_NAMESPACE, "key": _zone_key(zone)},
            )

    def _lock(self, session: Session, user_ids: list[str]) -> dict[str, Household]:
        """Load and lock the households in user order: one recomputation per household at a time.

        On PostgreSQL the households' zones are first held shared (in zone order), so a signal
        change for a zone (`lock_zone`) and a recomputation reading its signals never overlap.
        """
        wanted = sorted(set(user_ids))
        statement = sa.select(Household).where(Household.user_id.in_(wanted)).order_by(Household.user_id)
        if session.get_bind().dialect.name == "postgresql":
            zones = set(session.scalars(sa.select(Household.zone).where(Household.user_id.in_(wanted))))
            # A zone changed earlier in this transaction may not be flushed yet.
            zones |= {
                item.zone
                for item in session.identity_map.values()
                if isinstance(item, Household) and item.user_id in wanted
            }
            for zone in sorted(z for z in zones if z):
                session.execute(
                    sa.text("SELECT pg_advisory_xact_lock_shared(:namespace, :key)"),
                    {"namespace": ZONE_LOCK_NAMESPACE, "key": _zone_key(zone)},
                )
            statement = statement.with_for_update()
        return {household.user_id: household for household in session.scalars(statement)}

    def _household_frame(self, households: dict[str, Household]) -> pd.DataFrame:
        rows = [
            (h.user_id, h.timezone or self.default_timezone, h.tariff_type, h.contracted_power_kva, h.zone)
            for h in households.values()
        ]
        frame = pd.DataFrame(rows, columns=HOUSEHOLD_COLUMNS)
        # Until the account manager says otherwise, a household has the most common contract.
        frame["contracted_power_kva"] = (
            frame["contracted_power_kva"].astype("float64").fillna(DEFAULT_CONTRACTED_KVA)
        )
        return frame

    def _clipped(self, households: dict[str, Household], windows: pd.DataFrame) -> pd.DataFrame:
        """Clip (user_id, start_s, end_s) windows to the buckets of each household's reading span."""
        known = windows[windows["user_id"].isin(list(households))].copy()
        first = known["user_id"].map({u: h.first_reading_ts for u, h in households.items()})
        last = known["user_id"].map({u: h.last_reading_ts for u, h in households.items()})
        known = known[first.notna() & last.notna()]
        if known.empty:
            return _empty_windows()
        first, last = first[known.index].astype("int64"), last[known.index].astype("int64")
        known["start_s"] = np.maximum(known["start_s"].to_numpy(), (first // BUCKET_S * BUCKET_S).to_numpy())
        known["end_s"] = np.minimum(
            known["end_s"].to_numpy(), (last // BUCKET_S * BUCKET_S + BUCKET_S).to_numpy()
        )
        known = known[known["end_s"] > known["start_s"]]
        return known[["user_id", "start_s", "end_s"]].reset_index(drop=True)

    def _reading_windows(
        self,
        session: Session,
        households: dict[str, Household],
        touched: pd.DataFrame,
        stored_days: pd.DataFrame,
    ) -> pd.DataFrame:
        """Turn new readings into bucket windows: from the stored reading before to the one after.

        `stored_days` holds every reading of the day rows the new readings went into.
        """
        rows: list[tuple[str, int, int]] = []
        spans: list[tuple[str, str, int, int]] = []  # the new readings' range in the statistics source
        for user_id, group in touched.groupby("user_id", sort=True):
            household = households[str(user_id)]
            best = min(group["source"], key=_priority)
            if household.statistics_source is None or _priority(best) < _priority(
                household.statistics_source
            ):
                switching = household.statistics_source is not None
                household.statistics_source = best
                if switching:
                    # A better source replaces the statistics wholesale.
                    logger.info("household %s now uses %s readings", user_id, best)
                    self._reset_span(session, household)
                    if household.first_reading_ts is not None and household.last_reading_ts is not None:
                        rows.append((str(user_id), household.first_reading_ts, household.last_reading_ts))
                    continue
            own = group[group["source"] == household.statistics_source]
            if not own.empty:
                spans.append(
                    (
                        str(user_id),
                        str(household.statistics_source),
                        int(own["min"].iloc[0]),
                        int(own["max"].iloc[0]),
                    )
                )
        if spans:
            frame = pd.DataFrame(spans, columns=["user_id", "source", "min_ts", "max_ts"])
            previous, following = self._span_neighbours(session, households, frame, stored_days)
            for (user_id, _, min_ts, max_ts), before, after in zip(spans, previous, following, strict=True):
                household = households[user_id]
                first, last = household.first_reading_ts, household.last_reading_ts
                household.first_reading_ts = min_ts if first is None else min(first, min_ts)
                household.last_reading_ts = max_ts if last is None else max(last, max_ts)
                rows.append(
                    (user_id, min_ts if before is None else before, max_ts if after is None else after)
                )
        windows = pd.DataFrame(rows, columns=["user_id", "start_s", "end_s"])
        windows["start_s"] = windows["start_s"].astype("int64") // BUCKET_S * BUCKET_S
        windows["end_s"] = windows["end_s"].astype("int64") // BUCKET_S * BUCKET_S + BUCKET_S
        return windows

    def _span_neighbours(
        self,
        session: Session,
        households: dict[str, Household],
        spans: pd.DataFrame,
        stored_days: pd.DataFrame,
    ) -> tuple[list[int | None], list[int | None]]:
        """The stored reading just before each span's start and just after its end, if any.

        Looked up in the day rows just rewritten, then (for the few spans whose neighbour is in
        another day row) with one statement per direction.
        """
        known = stored_days[["user_id", "source", "ts"]].rename(columns={"ts": "neighbour"})
        known = known.sort_values("neighbour", kind="stable")
        order = spans.sort_values("min_ts", kind="stable")
        before = (
            pd.merge_asof(
                order,
                known,
                left_on="min_ts",
                right_on="neighbour",
                by=["user_id", "source"],
                allow_exact_matches=False,
                direction="backward",
            )
            .set_index(order.index)["neighbour"]
            .reindex(spans.index)
        )
        order = spans.sort_values("max_ts", kind="stable")
        after = (
            pd.merge_asof(
                order,
                known,
                left_on="max_ts",
                right_on="neighbour",
                by=["user_id", "source"],
                allow_exact_matches=False,
                direction="forward",
            )
            .set_index(order.index)["neighbour"]
            .reindex(spans.index)
        )
        first = spans["user_id"].map({u: h.first_reading_ts for u, h in households.items()})
        last = spans["user_id"].map({u: h.last_reading_ts for u, h in households.items()})
        previous = _found(before)
        following = _found(after)
        # History beyond the span but not in the rewritten day rows: in an earlier or later row.
        ask_before = before.isna() & first.notna() & (first < spans["min_ts"])
        ask_after = after.isna() & last.notna() & (last > spans["max_ts"])
        for asked, direction, column, found in (
            (ask_before, True, "min_ts", previous),
            (ask_after, False, "max_ts", following),
        ):
            if asked.any():
                keys = spans.loc[asked, ["user_id", "source"]].assign(day=day_of(spans.loc[asked, column]))
                for position, value in zip(
                    np.flatnonzero(asked), neighbour_times(session, keys, direction), strict=True
                ):
                    found[int(position)] = value
        return previous, following

    def _reset_span(self, session: Session, household: Household) -> None:
        """Forget a household's statistics and take its span from its (new) statistics source."""
        session.execute(sa.delete(StatisticsPeriod).where(StatisticsPeriod.user_id == household.user_id))
        first, last = reading_span(session, household.user_id, str(household.statistics_source))
        household.first_reading_ts, household.last_reading_ts = first, last

    # ---- the recomputation --------------------------------------------------------------

    def _recompute(
        self, session: Session, households: dict[str, Household], windows: pd.DataFrame, cause: str
    ) -> Recomputed:
        if windows.empty:
            return Recomputed(_empty_windows())
        # One covering window per household keeps every later join one-to-one.
        windows = windows.groupby("user_id", as_index=False, sort=True).agg(
            start_s=("start_s", "min"), end_s=("end_s", "max")
        )
        frame = self._household_frame({u: households[u] for u in windows["user_id"].unique()})
        timezones = frame.set_index("user_id")["timezone"]
        days = _affected_periods(windows, timezones, "day")
        readings = self._readings_with_context(session, households, days)
        priced = self._priced_buckets(session, frame, days, readings)
        daily = _inside_windows(rollup(priced, timezones, "day"), days, "period_start")
        upsert_periods(session, "daily", daily)
        self._rollups(session, timezones, days, daily)
        metrics.RECOMPUTED_BUCKETS.labels(cause).inc(len(priced))
        return Recomputed(windows)

    def _priced_buckets(
        self, session: Session, frame: pd.DataFrame, windows: pd.DataFrame, readings: pd.DataFrame
    ) -> pd.DataFrame:
        """The 15-minute buckets inside the windows, computed from the readings and priced."""
        buckets = compute_buckets(readings.drop(columns=["source", "updated_at"]))
        buckets = _inside_windows(buckets, windows, "bucket_start")
        start_s, end_s = int(windows["start_s"].min()), int(windows["end_s"].max())
        zones = frame["zone"].unique().tolist()
        return price_buckets(
            buckets,
            frame,
            self.book,
            load_prices(session, zones, start_s, end_s),
            load_intensity(session, zones, start_s, end_s),
        )

    def _readings_with_context(
        self, session: Session, households: dict[str, Household], windows: pd.DataFrame
    ) -> pd.DataFrame:
        """Load each window's readings plus at least one reading beyond each end (where any exists).

        Whole day rows around the window are read; a gap longer than that costs one more lookup.
        """
        windows = windows.assign(
            source=windows["user_id"].map(lambda u: households[u].statistics_source)
        ).reset_index(drop=True)
        low = day_of(windows["start_s"].to_numpy(dtype=np.int64) - CONTEXT_S)
        high = day_of(windows["end_s"].to_numpy(dtype=np.int64) + CONTEXT_S) + DAY_S
        loaded = load_reading_windows(session, windows.assign(start_s=low, end_s=high))
        bounds = loaded.groupby("user_id")["ts"].agg(["min", "max"])
        lowest = windows["user_id"].map(bounds["min"]).to_numpy(dtype=np.float64, na_value=np.nan)
        highest = windows["user_id"].map(bounds["max"]).to_numpy(dtype=np.float64, na_value=np.nan)
        first = windows["user_id"].map(lambda u: households[u].first_reading_ts)
        last = windows["user_id"].map(lambda u: households[u].last_reading_ts)
        first_s = first.to_numpy(dtype=np.float64, na_value=np.nan)
        last_s = last.to_numpy(dtype=np.float64, na_value=np.nan)
        start_s = windows["start_s"].to_numpy(dtype=np.float64)
        end_s = windows["end_s"].to_numpy(dtype=np.float64)
        # np.isnan(lowest) | (lowest > start): nothing loaded at or before the window's start.
        want_before = (first_s < start_s) & ~(lowest <= start_s)
        want_after = (last_s >= end_s) & ~(highest >= end_s)
        extra: list[pd.DataFrame] = []
        for wanted, direction, bound in ((want_before, True, low), (want_after, False, high - DAY_S)):
            if not wanted.any():
                continue
            keys = windows.loc[wanted, ["user_id", "source"]].assign(day=bound[wanted])
            found = neighbour_times(session, keys, direction)
            picked = keys.assign(ts=pd.Series(found, index=keys.index, dtype="float64")).dropna(subset=["ts"])
            if not picked.empty:
                instants = picked["ts"].astype("int64")
                extra.append(
                    picked.assign(start_s=instants, end_s=instants + 1)[
                        ["user_id", "source", "start_s", "end_s"]
                    ]
                )
        if extra:
            more = load_reading_windows(session, pd.concat(extra, ignore_index=True))
            loaded = pd.concat([loaded, more], ignore_index=True)
        return loaded

    def _rollups(
        self, session: Session, timezones: pd.Series, days: pd.DataFrame, daily: pd.DataFrame
    ) -> None:
        """Recompute every week, month and year that contains a rewritten day.

        Each level's rows just written are reused for the next level rather than read back.
        """
        written = {"daily": (days, daily)}
        for stored, granularity, child in ROLLUPS:
            affected = _affected_periods(days, timezones, granularity)
            rows = load_period_windows_reusing(session, affected, child, *written[child])
            periods = _inside_windows(rollup(rows, timezones, granularity), affected, "period_start")
            upsert_periods(session, stored, periods)
            written[stored] = (affected, periods)


def _found(values: pd.Series) -> list[int | None]:
    """Plain ints from a float series, None where missing."""
    return [None if value != value else int(value) for value in values.tolist()]


def _empty_statistics() -> pd.DataFrame:
    return pd.DataFrame({"user_id": pd.Series(dtype=object), "period_start": pd.Series(dtype="int64")})


def _with_update_times(periods: pd.DataFrame, readings: pd.DataFrame) -> pd.DataFrame:
    """Add each period's `updated_at`: that of the day row holding the reading at or before its start."""
    if periods.empty:
        return periods.assign(updated_at=pd.Series(dtype="int64"))
    stamps = readings[["user_id", "ts", "updated_at"]].sort_values("ts", kind="stable")
    order = periods.sort_values("period_start", kind="stable")
    matched = pd.merge_asof(
        order[["user_id", "period_start"]],
        stamps,
        left_on="period_start",
        right_on="ts",
        by="user_id",
        direction="backward",
    ).set_index(order.index)["updated_at"]
    periods = periods.assign(updated_at=matched.reindex(periods.index).fillna(0).astype("int64"))
    return periods.sort_values(["user_id", "period_start"], kind="stable").reset_index(drop=True)


def _affected_periods(windows: pd.DataFrame, timezones: pd.Series, granularity: Granularity) -> pd.DataFrame:
    """Return the (user_id, start_s, end_s) of the local periods overlapping each window."""
    zones = windows["user_id"].map(timezones).to_numpy(dtype=object)
    starts = period_starts(windows["start_s"].to_numpy(dtype=np.int64), zones, granularity)
    last_starts = period_starts(windows["end_s"].to_numpy(dtype=np.int64) - 1, zones, granularity)
    ends = np.empty_like(last_starts)
    for tz in pd.unique(zones):
        mask = zones == tz
        _, ends[mask] = period_bounds(last_starts[mask], str(tz), granularity)
    return pd.DataFrame({"user_id": windows["user_id"].to_numpy(), "start_s": starts, "end_s": ends})


def _inside_windows(frame: pd.DataFrame, windows: pd.DataFrame, column: str) -> pd.DataFrame:
    """Keep the rows whose `column` lies inside their user's [start_s, end_s) window."""
    if frame.empty:
        return frame
    merged = frame.merge(windows[["user_id", "start_s", "end_s"]], on="user_id", how="inner")
    keep = (merged[column] >= merged["start_s"]) & (merged[column] < merged["end_s"])
    return merged.loc[keep].drop(columns=["start_s", "end_s"]).reset_index(drop=True)
