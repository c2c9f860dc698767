"""The alert rules: each one looks at completed local days of households and says which deserve an
alert, with its payload. The alert job (`alerts.py`) decides which days to look at and publishes.

A rule is a cause, the event type it is published as, and a function of (session, the
household-days to check, the settings, the tariff book). Each call gets at most one day per
household, so that a rule can load what it needs with one window per household. Adding a cause is
adding a rule to RULES and its name to `aggregation.anomalies.ALERT_CAUSES`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from sqlalchemy.orm import Session

from statistics_manager_service.aggregation.anomalies import (
    NOMINAL_VOLTAGE_V,
    VOLTAGE_INTERVAL_S,
    Excess,
    baseline_of,
    excess_over_baseline,
    is_well_covered,
    voltage_excursion,
)
from statistics_manager_service.aggregation.baseload import (
    BASELOAD_METHOD,
    NIGHT_END_S,
    BaseloadEstimate,
    estimate_baseload,
)
from statistics_manager_service.aggregation.billing import CLEARED_BUDGET_EUR
from statistics_manager_service.aggregation.forecasts import history_days
from statistics_manager_service.aggregation.granularity import STORED_LEVEL
from statistics_manager_service.aggregation.localtime import local_day_bounds
from statistics_manager_service.aggregation.tariff_book import TariffBook
from statistics_manager_service.config import Settings
from statistics_manager_service.query.bill import load_bill_inputs, price_bill
from statistics_manager_service.query.bill_terms import BillRequest, bill_terms
from statistics_manager_service.recompute.inputs import buckets_inside, readings_with_context
from statistics_manager_service.recompute.views import load_household_contracts
from statistics_manager_service.storage.alerts import AlertKey, sent_alerts
from statistics_manager_service.storage.contracts import load_contract_versions
from statistics_manager_service.storage.periods import load_periods
from statistics_manager_service.storage.readings import load_reading_windows
from statistics_manager_service.storage.tables import Household

CONSUMPTION_ANOMALY = "ConsumptionAnomalyDetected"
VOLTAGE_OUT_OF_RANGE = "VoltageOutOfRange"
BILL_PROJECTION_EXCEEDED = "BillProjectionExceeded"


@dataclasses.dataclass(frozen=True)
class HouseholdDay:
    """A completed local day of a household, to check."""

    household: Household
    timezone: str
    day: dt.date

    @property
    def user_id(self) -> str:
        """The household's user id."""
        return self.household.user_id

    def bounds(self, day: dt.date | None = None, end_wall_s: int | None = None) -> tuple[int, int]:
        """Start and end (epoch s) of `day` (this day by default) in the household's time zone;
        with `end_wall_s`, the end is that many wall-clock seconds after its midnight instead."""
        day = day or self.day
        if end_wall_s is None:
            return local_day_bounds(day, self.timezone)
        zone = ZoneInfo(self.timezone)
        start = dt.datetime.combine(day, dt.time(), zone)
        end = (start.replace(tzinfo=None) + dt.timedelta(seconds=end_wall_s)).replace(tzinfo=zone)
        return int(start.timestamp()), int(end.timestamp())

    def iso(self, epoch_s: int) -> str:
        """An instant in the household's time zone, ISO 8601 with offset."""
        return dt.datetime.fromtimestamp(epoch_s, ZoneInfo(self.timezone)).isoformat()

    def header(self) -> dict[str, Any]:
        """The fields every alert payload starts with: who, which day and its bounds."""
        start_s, end_s = self.bounds()
        return {
            "user_id": self.user_id,
            "date": self.day.isoformat(),
            "timezone": self.timezone,
            "start": self.iso(start_s),
            "end": self.iso(end_s),
        }

    def baseline_days(self, weeks: int) -> list[dt.date]:
        """The same weekday in each of the `weeks` weeks before, oldest first."""
        return history_days(self.day, weeks)


@dataclasses.dataclass(frozen=True)
class Finding:
    """An alert a rule found: the household, the cause, the local day and the event's payload."""

    user_id: str
    cause: str
    day: dt.date
    payload: dict[str, Any]


Detect = Callable[[Session, Sequence[HouseholdDay], Settings, TariffBook], list[Finding]]


@dataclasses.dataclass(frozen=True)
class AlertRule:
    """A cause of alerts, the event type it is published as, and how it is detected."""

    cause: str
    event_type: str
    detect: Detect


def _excess_payload(
    day: HouseholdDay, cause: str, excess: Excess, factor: float, unit: str, detail: str, weeks: int
) -> dict[str, Any]:
    return {
        **day.header(),
        "cause": cause,
        "detail": detail,
        "observed": round(excess.observed, 6),
        "baseline": round(excess.baseline, 6),
        "ratio": round(excess.ratio, 6),
        "factor": factor,
        "unit": unit,
        "baseline_days": [baseline.isoformat() for baseline in day.baseline_days(weeks)],
    }


# ---- consumption of the day -------------------------------------------------------------------


def detect_daily_consumption(
    session: Session, days: Sequence[HouseholdDay], settings: Settings, book: TariffBook
) -> list[Finding]:
    """A day whose consumption is above `alert_consumption_factor` times the median of the same
    weekday over the `alert_baseline_weeks` weeks before, every one of those days well covered."""
    weeks, factor = settings.alert_baseline_weeks, settings.alert_consumption_factor
    if not days:
        return []
    wanted = {
        (day.user_id, on): day.bounds(on) for day in days for on in [*day.baseline_days(weeks), day.day]
    }
    start_s = min(start for start, _ in wanted.values())
    end_s = max(end for _, end in wanted.values())
    stored = load_periods(
        session,
        [day.user_id for day in days],
        STORED_LEVEL.name,
        start_s,
        end_s,
        columns=["consumption_kwh", "covered_seconds"],
    )
    by_start = {
        (user_id, int(period_start)): (float(consumption), float(covered))
        for user_id, period_start, consumption, covered in stored.itertuples(index=False)
    }

    def value_and_coverage(user_id: str, on: dt.date) -> tuple[float | None, float | None]:
        start, end = wanted[(user_id, on)]
        found = by_start.get((user_id, start))
        return (None, None) if found is None else (found[0], found[1] / (end - start))

    findings = []
    for day in days:
        observed, coverage = value_and_coverage(day.user_id, day.day)
        baseline_values = [value_and_coverage(day.user_id, on) for on in day.baseline_days(weeks)]
        baseline = baseline_of([v for v, _ in baseline_values], [c for _, c in baseline_values], weeks)
        if not is_well_covered(observed, coverage):
            continue  # the day itself is not measured well enough to compare
        excess = excess_over_baseline(observed, baseline, factor)
        if excess is None:
            continue
        detail = (
            f"the day's consumption is {excess.ratio:.2f} times the median of the same weekday"
            f" over the {weeks} weeks before (alert above {factor:g} times)"
        )
        payload = _excess_payload(day, "daily_consumption", excess, factor, "kWh", detail, weeks)
        findings.append(Finding(day.user_id, "daily_consumption", day.day, payload))
    return findings


# ---- baseload jump ----------------------------------------------------------------------------


def _night_buckets(session: Session, nights: Sequence[tuple[HouseholdDay, dt.date]]) -> pd.DataFrame:
    """The 15-minute buckets of each (household, date)'s night, 00:00 to 05:00 local (one night
    per household)."""
    households = {day.user_id: day.household for day, _ in nights if day.household.statistics_source}
    rows = [(day.user_id, *day.bounds(on, NIGHT_END_S)) for day, on in nights if day.user_id in households]
    if not rows:
        return pd.DataFrame()
    windows = pd.DataFrame(rows, columns=["user_id", "start_s", "end_s"])
    readings = readings_with_context(session, households, windows)
    if readings.empty:
        return pd.DataFrame()
    return buckets_inside(readings, windows)


def detect_baseload(
    session: Session, days: Sequence[HouseholdDay], settings: Settings, book: TariffBook
) -> list[Finding]:
    """A night whose baseload (`aggregation.baseload`: its lowest well-covered quarter hour of
    consumption power between 00:00 and 05:00) is above `alert_baseload_factor` times the baseload
    of the same weekday's nights over the `alert_baseline_weeks` weeks before, all of them measured."""
    weeks, factor = settings.alert_baseline_weeks, settings.alert_baseload_factor
    if not days:
        return []
    observed_buckets = _night_buckets(session, [(day, day.day) for day in days])
    baseline_buckets = [
        _night_buckets(session, [(day, day.baseline_days(weeks)[k]) for day in days]) for k in range(weeks)
    ]
    baseline_frame = pd.concat([frame for frame in baseline_buckets if not frame.empty] or [pd.DataFrame()])
    findings = []
    for day in days:
        observed = _baseload(observed_buckets, day)
        baseline = _baseload(baseline_frame, day)
        if observed.nights != 1 or baseline.nights != weeks:
            continue
        excess = excess_over_baseline(observed.baseload_w, baseline.baseload_w, factor)
        if excess is None:
            continue
        detail = (
            f"the night's baseload is {excess.ratio:.2f} times that of the same weekday's nights"
            f" over the {weeks} weeks before (alert above {factor:g} times); baseload: {BASELOAD_METHOD}"
        )
        payload = _excess_payload(day, "baseload", excess, factor, "W", detail, weeks)
        findings.append(Finding(day.user_id, "baseload", day.day, payload))
    return findings


def _baseload(buckets: pd.DataFrame, day: HouseholdDay) -> BaseloadEstimate:
    """The baseload estimate of one household's buckets."""
    mine = buckets[buckets["user_id"] == day.user_id] if not buckets.empty else buckets
    if mine.empty:
        return estimate_baseload(np.empty(0, np.int64), np.empty(0), np.empty(0), day.timezone)
    return estimate_baseload(
        mine["bucket_start"].to_numpy(dtype=np.int64),
        mine["consumption_kwh"].to_numpy(dtype=np.float64, na_value=np.nan),
        mine["covered_seconds"].to_numpy(dtype=np.float64),
        day.timezone,
    )


# ---- voltage ----------------------------------------------------------------------------------


def detect_voltage(
    session: Session, days: Sequence[HouseholdDay], settings: Settings, book: TariffBook
) -> list[Finding]:
    """A day with a 10-minute mean voltage outside [alert_voltage_min_v, alert_voltage_max_v]."""
    low_v, high_v = settings.alert_voltage_min_v, settings.alert_voltage_max_v
    sourced = [day for day in days if day.household.statistics_source]
    if not sourced:
        return []
    windows = pd.DataFrame(
        [(day.user_id, day.household.statistics_source, *day.bounds()) for day in sourced],
        columns=["user_id", "source", "start_s", "end_s"],
    )
    by_user = dict(list(load_reading_windows(session, windows).groupby("user_id")))
    findings = []
    for day in sourced:
        mine = by_user.get(day.user_id, pd.DataFrame({"ts": [], "voltage_v": []}))
        excursion = voltage_excursion(
            mine["ts"].to_numpy(dtype=np.int64),
            mine["voltage_v"].to_numpy(dtype=np.float64),
            day.timezone,
            low_v,
            high_v,
        )
        if excursion is None:
            continue
        payload = {
            **day.header(),
            "cause": "voltage",
            "detail": (
                f"{excursion.intervals_outside} of the day's {excursion.intervals_measured} 10-minute"
                f" mean voltages are outside {low_v:g} V to {high_v:g} V"
                f" (EN 50160: {NOMINAL_VOLTAGE_V:g} V +/- 10%)"
            ),
            "low_limit_v": low_v,
            "high_limit_v": high_v,
            "unit": "V",
            "interval_minutes": VOLTAGE_INTERVAL_S // 60,
            "intervals_measured": excursion.intervals_measured,
            "intervals_outside": excursion.intervals_outside,
            "intervals_below": excursion.intervals_below,
            "intervals_above": excursion.intervals_above,
            "worst_mean_v": round(excursion.worst_mean_v, 3),
            "worst_interval_start": day.iso(excursion.worst_start_s),
            "worst_interval_end": day.iso(excursion.worst_start_s + VOLTAGE_INTERVAL_S),
        }
        findings.append(Finding(day.user_id, "voltage", day.day, payload))
    return findings


# ---- bill projection --------------------------------------------------------------------------


def detect_bill_projection(
    session: Session, days: Sequence[HouseholdDay], settings: Settings, book: TariffBook
) -> list[Finding]:
    """A household with a bill budget whose open billing period, as projected at the end of the
    day (`/bill`'s projection, expected total after taxes), costs more than the budget. Found on
    the first such day of a period, it is keyed by the period's first day: one alert per period."""
    # Most households never state a budget: one read of all the versions leaves them out.
    stated = load_contract_versions(session, [day.user_id for day in days])
    budgeted = set(stated.loc[stated["bill_budget_eur"] > CLEARED_BUDGET_EUR, "user_id"])
    with_budget = [day for day in days if day.user_id in budgeted]
    sent = set(sent_alerts(session, [day.user_id for day in with_budget]))
    findings = []
    for day in with_budget:
        _, end_s = day.bounds()
        # The day's last second: the period holding the day (on a period's last day, that period
        # with its remaining time nil, not the next one).
        now = dt.datetime.fromtimestamp(end_s - 1, dt.UTC)
        request = BillRequest(day.user_id, None, None, None, None)
        known = load_household_contracts(session, settings.default_timezone, day.user_id)
        terms = bill_terms(known, request, now)
        if terms.budget_eur is None or AlertKey(day.user_id, "bill_projection", terms.first) in sent:
            continue  # no budget in force, or this period's alert is out already: no bill to price
        span, inputs = load_bill_inputs(session, request, settings.default_timezone, now, known)
        bill = price_bill(span, inputs, request, book)
        projection = bill["projection"]
        if projection is None or not projection["exceeds_budget"]:
            continue
        expected = projection["after_taxes"]["expected"]
        payload = {
            **day.header(),
            "cause": "bill_projection",
            "detail": (
                f"the bill of the period from {bill['start'][:10]} is projected at {expected:.2f}"
                f" {bill['currency']} after taxes, above the household's budget of"
                f" {terms.budget_eur:.2f} {bill['currency']}"
            ),
            "period": bill["period"],
            "period_start": bill["start"],
            "period_end": bill["end"],
            "budget": terms.budget_eur,
            "currency": bill["currency"],
            "so_far_after_taxes": bill["totals"]["after_taxes"],
            "projected_after_taxes": projection["after_taxes"],
            "method": projection["method"],
        }
        findings.append(Finding(day.user_id, "bill_projection", terms.first, payload))
    return findings


RULES: tuple[AlertRule, ...] = (
    AlertRule("daily_consumption", CONSUMPTION_ANOMALY, detect_daily_consumption),
    AlertRule("baseload", CONSUMPTION_ANOMALY, detect_baseload),
    AlertRule("voltage", VOLTAGE_OUT_OF_RANGE, detect_voltage),
    AlertRule("bill_projection", BILL_PROJECTION_EXCEEDED, detect_bill_projection),
)
RULE_OF_CAUSE = {rule.cause: rule for rule in RULES}
ALERT_EVENT_TYPES = tuple(dict.fromkeys(rule.event_type for rule in RULES))
