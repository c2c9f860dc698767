"""GET /version and the build metric it matches."""

from __future__ import annotations

import dataclasses

from prometheus_client.parser import text_string_to_metric_families

from statistics_manager_service.app import create_app
from statistics_manager_service.build import package_version
from statistics_manager_service.context import ServiceContext

REVISION = "5d41402abc4b2a76b9719d911017c592deadbeef"


def test_version_needs_no_token_and_matches_the_build_metric(context: ServiceContext) -> None:
    context.settings = dataclasses.replace(context.settings, git_revision=REVISION)
    app = create_app(context.settings, context=context, validate_responses=True)
    with app.test_client() as client:
        response = client.get("/api/statistics/version")
        metrics = client.get("/metrics")
    assert response.status_code == 200
    assert response.json() == {"version": "1.0.0", "revision": REVISION}
    assert package_version() == "1.0.0"  # setup.py's version, read from the installed package
    (family,) = [f for f in text_string_to_metric_families(metrics.text) if f.name == "statistics_build_info"]
    assert ({"version": "1.0.0", "revision": REVISION}, 1.0) in [(s.labels, s.value) for s in family.samples]
