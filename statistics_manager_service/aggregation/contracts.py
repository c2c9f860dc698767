"""Effective-dated contracts: which tariff, contracted power, grid zone and time zone hold at each
instant, and the local calendar that a household's time zones give.

A household's contract is a list of versions, each holding from its effective instant until the
next one; the earliest version also covers every instant before it (nothing better is known). A
version states some fields; one it leaves out keeps the value in force before it.

A time-zone change cannot move a day boundary in the past, so it takes effect by whole local
days: the local day (of the old zone) holding the effective instant is the transition day. It
starts at the old zone's midnight, where the day before ended, and ends at the new zone's
midnight that ends the same date: it lasts 24 h plus the difference of the UTC offsets, as a
daylight-saving day lasts 23 or 25 h. The transition day keeps the old zone's clock; the new zone
holds from its end on, every later day is a day of the new zone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from statistics_manager_service.aggregation.arrays import IntArray, ObjectArray, check_columns, composite_keys
from statistics_manager_service.aggregation.granularity import SECONDS_PER_DAY, SECONDS_PER_HOUR
from statistics_manager_service.aggregation.localtime import (
    day_starts_s,
    local_days_and_minutes,
    localize_wall_seconds,
    wall_seconds,
    wall_seconds_in,
)
from statistics_manager_service.aggregation.rollup import Granularity, next_start_days, start_days

# What a contract version holds besides its household and effective instant.
CONTRACT_FIELDS = ("tariff_type", "contracted_power_kva", "zone", "timezone")
VERSION_COLUMNS = ("user_id", "effective_s", *CONTRACT_FIELDS)
# The effective instant of a version known "from the beginning" (before any reading can be).
BEGINNING_S = 0
CALENDAR_COLUMNS = ("user_id", "from_s", "timezone", "last_day")
_LAST_DAY = np.iinfo(np.int64).max


def carried_forward(stated: pd.DataFrame, fields: Mapping[str, Any]) -> pd.DataFrame:
    """Sort versions by household and effective instant; fill each of `fields` (name: dtype) a
    version does not state with the value in force before it (still missing before any states it)."""
    frame = stated.sort_values(["user_id", "effective_s"], kind="stable").reset_index(drop=True)
    filled = frame.groupby("user_id", sort=False)[list(fields)].ffill()
    for name, dtype in fields.items():
        frame[name] = filled[name].astype(dtype)
    frame["effective_s"] = frame["effective_s"].astype("int64")
    return frame


def resolve_versions(stated: pd.DataFrame, defaults: Mapping[str, Any]) -> pd.DataFrame:
    """Sort versions by household and effective instant; fill each field a version does not state
    with the value in force before it, and with `defaults` before any version states it."""
    check_columns(stated, VERSION_COLUMNS, "versions")
    dtypes = {name: "float64" if name == "contracted_power_kva" else "object" for name in CONTRACT_FIELDS}
    frame = carried_forward(stated, dtypes)
    for name in CONTRACT_FIELDS:
        if defaults.get(name) is not None:
            frame[name] = frame[name].fillna(defaults[name])
    return frame


def in_force(
    version_users: ObjectArray, version_starts_s: IntArray, users: ObjectArray, instants_s: IntArray
) -> IntArray:
    """Return the position of the version in force for each (user, instant).

    Versions are sorted by user and start. The version in force is the last one starting at or
    before the instant; before a user's first version, the first one.
    """
    known = pd.Index(pd.unique(version_users))
    version_codes = known.get_indexer(pd.Index(version_users)).astype(np.int64)
    codes = known.get_indexer(pd.Index(users)).astype(np.int64)
    if (codes < 0).any():
        raise ValueError(f"versions: none for user(s) {', '.join(map(str, users[codes < 0][:5]))}")
    if instants_s.size == 0:
        return np.zeros(0, dtype=np.int64)
    low, high = int(instants_s.min()), int(instants_s.max())
    # Only the order matters: starts beyond the instants asked about are clamped to their range.
    clamped = np.clip(version_starts_s, low, high + 1)
    version_keys = composite_keys(version_codes, clamped, low)
    positions = np.searchsorted(version_keys, composite_keys(codes, instants_s, low), side="right") - 1
    first = np.searchsorted(version_codes, codes, side="left")
    return np.maximum(positions, first).astype(np.int64)


def contracts_at(contracts: pd.DataFrame, users: ObjectArray, instants_s: IntArray) -> pd.DataFrame:
    """Return the resolved contract in force for each (user, instant), one row each."""
    positions = in_force(
        contracts["user_id"].to_numpy(dtype=object),
        contracts["effective_s"].to_numpy(dtype=np.int64),
        users,
        instants_s,
    )
    return contracts.iloc[positions].reset_index(drop=True)


@dataclasses.dataclass(frozen=True)
class Calendars:
    """The local calendar of each household: the time zone of each span of time, and the last
    local day (days since 1970-01-01) that each zone numbers before the next takes over."""

    segments: pd.DataFrame  # CALENDAR_COLUMNS, sorted by user and from_s

    @classmethod
    def of_contracts(cls, contracts: pd.DataFrame) -> Calendars:
        """The calendars that resolved contract versions give (see the module's rule)."""
        ordered = contracts.sort_values(["user_id", "effective_s"], kind="stable").reset_index(drop=True)
        users = ordered["user_id"].to_numpy(dtype=object)
        zones = ordered["timezone"].to_numpy(dtype=object)
        first = np.r_[True, users[1:] != users[:-1]] if len(ordered) else np.zeros(0, dtype=bool)
        changed = ~first & np.r_[False, zones[1:] != zones[:-1]] if len(ordered) else first
        segments = [
            pd.DataFrame(
                {
                    "user_id": users[first],
                    "from_s": np.full(int(first.sum()), BEGINNING_S, dtype=np.int64),
                    "timezone": zones[first],
                    "last_day": np.full(int(first.sum()), _LAST_DAY, dtype=np.int64),
                }
            )
        ]
        if changed.any():
            segments = [segments[0], _zone_changes(ordered, np.flatnonzero(changed))]
        frame = pd.concat(segments, ignore_index=True)
        # A segment's last day is the transition day of the next change of its household.
        frame = frame.sort_values(["user_id", "from_s"], kind="stable").reset_index(drop=True)
        if "transition_day" in frame.columns:
            following = frame.groupby("user_id", sort=False)["transition_day"].shift(-1).to_numpy()
            # int64's largest value has no float64 twin: fill the gaps after converting.
            last_days = np.full(following.size, _LAST_DAY, dtype=np.int64)
            known = ~np.isnan(following)
            last_days[known] = following[known].astype(np.int64)
            frame["last_day"] = last_days
            frame = frame.drop(columns="transition_day")
        return cls(frame[list(CALENDAR_COLUMNS)])

    def _segments_at(self, users: ObjectArray, instants_s: IntArray) -> IntArray:
        return in_force(
            self.segments["user_id"].to_numpy(dtype=object),
            self.segments["from_s"].to_numpy(dtype=np.int64),
            users,
            instants_s,
        )

    def zones_at(self, users: ObjectArray, instants_s: IntArray) -> ObjectArray:
        """Return the time zone whose clock holds at each (user, instant)."""
        return self.segments["timezone"].to_numpy(dtype=object)[self._segments_at(users, instants_s)]

    def local_days_and_minutes(self, users: ObjectArray, instants_s: IntArray) -> tuple[IntArray, IntArray]:
        """Return each instant's local day number and minute of the day on its zone's clock."""
        at = self._segments_at(users, instants_s)
        days, minutes = local_days_and_minutes(
            instants_s, self.segments["timezone"].to_numpy(dtype=object)[at]
        )
        # The transition day runs on past its old zone's midnight until the new zone's.
        return np.minimum(days, self.segments["last_day"].to_numpy(dtype=np.int64)[at]), minutes

    def day_starts(self, users: ObjectArray, days: IntArray) -> IntArray:
        """Return the instant each local day of each user starts."""
        if days.size == 0:
            return np.zeros(0, dtype=np.int64)
        segment_users = self.segments["user_id"].to_numpy(dtype=object)
        known = pd.Index(pd.unique(segment_users))
        segment_codes = known.get_indexer(pd.Index(segment_users)).astype(np.int64)
        codes = known.get_indexer(pd.Index(users)).astype(np.int64)
        if (codes < 0).any():
            raise ValueError(f"calendars: none for user(s) {', '.join(map(str, users[codes < 0][:5]))}")
        # Only the order matters: last days outside the days asked about are clamped just outside.
        low, high = int(days.min()) - 1, int(days.max()) + 1
        last_days = np.clip(self.segments["last_day"].to_numpy(dtype=np.int64), low, high)
        # The segment numbering a day is the first whose last day is not before it.
        at = np.searchsorted(
            composite_keys(segment_codes, last_days, low), composite_keys(codes, days, low), side="left"
        )
        return day_starts_s(days, self.segments["timezone"].to_numpy(dtype=object)[at])

    def period_starts(self, users: ObjectArray, instants_s: IntArray, granularity: Granularity) -> IntArray:
        """Return the start of the local period holding each (user, instant)."""
        if granularity == "hour":
            wall = wall_seconds_in(instants_s, self.zones_at(users, instants_s))
            # The instant's own offset keeps the two 01:00 hours of a DST-end day apart.
            return wall // SECONDS_PER_HOUR * SECONDS_PER_HOUR - (wall - instants_s)
        days, _ = self.local_days_and_minutes(users, instants_s)
        return self.day_starts(users, start_days(days, granularity))

    def period_ends(self, users: ObjectArray, instants_s: IntArray, granularity: Granularity) -> IntArray:
        """Return the end of the local period holding each (user, instant)."""
        if granularity == "hour":
            return self.period_starts(users, instants_s, granularity) + SECONDS_PER_HOUR
        days, _ = self.local_days_and_minutes(users, instants_s)
        return self.day_starts(users, next_start_days(start_days(days, granularity), granularity))


def _zone_changes(ordered: pd.DataFrame, positions: IntArray) -> pd.DataFrame:
    """The calendar segments that the time-zone changes at `positions` of resolved, ordered
    versions begin, with the transition day each ends the previous segment on.

    Changes are few (a household moves rarely), so they are walked one by one: each depends on
    where the previous one of the same household left the calendar.
    """
    rows = []
    users = ordered["user_id"].tolist()
    zones = [str(zone) for zone in ordered["timezone"].tolist()]
    effective = [int(instant) for instant in ordered["effective_s"].tolist()]
    previous_user, previous_from = None, BEGINNING_S
    for position in positions.tolist():
        user_id = users[position]
        if user_id != previous_user:
            previous_user, previous_from = user_id, BEGINNING_S
        old_zone, new_zone = zones[position - 1], zones[position]
        # A change cannot reach back before the previous one took over.
        effective_s = max(effective[position], previous_from)
        day = int(wall_seconds(np.array([effective_s], dtype=np.int64), old_zone)[0]) // SECONDS_PER_DAY
        day_start = int(localize_wall_seconds(np.array([day * SECONDS_PER_DAY]), old_zone)[0])
        next_midnights = localize_wall_seconds(np.array([day + 1, day + 2]) * SECONDS_PER_DAY, new_zone)
        # Zones a day or more apart skip the new zone's first date, as Samoa skipped 2011-12-30.
        from_s = int(next_midnights[0] if next_midnights[0] > day_start else next_midnights[1])
        rows.append((user_id, from_s, new_zone, day))
        previous_from = from_s
    return pd.DataFrame(rows, columns=["user_id", "from_s", "timezone", "transition_day"]).astype(
        {"from_s": np.int64, "transition_day": np.int64}
    )


@dataclasses.dataclass(frozen=True)
class ContractChange:
    """Where one household's history changed: [start_s, end_s) (end_s None: on and on), and
    whether its local days changed from start_s on."""

    start_s: int
    end_s: int | None
    calendar_changed: bool


def contract_change(
    before: pd.DataFrame, after: pd.DataFrame, before_calendars: Calendars, after_calendars: Calendars
) -> ContractChange | None:
    """Compare one household's resolved contracts and calendars before and after a new version;
    None when they agree at every instant."""
    starts = sorted({BEGINNING_S, *before["effective_s"].tolist(), *after["effective_s"].tolist()})
    instants = np.array(starts, dtype=np.int64)
    fields = [name for name in CONTRACT_FIELDS if name != "timezone"]
    window: tuple[int, int | None] | None = None
    if not before.empty and not after.empty:
        users = np.full(instants.size, after["user_id"].iloc[0], dtype=object)
        old = contracts_at(before, users, instants)[fields].reset_index(drop=True)
        new = contracts_at(after, users, instants)[fields].reset_index(drop=True)
        differs = np.flatnonzero(~((old == new) | (old.isna() & new.isna())).all(axis=1).to_numpy())
        if differs.size:
            # Contracts are steps between these instants: they differ up to the next one that agrees.
            last = int(differs[-1])
            window = (
                int(instants[differs[0]]),
                int(instants[last + 1]) if last + 1 < instants.size else None,
            )
    elif not after.empty:
        window = (BEGINNING_S, None)
    old_segments = before_calendars.segments[["from_s", "timezone", "last_day"]].reset_index(drop=True)
    new_segments = after_calendars.segments[["from_s", "timezone", "last_day"]].reset_index(drop=True)
    if old_segments.equals(new_segments):
        return None if window is None else ContractChange(window[0], window[1], calendar_changed=False)
    # Local days are numbered alike up to the first day numbered differently, and recomputed
    # from it on (after it the days of the two calendars may fall apart anywhere).
    start_s = _first_calendar_difference(old_segments, new_segments)
    if window is not None:
        start_s = min(start_s, window[0])
    return ContractChange(start_s, None, calendar_changed=True)


def _first_calendar_difference(old: pd.DataFrame, new: pd.DataFrame) -> int:
    """The start of the first local day that two calendars of one household number differently."""
    old_rows = list(old.itertuples(index=False, name=None))
    new_rows = list(new.itertuples(index=False, name=None))
    shared = 0
    while shared < min(len(old_rows), len(new_rows)) and old_rows[shared][:2] == new_rows[shared][:2]:
        shared += 1
    if shared == 0:
        return BEGINNING_S
    # The last segment both share numbers the same days up to the earlier of its two last days,
    # a transition day in at least one of them: that day starts at the shared zone's midnight.
    last_day = int(min(old_rows[shared - 1][2], new_rows[shared - 1][2]))
    zone = str(old_rows[shared - 1][1])
    return int(localize_wall_seconds(np.array([last_day * SECONDS_PER_DAY]), zone)[0])
