"""Settings come from the environment once, with safe defaults and clear errors."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from statistics_manager_service.config import DEFAULT_DATABASE_URL, ConfigurationError, Settings

STRONG_KEY = secrets.token_urlsafe(64)


@pytest.fixture(autouse=True)
def _data_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run where the default `./statistics.db` (and its generated signing key) may be created."""
    monkeypatch.chdir(tmp_path)


def test_defaults_run_the_embedded_mode_without_any_variable() -> None:
    settings = Settings.from_env({}, dotenv_path=None)
    assert settings.database_url == DEFAULT_DATABASE_URL
    assert settings.is_sqlite
    assert settings.port == 8080
    assert not settings.kafka_enabled
    assert settings.topic("meter-readings") == "hems.meter-readings"
    assert settings.jwt_sign_algorithm == "HS512"


def test_server_database_requires_a_signing_key() -> None:
    with pytest.raises(ConfigurationError, match="JWT_SIGN_KEY"):
        Settings.from_env({"DATABASE_URL": "postgresql://db/statistics"}, dotenv_path=None)
    settings = Settings.from_env(
        {"DATABASE_URL": "postgresql://db/statistics", "JWT_SIGN_KEY": STRONG_KEY}, dotenv_path=None
    )
    assert not settings.is_sqlite


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("PORT", "http", "PORT must be an integer"),
        ("PORT", "70000", "PORT must be between"),
        ("ALLOW_ANONYMOUS_INTERNAL", "maybe", "ALLOW_ANONYMOUS_INTERNAL must be true or false"),
        ("JWT_SIGN_ALGORITHM", "none", "JWT_SIGN_ALGORITHM must be one of"),
        ("DEFAULT_TIMEZONE", "Mars/Olympus", "DEFAULT_TIMEZONE is not a known IANA time zone"),
        ("LOG_FORMAT", "xml", "LOG_FORMAT must be text or json"),
        ("TARIFFS_FILE", "/nonexistent/tariffs.yaml", "TARIFFS_FILE does not exist"),
        ("RESPONSE_CACHE_MB", "-1", "RESPONSE_CACHE_MB must be between"),
        ("KAFKA_BATCH_MAX_BYTES", "lots", "KAFKA_BATCH_MAX_BYTES must be an integer"),
        ("KAFKA_MAX_REQUEST_SIZE", "1000", "KAFKA_MAX_REQUEST_SIZE must be between 16384 and"),
        ("PROCESSED_EVENTS_RETENTION_DAYS", "3", "PROCESSED_EVENTS_RETENTION_DAYS must be between 7 and"),
        ("OUTBOX_RETENTION_HOURS", "0", "OUTBOX_RETENTION_HOURS must be between 1 and"),
        ("READING_MAX_AGE_DAYS", "0", "READING_MAX_AGE_DAYS must be between 1 and"),
        ("READING_MAX_GAP_DAYS", "days", "READING_MAX_GAP_DAYS must be an integer"),
        ("SIGNAL_MAX_AGE_DAYS", "0", "SIGNAL_MAX_AGE_DAYS must be between 1 and"),
        ("SIGNAL_MAX_FUTURE_DAYS", "-1", "SIGNAL_MAX_FUTURE_DAYS must be between 0 and"),
        ("RECOMPUTE_HOUSEHOLDS_PER_TRANSACTION", "0", "RECOMPUTE_HOUSEHOLDS_PER_TRANSACTION must be between"),
        ("ANONYMOUS_INTERNAL_NETWORKS", "10.0.0.1/8", "ANONYMOUS_INTERNAL_NETWORKS must be comma-separated"),
        ("ANONYMOUS_INTERNAL_NETWORKS", "intranet", "ANONYMOUS_INTERNAL_NETWORKS must be comma-separated"),
        ("ALERTS_ENABLED", "sometimes", "ALERTS_ENABLED must be true or false"),
        (
            "ALERT_CAUSES",
            "voltage,weather",
            "ALERT_CAUSES names unknown causes weather; known: daily_consumption",
        ),
        ("ALERT_INTERVAL_S", "0", "ALERT_INTERVAL_S must be at least 1"),
        ("ALERT_BASELINE_WEEKS", "0", "ALERT_BASELINE_WEEKS must be between 1 and 52"),
        ("ALERT_CONSUMPTION_FACTOR", "0.8", "ALERT_CONSUMPTION_FACTOR must be at least 1"),
        ("ALERT_BASELOAD_FACTOR", "twice", "ALERT_BASELOAD_FACTOR must be a number"),
        (
            "ALERT_VOLTAGE_MIN_V",
            "260",
            r"ALERT_VOLTAGE_MIN_V \(260.0\) must be below ALERT_VOLTAGE_MAX_V \(253.0\)",
        ),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Settings.from_env({name: value}, dotenv_path=None)


def test_alerts_are_on_with_every_cause_by_default_and_the_causes_can_be_chosen() -> None:
    defaults = Settings.from_env({}, dotenv_path=None)
    assert defaults.alerts_enabled and defaults.alert_causes == (
        "daily_consumption",
        "baseload",
        "voltage",
        "bill_projection",
    )
    chosen = Settings.from_env({"ALERT_CAUSES": " voltage , baseload"}, dotenv_path=None)
    assert chosen.alert_causes == ("voltage", "baseload")
    assert Settings.from_env({"ALERT_CAUSES": ","}, dotenv_path=None).alert_causes == ()


def test_a_gap_longer_than_the_readings_kept_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"READING_MAX_GAP_DAYS \(200\) must not exceed"):
        Settings.from_env({"READING_MAX_AGE_DAYS": "100", "READING_MAX_GAP_DAYS": "200"}, dotenv_path=None)


def test_dotenv_fills_what_the_environment_does_not_set(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("# local settings\nPORT=9090\nexport LOG_LEVEL='debug'\nKAFKA_TOPIC_PREFIX=test.\n")
    settings = Settings.from_env({"PORT": "9191"}, dotenv_path=dotenv)
    assert settings.port == 9191  # the environment wins
    assert settings.log_level == "DEBUG"
    assert settings.kafka_topic_prefix == "test."


def test_kafka_settings_have_production_defaults_and_test_overrides() -> None:
    settings = Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": "localhost:9092"}, dotenv_path=None)
    assert settings.kafka_enabled
    assert settings.kafka_session_timeout_ms == 45_000
    assert settings.kafka_heartbeat_interval_ms == 3_000
    fast = Settings.from_env(
        {"KAFKA_SESSION_TIMEOUT_MS": "6000", "KAFKA_HEARTBEAT_INTERVAL_MS": "1000"}, dotenv_path=None
    )
    assert (fast.kafka_session_timeout_ms, fast.kafka_heartbeat_interval_ms) == (6000, 1000)


def test_the_response_cache_is_on_by_default_and_can_be_turned_off() -> None:
    assert Settings.from_env({}, dotenv_path=None).response_cache_mb == 64
    assert Settings.from_env({"RESPONSE_CACHE_MB": "0"}, dotenv_path=None).response_cache_mb == 0


def test_the_source_revision_comes_from_the_image_build() -> None:
    assert Settings.from_env({}, dotenv_path=None).git_revision == "unknown"
    assert Settings.from_env({"GIT_REVISION": "0a1b2c3"}, dotenv_path=None).git_revision == "0a1b2c3"
