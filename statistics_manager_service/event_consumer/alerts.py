"""The alert job of the workers: check the local days households completed since the last run and
queue an outbox event for each alert the rules find, at most once per household, cause and day.

It runs beside the consumer, never inside a batch: ingestion pays nothing for it (see
docs/HOUSEHOLD_ALERTS.md). Households are taken in user order, `ALERT_BATCH_HOUSEHOLDS` per transaction;
each transaction records the alerts it queued (`alerts_sent`, with the outbox rows) and how far
it checked its households (`alert_progress`), so a crash loses nothing and repeats nothing. On
PostgreSQL one worker at a time runs a batch (an advisory lock); whatever the workers, an alert's
row in `alerts_sent` is inserted once, and only the transaction that inserts it queues its event.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import uuid
from collections.abc import Sequence
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from statistics_manager_service import metrics
from statistics_manager_service.aggregation.tariff_book import TariffBook
from statistics_manager_service.background import run_every
from statistics_manager_service.config import Settings
from statistics_manager_service.event_consumer.alert_rules import (
    RULE_OF_CAUSE,
    AlertRule,
    Finding,
    HouseholdDay,
)
from statistics_manager_service.event_producers.outbox import NewEvent, add_events
from statistics_manager_service.storage.alerts import (
    AlertCandidate,
    AlertKey,
    alert_candidates,
    claim_alerts,
    lock_alert_job,
    record_checked,
)
from statistics_manager_service.storage.engine import TRANSIENT_ERRORS, session_scope
from statistics_manager_service.storage.tables import Household

logger = logging.getLogger(__name__)

ALERT_BATCH_HOUSEHOLDS = 200
# A household catching up on a backlog is checked over its most recent days only: an alert about
# a day long past would reach the household too late to matter.
MAX_DAYS_CHECKED = 7
# The namespace of alert event ids: uuid5 of "<user>/<cause>/<date>", the same for every worker.
ALERT_ID_NAMESPACE = uuid.UUID("4f9d6c1e-2b7a-5e1d-9c3f-8a6b0d2e7f41")


def alert_event_id(key: AlertKey) -> str:
    """The event id of an alert: derived from what it is unique by, so every attempt agrees."""
    return str(uuid.uuid5(ALERT_ID_NAMESPACE, f"{key.user_id}/{key.cause}/{key.day.isoformat()}"))


def days_to_check(candidate: AlertCandidate, timezone: str) -> list[dt.date]:
    """The completed local days of a household not checked yet, at most MAX_DAYS_CHECKED of the
    newest; a household never checked starts with its newest completed day."""
    zone = ZoneInfo(timezone)
    newest = dt.datetime.fromtimestamp(candidate.closed_through, zone).date() - dt.timedelta(days=1)
    if candidate.checked_through is None:
        first = newest
    else:
        first = dt.datetime.fromtimestamp(candidate.checked_through, zone).date()
    first = max(first, newest - dt.timedelta(days=MAX_DAYS_CHECKED - 1))
    return [first + dt.timedelta(days=n) for n in range((newest - first).days + 1)]


class AlertJob:
    """Check households' completed days in bounded, resumable batches; queue what the rules find."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        settings: Settings,
        book: TariffBook,
        batch_households: int = ALERT_BATCH_HOUSEHOLDS,
    ) -> None:
        self.session_factory = session_factory
        self.settings = settings
        self.book = book
        self.batch_households = batch_households
        self.rules = [RULE_OF_CAUSE[cause] for cause in settings.alert_causes]

    def run_once(self, stop: threading.Event | None = None) -> int:
        """Check every household with unchecked completed days, batch after batch; return how many
        alerts were queued. Stop early when another worker holds the job."""
        after, queued = "", 0
        while stop is None or not stop.is_set():
            with session_scope(self.session_factory) as session:
                if not lock_alert_job(session):
                    break
                candidates = alert_candidates(session, after, self.batch_households)
            if not candidates:
                break
            queued += self._check_isolated(candidates)
            after = candidates[-1].user_id
            if len(candidates) < self.batch_households:
                break
        return queued

    def _check_isolated(self, candidates: Sequence[AlertCandidate]) -> int:
        """Check a batch in one transaction; when it fails for a reason of its own, check its
        households one by one, and pass over (logged, counted) one that fails alone."""
        try:
            return self._check_in_transaction(candidates)
        except TRANSIENT_ERRORS:
            raise
        except Exception:
            if len(candidates) == 1:
                logger.exception(
                    "alert check of household %s failed; its days are passed over", candidates[0]
                )
                metrics.ALERT_CHECK_FAILURES.inc()
                with session_scope(self.session_factory) as session:
                    record_checked(session, [(candidates[0].user_id, candidates[0].closed_through)])
                return 0
            logger.warning("alert batch of %d households failed; checking them one by one", len(candidates))
        return sum(self._check_isolated([candidate]) for candidate in candidates)

    def _check_in_transaction(self, candidates: Sequence[AlertCandidate]) -> int:
        with session_scope(self.session_factory) as session:
            if not lock_alert_job(session):
                return 0
            return self.check(session, candidates)

    def check(self, session: Session, candidates: Sequence[AlertCandidate]) -> int:
        """Run the rules over the candidates' unchecked days, queue the new alerts and record the
        candidates as checked, in the caller's transaction; return how many alerts were queued."""
        ids = [candidate.user_id for candidate in candidates]
        households = {
            h.user_id: h for h in session.scalars(sa.select(Household).where(Household.user_id.in_(ids)))
        }
        rounds: list[list[HouseholdDay]] = []
        for candidate in candidates:
            household = households.get(candidate.user_id)
            if household is None:
                continue
            timezone = household.timezone or self.settings.default_timezone
            for position, day in enumerate(days_to_check(candidate, timezone)):
                if position == len(rounds):
                    rounds.append([])
                rounds[position].append(HouseholdDay(household, timezone, day))
        findings: list[tuple[str, Finding]] = []
        for days in rounds:  # each round holds at most one day per household
            for rule in self.rules:
                findings += [
                    (rule.event_type, finding) for finding in self._detect(session, rule, days, candidates)
                ]
        queued = self._queue(session, findings)
        record_checked(session, [(candidate.user_id, candidate.closed_through) for candidate in candidates])
        return queued

    def _detect(
        self,
        session: Session,
        rule: AlertRule,
        days: Sequence[HouseholdDay],
        candidates: Sequence[AlertCandidate],
    ) -> list[Finding]:
        """Run one rule in a savepoint. When it fails for a single household, that rule is passed
        over (logged, counted) and the household's other rules still run; with several, the
        failure goes up so that the households are checked one by one."""
        try:
            with session.begin_nested():
                return rule.detect(session, days, self.settings, self.book)
        except TRANSIENT_ERRORS:
            raise
        except Exception:
            if len(candidates) > 1:
                raise
            logger.exception(
                "alert rule %s failed for household %s; its other rules go on", rule.cause, candidates[0]
            )
            metrics.ALERT_CHECK_FAILURES.inc()
            return []

    def _queue(self, session: Session, findings: Sequence[tuple[str, Finding]]) -> int:
        """Queue the findings not queued before, in household, day and cause order."""
        ordered = sorted(findings, key=lambda item: (item[1].user_id, item[1].day, item[1].cause))
        keyed = [(AlertKey(f.user_id, f.cause, f.day), event_type, f) for event_type, f in ordered]
        claimed = claim_alerts(session, [(key, alert_event_id(key)) for key, _, _ in keyed])
        events = [
            NewEvent(event_type, finding.user_id, finding.payload, event_id=alert_event_id(key))
            for key, event_type, finding in keyed
            if key in claimed
        ]
        add_events(session, events)
        for key, _, _ in keyed:
            if key in claimed:
                metrics.ALERTS_QUEUED.labels(key.cause).inc()
        return len(events)

    def run(self, stop: threading.Event) -> None:
        """Check now and every ALERT_INTERVAL_S until stopped; an outage waits for the next round."""

        def check_round() -> None:
            queued = self.run_once(stop)
            if queued:
                logger.info("queued %d alerts", queued)

        run_every(stop, self.settings.alert_interval_s, "alert check", check_round)
