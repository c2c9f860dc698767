"""Readiness: can this process do its work right now?"""

from __future__ import annotations

import dataclasses
import logging
import socket
import time
from typing import TYPE_CHECKING, Any

from statistics_manager_service.consumer_state import ConsumerState, now_s
from statistics_manager_service.context import BrokerCheck
from statistics_manager_service.storage import migrate
from statistics_manager_service.storage.engine import ping

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from statistics_manager_service.config import Settings
    from statistics_manager_service.context import ServiceContext

logger = logging.getLogger(__name__)

BROKER_CHECK_TTL_S = 5.0


@dataclasses.dataclass
class ReadinessReport:
    """The state of each dependency; ready when none has an error."""

    checks: dict[str, str]
    errors: dict[str, str]

    @property
    def ready(self) -> bool:
        """Tell whether every dependency is usable."""
        return not self.errors

    def body(self) -> dict[str, Any]:
        """Return the JSON body of the probe."""
        body: dict[str, Any] = {"status": "ready" if self.ready else "degraded", "checks": self.checks}
        if self.errors:
            body["errors"] = self.errors
        return body


def _broker_reachable(bootstrap_servers: str, timeout_s: float = 1.0) -> str | None:
    """Return None when a bootstrap server accepts a TCP connection, else the reason (for the log)."""
    last_error = "no bootstrap server configured"
    for server in bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host or "localhost", int(port or 9092)), timeout=timeout_s):
                return None
        except (OSError, ValueError) as error:
            last_error = f"{server.strip()}: {error}"
    return f"broker unreachable ({last_error})"


def _reason(error: Exception) -> str:
    """The first line of an error, for the log."""
    return (str(error).splitlines() or [type(error).__name__])[0][:200]


def _schema_check(engine: Engine) -> tuple[str, str | None]:
    """Return the schema's state for the probe and, when it keeps the process from serving, why.

    An older schema than this code needs is not ready: its queries would fail. A newer one is: a
    newer release migrated it while this one is still being replaced, and migrations stay
    compatible with the release before them.
    """
    revision = migrate.current_revision(engine)
    state = migrate.schema_state(revision)
    if state == "behind":
        needed = migrate.head_revision()
        return "behind", f"database schema at revision {revision or 'none'}, this release needs {needed}"
    return ("ok" if state == "current" else state), None


def _consumer_check(reported: ConsumerState | None, settings: Settings) -> tuple[str, str | None]:
    """The pod's consumer as it last reported itself, and why it keeps the pod from being ready."""
    if reported is None:
        return "starting", "the event consumer has not reported yet"
    if reported.state != "running":
        cause = f": {reported.cause} unavailable" if reported.state == "paused" and reported.cause else ""
        return reported.state, f"the event consumer is {reported.state}{cause}"
    stall_after_s = settings.kafka_max_poll_interval_ms / 1000
    now = now_s()
    if now - reported.heartbeat_s > stall_after_s:
        return "stalled", f"the event consumer has not reported for {now - reported.heartbeat_s:.0f} s"
    if reported.lag > 0 and now - reported.progress_s > stall_after_s:
        return "stalled", (
            f"the event consumer has committed nothing for {now - reported.progress_s:.0f} s"
            f" with {reported.lag} messages waiting"
        )
    return "running", None


def check_readiness(context: ServiceContext) -> ReadinessReport:
    """Probe what this process's role needs: the database and its schema (every role), the broker
    and the consumer's reported state (roles running the consumer).

    The body tells states only; hosts and driver messages go to the log.
    """
    checks: dict[str, str] = {}
    errors: dict[str, str] = {}
    try:
        ping(context.engine)
        checks["database"] = "ok"
    except Exception as error:  # noqa: BLE001 - any failure means "not ready"; the log has its reason
        logger.warning("not ready: database unavailable: %s", _reason(error))
        checks["database"] = "unavailable"
        errors["database"] = "the database cannot be reached (the service log says why)"
    else:
        try:
            checks["schema"], schema_error = _schema_check(context.engine)
        except Exception as error:  # noqa: BLE001 - as above
            logger.warning("not ready: database schema unreadable: %s", _reason(error))
            checks["schema"], schema_error = (
                "unknown",
                "the schema's revision cannot be read (the service log says why)",
            )
        if schema_error:
            errors["schema"] = schema_error
    if context.role == "api":
        return ReadinessReport(checks=checks, errors=errors)  # the API reads the database only
    settings = context.settings
    if not settings.kafka_enabled:
        checks["broker"] = "disabled"
        return ReadinessReport(checks=checks, errors=errors)
    cached = context.broker_check
    now = time.monotonic()
    if cached is None or now - cached.at_s > BROKER_CHECK_TTL_S:
        cached = BrokerCheck(now, _broker_reachable(settings.kafka_bootstrap_servers or ""))
        context.broker_check = cached
        if cached.error:
            logger.warning("not ready: %s", cached.error)
    reported = context.consumer_state.read()  # once: both checks judge the same report
    consumer, consumer_error = _consumer_check(reported, settings)
    broker_down = cached.error is not None or (
        reported is not None and reported.state == "paused" and reported.cause == "broker"
    )
    checks["broker"] = "unavailable" if broker_down else "ok"
    if broker_down:
        errors["broker"] = "the broker cannot be reached (the service log says why)"
    checks["consumer"] = consumer
    if consumer_error:
        errors["consumer"] = consumer_error
    return ReadinessReport(checks=checks, errors=errors)
