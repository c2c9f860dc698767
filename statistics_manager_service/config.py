"""One typed Settings object, read from the environment once."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from statistics_manager_service.aggregation.anomalies import ALERT_CAUSES
from statistics_manager_service.signing_key import embedded_signing_key, key_problem

DEFAULT_DATABASE_URL = "sqlite:///./statistics.db"
SUPPORTED_JWT_ALGORITHMS = ("HS256", "HS384", "HS512")
ROLES = ("all", "api", "worker")
LOOPBACK_NETWORKS = "127.0.0.0/8,::1/128"
# Kafka redelivers within minutes to hours (a rebalance, a restart, a replayed partition); a week
# is the shortest memory of processed event ids that still outlasts any of those.
MINIMUM_PROCESSED_EVENTS_RETENTION_DAYS = 7
# Room for a truncated dead letter: its excerpt of the original value plus its headers.
MINIMUM_KAFKA_MAX_REQUEST_SIZE = 16 * 1024


class ConfigurationError(ValueError):
    """A setting is missing, malformed or unsafe."""


@dataclasses.dataclass(frozen=True)
class DatabasePools:
    """How one process of a pod sizes each of its two pools (transactions, single reads)."""

    processes: int  # the pod's processes that share DATABASE_CONNECTIONS_PER_POD
    pool_size: int  # connections each pool keeps
    max_overflow: int  # connections each pool may open beyond them
    listener: int  # the response cache's change listener (1 on PostgreSQL with the cache on)

    @property
    def per_process(self) -> int:
        """The most connections one process opens."""
        return 2 * (self.pool_size + self.max_overflow) + self.listener


def _read_dotenv(path: Path) -> dict[str, str]:
    """Read KEY=VALUE lines of a .env file; the real environment wins over it."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw_line in path.read_text(encoding="utf-8").splitlines():
        line = raw_line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key = key.removeprefix("export ").strip()
        values[key] = value.strip().strip('"').strip("'")
    return values


def _parse_bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ConfigurationError(f"{name} must be true or false, got {value!r}")


def _parse_int(name: str, value: str, minimum: int, maximum: int) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ConfigurationError(f"{name} must be an integer, got {value!r}") from None
    if not minimum <= number <= maximum:
        raise ConfigurationError(f"{name} must be between {minimum} and {maximum}, got {number}")
    return number


def _parse_networks(name: str, value: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    networks = []
    for item in value.split(","):
        if not item.strip():
            continue
        try:
            networks.append(ipaddress.ip_network(item.strip()))
        except ValueError as error:
            raise ConfigurationError(
                f"{name} must be comma-separated networks like 10.0.0.0/8 or ::1/128: {error}"
            ) from None
    return tuple(networks)


def _parse_float(name: str, value: str, minimum: float) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number, got {value!r}") from None
    if number < minimum:
        raise ConfigurationError(f"{name} must be at least {minimum}, got {number}")
    return number


def _parse_list(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every setting of the service; build with `Settings.from_env()` or directly in tests."""

    database_url: str = DEFAULT_DATABASE_URL
    database_pool_size: int = 10
    # Connections one pod may open, shared by its processes and their pools (see database_pools).
    database_connections_per_pod: int = 30
    response_cache_mb: int = 64
    kafka_bootstrap_servers: str | None = None
    kafka_topic_prefix: str = "hems."
    kafka_group_id: str = "statistics-manager"
    kafka_session_timeout_ms: int = 45_000
    kafka_heartbeat_interval_ms: int = 3_000
    kafka_max_poll_records: int = 500
    kafka_batch_max_bytes: int = 8 * 1024 * 1024
    kafka_max_poll_interval_ms: int = 300_000
    # The largest record the producers send (Kafka's `max.request.size`); keep it at most the
    # broker's `message.max.bytes` (1 MiB by default): a larger dead letter is sent truncated.
    kafka_max_request_size: int = 1024 * 1024
    # No default: `from_env` generates one per data directory for the embedded SQLite database.
    jwt_sign_key: str = ""
    jwt_sign_algorithm: str = "HS512"
    allow_anonymous_internal: bool = False
    anonymous_internal_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = _parse_networks(
        "ANONYMOUS_INTERNAL_NETWORKS", LOOPBACK_NETWORKS
    )
    default_timezone: str = "Europe/Lisbon"
    host: str = "0.0.0.0"
    port: int = 8080
    web_workers: int = 0
    log_level: str = "INFO"
    log_format: str = "text"
    tariffs_file: str | None = None
    forecast_api_url: str | None = None
    forecast_api_timeout_s: float = 5.0
    forecast_api_max_body_bytes: int = 1024 * 1024
    # Calls of the producer endpoints per caller and server process: a burst, then so many a minute.
    producer_rate_limit_per_minute: int = 6
    producer_rate_limit_burst: int = 3
    run_migrations_on_start: bool = True
    outbox_relay_enabled: bool = True
    # The source revision the image was built from (set at build time), for /version and metrics.
    git_revision: str = "unknown"
    processed_events_retention_days: int = 30
    outbox_retention_hours: int = 24
    demo_live_interval_s: float = 900.0
    otel_exporter_otlp_endpoint: str | None = None
    # What one message may make the service recompute (see README, "Bounds").
    reading_max_age_days: int = 3650
    reading_max_gap_days: int = 180
    signal_max_age_days: int = 3650
    signal_max_future_days: int = 31
    recompute_households_per_transaction: int = 100
    # Seconds between two computations of the peer groups by a worker; 0 turns the job off.
    peer_comparison_interval_s: float = 3600.0
    # The alert job of the workers (see docs/HOUSEHOLD_ALERTS.md).
    alerts_enabled: bool = True
    alert_causes: tuple[str, ...] = ALERT_CAUSES
    alert_interval_s: float = 300.0
    alert_baseline_weeks: int = 4
    alert_consumption_factor: float = 1.5
    alert_baseload_factor: float = 1.5
    alert_voltage_min_v: float = 207.0
    alert_voltage_max_v: float = 253.0

    @property
    def is_sqlite(self) -> bool:
        """Tell whether the database is the embedded SQLite one."""
        return self.database_url.startswith("sqlite")

    @property
    def debezium_outbox(self) -> bool:
        """Tell whether Debezium publishes the outbox (a broker, no relay): its rows stay after
        they are published, until housekeeping deletes them."""
        return self.kafka_enabled and not self.outbox_relay_enabled

    @property
    def kafka_enabled(self) -> bool:
        """Tell whether a broker is configured (no broker: no consumer and no relay)."""
        return bool(self.kafka_bootstrap_servers)

    def topic(self, name: str) -> str:
        """Return the full topic name for a short name like `meter-readings`."""
        return f"{self.kafka_topic_prefix}{name}"

    def effective_web_workers(self) -> int:
        """Return how many server processes to run: one per core unless set."""
        if self.web_workers > 0:
            return self.web_workers
        return max(1, os.cpu_count() or 1)

    def database_pools(self, role: str) -> DatabasePools:
        """Divide DATABASE_CONNECTIONS_PER_POD among the pod's processes and each one's pools.

        A pod of `role` runs one process (`worker`), or WEB_WORKERS server processes plus, for
        `all`, the supervising process that runs the consumer. Each process holds a pool for
        transactions, one for single reads and (with the response cache on PostgreSQL) a change
        listener; a pool keeps up to DATABASE_POOL_SIZE connections and overflows up to its share.
        """
        servers = 1 if role == "worker" else self.effective_web_workers()
        processes = servers + (1 if role == "all" and servers > 1 else 0)
        share = self.database_connections_per_pod // processes
        listener = 1 if self.response_cache_mb > 0 and not self.is_sqlite else 0
        per_pool = (share - listener) // 2
        if per_pool < 1 and not self.is_sqlite:
            raise ConfigurationError(
                f"DATABASE_CONNECTIONS_PER_POD={self.database_connections_per_pod} leaves {share} connections"
                f" to each of the {processes} processes of a {role} pod, which needs {2 + listener}:"
                " raise DATABASE_CONNECTIONS_PER_POD or lower WEB_WORKERS"
            )
        per_pool = max(1, per_pool)
        pool_size = min(self.database_pool_size, per_pool)
        return DatabasePools(processes, pool_size, per_pool - pool_size, listener)

    def validate(self) -> Settings:
        """Check cross-field rules; return self so calls chain."""
        if self.jwt_sign_algorithm not in SUPPORTED_JWT_ALGORITHMS:
            raise ConfigurationError(
                f"JWT_SIGN_ALGORITHM must be one of {', '.join(SUPPORTED_JWT_ALGORITHMS)}, "
                f"got {self.jwt_sign_algorithm!r}"
            )
        if not self.jwt_sign_key and not self.is_sqlite:
            raise ConfigurationError(
                "JWT_SIGN_KEY is not set: a server database needs the key the API gateway signs tokens with"
            )
        key_refusal = key_problem(self.jwt_sign_key, self.jwt_sign_algorithm)
        if key_refusal is not None:
            raise ConfigurationError(key_refusal)
        try:
            ZoneInfo(self.default_timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigurationError(
                f"DEFAULT_TIMEZONE is not a known IANA time zone: {self.default_timezone!r}"
            ) from None
        if self.log_format not in ("text", "json"):
            raise ConfigurationError(f"LOG_FORMAT must be text or json, got {self.log_format!r}")
        endpoint = self.otel_exporter_otlp_endpoint
        if endpoint is not None and not endpoint.startswith(("http://", "https://")):
            raise ConfigurationError(f"OTEL_EXPORTER_OTLP_ENDPOINT must be an http(s) URL, got {endpoint!r}")
        if self.reading_max_gap_days > self.reading_max_age_days:
            raise ConfigurationError(
                f"READING_MAX_GAP_DAYS ({self.reading_max_gap_days}) must not exceed "
                f"READING_MAX_AGE_DAYS ({self.reading_max_age_days})"
            )
        unknown = sorted(set(self.alert_causes) - set(ALERT_CAUSES))
        if unknown:
            raise ConfigurationError(
                f"ALERT_CAUSES names unknown causes {', '.join(unknown)}; known: {', '.join(ALERT_CAUSES)}"
            )
        if not self.alert_voltage_min_v < self.alert_voltage_max_v:
            raise ConfigurationError(
                f"ALERT_VOLTAGE_MIN_V ({self.alert_voltage_min_v}) must be below "
                f"ALERT_VOLTAGE_MAX_V ({self.alert_voltage_max_v})"
            )
        if self.tariffs_file is not None and not Path(self.tariffs_file).is_file():
            raise ConfigurationError(f"TARIFFS_FILE does not exist: {self.tariffs_file}")
        return self

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, dotenv_path: Path | None = Path(".env")
    ) -> Settings:
        """Read the settings from the environment (and a .env file beneath it)."""
        env: dict[str, str] = _read_dotenv(dotenv_path) if dotenv_path else {}
        env.update(os.environ if environ is None else environ)

        def text(name: str, default: str | None) -> str | None:
            value = env.get(name)
            return value if value not in (None, "") else default

        defaults = cls()
        settings = cls(
            database_url=text("DATABASE_URL", defaults.database_url) or defaults.database_url,
            database_pool_size=_parse_int(
                "DATABASE_POOL_SIZE", text("DATABASE_POOL_SIZE", "10") or "10", 1, 200
            ),
            database_connections_per_pod=_parse_int(
                "DATABASE_CONNECTIONS_PER_POD", text("DATABASE_CONNECTIONS_PER_POD", "30") or "", 2, 10_000
            ),
            response_cache_mb=_parse_int(
                "RESPONSE_CACHE_MB", text("RESPONSE_CACHE_MB", "64") or "64", 0, 65_536
            ),
            kafka_bootstrap_servers=text("KAFKA_BOOTSTRAP_SERVERS", None),
            kafka_topic_prefix=env.get("KAFKA_TOPIC_PREFIX", defaults.kafka_topic_prefix),
            kafka_group_id=text("KAFKA_GROUP_ID", defaults.kafka_group_id) or "",
            kafka_session_timeout_ms=_parse_int(
                "KAFKA_SESSION_TIMEOUT_MS", text("KAFKA_SESSION_TIMEOUT_MS", "45000") or "", 1000, 3_600_000
            ),
            kafka_heartbeat_interval_ms=_parse_int(
                "KAFKA_HEARTBEAT_INTERVAL_MS", text("KAFKA_HEARTBEAT_INTERVAL_MS", "3000") or "", 100, 600_000
            ),
            kafka_max_poll_records=_parse_int(
                "KAFKA_MAX_POLL_RECORDS", text("KAFKA_MAX_POLL_RECORDS", "500") or "", 1, 100_000
            ),
            kafka_batch_max_bytes=_parse_int(
                "KAFKA_BATCH_MAX_BYTES", text("KAFKA_BATCH_MAX_BYTES", "8388608") or "", 0, 1024**3
            ),
            kafka_max_poll_interval_ms=_parse_int(
                "KAFKA_MAX_POLL_INTERVAL_MS",
                text("KAFKA_MAX_POLL_INTERVAL_MS", "300000") or "",
                1000,
                3_600_000,
            ),
            kafka_max_request_size=_parse_int(
                "KAFKA_MAX_REQUEST_SIZE",
                text("KAFKA_MAX_REQUEST_SIZE", str(defaults.kafka_max_request_size)) or "",
                MINIMUM_KAFKA_MAX_REQUEST_SIZE,
                256 * 1024 * 1024,
            ),
            jwt_sign_key=text("JWT_SIGN_KEY", "") or "",
            jwt_sign_algorithm=(text("JWT_SIGN_ALGORITHM", defaults.jwt_sign_algorithm) or "").upper(),
            allow_anonymous_internal=_parse_bool(
                "ALLOW_ANONYMOUS_INTERNAL", env.get("ALLOW_ANONYMOUS_INTERNAL", "false")
            ),
            anonymous_internal_networks=_parse_networks(
                "ANONYMOUS_INTERNAL_NETWORKS", env.get("ANONYMOUS_INTERNAL_NETWORKS", LOOPBACK_NETWORKS)
            ),
            default_timezone=text("DEFAULT_TIMEZONE", defaults.default_timezone) or "",
            host=text("HOST", defaults.host) or "",
            port=_parse_int("PORT", text("PORT", "8080") or "", 1, 65535),
            web_workers=_parse_int("WEB_WORKERS", text("WEB_WORKERS", "0") or "", 0, 64),
            log_level=(text("LOG_LEVEL", defaults.log_level) or "").upper(),
            log_format=(text("LOG_FORMAT", defaults.log_format) or "").lower(),
            tariffs_file=text("TARIFFS_FILE", None),
            forecast_api_url=text("FORECAST_API_URL", None),
            forecast_api_timeout_s=_parse_float(
                "FORECAST_API_TIMEOUT_S", text("FORECAST_API_TIMEOUT_S", "5") or "", 0.1
            ),
            forecast_api_max_body_bytes=_parse_int(
                "FORECAST_API_MAX_BODY_BYTES",
                text("FORECAST_API_MAX_BODY_BYTES", "1048576") or "",
                1024,
                64 * 1024 * 1024,
            ),
            producer_rate_limit_per_minute=_parse_int(
                "PRODUCER_RATE_LIMIT_PER_MINUTE", text("PRODUCER_RATE_LIMIT_PER_MINUTE", "6") or "", 0, 60_000
            ),
            producer_rate_limit_burst=_parse_int(
                "PRODUCER_RATE_LIMIT_BURST", text("PRODUCER_RATE_LIMIT_BURST", "3") or "", 1, 10_000
            ),
            run_migrations_on_start=_parse_bool(
                "RUN_MIGRATIONS_ON_START", env.get("RUN_MIGRATIONS_ON_START", "true")
            ),
            outbox_relay_enabled=_parse_bool("OUTBOX_RELAY_ENABLED", env.get("OUTBOX_RELAY_ENABLED", "true")),
            git_revision=text("GIT_REVISION", defaults.git_revision) or defaults.git_revision,
            processed_events_retention_days=_parse_int(
                "PROCESSED_EVENTS_RETENTION_DAYS",
                text("PROCESSED_EVENTS_RETENTION_DAYS", "30") or "",
                MINIMUM_PROCESSED_EVENTS_RETENTION_DAYS,
                3650,
            ),
            outbox_retention_hours=_parse_int(
                "OUTBOX_RETENTION_HOURS", text("OUTBOX_RETENTION_HOURS", "24") or "", 1, 8760
            ),
            demo_live_interval_s=_parse_float(
                "DEMO_LIVE_INTERVAL_S", text("DEMO_LIVE_INTERVAL_S", "900") or "", 0.0
            ),
            otel_exporter_otlp_endpoint=text("OTEL_EXPORTER_OTLP_ENDPOINT", None),
            reading_max_age_days=_parse_int(
                "READING_MAX_AGE_DAYS", text("READING_MAX_AGE_DAYS", "3650") or "", 1, 36_500
            ),
            reading_max_gap_days=_parse_int(
                "READING_MAX_GAP_DAYS", text("READING_MAX_GAP_DAYS", "180") or "", 1, 3650
            ),
            signal_max_age_days=_parse_int(
                "SIGNAL_MAX_AGE_DAYS", text("SIGNAL_MAX_AGE_DAYS", "3650") or "", 1, 36_500
            ),
            signal_max_future_days=_parse_int(
                "SIGNAL_MAX_FUTURE_DAYS", text("SIGNAL_MAX_FUTURE_DAYS", "31") or "", 0, 366
            ),
            recompute_households_per_transaction=_parse_int(
                "RECOMPUTE_HOUSEHOLDS_PER_TRANSACTION",
                text("RECOMPUTE_HOUSEHOLDS_PER_TRANSACTION", "100") or "",
                1,
                10_000,
            ),
            peer_comparison_interval_s=_parse_float(
                "PEER_COMPARISON_INTERVAL_S", text("PEER_COMPARISON_INTERVAL_S", "3600") or "", 0.0
            ),
            alerts_enabled=_parse_bool("ALERTS_ENABLED", env.get("ALERTS_ENABLED", "true")),
            alert_causes=_parse_list(env.get("ALERT_CAUSES", ",".join(ALERT_CAUSES))),
            alert_interval_s=_parse_float("ALERT_INTERVAL_S", text("ALERT_INTERVAL_S", "300") or "", 1.0),
            alert_baseline_weeks=_parse_int(
                "ALERT_BASELINE_WEEKS", text("ALERT_BASELINE_WEEKS", "4") or "", 1, 52
            ),
            alert_consumption_factor=_parse_float(
                "ALERT_CONSUMPTION_FACTOR", text("ALERT_CONSUMPTION_FACTOR", "1.5") or "", 1.0
            ),
            alert_baseload_factor=_parse_float(
                "ALERT_BASELOAD_FACTOR", text("ALERT_BASELOAD_FACTOR", "1.5") or "", 1.0
            ),
            alert_voltage_min_v=_parse_float(
                "ALERT_VOLTAGE_MIN_V", text("ALERT_VOLTAGE_MIN_V", "207") or "", 0.0
            ),
            alert_voltage_max_v=_parse_float(
                "ALERT_VOLTAGE_MAX_V", text("ALERT_VOLTAGE_MAX_V", "253") or "", 0.0
            ),
        )
        if not settings.jwt_sign_key and settings.is_sqlite:
            settings = dataclasses.replace(settings, jwt_sign_key=embedded_signing_key(settings.database_url))
        return settings.validate()
