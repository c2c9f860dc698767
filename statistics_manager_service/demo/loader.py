"""Push the demo households through the consumer's own batch processor, idempotently.

Every event has a deterministic id (a UUIDv5 of what it is: household and day, zone and week),
and every value is a pure function of household and instant, so a second run sends nothing the
processor has not already recorded — and when every planned id is recorded, nothing is generated
at all. The first load records its plan (first day, length) in `service_state`; a later run keeps
that first day, so the registers continue where they were, and extends the span to today.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import numpy as np
import orjson
import pandas as pd

from statistics_manager_service.aggregation.localtime import utc_text
from statistics_manager_service.demo.grid import GridSignals, grid_signals
from statistics_manager_service.demo.h0 import h0_power_w
from statistics_manager_service.demo.households import (
    GAP_AT_SHARE,
    HOUSEHOLDS,
    RESET_AT_SHARE,
    DemoHousehold,
    readings_frame,
)
from statistics_manager_service.demo.noise import lognormal_factor
from statistics_manager_service.demo.solar import BUILT_IN, Weather, available_model, weather
from statistics_manager_service.event_consumer.message import Message
from statistics_manager_service.event_consumer.processor import DeadLetter
from statistics_manager_service.event_consumer.runner import build_processor, peer_group_job
from statistics_manager_service.event_producers.requests import baseline_payload
from statistics_manager_service.recompute.forecasts import baseline_forecast
from statistics_manager_service.storage import households as household_store
from statistics_manager_service.storage.engine import session_scope
from statistics_manager_service.storage.readings import READING_VALUE_COLUMNS
from statistics_manager_service.storage.tables import ServiceState
from statistics_manager_service.storage.upsert import upsert_rows
from statistics_manager_service.tariff_loading import updater_for

if TYPE_CHECKING:
    from statistics_manager_service.context import ServiceContext

logger = logging.getLogger(__name__)

NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:flexihome:statistics-manager:demo:v1")
DEFAULT_DAYS = 365
TIMEZONE = "Europe/Lisbon"
ZONE = "PT"
QUARTER_S = 900
EVENTS_PER_BATCH = 300
SIGNAL_DAYS = 7  # a week of hourly grid signals per event
FORECAST_ERROR = 0.08  # log-standard-deviation of the intensity forecast's error
IDS_PER_QUERY = 500
PLAN_KEY = "demo_plan"  # service_state row: the first day and length of the loaded demo
# After the service was down, the days missed are loaded up to this many before today; older
# ones stay a gap (the registers jump over it, and the engine spreads the jump across it).
CATCH_UP_DAYS = 31
# The built-in baseline forecast of each household, for these last days and tomorrow.
FORECAST_DAYS = 14


@dataclasses.dataclass(frozen=True)
class Span:
    """The demo's local days: readings every quarter hour from the first midnight up to `end_s`."""

    day_starts_s: tuple[int, ...]  # each day's local midnight, then the midnight after the last day
    end_s: int  # the last reading: the quarter hour that has started last
    gap_day: int  # index of the day the dongle goes offline
    reset_day: int  # index of the day the meter is replaced
    horizon_end_s: int  # the end of tomorrow: the carbon-intensity forecast reaches it

    @property
    def start_s(self) -> int:
        """The first reading."""
        return self.day_starts_s[0]

    @property
    def days(self) -> int:
        """The number of local days, today included."""
        return len(self.day_starts_s) - 1

    def label(self, day: int) -> str:
        """Return the local date of a day, ISO formatted."""
        return dt.datetime.fromtimestamp(self.day_starts_s[day], ZoneInfo(TIMEZONE)).date().isoformat()

    def upto(self, day: int, last_s: int) -> str:
        """Name how far a day's event reaches: 'full', or the last instant it holds for today."""
        return "full" if day < self.days - 1 else str(last_s)


@dataclasses.dataclass(frozen=True)
class DemoLoad:
    """What a load did."""

    span: Span
    events_planned: int
    events_sent: int
    dead_letters: int
    seconds: float
    model: str  # the PV model the demo was generated with
    stale: bool = False  # the demo was generated with a PV model this installation cannot run
    days_skipped: int = 0  # missed days older than the catch-up limit, left as a gap


@dataclasses.dataclass(frozen=True)
class _Planned:
    event_id: str
    topic: str
    event_type: str
    key: str
    payload: Callable[[], dict[str, Any]]
    group: str  # events of one group go in the same batches, groups in order
    day: int | None = None  # the index of the day a readings event covers


def plan_span(days: int, now: dt.datetime, first_day: dt.date | None = None) -> Span:
    """Return the local days from `first_day` (default: `days - 1` days before today) to now.

    The quirks sit at fixed shares of `days` from the first day, so a later run with the same
    plan reproduces them on the same dates.
    """
    if days < 1:
        raise ValueError(f"the demo needs at least one day, not {days}")
    zone = ZoneInfo(TIMEZONE)
    end_s = int(now.timestamp()) // QUARTER_S * QUARTER_S
    today = dt.datetime.fromtimestamp(end_s, zone).date()
    first_day = min(first_day or today, today - dt.timedelta(days=days - 1))
    count = (today - first_day).days + 1
    starts = tuple(
        int(dt.datetime.combine(first_day + dt.timedelta(days=i), dt.time(), zone).timestamp())
        for i in range(count + 1)
    )
    horizon_end_s = int(dt.datetime.combine(today + dt.timedelta(days=2), dt.time(), zone).timestamp())
    return Span(
        starts,
        end_s,
        gap_day=int(days * GAP_AT_SHARE),
        reset_day=int(days * RESET_AT_SHARE),
        horizon_end_s=horizon_end_s,
    )


def _event_id(*parts: str) -> str:
    return str(uuid.uuid5(NAMESPACE, ":".join(parts)))


def _iso(epoch_s: np.ndarray) -> list[str]:
    return list(pd.to_datetime(epoch_s, unit="s", utc=True).strftime("%Y-%m-%dT%H:%M:%SZ"))


class _Generated:
    """The span's weather, signals and readings, computed once and only when an event needs them."""

    def __init__(self, span: Span, model: str) -> None:
        self.span = span
        self.model = model
        self._readings: dict[str, tuple[np.ndarray, list[dict[str, Any]]]] = {}

    @functools.cached_property
    def sky(self) -> Weather:
        starts = np.arange(self.span.start_s, self.span.horizon_end_s, QUARTER_S, dtype=np.int64)
        return weather(starts, TIMEZONE, self.model)

    @functools.cached_property
    def signals(self) -> GridSignals:
        return grid_signals(self.sky, TIMEZONE)

    @functools.cached_property
    def h0_per_mwh_w(self) -> np.ndarray:
        local = pd.DatetimeIndex(pd.to_datetime(self.sky.starts_s, unit="s", utc=True)).tz_convert(TIMEZONE)
        return h0_power_w(local, 1000.0)

    def readings(self, user_id: str) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """Return a household's reading times and the readings as events carry them."""
        if user_id not in self._readings:
            self._readings[user_id] = self._household_readings(user_id)
        return self._readings[user_id]

    def _household_readings(self, user_id: str) -> tuple[np.ndarray, list[dict[str, Any]]]:
        household = next(h for h in HOUSEHOLDS if h.user_id == user_id)
        span = self.span
        frame = readings_frame(
            household,
            self.sky,
            self.h0_per_mwh_w,
            (span.end_s - span.start_s) // QUARTER_S + 1,
            span.day_starts_s[span.gap_day],
            span.day_starts_s[span.reset_day],
        )
        names = [
            "timestamp",
            *(c for c in READING_VALUE_COLUMNS if household.has_pv or c != "energy_generated_wh"),
        ]
        columns = [_iso(frame["ts"].to_numpy()), *(frame[name].to_numpy().tolist() for name in names[1:])]
        records = [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]
        return frame["ts"].to_numpy(), records

    def day_readings(self, user_id: str, day: int) -> list[dict[str, Any]]:
        """Return the household's readings of one local day."""
        ts, records = self.readings(user_id)
        low, high = np.searchsorted(ts, self.span.day_starts_s[day : day + 2])
        return records[low:high]

    def series(
        self, values: np.ndarray, first_day: int, end_day: int, until_s: int | None = None
    ) -> list[dict[str, Any]]:
        """Return a signal's hourly values over days [first_day, end_day), up to the hour of `until_s`."""
        hours = self.signals.hour_starts_s
        days = self.span.day_starts_s
        low, high = np.searchsorted(hours, (days[first_day], days[end_day]))
        if until_s is not None:
            high = min(high, int(np.searchsorted(hours, until_s, side="right")))
        return [
            {"timestamp": stamp, "value": float(value)}
            for stamp, value in zip(_iso(hours[low:high]), values[low:high], strict=True)
        ]


def _account_payload(household: DemoHousehold, meter_id: str) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "user_id": household.user_id,
        "tarif_type": household.tariff,
        "contracted_power": household.contracted_power,
        "country": ZONE,
        "postal_code": household.postal_code,
        "meter_id": meter_id,
        "timezone": TIMEZONE,
    }
    billing = {
        "billing_day": household.billing_day,
        "large_family": household.large_family,
        "bill_budget": household.bill_budget_eur,
    }
    return payload | {name: value for name, value in billing.items() if value is not None}


def _content_id(kind: str, payload: dict[str, Any]) -> str:
    return _event_id(kind, hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest())


def _replacement_meter_id(household: DemoHousehold) -> str:
    return household.meter_id[:-2] + "ZZ"


def plan_events(
    span: Span, generated: _Generated, forecast: Callable[[str, int], dict[str, Any]]
) -> list[_Planned]:
    """Return every demo event in sending order: accounts, grid signals, readings day by day, then
    each household's baseline forecast (`forecast(user_id, day)` makes its payload)."""
    planned: list[_Planned] = []
    # The demo contracts hold from the first demo day, not from when the demo happens to load.
    since = utc_text(span.start_s)
    for household in HOUSEHOLDS:
        payload = {**_account_payload(household, household.meter_id), "effective_from": since}
        planned.append(
            _Planned(
                _content_id("account", payload),
                "user-account",
                "UserRegistered",
                household.user_id,
                functools.partial(dict, payload),
                "accounts",
            )
        )
        if household.dongle_api_key:
            dongle = {"user_id": household.user_id, "api_key": household.dongle_api_key}
            planned.append(
                _Planned(
                    _content_id("dongle", dongle),
                    "user-account",
                    "UserAddedDongleApiKey",
                    household.user_id,
                    functools.partial(dict, dongle),
                    "accounts",
                )
            )
    planned.append(_intensity_forecast(generated))
    for first_day in range(0, span.days, SIGNAL_DAYS):
        end_day = min(first_day + SIGNAL_DAYS, span.days)
        planned.append(_signal(generated, "CarbonIntensity", "actual", first_day, end_day))
        for direction in ("import", "export"):
            planned.append(_signal(generated, "EnergyPrices", direction, first_day, end_day))
    for day in range(span.days):
        label = span.label(day)
        upto = span.upto(day, span.end_s)
        for household in HOUSEHOLDS:
            if household.quirk == "meter-replacement" and day == span.reset_day:
                payload = _account_payload(household, _replacement_meter_id(household))
                planned.append(
                    _Planned(
                        _content_id("meter-replaced", payload),
                        "user-account",
                        "UserUpdated",
                        household.user_id,
                        functools.partial(dict, payload),
                        "readings",
                        day,
                    )
                )
            planned.append(
                _Planned(
                    _event_id("readings", household.user_id, label, upto),
                    "meter-readings",
                    "MeterReadings",
                    household.dongle_api_key or household.user_id,
                    functools.partial(_readings_payload, generated, household, day),
                    "readings",
                    day,
                )
            )
    # Each forecast day has at least a week of readings before it; tomorrow is index `span.days`.
    for day in range(max(7, span.days - FORECAST_DAYS), span.days + 1):
        for household in HOUSEHOLDS:
            planned.append(
                _Planned(
                    _event_id("baseline-forecast", household.user_id, span.label(day)),
                    "statistics",
                    "ForecastComputedEvent",
                    household.user_id,
                    functools.partial(forecast, household.user_id, day),
                    "forecasts",
                )
            )
    return planned


def _forecast_payload(context: ServiceContext, span: Span, user_id: str, day: int) -> dict[str, Any]:
    """Compute a household's baseline forecast of a demo day from the statistics loaded before it."""
    with session_scope(context.session_factory) as session:
        forecast = baseline_forecast(
            session, updater_for(context), user_id, dt.date.fromisoformat(span.label(day))
        )
    return {"user_id": user_id, **baseline_payload(forecast)}


def _signal(generated: _Generated, event_type: str, kind: str, first_day: int, end_day: int) -> _Planned:
    """Plan one series event over days [first_day, end_day): measured intensity only up to now."""
    span = generated.span
    until_s = span.end_s if event_type == "CarbonIntensity" else None
    upto = span.upto(end_day - 1, span.end_s // 3600 * 3600) if until_s is not None else "full"
    name = _event_id(event_type, ZONE, kind, span.label(first_day), span.label(end_day - 1), upto)

    def payload() -> dict[str, Any]:
        signals = generated.signals
        if event_type == "CarbonIntensity":
            values = generated.series(signals.intensity_g_kwh, first_day, end_day, until_s)
            return {
                "zone": ZONE,
                "kind": kind,
                "unit": "gCO2eq/kWh",
                "resolution_minutes": 60,
                "values": values,
            }
        prices = signals.import_eur_kwh if kind == "import" else signals.export_eur_kwh
        values = generated.series(prices, first_day, end_day)
        return {
            "zone": ZONE,
            "direction": kind,
            "unit": "EUR/kWh",
            "resolution_minutes": 60,
            "values": values,
        }

    return _Planned(name, "grid-signals", event_type, ZONE, payload, "signals")


def _intensity_forecast(generated: _Generated) -> _Planned:
    """Plan the zone's carbon-intensity forecast of today and tomorrow, as published this morning."""
    span = generated.span

    def payload() -> dict[str, Any]:
        hours = generated.signals.hour_starts_s
        low = int(np.searchsorted(hours, span.day_starts_s[-2]))
        error = lognormal_factor("pt-intensity-forecast", hours[low:], FORECAST_ERROR)
        values = np.round(generated.signals.intensity_g_kwh[low:] * error, 1)
        series = [
            {"timestamp": stamp, "value": float(value)}
            for stamp, value in zip(_iso(hours[low:]), values, strict=True)
        ]
        return {
            "zone": ZONE,
            "kind": "forecast",
            "unit": "gCO2eq/kWh",
            "resolution_minutes": 60,
            "values": series,
        }

    name = _event_id("CarbonIntensity", ZONE, "forecast", span.label(span.days - 1))
    return _Planned(name, "grid-signals", "CarbonIntensity", ZONE, payload, "signals")


def _readings_payload(generated: _Generated, household: DemoHousehold, day: int) -> dict[str, Any]:
    owner = (
        {"device_id": household.dongle_api_key}
        if household.dongle_api_key
        else {"user_id": household.user_id}
    )
    return {**owner, "source": household.source, "readings": generated.day_readings(household.user_id, day)}


def _batches(planned: Sequence[_Planned]) -> Iterator[list[_Planned]]:
    for _, group in itertools.groupby(planned, key=lambda item: item.group):
        items = list(group)
        for start in range(0, len(items), EVENTS_PER_BATCH):
            yield items[start : start + EVENTS_PER_BATCH]


def _log_progress(span: Span, last: _Planned, sent: int, dead: int, total: int) -> None:
    """Log how far a load has come after a batch: the group and, for readings, the day it reached."""
    if last.day is not None:
        what = f"readings of {len(HOUSEHOLDS)} households through {span.label(last.day)}"
        what += f" (day {last.day + 1} of {span.days})"
    elif last.group == "accounts":
        what = f"accounts of {len(HOUSEHOLDS)} households"
    elif last.group == "forecasts":
        what = f"baseline forecasts of {len(HOUSEHOLDS)} households"
    else:
        what = f"grid signals of {span.days} days"
    logger.info("demo: %s: %d of %d events sent, %d refused", what, sent, total, dead)


def _remember_readings(
    context: ServiceContext,
    batch: Sequence[_Planned],
    messages: Sequence[Message],
    letters: Sequence[DeadLetter],
) -> None:
    """Record the ids of the readings events just stored, which the processor does not record (a
    redelivered reading changes nothing), so that a later run does not send them again."""
    refused = {letter.message.offset for letter in letters}
    stored = [
        (item.event_id, item.event_type)
        for item, message in zip(batch, messages, strict=True)
        if item.event_type == "MeterReadings" and message.offset not in refused
    ]
    with session_scope(context.session_factory) as session:
        household_store.record_processed(session, stored)


def _already_processed(context: ServiceContext, event_ids: Sequence[str]) -> set[str]:
    done: set[str] = set()
    with session_scope(context.session_factory) as session:
        for start in range(0, len(event_ids), IDS_PER_QUERY):
            done |= household_store.processed_event_ids(session, event_ids[start : start + IDS_PER_QUERY])
    return done


@dataclasses.dataclass(frozen=True)
class _Plan:
    first_day: dt.date
    days: int
    model: str


def _stored_plan(context: ServiceContext) -> _Plan | None:
    """Return the plan of the demo this database already holds, if any."""
    with session_scope(context.session_factory) as session:
        state = session.get(ServiceState, PLAN_KEY)
        value = None if state is None else orjson.loads(state.value)
    if value is None:
        return None
    return _Plan(dt.date.fromisoformat(value["first_day"]), int(value["days"]), str(value["model"]))


def _store_plan(context: ServiceContext, plan: _Plan) -> None:
    value = {"first_day": plan.first_day.isoformat(), "days": plan.days, "model": plan.model}
    row = {"key": PLAN_KEY, "value": orjson.dumps(value).decode(), "updated_at": int(time.time())}
    with session_scope(context.session_factory) as session:
        upsert_rows(session, ServiceState, [row], ["key"], merge="ignore")


def load_demo_data(
    context: ServiceContext,
    *,
    days: int = DEFAULT_DAYS,
    now: dt.datetime | None = None,
    stop: threading.Event | None = None,
    peer_groups: bool = True,
) -> DemoLoad:
    """Send the events of the demo households that the database has not processed yet.

    `days` applies to a fresh database. One that already holds the demo keeps the span it was
    planned with (the registers continue from its first day) and is extended to today: the days
    missed since its last run are loaded, up to `CATCH_UP_DAYS` before today. `stop` ends the
    load between two batches. With `peer_groups` the peer groups of the open and the previous
    month are then computed, as the workers' periodic job does, so `/peer-comparison` answers at once.
    """
    load = _send_missing(context, days, now, stop)
    if peer_groups and not load.stale and (stop is None or not stop.is_set()):
        peer_group_job(context).run_once(now=now)
    return load


def _send_missing(
    context: ServiceContext, days: int, now: dt.datetime | None, stop: threading.Event | None
) -> DemoLoad:
    started = time.monotonic()
    now = now or dt.datetime.now(dt.UTC)
    plan = _stored_plan(context)
    if plan is None:
        span = plan_span(days, now)
        first_day = dt.datetime.fromtimestamp(span.start_s, ZoneInfo(TIMEZONE)).date()
        plan = _Plan(first_day, days, available_model())
        _store_plan(context, plan)
    span = plan_span(plan.days, now, plan.first_day)
    if plan.model not in (BUILT_IN, available_model()):
        # Another PV model's numbers would not continue the stored registers: keep the demo as it is.
        return DemoLoad(span, 0, 0, 0, time.monotonic() - started, plan.model, stale=True)
    generated = _Generated(span, plan.model)
    planned = plan_events(span, generated, functools.partial(_forecast_payload, context, span))
    done = _already_processed(context, [item.event_id for item in planned])
    missing = [item for item in planned if item.event_id not in done]
    # Days beyond the first load's span that are older than the catch-up limit stay a gap.
    too_old = {
        item.event_id: item.day
        for item in missing
        if item.day is not None and plan.days <= item.day < span.days - 1 - CATCH_UP_DAYS
    }
    skipped = len(set(too_old.values()))
    if too_old:
        logger.info("demo: %d missed days are older than %d days and stay a gap", skipped, CATCH_UP_DAYS)
        missing = [item for item in missing if item.event_id not in too_old]
    if not missing:
        return DemoLoad(
            span, len(planned), 0, 0, time.monotonic() - started, plan.model, days_skipped=skipped
        )
    processor = build_processor(context)
    prefix = context.settings.kafka_topic_prefix
    offsets = itertools.count()
    sent = dead = 0
    for batch in _batches(missing):
        if stop is not None and stop.is_set():
            break
        messages = [
            Message(
                prefix + item.topic,
                0,
                next(offsets),
                item.key.encode(),
                orjson.dumps(
                    {
                        "eventId": item.event_id,
                        "eventType": item.event_type,
                        "timestamp": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
                        "payload": item.payload(),
                    },
                    option=orjson.OPT_SERIALIZE_NUMPY,
                ),
            )
            for item in batch
        ]
        letters = processor.process(messages)
        for letter in letters[:5]:
            logger.error("demo event %s was refused: %s", letter.message.offset, letter.reason)
        _remember_readings(context, batch, messages, letters)
        sent += len(messages)
        dead += len(letters)
        _log_progress(span, batch[-1], sent, dead, len(missing))
    return DemoLoad(
        span, len(planned), sent, dead, time.monotonic() - started, plan.model, days_skipped=skipped
    )
