"""Render a kustomization as `kubectl kustomize` does, for the features deploy/kubernetes uses.

The tests have no kustomize binary. This covers: `resources` (files and directories),
`components`, `namespace`, `configMapGenerator` and `secretGenerator` (`envs`, `literals`,
`behavior: create|merge`, `namespace`, `type`), `generatorOptions.labels`, `images`, `replicas`
and `patches` given by `path` holding a strategic-merge patch. Any other field, or a patch
directive, raises: a test never passes over something this rendering would ignore.

Generated ConfigMaps and Secrets get a suffix hashed from their content, and the references of
pod templates follow the new name, as kustomize does (the hash itself is not kustomize's).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

Object = dict[str, Any]

SUPPORTED_FIELDS = {
    "apiVersion",
    "kind",
    "namespace",
    "resources",
    "components",
    "configMapGenerator",
    "secretGenerator",
    "generatorOptions",
    "images",
    "replicas",
    "patches",
}
GENERATOR_FIELDS = {"name", "namespace", "behavior", "envs", "literals", "type", "options"}
SCALED_KINDS = {"Deployment", "StatefulSet", "ReplicaSet"}
CLUSTER_SCOPED_KINDS = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}
# The list fields a strategic-merge patch merges item by item, and the key that pairs the items.
MERGE_KEYS = {"containers": "name", "initContainers": "name", "volumes": "name", "env": "name"}
_GENERATED = "__generated__"


class KustomizeError(ValueError):
    """The kustomization uses something this rendering does not support, or is wrong."""


def render(directory: Path) -> list[Object]:
    """Build the kustomization in `directory` and return its objects."""
    objects = _build(directory, [], "Kustomization")
    renamed: dict[tuple[str, str], str] = {}
    for document in objects:
        if document.pop(_GENERATED, False):
            name = document["metadata"]["name"]
            suffixed = f"{name}-{_content_hash(document)}"
            renamed[(document["kind"], name)] = suffixed
            document["metadata"]["name"] = suffixed
    for document in objects:
        for pod in _pod_specs(document):
            _rename_references(pod, renamed)
    return objects


def read_env_file(path: Path) -> dict[str, str]:
    """Read KEY=VALUE lines as kustomize's `envs` do: `#` lines and blank lines skipped, values literal."""
    values: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.lstrip()
        if not line or line.startswith("#"):
            continue
        key, equals, value = line.partition("=")
        if not equals or not key or key != key.strip():
            raise KustomizeError(f"{path}:{number}: not KEY=VALUE")
        if key in values:
            raise KustomizeError(f"{path}:{number}: {key} given twice")
        values[key] = value
    return values


def _build(directory: Path, inherited: list[Object], expected_kind: str) -> list[Object]:
    path = directory / "kustomization.yaml"
    if not path.is_file():
        raise KustomizeError(f"no kustomization.yaml in {directory}")
    kustomization: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    unsupported = set(kustomization) - SUPPORTED_FIELDS
    if unsupported:
        raise KustomizeError(f"{path}: unsupported fields {sorted(unsupported)}")
    if kustomization.get("kind", "Kustomization") != expected_kind:
        raise KustomizeError(f"{path}: expected a {expected_kind}")
    objects = inherited
    for entry in kustomization.get("resources", []):
        resource = directory / entry
        if resource.is_dir():
            objects = objects + _build(resource, [], "Kustomization")
        else:
            objects = objects + _load(resource)
    for entry in kustomization.get("components", []):
        objects = _build(directory / entry, objects, "Component")
    namespace = kustomization.get("namespace")
    labels = kustomization.get("generatorOptions", {}).get("labels", {})
    for kind, field in (("ConfigMap", "configMapGenerator"), ("Secret", "secretGenerator")):
        for generator in kustomization.get(field, []):
            objects = _generate(directory, kind, generator, namespace, labels, objects)
    for patch in kustomization.get("patches", []):
        if set(patch) != {"path"}:
            raise KustomizeError(f"{path}: only patches given by path are supported")
        for document in _load(directory / patch["path"]):
            _apply_patch(objects, document)
    for replica in kustomization.get("replicas", []):
        targets = [
            o for o in objects if o["kind"] in SCALED_KINDS and o["metadata"]["name"] == replica["name"]
        ]
        if not targets:
            raise KustomizeError(f"{path}: replicas of unknown {replica['name']}")
        for target in targets:
            target["spec"]["replicas"] = int(replica["count"])
    for image in kustomization.get("images", []):
        for document in objects:
            for pod in _pod_specs(document):
                for container in pod.get("initContainers", []) + pod.get("containers", []):
                    container["image"] = _retag(container["image"], image)
    if namespace:
        for document in objects:
            if document["kind"] not in CLUSTER_SCOPED_KINDS:
                document["metadata"]["namespace"] = namespace
    return objects


def _load(path: Path) -> list[Object]:
    if not path.is_file():
        raise KustomizeError(f"missing file {path}")
    documents = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    for document in documents:
        if not {"apiVersion", "kind", "metadata"} <= set(document) or "name" not in document["metadata"]:
            raise KustomizeError(f"{path}: an object without apiVersion, kind or metadata.name")
    return documents


def _generate(
    directory: Path,
    kind: str,
    generator: dict[str, Any],
    namespace: str | None,
    labels: dict[str, str],
    objects: list[Object],
) -> list[Object]:
    unsupported = set(generator) - GENERATOR_FIELDS
    if unsupported or (set(generator.get("options", {})) - {"labels"}):
        raise KustomizeError(f"{generator['name']}: unsupported generator fields {sorted(unsupported)}")
    data: dict[str, str] = {}
    for env in generator.get("envs", []):
        data.update(read_env_file(directory / env))
    for literal in generator.get("literals", []):
        key, equals, value = literal.partition("=")
        if not equals:
            raise KustomizeError(f"{generator['name']}: literal {literal!r} is not KEY=VALUE")
        data[key] = value
    namespace = generator.get("namespace", namespace)
    behavior = generator.get("behavior", "create")
    existing = [
        o
        for o in objects
        if o["kind"] == kind
        and o["metadata"]["name"] == generator["name"]
        and o["metadata"].get("namespace") == namespace
    ]
    if behavior == "merge":
        if len(existing) != 1 or not existing[0].get(_GENERATED):
            raise KustomizeError(f"{generator['name']}: nothing generated to merge into")
        target = existing[0]
        if kind == "Secret":
            data = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
        target["data"].update(data)
        target["metadata"].setdefault("labels", {}).update(
            labels | generator.get("options", {}).get("labels", {})
        )
        return objects
    if behavior != "create" or existing:
        raise KustomizeError(f"{generator['name']}: behavior {behavior} over {len(existing)} existing")
    metadata: dict[str, Any] = {"name": generator["name"]}
    if namespace:
        metadata["namespace"] = namespace
    all_labels = labels | generator.get("options", {}).get("labels", {})
    if all_labels:
        metadata["labels"] = dict(all_labels)
    document: Object = {"apiVersion": "v1", "kind": kind, "metadata": metadata, _GENERATED: True}
    if kind == "Secret":
        document["type"] = generator.get("type", "Opaque")
        document["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    else:
        document["data"] = data
    return [*objects, document]


def _apply_patch(objects: list[Object], patch: Object) -> None:
    metadata = patch["metadata"]
    if "namespace" not in metadata:
        raise KustomizeError(f"patch of {metadata['name']}: name its namespace (kustomize matches it)")
    targets = [
        o
        for o in objects
        if (o["kind"], o["metadata"]["name"], o["metadata"].get("namespace"))
        == (patch["kind"], metadata["name"], metadata["namespace"])
    ]
    if len(targets) != 1:
        raise KustomizeError(f"patch of {patch['kind']} {metadata['name']}: {len(targets)} targets")
    _merge(targets[0], {k: v for k, v in patch.items() if k not in ("apiVersion", "kind", "metadata")})
    _merge(targets[0]["metadata"], {k: v for k, v in metadata.items() if k not in ("name", "namespace")})


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """A strategic merge: maps merge, null deletes, the lists in MERGE_KEYS pair items by key."""
    for key, value in patch.items():
        if key.startswith("$"):
            raise KustomizeError(f"patch directive {key} is not supported")
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        elif isinstance(value, list) and key in MERGE_KEYS and isinstance(target.get(key), list):
            merge_key = MERGE_KEYS[key]
            for item in value:
                matching = [t for t in target[key] if t.get(merge_key) == item[merge_key]]
                if matching:
                    _merge(matching[0], item)
                else:
                    target[key].append(copy.deepcopy(item))
        else:
            target[key] = copy.deepcopy(value)


def _retag(image: str, rule: dict[str, str]) -> str:
    name, digest = image.split("@", 1) if "@" in image else (image, "")
    tag = ""
    if ":" in name.rsplit("/", 1)[-1]:
        name, tag = name.rsplit(":", 1)
    if name != rule["name"]:
        return image
    name = rule.get("newName", name)
    if "digest" in rule:
        return f"{name}@{rule['digest']}"
    tag = rule.get("newTag", tag)
    return name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


def _content_hash(document: Object) -> str:
    content = {key: document.get(key) for key in ("kind", "type", "data")}
    digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
    return digest[:10]


def _pod_specs(document: Object) -> list[dict[str, Any]]:
    if document["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return [document["spec"]["template"]["spec"]]
    return []


def _rename_references(pod: dict[str, Any], renamed: dict[tuple[str, str], str]) -> None:
    for container in pod.get("initContainers", []) + pod.get("containers", []):
        for source in container.get("envFrom", []):
            for field, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                if field in source:
                    name = source[field]["name"]
                    source[field]["name"] = renamed.get((kind, name), name)
        for variable in container.get("env", []):
            value_from = variable.get("valueFrom", {})
            for field, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
                if field in value_from:
                    name = value_from[field]["name"]
                    value_from[field]["name"] = renamed.get((kind, name), name)
    for volume in pod.get("volumes", []):
        if "configMap" in volume:
            volume["configMap"]["name"] = renamed.get(
                ("ConfigMap", volume["configMap"]["name"]), volume["configMap"]["name"]
            )
        if "secret" in volume:
            name = volume["secret"]["secretName"]
            volume["secret"]["secretName"] = renamed.get(("Secret", name), name)
