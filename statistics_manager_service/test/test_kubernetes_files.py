"""The Kubernetes manifests (deploy/kubernetes) agree with the service and with each other.

Each overlay is rendered as `kubectl kustomize` would (test/support/kustomize.py, no binary
needed; where kubectl is installed, the two renderings are compared) and every object is validated against the Kubernetes JSON schemas the
`kubernetes-validate` wheel ships; the Prometheus Operator's objects, which have no schema
there, are checked for the fields the operator requires.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from statistics_manager_service.test.support.kustomize import read_env_file, render
from statistics_manager_service.test.support.settings_read import SECRET_SETTINGS, service_settings

ROOT = Path(__file__).resolve().parents[2]
K8S_DIR = ROOT / "deploy" / "kubernetes"
BASE_DIR = K8S_DIR / "base"
OVERLAYS = ("dev", "prod")
CONFIG_SOURCE = BASE_DIR / "config.env"
SECRETS_EXAMPLE = K8S_DIR / "secrets.env.example"
NAMESPACE = "statistics-manager"

SERVICE_PORT = 8080
HEALTH_PATH = "/api/statistics/health"
READY_PATH = "/api/statistics/ready"
METRICS_PATH = "/metrics"
MODULE_CMD = ["python", "-m", "statistics_manager_service"]
MIGRATE_CMD = ["statistics-manager", "db", "upgrade"]
TOPIC_PARTITIONS = 6
# Kubernetes release whose schemas the manifests must satisfy (strict: no unknown fields).
KUBERNETES_VERSION = "1.30"

Object = dict[str, Any]


# --------------------------------------------------------------------------------------------
# rendering and helpers
# --------------------------------------------------------------------------------------------


def _render_copy(tree: Path, overlay: str) -> list[Object]:
    """Render an overlay of a copy of deploy/kubernetes, its secrets.env made from the example."""
    shutil.copy(tree / "secrets.env.example", tree / "overlays" / overlay / "secrets.env")
    return render(tree / "overlays" / overlay)


def _copy_tree(destination: Path) -> Path:
    tree = destination / "kubernetes"
    shutil.copytree(K8S_DIR, tree, ignore=shutil.ignore_patterns("secrets.env"))
    return tree


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Object]]:
    """Every overlay's objects, as `kubectl apply -k deploy/kubernetes/overlays/<name>` sends them."""
    tree = _copy_tree(tmp_path_factory.mktemp("k8s"))
    return {overlay: _render_copy(tree, overlay) for overlay in OVERLAYS}


def _of(objects: list[Object], kind: str, component: str | None = None) -> list[Object]:
    return [
        o
        for o in objects
        if o["kind"] == kind
        and (
            component is None
            or o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component
        )
    ]


def _one(objects: list[Object], kind: str, component: str | None = None) -> Object:
    found = _of(objects, kind, component)
    assert len(found) == 1, f"expected one {kind} {component or ''}, found {len(found)}"
    return found[0]


def _pod(deployment: Object) -> Object:
    pod: Object = deployment["spec"]["template"]["spec"]
    return pod


def _container(deployment: Object) -> Object:
    (container,) = _pod(deployment)["containers"]
    return dict(container)


def _kustomizations() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(K8S_DIR.rglob("kustomization.yaml")):
        yield path, yaml.safe_load(path.read_text(encoding="utf-8"))


def _patch_files() -> set[Path]:
    return {
        (path.parent / patch["path"]).resolve()
        for path, kustomization in _kustomizations()
        for patch in kustomization.get("patches", [])
    }


def _manifest_files() -> list[Path]:
    """Every YAML file of whole objects: the resources and any manifest lying beside them."""
    return [
        path
        for path in sorted(K8S_DIR.rglob("*.yaml"))
        if path.name != "kustomization.yaml" and path.resolve() not in _patch_files()
    ]


def _cpu(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def _memory(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi)?", quantity)
    assert match, quantity
    return int(match.group(1)) * units.get(match.group(2) or "", 1)


# Fields the Prometheus Operator requires of its objects (its CRDs are not in the schema set).
def _check_custom_resource(document: Object) -> None:
    """Raise AssertionError when an operator object lacks what the operator needs."""
    kind = document["kind"]
    assert document["apiVersion"] == "monitoring.coreos.com/v1", (
        f"{kind}: unknown API {document['apiVersion']}"
    )
    assert document["metadata"].get("name"), f"{kind} without a name"
    spec = document.get("spec")
    assert isinstance(spec, dict), f"{kind} without spec"
    if kind in ("ServiceMonitor", "PodMonitor"):
        selector = spec.get("selector")
        assert isinstance(selector, dict) and (
            selector.get("matchLabels") or selector.get("matchExpressions")
        )
        endpoints = spec.get("endpoints" if kind == "ServiceMonitor" else "podMetricsEndpoints")
        assert isinstance(endpoints, list) and endpoints, f"{kind} without endpoints"
        for endpoint in endpoints:
            assert endpoint.get("port") or endpoint.get("targetPort"), f"{kind}: an endpoint without a port"
    elif kind == "PrometheusRule":
        groups = spec.get("groups")
        assert isinstance(groups, list) and groups, "PrometheusRule without groups"
        for group in groups:
            assert group.get("name") and isinstance(group.get("rules"), list), (
                "a rule group needs name and rules"
            )
            for rule in group["rules"]:
                assert rule.get("expr"), f"{group['name']}: a rule without expr"
                assert ("alert" in rule) != ("record" in rule), (
                    f"{group['name']}: alert or record, one of them"
                )
    else:
        raise AssertionError(f"no check for the custom resource {kind}")


def _validate(document: Object, where: str) -> None:
    """Validate an object against its schema, or a custom resource against the operator's needs."""
    kv = pytest.importorskip(
        "kubernetes_validate.utils",
        reason="kubernetes-validate (offline Kubernetes JSON schemas) is not installed; "
        "pip install kubernetes-validate==1.37.0",
    )
    if document["apiVersion"].startswith("monitoring.coreos.com/"):
        _check_custom_resource(document)
        return
    try:
        kv.validate(document, KUBERNETES_VERSION, strict=True)
    except kv.SchemaNotFoundError as error:  # pragma: no cover - a failure path
        pytest.fail(f"{where}: {error.message}")
    except kv.ValidationError as error:  # pragma: no cover - a failure path
        location = ".".join(str(p) for p in error.path)
        pytest.fail(f"{where} {document['kind']}: {location}: {error.message}")


# --------------------------------------------------------------------------------------------
# layout and schemas
# --------------------------------------------------------------------------------------------


def test_every_file_belongs_to_its_kustomization() -> None:
    """Nothing in base/, components/ or overlays/ is left out; nothing listed is missing."""
    kinds = {}
    for path, kustomization in _kustomizations():
        kinds[path.parent.relative_to(K8S_DIR).as_posix()] = kustomization["kind"]
        listed = [*kustomization.get("resources", []), *(p["path"] for p in kustomization.get("patches", []))]
        for entry in listed + kustomization.get("components", []):
            assert (path.parent / entry).exists(), f"{path}: {entry} does not exist"
        local = {entry for entry in listed if "/" not in entry}
        present = {p.name for p in path.parent.glob("*.yaml") if p.name != "kustomization.yaml"}
        assert present == local, f"{path.parent}: not listed {sorted(present - local)}"
    assert kinds == {
        "base": "Kustomization",
        "components/monitoring": "Component",
        **{f"overlays/{overlay}": "Kustomization" for overlay in OVERLAYS},
    }
    for overlay in OVERLAYS:
        resources = yaml.safe_load((K8S_DIR / "overlays" / overlay / "kustomization.yaml").read_text())[
            "resources"
        ]
        assert resources == ["../../base"]


def _comparable(objects: list[Object]) -> dict[tuple[str, str], Object]:
    """Objects by kind and name, generated names without their hash, secrets decoded."""
    comparable = {}
    for document in objects:
        text = re.sub(r"(statistics-manager-(config|secrets))-[0-9a-z]{10}\b", r"\1", json.dumps(document))
        document = json.loads(text)
        if document["kind"] == "Secret":
            document["data"] = {
                key: base64.b64decode(value).decode() for key, value in document["data"].items()
            }
        comparable[(document["kind"], document["metadata"]["name"])] = document
    return comparable


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_python_rendering_matches_kustomize(
    rendered: dict[str, list[Object]], overlay: str, tmp_path: Path
) -> None:
    """Where a kustomize binary is at hand (`kubectl kustomize`), it renders the same objects."""
    command = next(
        ([*found] for found in (["kubectl", "kustomize"], ["kustomize", "build"]) if shutil.which(found[0])),
        None,
    )
    if command is None:
        pytest.skip("neither kubectl nor kustomize is installed")
    tree = _copy_tree(tmp_path)

    def build() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*command, str(tree / "overlays" / overlay)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    missing = build()  # no secrets.env: nothing to apply, rather than placeholders over the real Secret
    assert missing.returncode != 0 and "secrets.env" in missing.stderr
    shutil.copy(tree / "secrets.env.example", tree / "overlays" / overlay / "secrets.env")
    result = build()
    assert result.returncode == 0, result.stderr
    built = [document for document in yaml.safe_load_all(result.stdout) if document]
    assert _comparable(built) == _comparable(rendered[overlay])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rendered_overlay_validates_against_the_schemas(
    rendered: dict[str, list[Object]], overlay: str
) -> None:
    for document in rendered[overlay]:
        _validate(document, f"overlays/{overlay}")
    kinds = {document["kind"] for document in rendered[overlay]}
    assert {
        "Namespace",
        "ServiceAccount",
        "ConfigMap",
        "Secret",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
    } <= kinds
    assert "Job" not in kinds, "the init containers migrate; no Job to order by hand"


def test_every_manifest_file_validates() -> None:
    """Each file of whole objects, including any added beside the kustomizations (e.g. alert rules)."""
    files = _manifest_files()
    assert BASE_DIR / "api-deployment.yaml" in files
    for path in files:
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if document:
                assert document["kind"] not in ("ConfigMap", "Secret"), (
                    f"{path}: generate it (kustomization.yaml)"
                )
                _validate(document, str(path.relative_to(K8S_DIR)))


def test_the_checks_reject_broken_manifests(rendered: dict[str, list[Object]]) -> None:
    """The schema validator and the custom-resource check are live: broken objects fail."""
    kv = pytest.importorskip("kubernetes_validate.utils", reason="kubernetes-validate is not installed")
    deployment = _one(rendered["prod"], "Deployment", "api")
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["replica"] = 2
    with pytest.raises(kv.ValidationError):
        kv.validate(broken, KUBERNETES_VERSION, strict=True)
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["template"]["spec"]["initContainers"][0]["ports"] = [{"containerPort": "eighty"}]
    with pytest.raises(kv.ValidationError):
        kv.validate(broken, KUBERNETES_VERSION, strict=True)
    monitor = _one(rendered["prod"], "ServiceMonitor", "api")
    for field in ("selector", "endpoints"):
        broken = json.loads(json.dumps(monitor))
        del broken["spec"][field]
        with pytest.raises(AssertionError):
            _check_custom_resource(broken)
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "rules"},
        "spec": {"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "up == 0"}]}]},
    }
    _check_custom_resource(rule)
    del rule["spec"]["groups"][0]["rules"][0]["expr"]
    with pytest.raises(AssertionError):
        _check_custom_resource(rule)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_objects_share_one_restricted_namespace(rendered: dict[str, list[Object]], overlay: str) -> None:
    objects = rendered[overlay]
    namespace = _one(objects, "Namespace")
    assert namespace["metadata"]["name"] == NAMESPACE
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for document in objects:
        if document["kind"] != "Namespace":
            assert document["metadata"]["namespace"] == NAMESPACE, document["metadata"]["name"]


# --------------------------------------------------------------------------------------------
# workloads
# --------------------------------------------------------------------------------------------


def _assert_hardened(objects: list[Object], deployment: Object) -> None:
    pod = _pod(deployment)
    name = deployment["metadata"]["name"]
    assert pod["securityContext"]["runAsNonRoot"] is True, name
    assert pod["securityContext"]["runAsUser"] != 0, name
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
    assert pod.get("automountServiceAccountToken") is False, name
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    config = _one(objects, "ConfigMap")["metadata"]["name"]
    secret = _one(objects, "Secret")["metadata"]["name"]
    for container in pod["initContainers"] + pod["containers"]:
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True, name
        assert context["allowPrivilegeEscalation"] is False, name
        assert context["capabilities"]["drop"] == ["ALL"], name
        tmp = [m for m in container.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
        assert tmp and "emptyDir" in volumes[tmp[0]["name"]], f"{name}: /tmp must be an emptyDir"
        resources = container["resources"]
        for resource, parse in (("cpu", _cpu), ("memory", _memory)):
            assert parse(resources["requests"][resource]) <= parse(resources["limits"][resource]), name
        env_from = [next(iter(ref.items())) for ref in container["envFrom"]]
        assert env_from == [("configMapRef", {"name": config}), ("secretRef", {"name": secret})], name


def _assert_probes_and_scraping(deployment: Object) -> None:
    container = _container(deployment)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": SERVICE_PORT}
    assert container["livenessProbe"]["httpGet"]["path"] == HEALTH_PATH
    assert container["readinessProbe"]["httpGet"]["path"] == READY_PATH
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] in ports, probe
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(SERVICE_PORT)
    assert annotations["prometheus.io/path"] == METRICS_PATH
    selector = deployment["spec"]["selector"]["matchLabels"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()


def _assert_migrates_first(deployment: Object) -> None:
    """The init container runs the upgrade with the server's image and settings."""
    pod = _pod(deployment)
    (migrate,) = pod["initContainers"]
    container = _container(deployment)
    assert migrate.get("command", []) + migrate.get("args", []) == MIGRATE_CMD
    assert migrate["image"] == container["image"]
    assert migrate["envFrom"] == container["envFrom"]
    assert not {"livenessProbe", "readinessProbe", "startupProbe"} & set(migrate), (
        "init containers have no probes"
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_api_deployment(rendered: dict[str, list[Object]], overlay: str) -> None:
    objects = rendered[overlay]
    api = _one(objects, "Deployment", "api")
    container = _container(api)
    assert container["command"] + container["args"] == [*MODULE_CMD, "--role", "api"]
    assert "replicas" not in api["spec"], (
        "the HPA owns the API's replica count; an applied one would reset it"
    )
    _assert_probes_and_scraping(api)
    _assert_hardened(objects, api)
    _assert_migrates_first(api)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_worker_deployment_stays_within_the_partitions(
    rendered: dict[str, list[Object]], overlay: str
) -> None:
    objects = rendered[overlay]
    worker = _one(objects, "Deployment", "worker")
    container = _container(worker)
    assert container["command"] + container["args"] == [*MODULE_CMD, "--role", "worker"]
    assert 1 <= worker["spec"]["replicas"] <= TOPIC_PARTITIONS
    assert "partition" in (BASE_DIR / "worker-deployment.yaml").read_text(encoding="utf-8").lower()
    _assert_probes_and_scraping(worker)
    _assert_hardened(objects, worker)
    _assert_migrates_first(worker)
    assert not [
        h
        for h in _of(objects, "HorizontalPodAutoscaler")
        if h["spec"]["scaleTargetRef"]["name"] == worker["metadata"]["name"]
    ]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_runs_the_release_image(rendered: dict[str, list[Object]], overlay: str) -> None:
    images = {
        container["image"]
        for deployment in _of(rendered[overlay], "Deployment")
        for container in _pod(deployment)["initContainers"] + _pod(deployment)["containers"]
    }
    assert len(images) == 1
    assert re.fullmatch(r"[a-z0-9./-]*statistics-manager(:[\w.-]+|@sha256:[0-9a-f]{64})", images.pop())


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_hpa_scales_the_api_on_cpu(rendered: dict[str, list[Object]], overlay: str) -> None:
    objects = rendered[overlay]
    hpa = _one(objects, "HorizontalPodAutoscaler")
    api = _one(objects, "Deployment", "api")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": api["metadata"]["name"],
    }
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"
    assert _container(api)["resources"]["requests"]["cpu"], "CPU utilization needs a CPU request"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_select_their_pods(rendered: dict[str, list[Object]], overlay: str) -> None:
    objects = rendered[overlay]
    api_labels = _one(objects, "Deployment", "api")["spec"]["template"]["metadata"]["labels"]
    worker_labels = _one(objects, "Deployment", "worker")["spec"]["template"]["metadata"]["labels"]
    api_service = _one(objects, "Service", "api")
    assert api_service["spec"]["selector"].items() <= api_labels.items()
    assert not api_service["spec"]["selector"].items() <= worker_labels.items()
    worker_service = _one(objects, "Service", "worker")
    assert worker_service["spec"]["clusterIP"] == "None", "headless: the workers take no traffic"
    assert worker_service["spec"]["selector"].items() <= worker_labels.items()
    assert not worker_service["spec"]["selector"].items() <= api_labels.items()
    for service in (api_service, worker_service):
        assert [(p["name"], p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [
            ("http", SERVICE_PORT, "http")
        ]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_disruption_budgets_cover_both_deployments_without_blocking_drains(
    rendered: dict[str, list[Object]], overlay: str
) -> None:
    objects = rendered[overlay]
    budgets = _of(objects, "PodDisruptionBudget")
    for component in ("api", "worker"):
        labels = _one(objects, "Deployment", component)["spec"]["template"]["metadata"]["labels"]
        matching = [b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()]
        assert len(matching) == 1, component
        spec = matching[0]["spec"]
        assert ("minAvailable" in spec) != ("maxUnavailable" in spec)
        fewest = (
            _one(objects, "HorizontalPodAutoscaler")["spec"]["minReplicas"]
            if component == "api"
            else _one(objects, "Deployment", "worker")["spec"]["replicas"]
        )
        if "minAvailable" in spec:
            assert spec["minAvailable"] < fewest, f"{component}: a drain could never evict a pod"
        else:
            assert spec["maxUnavailable"] >= 1


def test_overlays_size_production_above_development(rendered: dict[str, list[Object]]) -> None:
    dev, prod = rendered["dev"], rendered["prod"]
    for component in ("api", "worker"):
        small = _container(_one(dev, "Deployment", component))["resources"]
        large = _container(_one(prod, "Deployment", component))["resources"]
        for level in ("requests", "limits"):
            assert _cpu(small[level]["cpu"]) <= _cpu(large[level]["cpu"]), (component, level)
            assert _memory(small[level]["memory"]) <= _memory(large[level]["memory"]), (component, level)
        assert small["requests"] != large["requests"], f"{component}: the overlays size it alike"
    assert (
        _one(dev, "Deployment", "worker")["spec"]["replicas"]
        < _one(prod, "Deployment", "worker")["spec"]["replicas"]
    )
    dev_hpa, prod_hpa = (_one(o, "HorizontalPodAutoscaler")["spec"] for o in (dev, prod))
    assert (
        dev_hpa["minReplicas"] < prod_hpa["minReplicas"] and dev_hpa["maxReplicas"] < prod_hpa["maxReplicas"]
    )
    assert prod_hpa["minReplicas"] >= 2, "production keeps serving while a pod is replaced"
    assert _one(prod, "Deployment", "worker")["spec"]["replicas"] >= 2


# --------------------------------------------------------------------------------------------
# settings: generated ConfigMap and Secret
# --------------------------------------------------------------------------------------------


def test_every_setting_has_its_source_secrets_apart() -> None:
    """Each variable config.py reads is set: secrets in secrets.env, the rest in the ConfigMap's source."""
    config = read_env_file(CONFIG_SOURCE)
    secrets = read_env_file(SECRETS_EXAMPLE)
    settings = service_settings()
    assert "KAFKA_MAX_POLL_RECORDS" in settings  # the reading of config.py works
    for setting in settings:
        if setting in SECRET_SETTINGS:
            assert setting in secrets and setting not in config, f"{setting} is a secret"
        else:
            assert setting in config and setting not in secrets, f"{setting} missing from base/config.env"
    assert set(config) | set(secrets) == set(settings), "a key the service does not read"
    assert config["PORT"] == str(SERVICE_PORT)
    assert config["RUN_MIGRATIONS_ON_START"] == "false", "the init containers own the schema"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rendered_configuration_is_what_the_service_reads(
    rendered: dict[str, list[Object]], overlay: str
) -> None:
    objects = rendered[overlay]
    settings = set(service_settings())
    config = _one(objects, "ConfigMap")
    assert set(config["data"]) == settings - SECRET_SETTINGS, (
        "an overlay sets a key the service does not read"
    )
    assert all(isinstance(value, str) for value in config["data"].values())
    assert config["data"]["RUN_MIGRATIONS_ON_START"] == "false"
    secret = _one(objects, "Secret")
    assert secret["type"] == "Opaque" and set(secret["data"]) == SECRET_SETTINGS
    # Generated, so a changed value changes the name and rolls the pods.
    for generated, base_name in (
        (config, "statistics-manager-config"),
        (secret, "statistics-manager-secrets"),
    ):
        assert re.fullmatch(rf"{base_name}-[0-9a-z]{{10}}", generated["metadata"]["name"])


def test_a_changed_setting_renames_the_configmap_the_pods_use(tmp_path: Path) -> None:
    def used_config(tree: Path) -> str:
        api = _one(_render_copy(tree, "prod"), "Deployment", "api")
        name: str = _container(api)["envFrom"][0]["configMapRef"]["name"]
        return name

    tree = _copy_tree(tmp_path)
    before = used_config(tree)
    config = tree / "base" / "config.env"
    config.write_text(
        config.read_text(encoding="utf-8").replace("LOG_LEVEL=INFO", "LOG_LEVEL=WARNING"), encoding="utf-8"
    )
    after = used_config(tree)
    assert before != after and after.startswith("statistics-manager-config-")


def test_real_secrets_stay_out_of_the_repository() -> None:
    secrets = read_env_file(SECRETS_EXAMPLE)
    assert "CHANGE-ME" in secrets["DATABASE_URL"]
    # The placeholder signing key is too short for the service, so it cannot reach production.
    assert len(secrets["JWT_SIGN_KEY"]) < 16
    ignored = (K8S_DIR / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert "secrets.env" in ignored
    for overlay in OVERLAYS:
        kustomization = yaml.safe_load((K8S_DIR / "overlays" / overlay / "kustomization.yaml").read_text())
        (generator,) = kustomization["secretGenerator"]
        assert generator["envs"] == ["secrets.env"]
        if shutil.which("git") and (ROOT / ".git").exists():
            path = f"deploy/kubernetes/overlays/{overlay}/secrets.env"
            check = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT, check=False)
            assert check.returncode == 0, f"{path} is not ignored by git"


def test_secret_values_reach_the_pods_unchanged(rendered: dict[str, list[Object]]) -> None:
    secret = _one(rendered["prod"], "Secret")
    decoded = {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}
    assert decoded == read_env_file(SECRETS_EXAMPLE)


# --------------------------------------------------------------------------------------------
# monitoring and network
# --------------------------------------------------------------------------------------------


def test_service_monitors_scrape_the_api_and_the_workers(rendered: dict[str, list[Object]]) -> None:
    objects = rendered["prod"]
    for component in ("api", "worker"):
        monitor = _one(objects, "ServiceMonitor", component)
        service = _one(objects, "Service", component)
        assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
        others = [s for s in _of(objects, "Service") if s is not service]
        assert not any(
            monitor["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
            for s in others
        )
        service_ports = {port["name"] for port in service["spec"]["ports"]}
        for endpoint in monitor["spec"]["endpoints"]:
            assert endpoint["port"] in service_ports
            assert endpoint.get("path", METRICS_PATH) == METRICS_PATH
        assert "release" in monitor["metadata"]["labels"], "the label Prometheus selects ServiceMonitors by"
    assert not _of(rendered["dev"], "ServiceMonitor"), "dev clusters may lack the operator's CRDs"


def _peers(rule: Object) -> list[Object]:
    peers: list[Object] = rule.get("from", rule.get("to", []))
    assert peers, "a rule without peers admits everyone"
    return peers


def _namespaces(rule: Object) -> set[str]:
    return {peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for peer in _peers(rule)}


def _ports(rule: Object) -> set[tuple[str, int | str]]:
    return {(port["protocol"], port["port"]) for port in rule["ports"]}


def test_network_policies_admit_only_the_gateway_and_prometheus(rendered: dict[str, list[Object]]) -> None:
    objects = rendered["prod"]
    policies = _of(objects, "NetworkPolicy")
    prometheus = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
    }
    for component, admitted in (("api", {"ingress-nginx", "monitoring"}), ("worker", {"monitoring"})):
        labels = _one(objects, "Deployment", component)["spec"]["template"]["metadata"]["labels"]
        ingress = [
            p
            for p in policies
            if "Ingress" in p["spec"]["policyTypes"]
            and p["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
        ]
        assert len(ingress) == 1, component
        rules = ingress[0]["spec"]["ingress"]
        assert set().union(*(_namespaces(rule) for rule in rules)) == admitted
        assert any(prometheus in _peers(rule) for rule in rules), f"{component}: Prometheus may not scrape"
        for rule in rules:
            for peer in _peers(rule):
                assert "ipBlock" not in peer and "namespaceSelector" in peer
            assert _ports(rule) == {("TCP", "http")}
    # The documented labels are the ones used.
    text = (BASE_DIR / "networkpolicy.yaml").read_text(encoding="utf-8")
    for label in (
        "ingress-nginx",
        "monitoring",
        "app.kubernetes.io/name: prometheus",
        "database",
        "kafka",
        "kube-dns",
    ):
        assert label in text.split("apiVersion")[0], f"the header does not document {label}"


def test_network_policies_let_every_pod_reach_dns_postgres_and_kafka(
    rendered: dict[str, list[Object]],
) -> None:
    objects = rendered["prod"]
    (egress,) = [p for p in _of(objects, "NetworkPolicy") if "Egress" in p["spec"]["policyTypes"]]
    for component in ("api", "worker"):
        labels = _one(objects, "Deployment", component)["spec"]["template"]["metadata"]["labels"]
        assert egress["spec"]["podSelector"]["matchLabels"].items() <= labels.items(), component
    reachable = {
        (namespace, port)
        for rule in egress["spec"]["egress"]
        for namespace in _namespaces(rule)
        for port in _ports(rule)
    }
    # The addresses the settings name are the ones the policy opens.
    database = urlsplit(read_env_file(SECRETS_EXAMPLE)["DATABASE_URL"])
    broker_host, _, broker_port = read_env_file(CONFIG_SOURCE)["KAFKA_BOOTSTRAP_SERVERS"].partition(":")
    assert reachable == {
        ("kube-system", ("UDP", 53)),
        ("kube-system", ("TCP", 53)),
        (str(database.hostname).split(".")[1], ("TCP", database.port)),
        (broker_host.split(".")[1], ("TCP", int(broker_port))),
    }


# --------------------------------------------------------------------------------------------
# documentation
# --------------------------------------------------------------------------------------------


def test_documented_apply_commands_point_at_kustomizations() -> None:
    documented = set()
    for document in (K8S_DIR / "README.md", ROOT / "README.md", *K8S_DIR.rglob("kustomization.yaml")):
        for target in re.findall(r"kubectl apply -k (\S+)", document.read_text(encoding="utf-8")):
            target = target.rstrip("`),.")
            assert (ROOT / target / "kustomization.yaml").is_file(), f"{document.name}: {target}"
            documented.add(target)
    assert {f"deploy/kubernetes/overlays/{overlay}" for overlay in OVERLAYS} <= documented
