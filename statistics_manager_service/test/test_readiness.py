"""/ready follows the role: the schema keeps any process out of service while older than its code;
the broker and the pod's consumer only matter to the roles that consume; bodies tell states only."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from statistics_manager_service.app import create_app
from statistics_manager_service.config import Settings
from statistics_manager_service.context import ServiceContext, build_context
from statistics_manager_service.storage import migrate
from statistics_manager_service.test.conftest import (
    BACKENDS,
    REPO_ROOT,
    TEST_JWT_KEY,
    create_postgres_database,
    drop_postgres_database,
    make_settings,
)
from statistics_manager_service.test.event_consumer.worker_support import wait_for
from statistics_manager_service.test.support.cli import SERVICE_COMMAND

READY = "/api/statistics/ready"


@pytest.fixture(params=BACKENDS)
def fresh_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'schema.db'}"
        return
    url = create_postgres_database("sm_ready")
    yield url
    drop_postgres_database(url)


def _ready(database_url: str) -> tuple[int, dict[str, Any]]:
    """Ask /ready of an app that does not migrate on start."""
    settings = make_settings(database_url, run_migrations_on_start=False)
    context = build_context(settings)
    try:
        with create_app(settings, context=context, validate_responses=True).test_client() as client:
            response = client.get(READY)
            return response.status_code, response.json()
    finally:
        context.dispose()


def test_ready_waits_for_the_schema_to_reach_this_release(fresh_database: str) -> None:
    head = migrate.head_revision()
    assert head is not None and head != "0002"

    status, body = _ready(fresh_database)  # never migrated
    assert status == 503
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["schema"] == "behind"
    assert body["errors"]["schema"] == f"database schema at revision none, this release needs {head}"

    engine = sa.create_engine(fresh_database)
    migrate.upgrade(engine, "0002")  # a database an earlier release left behind
    status, body = _ready(fresh_database)
    assert status == 503
    assert body["status"] == "degraded"
    assert body["checks"] == {"database": "ok", "schema": "behind", "broker": "disabled"}
    assert body["errors"] == {"schema": f"database schema at revision 0002, this release needs {head}"}

    migrate.upgrade(engine)
    status, body = _ready(fresh_database)
    assert (status, body) == (
        200,
        {"status": "ready", "checks": {"database": "ok", "schema": "ok", "broker": "disabled"}},
    )
    engine.dispose()


def test_ready_keeps_serving_while_a_newer_release_has_migrated(fresh_database: str) -> None:
    """During a rollout the old pods see the new revision: still ready (migrations stay compatible)."""
    engine = sa.create_engine(fresh_database)
    migrate.upgrade(engine)
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE alembic_version SET version_num = 'f0f0_from_a_newer_release'"))
    engine.dispose()
    assert migrate.schema_state("f0f0_from_a_newer_release") == "ahead"
    status, body = _ready(fresh_database)
    assert status == 200
    assert body["checks"]["schema"] == "ahead"
    assert "errors" not in body


# ---- readiness follows the role -------------------------------------------------------------


@contextmanager
def silent_broker() -> Iterator[str]:
    """A port that accepts connections and never answers: a broker that is down for Kafka while
    a TCP probe still succeeds."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for connection in held:
            connection.close()
        listener.close()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _ready_of(settings: Settings, role: str) -> tuple[int, dict[str, Any]]:
    context = build_context(settings, role)
    try:
        with create_app(settings, context=context, validate_responses=True).test_client() as client:
            response = client.get(READY)
            return response.status_code, response.json()
    finally:
        context.dispose()


def test_an_api_pod_stays_ready_while_the_broker_is_down(context: ServiceContext) -> None:
    broker = f"127.0.0.1:{_closed_port()}"
    settings = make_settings(
        context.settings.database_url, kafka_bootstrap_servers=broker, run_migrations_on_start=False
    )
    assert _ready_of(settings, "api") == (
        200,
        {"status": "ready", "checks": {"database": "ok", "schema": "ok"}},
    )
    status, body = _ready_of(settings, "worker")
    assert status == 503
    assert body["checks"]["broker"] == "unavailable"


def test_ready_bodies_tell_states_not_hosts_or_driver_messages(context: ServiceContext) -> None:
    port = _closed_port()
    database_down = make_settings(
        f"postgresql+psycopg2://postgres@127.0.0.1:{port}/nowhere", run_migrations_on_start=False
    )
    broker_down = make_settings(
        context.settings.database_url,
        kafka_bootstrap_servers=f"127.0.0.1:{port}",
        run_migrations_on_start=False,
    )
    for settings, role in ((database_down, "api"), (database_down, "all"), (broker_down, "worker")):
        status, body = _ready_of(settings, role)
        assert status == 503
        text = json.dumps(body)
        for leak in ("127.0.0.1", str(port), "nowhere", "psycopg2", "refused", "Errno"):
            assert leak not in text, f"{leak!r} in {text}"
        assert set(body["errors"]) <= {"database", "broker", "consumer"}


def test_a_paused_consumer_keeps_every_server_process_of_the_pod_unready(tmp_path: Path) -> None:
    """With two server processes, /ready is answered by a process that does not run the consumer."""
    database_url = create_postgres_database("sm_ready")
    port = _closed_port()
    try:
        with silent_broker() as broker:
            env = {
                k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "DATABASE_", "PROMETHEUS"))
            }
            env.update(
                PYTHONPATH=str(REPO_ROOT),
                DATABASE_URL=database_url,
                JWT_SIGN_KEY=TEST_JWT_KEY,
                KAFKA_BOOTSTRAP_SERVERS=broker,
                HOST="127.0.0.1",
                PORT=str(port),
                WEB_WORKERS="2",
                LOG_LEVEL="WARNING",
            )
            process = subprocess.Popen(
                [*SERVICE_COMMAND, "--role", "all"],
                cwd=tmp_path,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                answers: list[tuple[int, dict[str, Any]]] = []

                def paused() -> bool:
                    assert process.poll() is None, "the service exited"
                    try:
                        with urllib.request.urlopen(f"http://127.0.0.1:{port}{READY}", timeout=5) as response:
                            answers.append((response.status, json.loads(response.read())))
                    except urllib.error.HTTPError as error:
                        answers.append((error.code, json.loads(error.read())))
                    except OSError:
                        return False
                    return answers[-1][1]["checks"].get("consumer") == "paused"

                wait_for(paused, 90, "/ready to report the paused consumer")
                status, body = answers[-1]
                assert status == 503
                assert body["status"] == "degraded"
                assert body["checks"] == {
                    "database": "ok",
                    "schema": "ok",
                    "broker": "unavailable",
                    "consumer": "paused",
                }
                assert all(answer[0] == 503 for answer in answers), answers
            finally:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
    finally:
        drop_postgres_database(database_url)
