"""Keep stored statistics equal to what the engine computes from the stored readings.

A change (new or late readings, a price, an intensity, a tariff correction) names a window of
15-minute buckets per household; only those buckets, and the hour/day/week/month/year periods
containing them, are recomputed. The cost of one late reading does not grow with history.
"""

from __future__ import annotations

import dataclasses
import logging
import zlib
from collections.abc import Sequence

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from statistics_manager_service import metrics
from statistics_manager_service.aggregation.buckets import compute_buckets
from statistics_manager_service.aggregation.rollup import Granularity, period_bounds, period_starts, rollup
from statistics_manager_service.aggregation.tariffs import TariffBook, price_buckets
from statistics_manager_service.storage.households import HOUSEHOLD_COLUMNS
from statistics_manager_service.storage.periods import load_period_windows_reusing, upsert_periods
from statistics_manager_service.storage.readings import (
    load_reading_windows,
    upsert_readings,
)
from statistics_manager_service.storage.signals import load_intensity, load_prices
from statistics_manager_service.storage.tables import Household, RawReading, StatisticsPeriod
from statistics_manager_service.storage.windows import rows_of

logger = logging.getLogger(__name__)

BUCKET_S = 900
SOURCE_PRIORITY = ("smart_meter", "hub", "dongle")
DEFAULT_CONTRACTED_KVA = 6.9
# Readings loaded on each side of a window; a longer gap costs one extra lookup.
CONTEXT_S = 3 * 3600
# (stored granularity, engine granularity, the stored granularity it is rolled up from)
ROLLUPS: tuple[tuple[str, Granularity, str], ...] = (
    ("hourly", "hour", "15_mins"),
    ("daily", "day", "15_mins"),
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
    """Apply readings and signal changes to the stored statistics, inside the caller's transaction."""

    def __init__(self, book: TariffBook, default_timezone: str) -> None:
        self.book = book
        self.default_timezone = default_timezone

    # ---- entry points -------------------------------------------------------------------

    def apply_readings(self, session: Session, readings: pd.DataFrame) -> Recomputed:
        """Store readings idempotently, then recompute the buckets and periods they touch."""
        if readings.empty:
            return Recomputed(_empty_windows())
        stored = upsert_readings(session, readings)
        metrics_by_source = readings.groupby("source").size()
        for source, count in metrics_by_source.items():
            metrics.READINGS_INGESTED.labels(str(source)).inc(int(count))
        touched = readings.groupby(["user_id", "source"], sort=True)["ts"].agg(["min", "max"]).reset_index()
        households = self._lock(session, touched["user_id"].unique().tolist())
        windows = self._reading_windows(session, households, touched)
        recomputed = self._recompute(session, households, windows, cause="readings")
        newest = int(readings["ts"].max())
        metrics.NEWEST_AGGREGATED_READING.set(max(newest, 0))
        return dataclasses.replace(recomputed, readings_stored=stored)

    def recompute_windows(self, session: Session, windows: pd.DataFrame, cause: str) -> Recomputed:
        """Recompute explicit (user_id, start_s, end_s) ranges, e.g. after a price or intensity change."""
        if windows.empty:
            return Recomputed(_empty_windows())
        households = self._lock(session, windows["user_id"].unique().tolist())
        known = windows[windows["user_id"].isin(list(households))].copy()
        # Clip to each household's reading span: no bucket exists outside it.
        first = known["user_id"].map({u: h.first_reading_ts for u, h in households.items()})
        last = known["user_id"].map({u: h.last_reading_ts for u, h in households.items()})
        known = known[first.notna() & last.notna()]
        if known.empty:
            return Recomputed(_empty_windows())
        first, last = first[known.index].astype("int64"), last[known.index].astype("int64")
        known["start_s"] = np.maximum(known["start_s"].to_numpy(), (first // BUCKET_S * BUCKET_S).to_numpy())
        known["end_s"] = np.minimum(
            known["end_s"].to_numpy(), (last // BUCKET_S * BUCKET_S + BUCKET_S).to_numpy()
        )
        known = known[known["end_s"] > known["start_s"]]
        return self._recompute(session, households, known[["user_id", "start_s", "end_s"]], cause=cause)

    def rebuild(self, session: Session, user_ids: Sequence[str], cause: str) -> Recomputed:
        """Recompute the whole history of households."""
        windows = pd.DataFrame({"user_id": list(user_ids), "start_s": 0, "end_s": 2**62})
        return self.recompute_windows(session, windows, cause)

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

    def _reading_windows(
        self, session: Session, households: dict[str, Household], touched: pd.DataFrame
    ) -> pd.DataFrame:
        """Turn new readings into bucket windows: from the reading before to the reading after."""
        rows: list[tuple[str, int, int]] = []
        spans: list[tuple[Household, int, int]] = []  # the new readings' range in the statistics source
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
            if own.empty:
                continue
            spans.append((household, int(own["min"].iloc[0]), int(own["max"].iloc[0])))
        for (household, min_ts, max_ts), (previous, following) in zip(
            spans, self._neighbours(session, spans), strict=True
        ):
            first = min_ts if household.first_reading_ts is None else min(household.first_reading_ts, min_ts)
            last = max_ts if household.last_reading_ts is None else max(household.last_reading_ts, max_ts)
            household.first_reading_ts, household.last_reading_ts = first, last
            rows.append(
                (
                    household.user_id,
                    previous if previous is not None else min_ts,
                    following if following is not None else max_ts,
                )
            )
        windows = pd.DataFrame(rows, columns=["user_id", "start_s", "end_s"])
        windows["start_s"] = windows["start_s"].astype("int64") // BUCKET_S * BUCKET_S
        windows["end_s"] = windows["end_s"].astype("int64") // BUCKET_S * BUCKET_S + BUCKET_S
        return windows

    def _neighbours(
        self, session: Session, spans: list[tuple[Household, int, int]]
    ) -> list[tuple[int | None, int | None]]:
        """`_neighbour` before each span's start and after its end; on PostgreSQL in one statement."""
        if session.get_bind().dialect.name != "postgresql":
            return [
                (
                    self._neighbour(session, h, low, before=True),
                    self._neighbour(session, h, high, before=False),
                )
                for h, low, high in spans
            ]
        # Only where history extends beyond the span, as `_neighbour` checks.
        lows = [
            low if h.first_reading_ts is not None and low > h.first_reading_ts else None
            for h, low, _ in spans
        ]
        highs = [
            high if h.last_reading_ts is not None and high < h.last_reading_ts else None
            for h, _, high in spans
        ]
        asked = [i for i in range(len(spans)) if lows[i] is not None or highs[i] is not None]
        found: dict[int, tuple[int | None, int | None]] = {}
        if asked:
            text, number = postgresql.ARRAY(sa.String), postgresql.ARRAY(sa.BigInteger)
            wanted = (
                sa.func.unnest(
                    sa.cast(sa.bindparam("users", [spans[i][0].user_id for i in asked], type_=text), text),
                    sa.cast(
                        sa.bindparam("sources", [spans[i][0].statistics_source for i in asked], type_=text),
                        text,
                    ),
                    sa.cast(sa.bindparam("lows", [lows[i] for i in asked], type_=number), number),
                    sa.cast(sa.bindparam("highs", [highs[i] for i in asked], type_=number), number),
                )
                .table_valued("user_id", "source", "low", "high", with_ordinality="position")
                .render_derived(name="wanted")
            )
            readings = RawReading.__table__
            same = sa.and_(readings.c.user_id == wanted.c.user_id, readings.c.source == wanted.c.source)
            previous = sa.select(sa.func.max(readings.c.ts)).where(same, readings.c.ts < wanted.c.low)
            following = sa.select(sa.func.min(readings.c.ts)).where(same, readings.c.ts > wanted.c.high)
            statement = sa.select(
                wanted.c.position, previous.scalar_subquery(), following.scalar_subquery()
            ).select_from(wanted)
            for position, before, after in session.execute(statement):
                found[asked[int(position) - 1]] = (
                    None if before is None else int(before),
                    None if after is None else int(after),
                )
        return [found.get(i, (None, None)) for i in range(len(spans))]

    def _neighbour(self, session: Session, household: Household, ts: int, before: bool) -> int | None:
        """Return the stored reading time just before (or after) `ts`, if history extends there."""
        first, last = household.first_reading_ts, household.last_reading_ts
        if before and (first is None or ts <= first):
            return None
        if not before and (last is None or ts >= last):
            return None
        column = RawReading.ts
        statement = sa.select(sa.func.max(column) if before else sa.func.min(column)).where(
            RawReading.user_id == household.user_id,
            RawReading.source == household.statistics_source,
            column < ts if before else column > ts,
        )
        value = session.execute(statement).scalar()
        return None if value is None else int(value)

    def _reset_span(self, session: Session, household: Household) -> None:
        """Forget a household's statistics and take its span from its (new) statistics source."""
        session.execute(sa.delete(StatisticsPeriod).where(StatisticsPeriod.user_id == household.user_id))
        row = session.execute(
            sa.select(sa.func.min(RawReading.ts), sa.func.max(RawReading.ts)).where(
                RawReading.user_id == household.user_id, RawReading.source == household.statistics_source
            )
        ).one()
        household.first_reading_ts = None if row[0] is None else int(row[0])
        household.last_reading_ts = None if row[1] is None else int(row[1])

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
        readings = self._readings_with_context(session, households, windows)
        buckets = compute_buckets(readings.drop(columns=["source"]))
        buckets = _inside_windows(buckets, windows, "bucket_start")
        frame = self._household_frame({u: households[u] for u in windows["user_id"].unique()})
        start_s, end_s = int(windows["start_s"].min()), int(windows["end_s"].max())
        zones = frame["zone"].unique().tolist()
        priced = price_buckets(
            buckets,
            frame,
            self.book,
            load_prices(session, zones, start_s, end_s),
            load_intensity(session, zones, start_s, end_s),
        )
        upsert_periods(session, "15_mins", priced)
        self._rollups(session, frame, windows, priced)
        metrics.RECOMPUTED_BUCKETS.labels(cause).inc(len(priced))
        return Recomputed(windows)

    def _readings_with_context(
        self, session: Session, households: dict[str, Household], windows: pd.DataFrame
    ) -> pd.DataFrame:
        """Load each window's readings plus at least one reading beyond each end (where any exists)."""
        windows = windows.assign(source=windows["user_id"].map(lambda u: households[u].statistics_source))
        loaded = load_reading_windows(
            session,
            windows.assign(start_s=windows["start_s"] - CONTEXT_S, end_s=windows["end_s"] + CONTEXT_S + 1),
        )
        bounds = loaded.groupby("user_id")["ts"].agg(["min", "max"])
        lows, highs = bounds["min"].to_dict(), bounds["max"].to_dict()
        extra: list[tuple[str, str, int, int]] = []
        for user_id, source, start_s, end_s in rows_of(windows, ["user_id", "source", "start_s", "end_s"]):
            household = households[user_id]
            low, high = lows.get(user_id), highs.get(user_id)
            first, last = household.first_reading_ts, household.last_reading_ts
            if first is not None and first < start_s and (low is None or low > start_s):
                previous = self._neighbour(session, household, start_s + 1, before=True)
                if previous is not None:
                    extra.append((user_id, source, previous, start_s - CONTEXT_S))
            if last is not None and last > end_s and (high is None or high < end_s):
                following = self._neighbour(session, household, end_s - 1, before=False)
                if following is not None:
                    extra.append((user_id, source, end_s + CONTEXT_S + 1, following + 1))
        if extra:
            more = load_reading_windows(
                session, pd.DataFrame(extra, columns=["user_id", "source", "start_s", "end_s"])
            )
            loaded = pd.concat([loaded, more], ignore_index=True)
        return loaded

    def _rollups(
        self, session: Session, households: pd.DataFrame, windows: pd.DataFrame, buckets: pd.DataFrame
    ) -> None:
        """Recompute every hour/day/week/month/year period that contains a rewritten bucket.

        `buckets` are the 15-minute rows just written over `windows`; each level's rows just
        written are reused for the next level rather than read back.
        """
        timezones = households.set_index("user_id")["timezone"]
        written = {"15_mins": (windows, buckets)}
        for stored, granularity, child in ROLLUPS:
            affected = _affected_periods(windows, timezones, granularity)
            rows = load_period_windows_reusing(session, affected, child, *written[child])
            periods = _inside_windows(rollup(rows, timezones, granularity), affected, "period_start")
            upsert_periods(session, stored, periods)
            written[stored] = (affected, periods)


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
