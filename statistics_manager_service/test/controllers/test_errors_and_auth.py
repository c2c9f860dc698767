"""Errors, headers and authorization against the running app, on PostgreSQL and SQLite."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import uuid
from collections.abc import Callable

import jwt
import pytest

from statistics_manager_service.app import create_app
from statistics_manager_service.context import ServiceContext, build_context
from statistics_manager_service.log import configure_logging
from statistics_manager_service.test.conftest import TEST_JWT_KEY, make_settings, terminate_backends
from statistics_manager_service.test.support.pipeline import account_message, meter_message, process, reading

USER = "household01"[:10]
OTHER = "household2"
CONSUMPTION = "/api/statistics/energy-consumption?user_ids={}&start_date=2026-03-01T00:00:00Z&end_date=2026-03-02T00:00:00Z"

Headers = Callable[..., dict[str, str]]


@pytest.fixture
def seeded(context: ServiceContext) -> ServiceContext:
    """Two households with an hour of readings each."""
    start = dt.datetime(2026, 3, 1, 10, tzinfo=dt.UTC)
    readings = [reading(start + dt.timedelta(minutes=15 * i), 100.0 * i) for i in range(5)]
    dead = process(
        context,
        [
            account_message(USER),
            account_message(OTHER),
            meter_message(USER, readings),
            meter_message(OTHER, readings),
        ],
    )
    assert dead == []
    return context


def test_health_echoes_the_correlation_id(client) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/api/statistics/health", headers={"X-Correlation-ID": "abc-123"})
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response.headers["X-Correlation-ID"] == "abc-123"
    generated = client.get("/api/statistics/health").headers["X-Correlation-ID"]
    assert uuid.UUID(generated)


def test_ready_reports_each_dependency(client) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/api/statistics/ready")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": {"database": "ok", "schema": "ok", "broker": "disabled"},
    }


def test_ready_is_503_with_the_reason_when_the_database_is_down() -> None:
    settings = make_settings("postgresql+psycopg2://postgres@127.0.0.1:1/none", run_migrations_on_start=False)
    context = build_context(settings)
    with create_app(settings, context=context, validate_responses=True).test_client() as client:
        response = client.get("/api/statistics/ready")
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "degraded"
        assert body["checks"]["database"] == "unavailable"
        assert body["errors"]["database"]
        data = client.get(
            CONSUMPTION.format(USER),
            headers={"X-Correlation-ID": "c1", "Authorization": "Bearer " + _token(sub=USER)},
        )
        assert data.status_code == 503
        assert data.json() == {"error": "database unavailable, try again later"}


def test_reads_survive_connections_closed_by_the_database(client, auth_headers: Headers, seeded) -> None:  # type: ignore[no-untyped-def]
    """A database restart closes pooled connections; the next read repeats itself on a new one."""
    if seeded.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no server to drop connections")
    url = CONSUMPTION.format(USER)
    before = client.get(url, headers=auth_headers(user_id=USER))
    assert before.status_code == 200 and before.json()[0]["metrics"]
    assert terminate_backends(seeded.engine) >= 1
    after = client.get(url, headers=auth_headers(user_id=USER))
    assert after.status_code == 200
    assert after.json() == before.json()


def test_documentation_and_metrics_are_served(client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/api/statistics/ui/").status_code == 200
    spec = client.get("/api/statistics/openapi.json")
    assert spec.status_code == 200 and "/energy-consumption" in spec.json()["paths"]
    client.get("/api/statistics/health")
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert "statistics_http_requests_total" in metrics.text


def test_missing_correlation_id_is_400(client, auth_headers: Headers, seeded) -> None:  # type: ignore[no-untyped-def]
    headers = auth_headers(user_id=USER)
    del headers["X-Correlation-ID"]
    response = client.get(CONSUMPTION.format(USER), headers=headers)
    assert response.status_code == 400
    assert response.json() == {"error": "missing X-Correlation-ID header"}


def _token(
    algorithm: str = "HS512", key: str = TEST_JWT_KEY, expires_in_s: int = 600, **claims: object
) -> str:
    now = int(dt.datetime.now(dt.UTC).timestamp())
    return jwt.encode({"iat": now, "exp": now + expires_in_s, **claims}, key, algorithm=algorithm)


def _unsigned(**claims: object) -> str:
    import base64

    def part(value: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


@pytest.mark.parametrize(
    ("authorization", "reason"),
    [
        (None, "the Authorization header is missing"),
        ("Bearer", "must be `Bearer <token>`"),
        ("Token " + "x" * 20, "must be `Bearer <token>`"),
        ("Bearer not-a-jwt", "the token is invalid"),
        (
            "Bearer " + _token(key="another-signing-key-entirely-" + "9" * 40, sub=USER),
            "the token is invalid",
        ),
        ("Bearer " + _token(expires_in_s=-3600, sub=USER), "the token has expired"),
        ("Bearer " + _token(algorithm="HS256", sub=USER), "the token is invalid"),
        ("Bearer " + _unsigned(sub=USER, exp=4102444800), "the token is invalid"),
    ],
    ids=["missing", "empty", "wrong-scheme", "garbage", "forged", "expired", "wrong-algorithm", "alg-none"],
)
def test_bad_tokens_are_401_saying_why(client, seeded, authorization: str | None, reason: str) -> None:  # type: ignore[no-untyped-def]
    headers = {"X-Correlation-ID": "c-401"}
    if authorization is not None:
        headers["Authorization"] = authorization
    response = client.get(CONSUMPTION.format(USER), headers=headers)
    assert response.status_code == 401
    # The FlexiHome message first (clients match on it), then the reason.
    error = response.json()["error"]
    assert error.startswith("error in authorization token: ")
    assert reason in error
    assert response.headers["X-Correlation-ID"] == "c-401"


def test_a_user_reads_only_their_own_household(client, auth_headers: Headers, seeded) -> None:  # type: ignore[no-untyped-def]
    own = client.get(CONSUMPTION.format(USER), headers=auth_headers(user_id=USER))
    assert own.status_code == 200
    assert own.json()[0]["user_id"] == USER
    other = client.get(CONSUMPTION.format(OTHER), headers=auth_headers(user_id=USER))
    assert other.status_code == 403
    assert other.json() == {"error": "you are not authorized to access this information"}
    both = client.get(CONSUMPTION.format(f"{USER},{OTHER}"), headers=auth_headers(user_id=USER))
    assert both.status_code == 403
    assert OTHER not in both.text


def test_a_service_token_reads_any_household(client, auth_headers: Headers, seeded) -> None:  # type: ignore[no-untyped-def]
    response = client.get(CONSUMPTION.format(f"{USER},{OTHER}"), headers=auth_headers(service=True))
    assert response.status_code == 200
    assert [item["user_id"] for item in response.json()] == [USER, OTHER]


def test_unknown_user_is_404(client, auth_headers: Headers, seeded) -> None:  # type: ignore[no-untyped-def]
    response = client.get(CONSUMPTION.format("nobody0000"), headers=auth_headers(service=True))
    assert response.status_code == 404
    assert response.json() == {"error": 'user with id "nobody0000" not found'}


def test_anonymous_calls_only_when_allowed(context: ServiceContext, seeded) -> None:  # type: ignore[no-untyped-def]
    headers = {"X-Correlation-ID": "anon"}
    closed = create_app(context.settings, context=context, validate_responses=True)
    with closed.test_client() as client:
        assert client.get(CONSUMPTION.format(USER), headers=headers).status_code == 401
    settings = make_settings(context.settings.database_url, allow_anonymous_internal=True)
    open_app = create_app(settings, context=context, validate_responses=True)
    with open_app.test_client(client=("127.0.0.1", 50000)) as client:  # from the default (loopback) network
        response = client.get(CONSUMPTION.format(USER), headers=headers)
        assert response.status_code == 200
        forged = client.get(
            CONSUMPTION.format(USER),
            headers={**headers, "Authorization": "Bearer " + _token(key="x" * 64, sub=USER)},
        )
        assert forged.status_code == 401  # a bad token is never treated as anonymous


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("user_ids=short&start_date=2026-03-01T00:00:00Z", "user_ids"),
        (f"user_ids={USER}&start_date=yesterday", "start_date"),
        (f"user_ids={USER}&start_date=2026-03-01T00:00:00Z&group_by=fortnightly", "group_by"),
        (f"user_ids={USER}", "start_date"),
        (f"user_ids={USER}&start_date=2026-03-01T00:00:00Z&colour=blue", "colour"),
        (f"user_ids={USER}&start_date=2026-03-02T00:00:00Z&end_date=2026-03-01T00:00:00Z", "start_date"),
    ],
)
def test_bad_parameters_are_400_naming_the_parameter(
    client, auth_headers: Headers, seeded, query: str, names: str
) -> None:  # type: ignore[no-untyped-def]
    response = client.get(f"/api/statistics/energy-consumption?{query}", headers=auth_headers(service=True))
    assert response.status_code == 400
    body = response.json()
    assert set(body) == {"error"}
    assert names in body["error"]


def test_unknown_path_and_wrong_method_are_json(client, auth_headers: Headers) -> None:  # type: ignore[no-untyped-def]
    missing = client.get("/api/statistics/does-not-exist", headers=auth_headers(service=True))
    assert missing.status_code == 404
    assert "error" in missing.json()
    wrong = client.delete("/api/statistics/health")
    assert wrong.status_code == 405
    assert "error" in wrong.json()


def test_an_unexpected_failure_is_a_generic_500(client, auth_headers: Headers, seeded, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from statistics_manager_service.controllers import common

    def explode(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("secret internal detail at /srv/app.py line 42")

    monkeypatch.setattr(common, "load_series", explode)
    response = client.get(CONSUMPTION.format(USER), headers=auth_headers(service=True))
    assert response.status_code == 500
    assert response.json() == {"error": "internal server error"}
    assert "secret" not in response.text and "Traceback" not in response.text


def test_log_lines_carry_the_correlation_id_as_json(
    client, auth_headers: Headers, seeded, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    stream = io.StringIO()
    configure_logging("INFO", "json")
    handler = logging.getLogger().handlers[0]
    monkeypatch.setattr(handler, "stream", stream)
    headers = {"X-Correlation-ID": "trace-me-42", "Authorization": "Bearer " + _token(key="y" * 64, sub=USER)}
    client.get(CONSUMPTION.format(USER), headers=headers)
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    assert any(line["correlation_id"] == "trace-me-42" for line in lines)
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
