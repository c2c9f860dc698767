"""Sun and weather over Lisbon, and the AC output of a rooftop PV system, per quarter hour.

With pvlib installed (`pip install -r demo-requirements.txt`) the chain is the field's usual one:
NREL solar position, Ineichen clear sky with the Linke turbidity climatology, a stochastic daily
clear-sky index, Erbs decomposition, Hay–Davies transposition to a 30° south-facing plane, Faiman
cell temperature and PVWatts DC, inverter and system losses. Without pvlib the same steps use
textbook formulas (Spencer/NOAA sun position, Haurwitz clear sky, Erbs, isotropic sky), which is
good to a few percent of the pvlib chain's yield: the demo stays runnable on the service's own
requirements.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from typing import Any

import numpy as np
import pandas as pd

from statistics_manager_service.demo import noise

logger = logging.getLogger(__name__)

LATITUDE = 38.72
LONGITUDE = -9.14
ALTITUDE_M = 50.0
ALBEDO = 0.2
# Lisbon, per month: the share of the clear-sky irradiation that reaches the ground on average,
# and the mean air temperature (°C).
MONTHLY_CLEARNESS = (0.67, 0.71, 0.77, 0.79, 0.85, 0.91, 0.95, 0.94, 0.88, 0.79, 0.70, 0.66)
MONTHLY_AIR_C = (11.6, 12.6, 14.6, 15.9, 18.1, 21.3, 23.1, 23.6, 22.3, 19.3, 15.1, 12.6)
GAMMA_PDC = -0.0037  # power temperature coefficient of crystalline silicon, 1/°C
DC_AC_RATIO = 1.15
WEATHER_STREAM = "lisbon-weather"
BUILT_IN = "built-in"


@dataclasses.dataclass(frozen=True)
class Weather:
    """Irradiance and temperature at the midpoint of each quarter hour of a span."""

    starts_s: np.ndarray  # quarter starts, epoch seconds
    times: pd.DatetimeIndex  # quarter midpoints, UTC
    zenith_deg: np.ndarray
    azimuth_deg: np.ndarray
    clear_ghi: np.ndarray  # W/m², cloudless
    ghi: np.ndarray  # W/m², with the day's clouds
    dni: np.ndarray
    dhi: np.ndarray
    dni_extra: np.ndarray
    temp_air_c: np.ndarray
    model: str  # what computed it: "pvlib 0.16.1" or BUILT_IN


def _pvlib() -> Any | None:
    try:
        import pvlib  # type: ignore[import-untyped, unused-ignore]
    except ImportError:
        return None
    return pvlib


def available_model() -> str:
    """Name the PV model this installation can run: "pvlib <version>" or BUILT_IN."""
    pvlib = _pvlib()
    return BUILT_IN if pvlib is None else f"pvlib {pvlib.__version__}"


def describe(model: str) -> str:
    """Say what a PV model name stands for."""
    if model == BUILT_IN:
        return "built-in clear-sky approximation (Haurwitz, Erbs, isotropic sky)"
    return f"{model} (Ineichen clear sky, Erbs, Hay–Davies, PVWatts)"


def clear_sky_index(local_days: np.ndarray, months: np.ndarray, quarter_keys: np.ndarray) -> np.ndarray:
    """Return the share of clear-sky irradiance let through per quarter: the day's clouds, then gusts.

    Cloudiness is right-skewed (most days are clear or nearly so, a few are dark), with the mean of
    the month; partly cloudy days also flicker from hour to hour.
    """
    mean = np.asarray(MONTHLY_CLEARNESS)[months - 1]
    depth = -np.log(noise.uniform(WEATHER_STREAM + "/day", local_days))
    daily = np.clip(1.0 - (1.0 - mean) * depth, 0.08, 1.0)
    flicker = 1.2 * daily * (1.0 - daily)
    hourly = noise.normal(WEATHER_STREAM + "/hour", quarter_keys // 4)
    quarterly = noise.normal(WEATHER_STREAM + "/quarter", quarter_keys)
    return np.clip(daily * (1.0 + flicker * (0.8 * hourly + 0.5 * quarterly)), 0.05, 1.1)


def air_temperature_c(local: pd.DatetimeIndex, local_days: np.ndarray, clearness: np.ndarray) -> np.ndarray:
    """Return a plausible air temperature: monthly mean, a sunny-day swing peaking mid-afternoon."""
    hour = np.asarray(local.hour + local.minute / 60.0)
    swing = 3.0 + 4.0 * clearness
    daily = 1.5 * noise.normal(WEATHER_STREAM + "/temperature", local_days)
    monthly = np.asarray(MONTHLY_AIR_C)[np.asarray(local.month) - 1]
    return monthly + daily + swing * np.cos(2.0 * np.pi * (hour - 15.0) / 24.0)


def weather(quarter_starts_s: np.ndarray, timezone: str, model: str | None = None) -> Weather:
    """Compute the weather of every quarter hour starting at `quarter_starts_s` (epoch seconds).

    `model` is BUILT_IN or the installed pvlib (the default, when there is one).
    """
    quarter_starts_s = np.asarray(quarter_starts_s, dtype=np.int64)
    times = pd.DatetimeIndex(pd.to_datetime(quarter_starts_s + 450, unit="s", utc=True))
    local = times.tz_convert(timezone)
    local_days = np.asarray((local.normalize().tz_localize(None) - pd.Timestamp(0)).days)
    clearness = clear_sky_index(local_days, np.asarray(local.month), quarter_starts_s // 900)
    temp_air = air_temperature_c(local, local_days, clearness)
    pvlib = _pvlib()
    if pvlib is None or model == BUILT_IN:
        return _weather_builtin(quarter_starts_s, times, clearness, temp_air)
    with warnings.catch_warnings():
        # pvlib 0.16 still reads DatetimeIndex.dayofyear, which pandas 3.1 deprecates.
        warnings.filterwarnings("ignore", "DatetimeIndex.dayofyear", DeprecationWarning)
        position = pvlib.solarposition.get_solarposition(times, LATITUDE, LONGITUDE, ALTITUDE_M)
        site = pvlib.location.Location(LATITUDE, LONGITUDE, tz="UTC", altitude=ALTITUDE_M)
        clear = site.get_clearsky(times, model="ineichen", solar_position=position)
        ghi = clear["ghi"].to_numpy() * clearness
        split = pvlib.irradiance.erbs(ghi, position["zenith"].to_numpy(), times)
        dni_extra = pvlib.irradiance.get_extra_radiation(times)
    return Weather(
        starts_s=quarter_starts_s,
        times=times,
        zenith_deg=position["apparent_zenith"].to_numpy(),
        azimuth_deg=position["azimuth"].to_numpy(),
        clear_ghi=clear["ghi"].to_numpy(),
        ghi=ghi,
        dni=np.asarray(split["dni"], dtype=np.float64),
        dhi=np.asarray(split["dhi"], dtype=np.float64),
        dni_extra=np.asarray(dni_extra, dtype=np.float64),
        temp_air_c=temp_air,
        model=f"pvlib {pvlib.__version__}",
    )


def pv_power_w(sky: Weather, kwp: float, tilt_deg: float = 30.0, azimuth_deg: float = 180.0) -> np.ndarray:
    """Return the AC power (W) of a `kwp` system on a plane of `tilt_deg`, facing `azimuth_deg`."""
    pvlib = _pvlib()
    if pvlib is None or sky.model == BUILT_IN:
        return _pv_builtin(sky, kwp, tilt_deg, azimuth_deg)
    poa = pvlib.irradiance.get_total_irradiance(
        tilt_deg,
        azimuth_deg,
        sky.zenith_deg,
        sky.azimuth_deg,
        sky.dni,
        sky.ghi,
        sky.dhi,
        dni_extra=sky.dni_extra,
        albedo=ALBEDO,
        model="haydavies",
    )
    poa_global = np.nan_to_num(np.asarray(poa["poa_global"], dtype=np.float64))
    temp_cell = pvlib.temperature.faiman(poa_global, sky.temp_air_c, wind_speed=2.0)
    dc_w = pvlib.pvsystem.pvwatts_dc(poa_global, temp_cell, kwp * 1000.0, GAMMA_PDC)
    losses = pvlib.pvsystem.pvwatts_losses() / 100.0
    ac_w = pvlib.inverter.pvwatts(dc_w * (1.0 - losses), kwp * 1000.0 / DC_AC_RATIO)
    return np.clip(np.nan_to_num(np.asarray(ac_w, dtype=np.float64)), 0.0, None)


# ---- without pvlib ------------------------------------------------------------------------


def _sun_position(times: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return zenith and azimuth (degrees) and the extraterrestrial normal irradiance (W/m²)."""
    day_angle = 2.0 * np.pi * (np.asarray(times.day_of_year) - 1) / 365.0
    declination = (
        0.006918
        - 0.399912 * np.cos(day_angle)
        + 0.070257 * np.sin(day_angle)
        - 0.006758 * np.cos(2 * day_angle)
        + 0.000907 * np.sin(2 * day_angle)
        - 0.002697 * np.cos(3 * day_angle)
        + 0.00148 * np.sin(3 * day_angle)
    )
    equation_of_time_min = 229.18 * (
        0.000075
        + 0.001868 * np.cos(day_angle)
        - 0.032077 * np.sin(day_angle)
        - 0.014615 * np.cos(2 * day_angle)
        - 0.040849 * np.sin(2 * day_angle)
    )
    utc_minutes = np.asarray(times.hour * 60 + times.minute + times.second / 60.0)
    solar_minutes = utc_minutes + equation_of_time_min + 4.0 * LONGITUDE
    hour_angle = np.radians(solar_minutes / 4.0 - 180.0)
    latitude = np.radians(LATITUDE)
    cos_zenith = np.sin(latitude) * np.sin(declination) + np.cos(latitude) * np.cos(declination) * np.cos(
        hour_angle
    )
    zenith = np.arccos(np.clip(cos_zenith, -1.0, 1.0))
    azimuth = np.degrees(
        np.arctan2(
            np.sin(hour_angle),
            np.cos(hour_angle) * np.sin(latitude) - np.tan(declination) * np.cos(latitude),
        )
    )
    dni_extra = 1367.0 * (1.00011 + 0.034221 * np.cos(day_angle) + 0.00128 * np.sin(day_angle))
    return np.degrees(zenith), (azimuth + 180.0) % 360.0, dni_extra


def _erbs(ghi: np.ndarray, zenith_deg: np.ndarray, dni_extra: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split global irradiance into direct normal and diffuse horizontal (Erbs et al. 1982)."""
    cos_zenith = np.maximum(np.cos(np.radians(zenith_deg)), 0.065)
    clearness = np.clip(ghi / (dni_extra * cos_zenith), 0.0, 1.0)
    diffuse_fraction = np.where(
        clearness <= 0.22,
        1.0 - 0.09 * clearness,
        np.where(
            clearness <= 0.8,
            0.9511
            - 0.1604 * clearness
            + 4.388 * clearness**2
            - 16.638 * clearness**3
            + 12.336 * clearness**4,
            0.165,
        ),
    )
    dhi = diffuse_fraction * ghi
    dni = np.where(zenith_deg < 87.0, (ghi - dhi) / cos_zenith, 0.0)
    return np.maximum(dni, 0.0), dhi


def _weather_builtin(
    starts_s: np.ndarray, times: pd.DatetimeIndex, clearness: np.ndarray, temp_air: np.ndarray
) -> Weather:
    zenith, azimuth, dni_extra = _sun_position(times)
    cos_zenith = np.cos(np.radians(zenith))
    clear_ghi = np.where(
        cos_zenith > 0, 1098.0 * cos_zenith * np.exp(-0.057 / np.maximum(cos_zenith, 1e-3)), 0.0
    )
    ghi = clear_ghi * clearness
    dni, dhi = _erbs(ghi, zenith, dni_extra)
    return Weather(
        starts_s,
        times,
        zenith,
        azimuth,
        clear_ghi,
        ghi,
        dni,
        dhi,
        dni_extra,
        temp_air,
        BUILT_IN,
    )


def _pv_builtin(sky: Weather, kwp: float, tilt_deg: float, azimuth_deg: float) -> np.ndarray:
    tilt, zenith = np.radians(tilt_deg), np.radians(sky.zenith_deg)
    cos_incidence = np.cos(zenith) * np.cos(tilt) + np.sin(zenith) * np.sin(tilt) * np.cos(
        np.radians(sky.azimuth_deg - azimuth_deg)
    )
    poa = (
        sky.dni * np.maximum(cos_incidence, 0.0)
        + sky.dhi * (1.0 + np.cos(tilt)) / 2.0
        + sky.ghi * ALBEDO * (1.0 - np.cos(tilt)) / 2.0
    )
    temp_cell = sky.temp_air_c + poa / (25.0 + 6.84 * 2.0)
    dc_w = kwp * poa * (1.0 + GAMMA_PDC * (temp_cell - 25.0)) * 0.86
    return np.clip(dc_w * 0.96, 0.0, kwp * 1000.0 / DC_AC_RATIO)
