"""create_app(settings): the Connexion app with its storage, wired top-down."""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import connexion
import flask
import yaml
from connexion.options import SwaggerUIOptions

from statistics_manager_service import metrics
from statistics_manager_service.build import build_info
from statistics_manager_service.config import Settings
from statistics_manager_service.consumer_state import ROLE_ENV, STATE_DIR_ENV
from statistics_manager_service.context import ServiceContext, build_context
from statistics_manager_service.exception_handling_utils.errors import NotAcceptable
from statistics_manager_service.exception_handling_utils.handlers import register_error_handlers
from statistics_manager_service.log import configure_logging
from statistics_manager_service.middleware import RequestContextMiddleware, WholeResponseWSGI
from statistics_manager_service.tracing import configure_tracing
from statistics_manager_service.validation import CompiledParameterValidator

logger = logging.getLogger(__name__)

# Collect the youngest generation after this many net allocations instead of 700: a year-long
# series briefly holds thousands of containers, and each default collection rescanned them.
GC_GENERATION0_THRESHOLD = 20_000
# Threads running handlers per server process; the event loop queues what does not fit.
HANDLER_THREADS = 10
BASE_PATH = "/api/statistics"
SPEC_PATH = Path(__file__).with_name("openapi") / "openapi.yaml"
# Paths that answer without a token or correlation id: probes and the API's own documentation.
PUBLIC_SUFFIXES = ("/health", "/ready", "/version", "/openapi.json", "/openapi.yaml", "/ui")


def load_spec() -> dict[str, Any]:
    """Read the OpenAPI document that defines every route."""
    with SPEC_PATH.open(encoding="utf-8") as spec_file:
        spec: dict[str, Any] = yaml.safe_load(spec_file)
    return spec


def service_context() -> ServiceContext:
    """Return the context of the app serving the current request."""
    context: ServiceContext = flask.current_app.extensions["statistics_manager"]
    return context


def create_app(
    settings: Settings,
    *,
    context: ServiceContext | None = None,
    validate_responses: bool = False,
) -> connexion.FlaskApp:
    """Build the OpenAPI-first app; response validation is for tests (it costs throughput)."""
    context = context or build_context(settings)
    build = build_info(settings)
    metrics.record_build_info(build.version, build.revision)
    if settings.allow_anonymous_internal:
        logger.warning(
            "ALLOW_ANONYMOUS_INTERNAL=true: calls without a token from %s read every household",
            ", ".join(str(network) for network in settings.anonymous_internal_networks) or "no network",
        )
    spec = load_spec()
    app = connexion.FlaskApp(
        __name__,
        specification_dir=str(SPEC_PATH.parent),
        swagger_ui_options=SwaggerUIOptions(swagger_ui=True, spec_path="/openapi.json"),
    )
    app.add_api(
        spec,
        base_path=BASE_PATH,
        strict_validation=True,
        validate_responses=validate_responses,
        pythonic_params=False,
        validator_map={"parameter": CompiledParameterValidator},
    )
    # Connexion keeps its Flask app behind an a2wsgi bridge; serve it with the leaner one.
    app._middleware_app.asgi_app = WholeResponseWSGI(app.app.wsgi_app, HANDLER_THREADS)
    app.app.extensions["statistics_manager"] = context
    app.app.json.sort_keys = False
    register_error_handlers(app)
    app.app.before_request(_refuse_unanswerable_accept(_media_types(spec)))
    operation_paths = frozenset(BASE_PATH + path for path in spec["paths"])
    protected_paths = frozenset(path for path in operation_paths if not path.endswith(PUBLIC_SUFFIXES))
    app.add_middleware(
        RequestContextMiddleware,
        position=connexion.middleware.MiddlewarePosition.BEFORE_EXCEPTION,
        settings=settings,
        known_paths=operation_paths,
        protected_paths=protected_paths,
    )
    return app


def _media_types(spec: dict[str, Any]) -> dict[tuple[str, str], frozenset[str]]:
    """The media types each operation's success answer may take, by (METHOD, full path)."""
    types: dict[tuple[str, str], frozenset[str]] = {}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            success = operation["responses"].get("200", operation["responses"].get(200, {}))
            if "$ref" in success:  # '#/components/responses/<name>'
                success = spec["components"]["responses"][success["$ref"].rsplit("/", 1)[-1]]
            content = success.get("content", {})
            types[(method.upper(), BASE_PATH + path)] = frozenset(content) or frozenset({"application/json"})
    return types


def _refuse_unanswerable_accept(types: dict[tuple[str, str], frozenset[str]]) -> Callable[[], None]:
    """A hook answering 406 when the client's Accept excludes every media type of the endpoint
    (e.g. `Accept: text/csv` on an endpoint without CSV), instead of sending JSON it did not ask for."""

    def check() -> None:
        offered = types.get((flask.request.method, flask.request.path))
        if offered is None or "accept" not in flask.request.headers:
            return
        accepted = flask.request.accept_mimetypes
        if not any(accepted[media_type] > 0 for media_type in offered):
            answers = " or ".join(sorted(offered))
            raise NotAcceptable(f"this endpoint answers {answers} only; accept it (or send no Accept header)")

    return check


def prepare_heap_for_serving() -> None:
    """Freeze what start-up built and collect young garbage less often.

    Full collections otherwise rescan every module, spec and ORM object of the process (pauses of
    tens of milliseconds) and the youngest generation is rescanned about once per request.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GENERATION0_THRESHOLD, *gc.get_threshold()[1:])


def create_asgi_app() -> connexion.FlaskApp:
    """Build the app from the environment: the factory each server process calls."""
    settings = Settings.from_env()
    configure_logging(settings.log_level, settings.log_format)
    configure_tracing(settings)
    state_dir = os.environ.get(STATE_DIR_ENV)
    context = build_context(settings, os.environ.get(ROLE_ENV, "all"), Path(state_dir) if state_dir else None)
    app = create_app(settings, context=context)
    prepare_heap_for_serving()
    return app
