"""Peer groups: comparable households and the distribution of their consumption over a period.

Pure: a frame of households' group keys and consumption in, per-group counts and percentiles out;
a household's value placed on its group's percentiles. Only groups of at least `MIN_PEERS`
households get percentiles. The kept percentiles 1 to 99 place a household among its peers; the
figures a household is shown about its peers (the median and the 20th percentile) are
`published_percentile`s, each a blend of at least three households' consumption, so that none is
read off one household alone (an interpolated percentile is exactly one household's value
whenever its position falls on a rank, e.g. the median of an odd group).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from statistics_manager_service.aggregation.arrays import FloatArray, ObjectArray, check_columns

# A comparison needs this many comparable households.
MIN_PEERS = 10
# A household counts when readings back at least this share of the compared days.
MIN_COVERAGE = 0.9
# The percentiles a group keeps: 1 to 99 (0 and 100 would be the lowest and highest household).
PERCENTILES: tuple[int, ...] = tuple(range(1, 100))
MEDIAN, EFFICIENT = 50, 20
# Kept and published percentiles are rounded to this much energy.
PERCENTILE_RESOLUTION_KWH = 0.1

# Contracted power bands on the ERSE ladder of standard powers (kVA): (name, lowest, highest).
# A non-standard power falls in the band whose range holds it (above the previous band's highest).
POWER_BANDS: tuple[tuple[str, float, float], ...] = (
    ("1.15-3.45", 1.15, 3.45),
    ("4.6-6.9", 4.6, 6.9),
    ("10.35-13.8", 10.35, 13.8),
    ("17.25-20.7", 17.25, 20.7),
    ("27.6-41.4", 27.6, 41.4),
)
POWER_BAND_NAMES: tuple[str, ...] = tuple(name for name, _, _ in POWER_BANDS)
# What makes households comparable, in the order the key is written.
GROUP_COLUMNS = ("zone", "tariff_type", "power_band", "pv")
# What `peer_groups` takes: one row per household that counts.
MEMBER_COLUMNS = (*GROUP_COLUMNS, "consumption_kwh")


@dataclasses.dataclass(frozen=True)
class PeerGroup:
    """One group of comparable households over a period: how many, and (from `MIN_PEERS` on) the
    percentiles 1 to 99 of their consumption and the published median and 20th percentile."""

    zone: str
    tariff_type: str
    power_band: str
    pv: bool
    households: int
    percentiles_kwh: tuple[float, ...] | None
    median_kwh: float | None = None
    efficient_kwh: float | None = None


def power_band(contracted_kva: FloatArray) -> ObjectArray:
    """Return the band name of each contracted power (kVA)."""
    uppers = np.array([high for _, _, high in POWER_BANDS[:-1]])
    positions = np.searchsorted(uppers, np.asarray(contracted_kva, dtype=np.float64), side="left")
    return np.array(POWER_BAND_NAMES, dtype=object)[positions]


def has_pv(energy_generated_kwh: FloatArray, energy_exported_kwh: FloatArray) -> np.ndarray:
    """Tell which households generate: a generation register reported, or energy exported."""
    generated = np.asarray(energy_generated_kwh, dtype=np.float64)
    exported = np.nan_to_num(np.asarray(energy_exported_kwh, dtype=np.float64), nan=0.0)
    return ~np.isnan(generated) | (exported > 0.0)


def group_percentiles(consumption_kwh: FloatArray) -> tuple[float, ...]:
    """Return the percentiles 1 to 99 of a group's consumption: linear interpolation between the
    sorted values (position p/100 x (n - 1)), rounded to `PERCENTILE_RESOLUTION_KWH`."""
    values = np.percentile(np.asarray(consumption_kwh, dtype=np.float64), PERCENTILES, method="linear")
    steps = np.round(values / PERCENTILE_RESOLUTION_KWH)
    return tuple(round(float(step) * PERCENTILE_RESOLUTION_KWH, 1) for step in steps)


def published_percentile(consumption_kwh: FloatArray, rank: int) -> float:
    """Return the percentile `rank` as shown to households: the mean of the linearly interpolated
    consumption at its position p/100 x (n - 1) and one place either side of it (positions clamped
    to the group), rounded to `PERCENTILE_RESOLUTION_KWH`. It blends three households when the
    position falls on a rank and four otherwise: never one household's own value alone."""
    ordered = np.sort(np.asarray(consumption_kwh, dtype=np.float64))
    last = ordered.size - 1
    position = rank / 100 * last
    places = np.clip(np.array([position - 1, position, position + 1]), 0, last)
    value = float(np.interp(places, np.arange(ordered.size), ordered).mean())
    return round(round(value / PERCENTILE_RESOLUTION_KWH) * PERCENTILE_RESOLUTION_KWH, 1)


def peer_groups(members: pd.DataFrame) -> list[PeerGroup]:
    """Count the households of each group (`MEMBER_COLUMNS`, one row per household that counts)
    and give the groups of at least `MIN_PEERS` their percentiles, in key order."""
    check_columns(members, MEMBER_COLUMNS, "members")
    groups = []
    for key, rows in members.groupby(list(GROUP_COLUMNS), sort=True):
        zone, tariff_type, band, pv = key
        count = len(rows)
        key_fields = (str(zone), str(tariff_type), str(band), bool(pv), count)
        if count < MIN_PEERS:
            groups.append(PeerGroup(*key_fields, None))
            continue
        values = rows["consumption_kwh"].to_numpy()
        groups.append(
            PeerGroup(
                *key_fields,
                group_percentiles(values),
                published_percentile(values, MEDIAN),
                published_percentile(values, EFFICIENT),
            )
        )
    return groups


def percentile_rank(value_kwh: float, percentiles_kwh: tuple[float, ...]) -> float:
    """Place a consumption on a group's percentiles: the share (0 to 100) of the group using less.

    Between two kept percentiles it is interpolated; a value equal to a run of equal percentiles
    takes the middle of the run; below the 1st it is 0, above the 99th 100.
    """
    levels = np.asarray(percentiles_kwh, dtype=np.float64)
    ranks = np.asarray(PERCENTILES, dtype=np.float64)
    low = int(np.searchsorted(levels, value_kwh, side="left"))
    high = int(np.searchsorted(levels, value_kwh, side="right"))
    if high > low:
        return float(ranks[low:high].mean())
    if low == 0:
        return 0.0
    if low == levels.size:
        return 100.0
    share = (value_kwh - levels[low - 1]) / (levels[low] - levels[low - 1])
    return float(ranks[low - 1] + share * (ranks[low] - ranks[low - 1]))
