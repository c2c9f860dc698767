"""Keep the stored days equal to what the engine computes from the stored readings.

A change (new or late readings, a price, an intensity, a tariff correction) names a window of
15-minute buckets per household; the local days overlapping it are recomputed from their
readings and stored. Every other level is computed from the readings or the days when asked for
(`period_statistics`), by the same functions. The cost of one late reading does not grow with
history: it rewrites its local day (two where a gap spans midnight).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from statistics_manager_service import metrics, tracing
from statistics_manager_service.aggregation.arrays import composite_keys
from statistics_manager_service.aggregation.contracts import CONTRACT_FIELDS, contract_change
from statistics_manager_service.aggregation.granularity import BUCKET_SECONDS, STORED_LEVEL, Level
from statistics_manager_service.aggregation.rollup import covering_periods, rollup
from statistics_manager_service.aggregation.tariffs import TariffBook
from statistics_manager_service.aggregation.windows import late_data_window
from statistics_manager_service.recompute.inputs import (
    clipped,
    empty_windows,
    household_contracts,
    inside_windows,
    priced_buckets,
    reading_spans,
    readings_with_context,
    resolved_contracts,
)
from statistics_manager_service.recompute.views import period_statistics
from statistics_manager_service.storage.contracts import (
    NewContractVersion,
    load_contract_versions,
    put_contract_version,
)
from statistics_manager_service.storage.households import update_households
from statistics_manager_service.storage.locks import ZONE_NAMESPACE, hold
from statistics_manager_service.storage.periods import delete_periods, upsert_periods
from statistics_manager_service.storage.readings import (
    day_of,
    merge_duplicates,
    neighbour_times,
    reading_span,
    source_keys,
    store_readings,
)
from statistics_manager_service.storage.tables import Household, StatisticsPeriod

logger = logging.getLogger(__name__)

SOURCE_PRIORITY = ("smart_meter", "hub", "dongle")


@dataclasses.dataclass(frozen=True)
class Recomputed:
    """What a recomputation changed: per household, the range of 15-minute buckets."""

    windows: pd.DataFrame  # user_id, start_s, end_s
    readings_stored: int = 0

    @property
    def bucket_count(self) -> int:
        """Count the 15-minute buckets in the windows."""
        if self.windows.empty:
            return 0
        return int(((self.windows["end_s"] - self.windows["start_s"]) // BUCKET_SECONDS).sum())


def _priority(source: str | None) -> int:
    return SOURCE_PRIORITY.index(source) if source in SOURCE_PRIORITY else len(SOURCE_PRIORITY)


class StatisticsUpdater:
    """Apply readings and signal changes to the stored statistics, inside the caller's transaction;
    compute the levels that are not stored when asked for."""

    def __init__(self, book: TariffBook, default_timezone: str) -> None:
        self.book = book
        self.default_timezone = default_timezone

    # ---- entry points -------------------------------------------------------------------

    def apply_readings(self, session: Session, readings: pd.DataFrame) -> Recomputed:
        """Store readings idempotently, then recompute the days they touch."""
        if readings.empty:
            return Recomputed(empty_windows())
        # Held before the day rows are read and rewritten: no other transaction merges into them.
        households = self._lock(session, readings["user_id"].unique().tolist())
        incoming = merge_duplicates(readings)
        stored_days = store_readings(session, incoming)
        for source, count in incoming.groupby("source").size().items():
            metrics.READINGS_INGESTED.labels(str(source)).inc(int(count))
        windows = self._reading_windows(session, households, incoming, stored_days)
        recomputed = self._recompute(session, households, windows, cause="readings", known=stored_days)
        metrics.NEWEST_AGGREGATED_READING.set(max(int(incoming["ts"].max()), 0))
        return dataclasses.replace(recomputed, readings_stored=len(incoming))

    def recompute_windows(self, session: Session, windows: pd.DataFrame, cause: str) -> Recomputed:
        """Recompute explicit (user_id, start_s, end_s) ranges, e.g. after a price or intensity change."""
        if windows.empty:
            return Recomputed(empty_windows())
        households = self._lock(session, windows["user_id"].unique().tolist())
        return self._recompute(session, households, clipped(households, windows), cause=cause)

    def apply_contract_version(self, session: Session, version: NewContractVersion) -> Recomputed:
        """Add a version to a household's contract history (an existing household) and recompute
        the local days from the first instant whose contract it changes, up to the next version
        that makes them agree again; a time-zone change renumbers the days from its transition
        day on. The household's row keeps the newest version's contract."""
        households = self._lock(session, [version.user_id])
        household = households[version.user_id]
        before, before_calendars = resolved_contracts(
            load_contract_versions(session, [version.user_id]), households, self.default_timezone
        )
        if not put_contract_version(session, version):
            return Recomputed(empty_windows())
        stored = load_contract_versions(session, [version.user_id])
        after, after_calendars = resolved_contracts(stored, households, self.default_timezone)
        # What the versions state, carried forward, without defaults: the row's NULLs keep theirs.
        newest = stored[list(CONTRACT_FIELDS)].ffill().iloc[-1]
        for name in CONTRACT_FIELDS:
            if pd.notna(newest[name]):
                setattr(
                    household, name, float(newest[name]) if name == "contracted_power_kva" else newest[name]
                )
        change = contract_change(before, after, before_calendars, after_calendars)
        if change is None or household.first_reading_ts is None:
            return Recomputed(empty_windows())
        if change.calendar_changed:
            delete_periods(session, [household.user_id], STORED_LEVEL.name, change.start_s, 2**62)
        end_s = 2**62 if change.end_s is None else change.end_s
        windows = pd.DataFrame(
            {
                "user_id": [household.user_id],
                "start_s": [change.start_s // BUCKET_SECONDS * BUCKET_SECONDS],
                "end_s": [end_s],
            }
        )
        return self._recompute(session, households, clipped(households, windows), cause="contract")

    def rebuild(self, session: Session, user_ids: Sequence[str], cause: str) -> Recomputed:
        """Recompute the whole history of households."""
        windows = pd.DataFrame({"user_id": list(user_ids), "start_s": 0, "end_s": 2**62})
        return self.recompute_windows(session, windows, cause)

    def period_statistics(
        self,
        session: Session,
        user_ids: Sequence[str],
        start_s: int,
        end_s: int,
        level: Level,
        with_update_times: bool = False,
        partial: bool = False,
    ) -> pd.DataFrame:
        """Compute the periods of a level that is not stored (see `views.period_statistics`)."""
        return period_statistics(
            session,
            self.book,
            self.default_timezone,
            user_ids,
            start_s,
            end_s,
            level,
            with_update_times,
            partial,
        )

    # ---- households and windows ---------------------------------------------------------

    def lock_zone(self, session: Session, zone: str) -> None:
        """Hold a grid zone's signals exclusively until the transaction ends (PostgreSQL).

        Call it before listing the zone's households to recompute after a signal change: it
        waits for the transactions that read the zone's signals (they hold the zone shared,
        see `_lock`) and makes later ones wait, so no household, not even one created by a
        concurrent transaction, keeps statistics computed from the replaced values.
        """
        hold(session, ZONE_NAMESPACE, zone)

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
                hold(session, ZONE_NAMESPACE, zone, shared=True)
            statement = statement.with_for_update()
        return {household.user_id: household for household in session.scalars(statement)}

    def _reading_windows(
        self,
        session: Session,
        households: dict[str, Household],
        incoming: pd.DataFrame,
        stored_days: pd.DataFrame,
    ) -> pd.DataFrame:
        """Turn new readings into the bucket windows they can change (`late_data_window`).

        `stored_days` holds every reading of the day rows the new readings went into. A household
        whose readings now come from a better source has its statistics replaced wholesale.
        """
        touched = incoming.groupby(["user_id", "source"], sort=True)["ts"].agg(["min", "max"]).reset_index()
        priority = touched["source"].map(_priority)
        best = touched.assign(priority=priority).sort_values(["user_id", "priority"], kind="stable")
        best = best.drop_duplicates("user_id")
        rebuilt: list[tuple[str, int, int]] = []
        for user_id, source in zip(best["user_id"].tolist(), best["source"].tolist(), strict=True):
            household = households[user_id]
            if household.statistics_source is None:
                set_committed_value(household, "statistics_source", source)  # stored with the span
            elif _priority(source) < _priority(household.statistics_source):
                logger.info("household %s now uses %s readings", user_id, source)
                household.statistics_source = source
                self._reset_span(session, household)
                if household.first_reading_ts is not None and household.last_reading_ts is not None:
                    rebuilt.append((user_id, household.first_reading_ts, household.last_reading_ts))
        replaced = {user_id for user_id, _, _ in rebuilt}
        own = touched["source"].to_numpy(dtype=object) == touched["user_id"].map(
            lambda u: households[u].statistics_source
        ).to_numpy(dtype=object)
        spans = touched[own & ~touched["user_id"].isin(replaced).to_numpy()].reset_index(drop=True)
        previous, following = self._span_neighbours(session, households, spans, stored_days)
        earliest, latest = spans["min"].to_numpy(dtype=np.int64), spans["max"].to_numpy(dtype=np.int64)
        start_s, end_s = late_data_window(
            earliest,
            latest,
            np.where(np.isnan(previous), earliest, previous).astype(np.int64),
            np.where(np.isnan(following), latest, following).astype(np.int64),
        )
        self._extend_spans(session, households, spans)
        windows = pd.DataFrame({"user_id": spans["user_id"].to_numpy(), "start_s": start_s, "end_s": end_s})
        if rebuilt:
            whole = pd.DataFrame(rebuilt, columns=["user_id", "start_s", "end_s"])
            whole["start_s"] = whole["start_s"] // BUCKET_SECONDS * BUCKET_SECONDS
            whole["end_s"] = whole["end_s"] // BUCKET_SECONDS * BUCKET_SECONDS + BUCKET_SECONDS
            windows = pd.concat([windows, whole], ignore_index=True)
        return windows

    def _extend_spans(self, session: Session, households: dict[str, Household], spans: pd.DataFrame) -> None:
        """Widen the households' reading spans to the new readings, in memory and in one statement."""
        first, last = reading_spans(households, spans["user_id"])
        spans = spans.assign(
            statistics_source=spans["source"],
            first_reading_ts=np.fmin(first, spans["min"].to_numpy(np.float64)).astype(np.int64),
            last_reading_ts=np.fmax(last, spans["max"].to_numpy(np.float64)).astype(np.int64),
        )
        for user_id, low, high in zip(
            spans["user_id"].tolist(),
            spans["first_reading_ts"].tolist(),
            spans["last_reading_ts"].tolist(),
            strict=True,
        ):
            # As stored by `update_households`: the session has nothing left to flush for them.
            set_committed_value(households[user_id], "first_reading_ts", low)
            set_committed_value(households[user_id], "last_reading_ts", high)
        columns = ["user_id", "statistics_source", "first_reading_ts", "last_reading_ts"]
        update_households(session, spans[columns])

    def _span_neighbours(
        self,
        session: Session,
        households: dict[str, Household],
        spans: pd.DataFrame,
        stored_days: pd.DataFrame,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The stored reading just before each span's first new reading and just after its last
        (NaN where none): found in the day rows just rewritten, else with one statement per
        direction in the other day rows, where the household's history goes on beyond them."""
        previous, following = _adjacent_readings(stored_days, spans)
        first, last = reading_spans(households, spans["user_id"])
        for values, beyond, column, before in (
            (previous, first < spans["min"].to_numpy(), "min", True),
            (following, last > spans["max"].to_numpy(), "max", False),
        ):
            asked = np.isnan(values) & beyond
            if asked.any():
                keys = spans.loc[asked, ["user_id", "source"]].assign(day=day_of(spans.loc[asked, column]))
                values[asked] = np.array(neighbour_times(session, keys, before), dtype=np.float64)
        return previous, following

    def _reset_span(self, session: Session, household: Household) -> None:
        """Forget a household's statistics and take its span from its (new) statistics source."""
        session.execute(sa.delete(StatisticsPeriod).where(StatisticsPeriod.user_id == household.user_id))
        first, last = reading_span(session, household.user_id, str(household.statistics_source))
        household.first_reading_ts, household.last_reading_ts = first, last

    # ---- the recomputation --------------------------------------------------------------

    def _recompute(
        self,
        session: Session,
        households: dict[str, Household],
        windows: pd.DataFrame,
        cause: str,
        known: pd.DataFrame | None = None,
    ) -> Recomputed:
        """Recompute the days of the windows (see `_recompute_days`), in a span of its own."""
        with tracing.span("recompute", attributes={"cause": cause}) as current:
            recomputed = self._recompute_days(session, households, windows, cause, known)
            if current is not None:
                current.set_attribute("households", len(recomputed.windows))
                current.set_attribute("window_buckets", recomputed.bucket_count)
            return recomputed

    def _recompute_days(
        self,
        session: Session,
        households: dict[str, Household],
        windows: pd.DataFrame,
        cause: str,
        known: pd.DataFrame | None = None,
    ) -> Recomputed:
        """Recompute and store the local days overlapping the windows; `known` readings (whole day
        rows) are not read again."""
        if windows.empty:
            return Recomputed(empty_windows())
        # One covering window per household keeps every later join one-to-one.
        windows = windows.groupby("user_id", as_index=False, sort=True).agg(
            start_s=("start_s", "min"), end_s=("end_s", "max")
        )
        contracts, calendars = household_contracts(
            session, {u: households[u] for u in windows["user_id"]}, self.default_timezone
        )
        granularity = STORED_LEVEL.engine
        assert granularity is not None
        days = covering_periods(windows, calendars, granularity)
        readings = readings_with_context(session, households, days, known)
        buckets = priced_buckets(session, self.book, contracts, calendars, days, readings)
        upsert_periods(
            session,
            STORED_LEVEL.name,
            inside_windows(rollup(buckets, calendars, granularity), days, "period_start"),
        )
        metrics.RECOMPUTED_BUCKETS.labels(cause).inc(len(buckets))
        return Recomputed(windows)


def _adjacent_readings(readings: pd.DataFrame, spans: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per span (user_id, source, min, max): the reading of `readings` (sorted by user, source and
    time) just before `min` and just after `max`, as float seconds, NaN where there is none."""
    previous = np.full(len(spans), np.nan)
    following = np.full(len(spans), np.nan)
    if readings.empty or spans.empty:
        return previous, following
    pairs = source_keys(readings["user_id"], readings["source"])
    distinct = pd.Index(pairs.unique())
    codes = distinct.get_indexer(pairs).astype(np.int64)
    span_codes = distinct.get_indexer(source_keys(spans["user_id"], spans["source"])).astype(np.int64)
    ts = readings["ts"].to_numpy(dtype=np.int64)
    origin = int(min(ts.min(), spans["min"].min()))
    keys = composite_keys(codes, ts, origin)
    order = np.argsort(keys, kind="stable")
    keys, ts, codes = keys[order], ts[order], codes[order]
    known = span_codes >= 0
    safe = np.where(known, span_codes, 0)
    low = composite_keys(safe, spans["min"].to_numpy(dtype=np.int64), origin)
    high = composite_keys(safe, spans["max"].to_numpy(dtype=np.int64), origin)
    before = np.searchsorted(keys, low, side="left") - 1
    after = np.searchsorted(keys, high, side="right")
    has_before = known & (before >= 0) & (codes[np.maximum(before, 0)] == safe)
    has_after = known & (after < keys.size) & (codes[np.minimum(after, keys.size - 1)] == safe)
    previous[has_before] = ts[before[has_before]]
    following[has_after] = ts[after[has_after]]
    return previous, following
