"""Hostile requests: padded and oversized headers, anonymous callers by address, chosen methods."""

from __future__ import annotations

import gc
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from statistics_manager_service import metrics
from statistics_manager_service.app import create_app
from statistics_manager_service.context import ServiceContext
from statistics_manager_service.middleware import LABELLED_METHODS, AcceptedTokens, RequestContextMiddleware
from statistics_manager_service.test.conftest import TokenFactory, make_settings

# A protected call that needs no data: the caller is authenticated before the household is looked up.
LATEST = "/api/statistics/energy-consumption-last?user_ids=nobody0000"
PADDED_REQUESTS = 200


def _middleware(app: Any) -> RequestContextMiddleware:
    """The app's request middleware, as built by its first request."""
    return next(m for m in app.middleware.middleware_stack if isinstance(m, RequestContextMiddleware))


def _rss_bytes() -> int:
    """Resident memory of this process now (not its peak)."""
    resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def test_padded_authorization_headers_share_one_cache_entry(
    context: ServiceContext, token: TokenFactory, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(context.settings, context=context)
    bearer = token(service=True)
    with app.test_client() as client, caplog.at_level(logging.DEBUG):
        for padding in range(1, PADDED_REQUESTS + 1):
            response = client.get(
                LATEST,
                headers={
                    "X-Correlation-ID": "pad",
                    "Authorization": "Bearer" + " " * (padding * 30) + bearer,
                },
            )
            assert response.status_code == 404, response.text  # authenticated, then an unknown household
        accepted: AcceptedTokens = _middleware(app).accepted_tokens
    assert len(accepted) == 1
    assert not [r for r in caplog.records if bearer.split(".")[2] in r.getMessage()], "a token was logged"


def test_oversized_headers_are_refused_before_any_work_and_keep_memory_flat(
    context: ServiceContext, token: TokenFactory
) -> None:
    app = create_app(context.settings, context=context)
    bearer = token(service=True)
    with app.test_client() as client:
        client.get(LATEST, headers={"X-Correlation-ID": "warm", "Authorization": f"Bearer {bearer}"})
        gc.collect()
        before = _rss_bytes()
        for padding in range(PADDED_REQUESTS):
            padded = "Bearer" + " " * (1_000_000 + padding) + bearer  # a new header each time
            response = client.get(LATEST, headers={"X-Correlation-ID": "big", "Authorization": padded})
            assert response.status_code == 431
            assert response.json() == {
                "error": "request headers are larger than 32768 bytes in total; send fewer or shorter headers"
            }
        del padded
        gc.collect()
        grown = _rss_bytes() - before
        long = client.get(
            LATEST, headers={"X-Correlation-ID": "long", "Authorization": "Bearer" + " " * 9000 + bearer}
        )
        assert len(_middleware(app).accepted_tokens) == 1
    # 200 kept headers of 1 MB would hold 200 MB; a generous bound leaves room for allocator noise.
    assert grown < 50 * 1024 * 1024, f"RSS grew by {grown / 2**20:.0f} MB"
    assert long.status_code == 401
    assert long.json() == {
        "error": "Authorization header is longer than 8192 bytes; send 'Bearer <token>' with the token only"
    }


@pytest.mark.parametrize(
    ("networks", "client_host", "allowed"),
    [
        (None, "127.0.0.1", True),
        (None, "::1", True),
        (None, "127.0.0.53", True),
        (None, "10.1.2.3", False),
        (None, "203.0.113.9", False),
        (None, "testclient", False),
        ("10.0.0.0/8,fd00::/8", "10.1.2.3", True),
        ("10.0.0.0/8,fd00::/8", "fd00::17", True),
        ("10.0.0.0/8,fd00::/8", "127.0.0.1", False),
        ("10.0.0.0/8,fd00::/8", "192.168.1.5", False),
    ],
)
def test_anonymous_calls_only_from_the_configured_networks(
    context: ServiceContext, networks: str | None, client_host: str, allowed: bool
) -> None:
    overrides: dict[str, object] = {"allow_anonymous_internal": True}
    if networks is not None:
        from statistics_manager_service.config import _parse_networks

        overrides["anonymous_internal_networks"] = _parse_networks("ANONYMOUS_INTERNAL_NETWORKS", networks)
    settings = make_settings(context.settings.database_url, **overrides)
    app = create_app(settings, context=context)
    with app.test_client(client=(client_host, 40000)) as client:
        response = client.get(LATEST, headers={"X-Correlation-ID": "anon"})
    if allowed:
        assert response.status_code == 404  # let in, then an unknown household
    else:
        assert response.status_code == 401
        assert response.json()["error"].startswith(
            "error in authorization token: the Authorization header is missing"
        )


def test_x_forwarded_for_does_not_make_a_caller_internal(context: ServiceContext) -> None:
    settings = make_settings(context.settings.database_url, allow_anonymous_internal=True)
    app = create_app(settings, context=context)
    with app.test_client(client=("203.0.113.9", 40000)) as client:
        response = client.get(
            LATEST,
            headers={"X-Correlation-ID": "xff", "X-Forwarded-For": "127.0.0.1", "X-Real-IP": "127.0.0.1"},
        )
    assert response.status_code == 401


def test_anonymous_access_is_announced_at_start(
    context: ServiceContext, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(context.settings.database_url, allow_anonymous_internal=True)
    with caplog.at_level(logging.WARNING, logger="statistics_manager_service.app"):
        create_app(settings, context=context)
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        "ALLOW_ANONYMOUS_INTERNAL=true: calls without a token from 127.0.0.0/8, ::1/128 read every household"
    ]


def test_request_methods_chosen_by_clients_share_one_metric_label(context: ServiceContext) -> None:
    app = create_app(context.settings, context=context)
    with app.test_client() as client:
        for number in range(30):
            client.request(f"BREW{number}", "/api/statistics/health")
    methods = {
        sample.labels["method"]
        for family in metrics.HTTP_REQUESTS.collect()
        for sample in family.samples
        if "method" in sample.labels
    }
    assert "other" in methods
    assert methods <= LABELLED_METHODS | {"other"}
