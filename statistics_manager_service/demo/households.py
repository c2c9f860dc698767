"""The demo households and the meter readings their homes would report, quarter hour by quarter hour.

Demand is the BDEW H0 profile scaled to the household's annual consumption, with day, hour and
quarter-hour variability and short appliance peaks (kettle, oven, washing machine). A PV home's
generation covers demand first (self-consumption = min(generation, demand)); the rest is exported.
The meter reports cumulative registers, so every reading carries the sum of all energy before it.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from statistics_manager_service.demo import noise
from statistics_manager_service.demo.solar import Weather, pv_power_w

QUARTER_S = 900
QUARTER_H = 0.25
# Appliance peaks: chance per quarter hour at the profile's typical level, and their power range.
PEAK_CHANCE_AT_150_W = 0.05
PEAK_MIN_W, PEAK_SPREAD_W = 800.0, 1600.0
# Where in the span (share of the requested days) the quirks happen.
GAP_AT_SHARE, RESET_AT_SHARE = 0.4, 0.6
GAP_LOCAL_HOURS = (8.5, 16.25)  # the dongle is offline 08:30–16:15 local time
RESET_LOCAL_HOUR = 11.5  # the new meter is installed at 11:30


@dataclasses.dataclass(frozen=True)
class DemoHousehold:
    """One demo home: its contract, its consumption, its PV system and what is odd about it."""

    user_id: str
    description: str
    tariff: str
    contracted_power: str
    annual_kwh: float
    postal_code: str
    meter_id: str
    pv_kwp: float = 0.0
    pv_azimuth_deg: float = 180.0
    source: str = "hub"
    dongle_api_key: str | None = None
    quirk: str | None = None  # "gap" or "meter-replacement"
    # Billing terms the account events state (None: left out, the bill's defaults apply).
    billing_day: int | None = None
    large_family: bool | None = None
    bill_budget_eur: float | None = None

    @property
    def has_pv(self) -> bool:
        """Whether the home generates."""
        return self.pv_kwp > 0


HOUSEHOLDS: tuple[DemoHousehold, ...] = (
    DemoHousehold(
        "demohome01",
        "flat in Lisbon, simple tariff, no PV",
        "simple",
        "3.45 kVA",
        2600.0,
        "1170-120",
        "PT0002000031415926AA",
    ),
    DemoHousehold(
        "demohome02",
        "family house, bi-hourly tariff, 3 kWp PV; a large family billed from the 15th, budget 60 EUR",
        "bi-hourly",
        "6.9 kVA",
        4300.0,
        "2780-270",
        "PT0002000027182818BB",
        pv_kwp=3.0,
        billing_day=15,
        large_family=True,
        bill_budget_eur=60.0,
    ),
    DemoHousehold(
        "demohome03",
        "large house, tri-hourly tariff, 5 kWp PV facing south-west; smart meter replaced mid-span",
        "tri-hourly",
        "10.35 kVA",
        5400.0,
        "2750-642",
        "PT0002000016180339CC",
        pv_kwp=5.0,
        pv_azimuth_deg=205.0,
        source="smart_meter",
        quirk="meter-replacement",
    ),
    DemoHousehold(
        "demohome04",
        "all-electric home, dynamic (day-ahead) tariff, 4 kWp PV",
        "dynamic",
        "6.9 kVA",
        4800.0,
        "2610-160",
        "PT0002000014142135DD",
        pv_kwp=4.0,
    ),
    DemoHousehold(
        "demohome05",
        "townhouse, bi-hourly tariff, no PV; readings by dongle API key, offline for hours once",
        "bi-hourly",
        "4.6 kVA",
        3300.0,
        "1500-049",
        "PT0002000017320508EE",
        source="dongle",
        dongle_api_key="dongle-5f3a9c2e71b04d8a",
        quirk="gap",
    ),
    DemoHousehold(
        "demohome06",
        "retired couple, simple tariff, 2 kWp PV facing south-east",
        "simple",
        "5.75 kVA",
        3000.0,
        "2910-513",
        "PT0002000022360679FF",
        pv_kwp=2.0,
        pv_azimuth_deg=160.0,
    ),
    # Neighbours of demohome01 in one peer group (PT, simple, 1.15-3.45 kVA, no PV): with it, the
    # ten comparable households /peer-comparison needs.
    *(
        DemoHousehold(
            f"demohome{number:02d}",
            f"{what} in Lisbon, simple tariff, no PV",
            "simple",
            power,
            annual_kwh,
            postal_code,
            f"PT00020000{number:08d}NB",
        )
        for number, what, power, annual_kwh, postal_code in (
            (7, "studio", "2.3 kVA", 1500.0, "1100-148"),
            (8, "flat", "3.45 kVA", 2200.0, "1150-021"),
            (9, "flat", "3.45 kVA", 2900.0, "1200-195"),
            (10, "small flat", "2.3 kVA", 1900.0, "1250-096"),
            (11, "flat", "3.45 kVA", 3400.0, "1300-341"),
            (12, "shared flat", "3.45 kVA", 3700.0, "1350-115"),
            (13, "flat", "3.45 kVA", 2450.0, "1400-209"),
            (14, "studio", "2.3 kVA", 1200.0, "1500-531"),
            (15, "flat", "3.45 kVA", 2750.0, "1600-036"),
        )
    ),
)


def demand_w(household: DemoHousehold, h0_per_mwh_w: np.ndarray, quarter_keys: np.ndarray) -> np.ndarray:
    """Return the household's mean demand per quarter: H0 scaled, varied and with appliance peaks."""
    stream = household.user_id
    scale = household.annual_kwh / 1000.0
    chance = PEAK_CHANCE_AT_150_W * h0_per_mwh_w / 150.0
    peaks = np.where(
        noise.uniform(stream + "/peak", quarter_keys) < chance,
        PEAK_MIN_W + PEAK_SPREAD_W * noise.uniform(stream + "/peak-size", quarter_keys),
        0.0,
    )
    # The peaks' expected energy is taken from the profile, so the annual total stays as given.
    peak_share = PEAK_CHANCE_AT_150_W / 150.0 * (PEAK_MIN_W + PEAK_SPREAD_W / 2.0) / scale
    varied = (
        h0_per_mwh_w
        * scale
        * noise.lognormal_factor(stream + "/day", quarter_keys // 96, 0.15)
        * noise.lognormal_factor(stream + "/hour", quarter_keys // 4, 0.2)
        * noise.lognormal_factor(stream + "/quarter", quarter_keys, 0.15)
    )
    return varied * (1.0 - peak_share) + peaks


def _initial_registers_wh(household: DemoHousehold) -> tuple[float, float, float]:
    """Return the registers at the start of the span: the meter and PV system have some history."""
    draws = noise.uniform(household.user_id + "/registers", np.arange(3))
    imported = 2_000_000.0 + 18_000_000.0 * draws[0]
    exported = (300_000.0 + 2_000_000.0 * draws[1]) if household.has_pv else 0.0
    generated = (exported * 1.8 + 500_000.0 * draws[2]) if household.has_pv else 0.0
    return imported, exported, generated


def readings_frame(
    household: DemoHousehold,
    sky: Weather,
    h0_per_mwh_w: np.ndarray,
    reading_count: int,
    gap_day_start_s: int,
    reset_day_start_s: int,
) -> pd.DataFrame:
    """Return the household's readings at the first `reading_count` quarter starts of `sky`.

    Columns: ts (epoch s), the three registers (Wh), power imported/exported (W, the mean of the
    quarter just ended) and voltage (V). Homes without PV report no generation register.
    """
    keys = sky.starts_s // QUARTER_S
    demand = demand_w(household, h0_per_mwh_w, keys)
    generation_w = np.zeros_like(demand)
    if household.has_pv:
        generation_w = pv_power_w(sky, household.pv_kwp, azimuth_deg=household.pv_azimuth_deg)
    self_consumed = np.minimum(demand, generation_w)
    import_w = demand - self_consumed
    export_w = generation_w - self_consumed
    registers = [
        start_wh + np.concatenate(([0.0], np.cumsum(power_w * QUARTER_H)))[:reading_count]
        for start_wh, power_w in zip(
            _initial_registers_wh(household), (import_w, export_w, generation_w), strict=True
        )
    ]
    ts = sky.starts_s[:reading_count]
    if household.quirk == "meter-replacement":
        registers = _replace_meter(registers, ts, reset_day_start_s)
    previous = np.concatenate(([0], np.arange(reading_count - 1)))
    frame = pd.DataFrame(
        {
            "ts": ts,
            "energy_imported_wh": np.round(registers[0], 1),
            "energy_exported_wh": np.round(registers[1], 1),
            "energy_generated_wh": np.round(registers[2], 1) if household.has_pv else np.nan,
            "power_imported_w": np.round(import_w[previous], 1),
            "power_exported_w": np.round(export_w[previous], 1),
            "voltage_v": _voltage_v(household, keys[:reading_count], import_w[previous], export_w[previous]),
        }
    )
    if household.quirk == "gap":
        offline = (ts >= gap_day_start_s + GAP_LOCAL_HOURS[0] * 3600) & (
            ts < gap_day_start_s + GAP_LOCAL_HOURS[1] * 3600
        )
        frame = frame[~offline]
    return frame.reset_index(drop=True)


def _replace_meter(registers: list[np.ndarray], ts: np.ndarray, reset_day_start_s: int) -> list[np.ndarray]:
    """From the installation on, count from zero: the new meter's registers start near nothing."""
    installed = np.searchsorted(ts, reset_day_start_s + RESET_LOCAL_HOUR * 3600)
    if installed == 0 or installed >= ts.size:
        return registers
    replaced = []
    for register in registers:
        since_install = 0.4 * (register[installed] - register[installed - 1])
        new = register.copy()
        new[installed:] = register[installed:] - register[installed] + since_install
        replaced.append(new)
    return replaced


def _voltage_v(
    household: DemoHousehold, keys: np.ndarray, import_w: np.ndarray, export_w: np.ndarray
) -> np.ndarray:
    """Return a supply voltage near 230 V: drops under load, rises while exporting."""
    feeder = 1.5 * noise.normal("feeder/" + household.postal_code, keys // 4)
    jitter = 0.6 * noise.normal(household.user_id + "/voltage", keys)
    voltage = 231.0 + feeder + jitter - 0.0012 * import_w + 0.0025 * export_w
    return np.round(np.clip(voltage, 212.0, 251.0), 1)
