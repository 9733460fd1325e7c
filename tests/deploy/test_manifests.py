"""deploy/: the image recipe and the Kubernetes manifests, checked offline.

Every overlay is rendered (tests/deploy/kustomize.py; where kubectl exists, its own kustomize
must render the same), every object is validated (core kinds with kubernetes-validate, custom
resources with deploy/k8s/schemas), yamllint passes, and the policies of the deployment hold:
non-root, read-only root, probes and limits on every container, every topic present with the
replication the overlay promises, autoscaling within the partitions.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner
from yamllint import linter
from yamllint.config import YamlLintConfig

from shared.cli import main as siyu
from shared.config import load_tenants
from shared.kafka.topics import TOPICS
from tests.deploy.kustomize import build

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
OVERLAYS = ("dev", "prod")
K8S_VERSION = "1.33.0"
SCHEMAS = {
    name: schema
    for file in sorted((DEPLOY / "k8s" / "schemas").glob("*.yaml"))
    for name, schema in yaml.safe_load(file.read_text(encoding="utf-8")).items()
}
CUSTOM_GROUPS = ("kafka.strimzi.io/", "postgresql.cnpg.io/", "keda.sh/")
PROCESSES = {"ingest", "api", "segment", "outreach"}


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request) -> tuple[str, list[dict]]:
    return request.param, build(DEPLOY / "k8s" / "overlays" / request.param)


def objects_of(objects: list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def pods(objects: list[dict]):
    for name, deployment in objects_of(objects, "Deployment").items():
        yield name, deployment["spec"]["template"]["spec"]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@pytest.mark.parametrize("name", OVERLAYS)
def test_our_renderer_agrees_with_kubectl_kustomize(name):
    out = subprocess.run(["kubectl", "kustomize", str(DEPLOY / "k8s" / "overlays" / name)],
                         capture_output=True, text=True, check=True, timeout=60).stdout  # fmt: skip
    key = lambda o: (o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"])  # noqa: E731
    theirs = {key(o): o for o in yaml.safe_load_all(out) if o}
    ours = {key(o): o for o in build(DEPLOY / "k8s" / "overlays" / name)}
    assert ours == theirs


def test_every_object_is_valid(overlay):
    _, objects = overlay
    for obj in objects:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["apiVersion"].startswith(CUSTOM_GROUPS):
            jsonschema.validate(obj, SCHEMAS[obj["kind"]])
        else:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        assert obj["metadata"].get("namespace") == "siyu" or obj["kind"] == "Namespace", where
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "siyu", where


def test_invalid_objects_are_caught():
    """The validators are strict: an unknown field or a wrong type fails."""
    deployment = objects_of(build(DEPLOY / "k8s" / "overlays" / "prod"), "Deployment")
    broken = yaml.safe_load(yaml.safe_dump(deployment["siyu-ingest"]))
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)
    topic = objects_of(build(DEPLOY / "k8s" / "overlays" / "prod"), "KafkaTopic")
    bad_topic = yaml.safe_load(yaml.safe_dump(topic["siyu-profiles-v1"]))
    bad_topic["spec"]["replicationFactor"] = 3  # the field is "replicas"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad_topic, SCHEMAS["KafkaTopic"])


def test_yamllint_is_clean():
    config = YamlLintConfig(file=str(DEPLOY / ".yamllint.yaml"))
    problems = [
        f"{path.relative_to(DEPLOY)}:{p.line}: {p.message}"
        for path in sorted(DEPLOY.rglob("*.yaml"))
        for p in linter.run(path.read_text(encoding="utf-8"), config)
    ]
    assert problems == []


def test_every_process_is_deployed_with_the_same_image_and_a_valid_command(overlay):
    _, objects = overlay
    deployments = objects_of(objects, "Deployment")
    assert {f"siyu-{p}" for p in PROCESSES} <= set(deployments)
    images = set()
    for name, pod in pods(objects):
        for container in pod["containers"] + pod.get("initContainers", []):
            images.add(container["image"])
            # The arguments are a real `siyu` command line (options included).
            result = CliRunner().invoke(siyu, [*container["args"], "--help"])
            assert result.exit_code == 0, (name, container["args"], result.output)
        if name != "siyu-fake-wechat":
            assert [c["args"] for c in pod["initContainers"]] == [["migrate"]], name
    assert len(images) == 1 and images.pop().startswith("ghcr.io/siyu-dev/siyu:")


def test_pods_run_as_non_root_with_a_read_only_root_and_limits(overlay):
    _, objects = overlay
    for name, pod in pods(objects):
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["automountServiceAccountToken"] is False, name
        mounts = {v["name"]: v for v in pod["volumes"]}
        for container in pod["containers"] + pod.get("initContainers", []):
            where = f"{name}/{container['name']}"
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["capabilities"]["drop"] == ["ALL"], where
            assert {"requests", "limits"} <= set(container["resources"]), where
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind]), where
            tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
            assert tmp and "emptyDir" in mounts[tmp[0]["name"]], where  # the only writable path


def test_probes_and_graceful_termination(overlay):
    _, objects = overlay
    for name, pod in pods(objects):
        (container,) = pod["containers"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        port = container["readinessProbe"]["httpGet"]["port"]
        assert port in {p["name"] for p in container["ports"]}, name
    grace = {n: p["terminationGracePeriodSeconds"] for n, p in pods(objects)}
    # Consumers finish and commit their batch on SIGTERM (max.poll.interval bounds a batch).
    assert grace["siyu-segment"] >= 60 and grace["siyu-outreach"] >= 60


def test_every_deployment_has_a_disruption_budget_and_network_policy(overlay):
    _, objects = overlay
    budgets = objects_of(objects, "PodDisruptionBudget")
    for process in PROCESSES:
        selector = budgets[f"siyu-{process}"]["spec"]["selector"]["matchLabels"]
        assert selector["app.kubernetes.io/component"] == process
    deny = objects_of(objects, "NetworkPolicy")["siyu-default-deny"]["spec"]
    assert deny["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "siyu"}}
    assert deny["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in deny


def test_every_topic_exists_with_the_replication_the_overlay_promises(overlay):
    name, objects = overlay
    topics = {t["spec"]["topicName"]: t["spec"] for t in objects_of(objects, "KafkaTopic").values()}
    assert set(topics) == {t.name for t in TOPICS}  # every topic of ARCHITECTURE.md
    for spec in TOPICS:  # with the configs the code gives them (compaction of the profiles)
        for key, value in spec.configs.items():
            assert topics[spec.name]["config"][key] == value
    kafka = objects_of(objects, "Kafka")["siyu-kafka"]["spec"]["kafka"]["config"]
    brokers = objects_of(objects, "KafkaNodePool")["brokers"]["spec"]["replicas"]
    config = objects_of(objects, "ConfigMap")["siyu-config"]["data"]
    if name == "prod":
        assert brokers == 3
        assert kafka["default.replication.factor"] == 3 and kafka["min.insync.replicas"] == 2
        for topic in topics.values():
            assert topic["replicas"] == 3 and topic["config"]["min.insync.replicas"] == 2
        assert objects_of(objects, "Cluster")["siyu-pg"]["spec"]["instances"] == 3
        assert "backup" in objects_of(objects, "Cluster")["siyu-pg"]["spec"]
        assert objects_of(objects, "ScheduledBackup")
    for topic in topics.values():
        assert topic["replicas"] <= brokers
    touchpoints = topics["siyu.touchpoints.v1"]
    assert int(config["SIYU_KAFKA_PARTITIONS"]) == touchpoints["partitions"]


def test_autoscaling_stays_within_the_partitions(overlay):
    _, objects = overlay
    hpa = objects_of(objects, "HorizontalPodAutoscaler")
    assert {h["spec"]["scaleTargetRef"]["name"] for h in hpa.values()} == {
        "siyu-ingest",
        "siyu-api",
    }
    for h in hpa.values():
        assert h["spec"]["metrics"][0]["resource"]["name"] == "cpu"
        assert 1 <= h["spec"]["minReplicas"] <= h["spec"]["maxReplicas"]
    scaled = objects_of(objects, "ScaledObject")["siyu-segment"]["spec"]
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "kafka" and trigger["metadata"]["consumerGroup"] == "siyu-segment"
    topic = next(t["spec"] for t in objects_of(objects, "KafkaTopic").values()
                 if t["spec"]["topicName"] == trigger["metadata"]["topic"])  # fmt: skip
    assert scaled["maxReplicaCount"] <= topic["partitions"]
    assert scaled["scaleTargetRef"]["name"] == "siyu-segment"


def test_the_tenants_config_map_is_a_valid_tenants_file(overlay, tmp_path):
    _, objects = overlay
    text = objects_of(objects, "ConfigMap")["siyu-tenants"]["data"]["tenants.yaml"]
    (tmp_path / "tenants.yaml").write_text(text, encoding="utf-8")
    registry = load_tenants(tmp_path / "tenants.yaml")
    assert len(registry) >= 1
    assert "secret" not in text.replace("secret_env", "")  # secrets come from the Secret


def test_the_dockerfile_builds_a_non_root_image_for_every_process():
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    stages = [line for line in text.splitlines() if line.startswith("FROM ")]
    assert len(stages) == 2 and all("python:3.11-slim" in s for s in stages)
    user = next(line for line in text.splitlines() if line.startswith("USER "))
    assert user.split()[1].split(":")[0] not in ("0", "root")
    assert 'ENTRYPOINT ["siyu"]' in text and "HEALTHCHECK" in text
    assert "PYTHONDONTWRITEBYTECODE=1" in text  # nothing written outside /tmp
    ignored = (DEPLOY.parent / ".dockerignore").read_text(encoding="utf-8").split()
    assert {".git", ".venv", "tests", ".siyu"} <= set(ignored)


def test_the_wheel_the_image_installs_carries_every_migration_and_rule(tmp_path):
    """The image installs the project's wheel, not the source tree: the SQL migrations, the
    lifecycle rule packs and the demo tenants must be inside it."""
    root = DEPLOY.parent
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w",
                    str(tmp_path), str(root)], check=True, timeout=300,
                   capture_output=True)  # fmt: skip
    (wheel,) = tmp_path.glob("siyu-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = {
        str(p.relative_to(root))
        for pattern in ("services/*/migrations/*.sql", "services/segment/rules/*.yaml")
        for p in root.glob(pattern)
    } | {"shared/demo_tenants.yaml"}
    assert wanted <= names
    assert not any(n.startswith(("tests/", "bench/", "deploy/")) for n in names)
