"""The BDEW H0 standard load profile of a household, dynamised, on any local 15-minute grid.

H0 is the German utilities' (BDEW, formerly VDEW) representative household profile: for each of
three seasons and three day types it gives the mean power of every quarter hour of the day, in W,
for a household that uses 1,000 kWh a year. The day of the year then scales it by BDEW's
dynamisation polynomial, which folds the gradual seasonal swing (more light and heat in winter)
into the three flat seasons. Public holidays take the Sunday profile; 24 and 31 December take the
Saturday profile unless they fall on a Sunday. The holiday calendar here is Portugal's.

The quarter-hour values are BDEW's published table, in hundredths of a watt: one string of 96
values per season and day type, the first for 00:00–00:15 local time.
"""

from __future__ import annotations

import datetime as dt
import functools

import numpy as np
import pandas as pd

SEASONS = ("winter", "transition", "summer")
DAY_TYPES = ("workday", "saturday", "sunday")
QUARTERS_PER_DAY = 96
REFERENCE_ANNUAL_KWH = 1000.0
# Portugal's fixed national holidays (month, day); Good Friday and Corpus Christi move with Easter.
FIXED_HOLIDAYS = ((1, 1), (4, 25), (5, 1), (6, 10), (8, 15), (10, 5), (11, 1), (12, 1), (12, 8), (12, 25))

_TABLE_CENTIWATTS: dict[tuple[str, str], str] = {
    ("winter", "workday"): (
        "6760 6084 5488 4992 4624 4364 4192 4080 4008 3964 3936 3912 3884 3856 3836 3828 3844 3880 3932 "
        "3996 4088 4308 4764 5576 6800 8280 9804 11152 12164 12852 13272 13484 13544 13476 13312 13068 "
        "12772 12456 12156 11904 11724 11620 11572 11568 11604 11700 11872 12152 12540 12956 13304 13484 "
        "13424 13172 12804 12400 12024 11684 11364 11068 10792 10544 10356 10236 10216 10316 10564 10988 "
        "11600 12372 13264 14232 15236 16220 17124 17896 18476 18820 18892 18644 18068 17272 16392 15564 "
        "14892 14340 13840 13316 12720 12048 11328 10572 9796 9020 8248 7492"
    ),
    ("winter", "saturday"): (
        "7084 6816 6592 6324 5948 5496 5044 4660 4396 4228 4136 4080 4032 3988 3948 3912 3876 3848 3832 "
        "3828 3848 3908 4032 4244 4564 4992 5524 6160 6892 7708 8608 9572 10584 11580 12488 13232 13764 "
        "14112 14332 14484 14604 14720 14844 14980 15148 15352 15600 15896 16240 16576 16844 16980 16940 "
        "16756 16476 16148 15812 15488 15180 14900 14652 14444 14276 14148 14084 14168 14488 15148 16192 "
        "17460 18736 19808 20516 20912 21112 21224 21320 21300 21036 20392 19292 17900 16444 15148 14188 "
        "13532 13100 12816 12608 12408 12164 11820 11336 10740 10084 9404"
    ),
    ("winter", "sunday"): (
        "8744 8112 7500 6908 6344 5820 5364 4992 4728 4548 4424 4328 4236 4148 4068 3996 3932 3884 3848 "
        "3828 3828 3840 3868 3912 3968 4040 4132 4244 4400 4660 5108 5828 6860 8132 9516 10904 12192 "
        "13372 14440 15396 16256 17048 17804 18560 19332 20060 20664 21056 21180 21020 20588 19892 18956 "
        "17872 16732 15648 14696 13888 13212 12652 12196 11816 11476 11152 10832 10588 10524 10736 11288 "
        "12088 13004 13900 14680 15352 15968 16564 17156 17644 17904 17812 17288 16472 15556 14732 14140 "
        "13720 13372 12984 12480 11860 11160 10404 9624 8840 8068 7324"
    ),
    ("transition", "workday"): (
        "7776 6956 6240 5660 5248 4972 4788 4660 4552 4456 4380 4328 4304 4300 4312 4328 4344 4372 4416 "
        "4496 4628 4892 5376 6160 7288 8632 10008 11236 12180 12848 13292 13568 13716 13772 13768 13732 "
        "13692 13640 13572 13484 13368 13244 13136 13068 13064 13152 13364 13732 14260 14824 15280 15480 "
        "15324 14892 14316 13732 13240 12836 12484 12152 11816 11484 11172 10904 10692 10568 10544 10652 "
        "10908 11304 11836 12484 13240 14060 14908 15732 16488 17108 17516 17644 17456 17048 16568 16148 "
        "15888 15720 15540 15232 14720 14024 13208 12320 11404 10484 9564 8656"
    ),
    ("transition", "saturday"): (
        "8020 7508 7072 6660 6228 5800 5404 5076 4840 4676 4568 4496 4436 4388 4352 4328 4312 4308 4312 "
        "4328 4356 4420 4540 4744 5052 5488 6072 6824 7748 8788 9864 10904 11844 12668 13384 13984 14476 "
        "14884 15236 15564 15892 16204 16488 16728 16916 17076 17252 17480 17772 18076 18312 18396 18272 "
        "17980 17584 17144 16716 16308 15924 15564 15232 14944 14716 14564 14504 14540 14668 14900 15224 "
        "15644 16148 16728 17376 18040 18672 19228 19652 19900 19940 19724 19236 18524 17664 16728 15796 "
        "14952 14288 13900 13828 13916 13952 13732 13108 12192 11148 10156"
    ),
    ("transition", "sunday"): (
        "9340 8684 8116 7576 7012 6448 5928 5492 5172 4944 4784 4660 4552 4456 4380 4328 4308 4308 4316 "
        "4328 4328 4324 4324 4328 4352 4432 4604 4912 5388 6044 6884 7908 9108 10428 11800 13152 14416 "
        "15556 16532 17312 17880 18312 18700 19144 19700 20304 20848 21224 21348 21180 20700 19892 18764 "
        "17464 16168 15064 14280 13756 13388 13068 12708 12312 11900 11484 11100 10776 10556 10488 10596 "
        "10880 11320 11904 12600 13368 14152 14900 15552 16060 16360 16396 16144 15708 15220 14816 14588 "
        "14472 14360 14148 13752 13184 12472 11652 10760 9836 8924 8072"
    ),
    ("summer", "workday"): (
        "8636 7696 6884 6244 5804 5528 5360 5244 5136 5024 4924 4828 4744 4684 4656 4660 4712 4800 4924 "
        "5076 5264 5564 6052 6824 7920 9196 10476 11568 12344 12856 13200 13484 13780 14072 14320 14484 "
        "14532 14488 14376 14232 14080 13948 13852 13816 13864 14008 14264 14648 15152 15672 16076 16232 "
        "16048 15608 15020 14400 13844 13360 12936 12568 12244 11964 11740 11568 11464 11424 11460 11568 "
        "11760 12032 12388 12816 13324 13892 14504 15148 15796 16380 16828 17064 17040 16832 16528 16232 "
        "16012 15844 15684 15480 15192 14788 14256 13568 12720 11748 10708 9656"
    ),
    ("summer", "saturday"): (
        "8984 8488 8072 7656 7172 6656 6160 5744 5448 5256 5144 5076 5032 5004 4988 4992 5012 5040 5064 "
        "5076 5076 5088 5160 5328 5620 6040 6584 7240 8004 8848 9740 10652 11560 12440 13280 14068 14780 "
        "15396 15892 16232 16408 16472 16500 16564 16712 16944 17236 17560 17896 18184 18372 18396 18216 "
        "17868 17412 16896 16376 15884 15464 15148 14956 14856 14800 14732 14624 14504 14416 14400 14492 "
        "14696 15000 15396 15876 16400 16920 17396 17780 18052 18180 18144 17928 17564 17096 16564 16012 "
        "15504 15112 14900 14892 14960 14936 14648 13980 13028 11952 10904"
    ),
    ("summer", "sunday"): (
        "10008 9252 8592 7992 7412 6868 6388 5992 5700 5496 5352 5244 5152 5076 5024 4992 4992 5000 5008 "
        "4992 4948 4892 4840 4828 4868 4984 5188 5492 5920 6488 7224 8156 9288 10564 11904 13232 14484 "
        "15616 16600 17396 17996 18460 18872 19308 19828 20376 20868 21224 21372 21276 20904 20224 19244 "
        "18088 16920 15896 15140 14596 14160 13732 13240 12700 12156 11652 11224 10888 10668 10572 10612 "
        "10776 11044 11404 11836 12340 12916 13568 14280 14976 15572 15980 16136 16084 15896 15648 15396 "
        "15156 14932 14732 14544 14300 13920 13316 12444 11380 10248 9156"
    ),
}


@functools.cache
def _table_w() -> np.ndarray:
    """Return the table in W per 1,000 kWh/a, shaped (season, day type, quarter of the day)."""
    table = np.empty((len(SEASONS), len(DAY_TYPES), QUARTERS_PER_DAY))
    for (season, day_type), text in _TABLE_CENTIWATTS.items():
        values = np.array(text.split(), dtype=np.float64) / 100.0
        if values.size != QUARTERS_PER_DAY:
            raise ValueError(f"H0 {season}/{day_type} has {values.size} values, not {QUARTERS_PER_DAY}")
        table[SEASONS.index(season), DAY_TYPES.index(day_type)] = values
    return table


def dynamisation(day_of_year: np.ndarray) -> np.ndarray:
    """Return BDEW's factor for a day of the year (1–366): about 1.24 in January, 0.8 in summer."""
    t = np.asarray(day_of_year, dtype=np.float64)
    return -3.92e-10 * t**4 + 3.2e-7 * t**3 - 7.02e-5 * t**2 + 2.1e-3 * t + 1.24


def easter_sunday(year: int) -> dt.date:
    """Return Western Easter Sunday (the anonymous Gregorian computus)."""
    golden = year % 19
    century, year_of_century = divmod(year, 100)
    leap_centuries, century_rest = divmod(century, 4)
    moon_correction = (century + 8) // 25
    epact_shift = (century - moon_correction + 1) // 3
    full_moon = (19 * golden + century - leap_centuries - epact_shift + 15) % 30
    leap_years, year_rest = divmod(year_of_century, 4)
    weekday = (32 + 2 * century_rest + 2 * leap_years - full_moon - year_rest) % 7
    correction = (golden + 11 * full_moon + 22 * weekday) // 451
    month, day = divmod(full_moon + weekday - 7 * correction + 114, 31)
    return dt.date(year, month, day + 1)


@functools.cache
def holidays(year: int) -> frozenset[dt.date]:
    """Return Portugal's national public holidays of a year."""
    easter = easter_sunday(year)
    movable = (easter - dt.timedelta(days=2), easter, easter + dt.timedelta(days=60))
    return frozenset((*(dt.date(year, m, d) for m, d in FIXED_HOLIDAYS), *movable))


def season_index(months: np.ndarray, days: np.ndarray) -> np.ndarray:
    """Return 0 (winter, 1 Nov–20 Mar), 1 (transition) or 2 (summer, 15 May–14 Sep) per date."""
    month_day = np.asarray(months) * 100 + np.asarray(days)
    season = np.full(month_day.shape, SEASONS.index("transition"))
    season[(month_day >= 1101) | (month_day <= 320)] = SEASONS.index("winter")
    season[(month_day >= 515) & (month_day <= 914)] = SEASONS.index("summer")
    return season


def day_type_index(dates: pd.DatetimeIndex) -> np.ndarray:
    """Return 0 (workday), 1 (Saturday) or 2 (Sunday or public holiday) per local date."""
    weekday = np.asarray(dates.day_of_week)
    day_type = np.where(weekday == 6, 2, np.where(weekday == 5, 1, 0))
    years = np.asarray(dates.year)
    public_days = [day for year in np.unique(years) for day in holidays(int(year))]
    public = np.asarray(dates.normalize().tz_localize(None).isin(pd.to_datetime(public_days)))
    eves = ((dates.month == 12) & np.isin(dates.day, (24, 31))) & (weekday != 6)
    day_type[np.asarray(eves)] = 1
    day_type[public] = 2
    return day_type


def h0_power_w(local_starts: pd.DatetimeIndex, annual_kwh: float) -> np.ndarray:
    """Return the dynamised H0 mean power (W) of each local quarter hour starting at `local_starts`."""
    quarter = np.asarray(local_starts.hour * 4 + local_starts.minute // 15)
    season = season_index(np.asarray(local_starts.month), np.asarray(local_starts.day))
    day_type = day_type_index(local_starts.normalize())
    base_w = _table_w()[season, day_type, quarter]
    return base_w * dynamisation(np.asarray(local_starts.day_of_year)) * (annual_kwh / REFERENCE_ANNUAL_KWH)
