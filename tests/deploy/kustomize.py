"""A pure-Python ``kustomize build`` for the features deploy/k8s uses, so ``make test`` renders
the overlays without the kustomize binary. Where ``kubectl`` is installed the tests also compare
its output with ours (tests/deploy/test_manifests.py), so this cannot drift unnoticed.

Supported: ``resources`` (files and directories), ``components`` (``kind: Component``
directories, applied after the resources and before the parent's own patches), ``namespace``, ``labels`` (``pairs`` with
``includeSelectors: false``), ``images`` (``newName``/``newTag``) and ``patches`` given by
``path`` (strategic merge: maps merge; the lists of a pod spec merge by ``name``; other lists
are replaced, as kustomize does for custom resources). Anything else is refused, not ignored.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

SUPPORTED = {
    "apiVersion", "kind", "resources", "components", "namespace", "labels", "images", "patches"
}  # fmt: skip
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}
MERGE_BY_NAME = {"containers", "initContainers", "env", "volumes", "volumeMounts", "ports"}
CORE_GROUPS = ("v1", "apps/", "batch/", "policy/", "networking.k8s.io/", "autoscaling/")


class KustomizeError(Exception):
    pass


def build(directory: Path) -> list[dict[str, Any]]:
    spec = _kustomization(directory, "Kustomization")
    return _transform(directory, spec, _resources(directory, spec))


def _kustomization(directory: Path, kind: str) -> dict[str, Any]:
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text(encoding="utf-8"))
    unknown = set(spec) - SUPPORTED
    if unknown:
        raise KustomizeError(f"{directory}: unsupported kustomization fields {sorted(unknown)}")
    if spec.get("kind", "Kustomization") != kind:
        raise KustomizeError(f"{directory}: a {spec.get('kind')} where a {kind} is expected")
    return spec


def _resources(directory: Path, spec: dict[str, Any]) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = []
    for entry in spec.get("resources", []):
        path = (directory / entry).resolve()
        objects += build(path) if path.is_dir() else _documents(path)
    for entry in spec.get("components", []):
        path = (directory / entry).resolve()
        component = _kustomization(path, "Component")
        objects = _transform(path, component, objects + _resources(path, component))
    return objects


def _transform(
    directory: Path, spec: dict[str, Any], objects: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    for patch in spec.get("patches", []):
        if set(patch) != {"path"}:
            raise KustomizeError(f"{directory}: only patches by path are supported: {patch}")
        for doc in _documents(directory / patch["path"]):
            _apply(objects, doc, directory / patch["path"])
    for obj in objects:
        if spec.get("namespace") and obj["kind"] not in CLUSTER_SCOPED:
            obj["metadata"]["namespace"] = spec["namespace"]
        for label in spec.get("labels", []):
            if label.get("includeSelectors", False):
                raise KustomizeError("labels with includeSelectors are not supported")
            obj["metadata"].setdefault("labels", {}).update(label["pairs"])
        for image in spec.get("images", []):
            _set_image(obj, image)
    return objects


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def _apply(objects: list[dict[str, Any]], patch: dict[str, Any], source: Path) -> None:
    targets = [o for o in objects if _key(o) == _key(patch)]
    if len(targets) != 1:
        raise KustomizeError(f"{source}: patch {_key(patch)} matches {len(targets)} objects")
    core = patch["apiVersion"].startswith(CORE_GROUPS)
    merged = _merge(targets[0], patch, core=core)
    objects[objects.index(targets[0])] = merged


def _merge(base: Any, patch: Any, *, core: bool, field: str = "") -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        out = copy.deepcopy(base)
        for key, value in patch.items():
            out[key] = _merge(base[key], value, core=core, field=key) if key in base else value
        return out
    if core and field in MERGE_BY_NAME and isinstance(base, list) and isinstance(patch, list):
        out = copy.deepcopy(base)
        names = [item.get("name") for item in out]
        for item in patch:
            if item.get("name") in names:
                i = names.index(item["name"])
                out[i] = _merge(out[i], item, core=core)
            else:
                out.append(copy.deepcopy(item))
        return out
    return copy.deepcopy(patch)


def _set_image(obj: dict[str, Any], image: dict[str, str]) -> None:
    pod = obj.get("spec", {}).get("template", {}).get("spec", {})
    for container in pod.get("containers", []) + pod.get("initContainers", []):
        if container.get("image") == image["name"]:
            container["image"] = f"{image.get('newName', image['name'])}:{image['newTag']}"
