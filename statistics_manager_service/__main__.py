"""Command line: serve (`--role all|api|worker`, `--demo`), `db upgrade`, `token`, `peer-groups`."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

logger = logging.getLogger("statistics_manager_service")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="statistics-manager",
        description="Statistics Manager: energy statistics of FlexiHome households over REST.",
    )
    parser.add_argument(
        "--role",
        choices=("all", "api", "worker"),
        default="all",
        help="all: API, consumer and outbox relay in one process (default); api: only the REST API; "
        "worker: only the consumer and relay (with /health, /ready and /metrics).",
    )
    parser.add_argument("--demo", action="store_true", help="load a year of demo households first")
    commands = parser.add_subparsers(dest="command")
    db = commands.add_parser("db", help="database schema management")
    db.add_argument("action", choices=("upgrade", "current"), help="upgrade to the newest schema, or show it")
    token = commands.add_parser("token", help="print a signed bearer token (development and operations)")
    token.add_argument("--user-id", help="the household user id (sub claim)")
    token.add_argument("--service", action="store_true", help="a service token that may read any household")
    token.add_argument("--hours", type=float, default=24.0, help="validity in hours (default 24)")
    commands.add_parser(
        "peer-groups",
        help="compute the peer groups of the open and the previous month once (the workers do it "
        "every PEER_COMPARISON_INTERVAL_S)",
    )
    return parser


def _prepare_metrics_dir() -> None:
    """Give the server processes a shared directory for their metrics before anyone imports them."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="statistics-metrics-")


def _run_db(action: str) -> int:
    from statistics_manager_service.config import Settings
    from statistics_manager_service.log import configure_logging
    from statistics_manager_service.storage import migrate
    from statistics_manager_service.storage.engine import make_engine

    settings = Settings.from_env()
    configure_logging(settings.log_level, settings.log_format)
    engine = make_engine(settings.database_url)
    if action == "upgrade":
        migrate.upgrade(engine)
    print(f"schema revision: {migrate.current_revision(engine)} (newest: {migrate.head_revision()})")
    return 0


def _run_peer_groups() -> int:
    from statistics_manager_service.config import Settings
    from statistics_manager_service.context import build_context
    from statistics_manager_service.event_consumer.runner import peer_group_job
    from statistics_manager_service.log import configure_logging

    settings = Settings.from_env()
    configure_logging(settings.log_level, settings.log_format)
    context = build_context(settings, "worker")
    try:
        for run in peer_group_job(context).run_once():
            print(
                f"{run.period}: {run.households_counted} of {run.households_read} households"
                f" counted in {run.groups} groups"
            )
    finally:
        context.dispose()
    return 0


def _run_token(user_id: str | None, service: bool, hours: float) -> int:
    from statistics_manager_service.config import Settings
    from statistics_manager_service.tokens import issue_token

    if not service and not user_id:
        print("give --user-id or --service", file=sys.stderr)
        return 2
    settings = Settings.from_env()
    print(issue_token(settings, user_id=user_id, service=service, valid_for_s=int(hours * 3600)))
    return 0


def _serve(role: str, demo: bool) -> int:
    from statistics_manager_service.config import Settings

    settings = Settings.from_env()
    workers = settings.effective_web_workers() if role != "worker" else 1
    if workers > 1:
        _prepare_metrics_dir()

    import uvicorn

    from statistics_manager_service.consumer_state import ROLE_ENV, STATE_DIR_ENV
    from statistics_manager_service.context import build_context
    from statistics_manager_service.event_consumer.runner import start_background
    from statistics_manager_service.log import configure_logging
    from statistics_manager_service.tracing import configure_tracing

    configure_logging(settings.log_level, settings.log_format)
    configure_tracing(settings)
    # The server processes answer /ready from the state the consumer (in this process) publishes here.
    state_dir = Path(tempfile.mkdtemp(prefix="statistics-state-"))
    os.environ[ROLE_ENV] = role
    os.environ[STATE_DIR_ENV] = str(state_dir)
    context = build_context(settings, role, state_dir)  # migrates once, before any server process starts
    if demo:
        from statistics_manager_service.demo import load_demo

        load_demo(context)
    background = start_background(context, role)
    if demo:
        from statistics_manager_service.demo.live import feed_live

        background.spawn("demo-live", lambda stop: feed_live(context, stop))
    if role == "api" and workers > 1:
        # The server processes share the pod's connections; this one only migrated.
        context.engine.dispose()
    # The server processes re-read the environment; the schema is already current.
    os.environ["RUN_MIGRATIONS_ON_START"] = "false"
    logger.info(
        "serving role=%s on http://%s:%s/api/statistics/ui/ with %d server process(es)",
        role,
        settings.host,
        settings.port,
        workers,
    )
    started = time.monotonic()
    # One process serves the app object itself, sharing this context with the background
    # workers; several processes each build their own from the environment.
    target: object = "statistics_manager_service.app:create_asgi_app"
    if workers == 1:
        from statistics_manager_service.app import create_app, prepare_heap_for_serving

        target = create_app(settings, context=context)
        prepare_heap_for_serving()
    # uvicorn handles SIGTERM/SIGINT itself and re-raises the signal once it has shut down; with
    # these handlers in place that re-raise returns here, so the background workers stop cleanly.
    stop_signals: list[int] = []
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, lambda number, _frame: stop_signals.append(number))
    try:
        uvicorn.run(
            target,  # type: ignore[arg-type]
            factory=workers > 1,
            host=settings.host,
            port=settings.port,
            workers=workers,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=10,
            proxy_headers=True,
        )
    finally:
        background.stop()
        context.dispose()
        shutil.rmtree(state_dir, ignore_errors=True)
        logger.info("stopped after %.0f s (signals: %s)", time.monotonic() - started, stop_signals or "none")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line."""
    args = _parser().parse_args(argv)
    from sqlalchemy.exc import OperationalError

    from statistics_manager_service.config import ConfigurationError
    from statistics_manager_service.storage.engine import CONNECTIONS_SETTING, refused_for_capacity

    try:
        if args.command == "db":
            return _run_db(args.action)
        if args.command == "token":
            return _run_token(args.user_id, args.service, args.hours)
        if args.command == "peer-groups":
            return _run_peer_groups()
        return _serve(args.role, args.demo)
    except ConfigurationError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    except OperationalError as error:
        # The orchestrator restarts the process; say why in one line instead of a traceback.
        reason = str(error).splitlines()[0]
        if refused_for_capacity(error):
            print(
                f"database refused the connection, it has no slot left ({reason}): lower"
                f" {CONNECTIONS_SETTING} or the replica count, or raise the database's max_connections",
                file=sys.stderr,
            )
        else:
            print(f"database unavailable: {reason}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
