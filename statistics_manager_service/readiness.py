"""Readiness: can this process do its work right now?"""

from __future__ import annotations

import dataclasses
import socket
import time
from typing import TYPE_CHECKING, Any

from statistics_manager_service.context import BrokerCheck
from statistics_manager_service.storage import migrate
from statistics_manager_service.storage.engine import ping

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from statistics_manager_service.context import ServiceContext

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
    """Return None when a bootstrap server accepts a TCP connection, else the reason."""
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
    """The first line of an error, short enough for a probe's body."""
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


def check_readiness(context: ServiceContext) -> ReadinessReport:
    """Probe the database, its schema and the broker; report what the background workers noticed."""
    checks: dict[str, str] = {}
    errors: dict[str, str] = {}
    try:
        ping(context.engine)
        checks["database"] = "ok"
    except Exception as error:  # noqa: BLE001 - any failure means "not ready", with its reason
        checks["database"] = "unavailable"
        errors["database"] = _reason(error)
    else:
        try:
            checks["schema"], schema_error = _schema_check(context.engine)
        except Exception as error:  # noqa: BLE001 - as above
            checks["schema"], schema_error = "unknown", _reason(error)
        if schema_error:
            errors["schema"] = schema_error
    settings = context.settings
    if not settings.kafka_enabled:
        checks["broker"] = "disabled"
    else:
        cached = context.broker_check
        now = time.monotonic()
        if cached is None or now - cached.at_s > BROKER_CHECK_TTL_S:
            cached = BrokerCheck(now, _broker_reachable(settings.kafka_bootstrap_servers or ""))
            context.broker_check = cached
        broker_error = cached.error or context.broker_error
        checks["broker"] = "unavailable" if broker_error else "ok"
        if broker_error:
            errors["broker"] = broker_error
    if context.consumer_error:
        checks["consumer"] = "paused"
        errors["consumer"] = context.consumer_error
    return ReadinessReport(checks=checks, errors=errors)
