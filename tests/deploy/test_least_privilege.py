"""Least privilege in the cluster (docs/security.md, "Least privilege"), on both rendered overlays:
Kafka admits only authenticated users, each process has its own KafkaUser whose ACLs allow what
its code does and nothing more, each process connects to PostgreSQL as its own role, and each
container references only the Secrets it uses. The tables below are the expectation; the code's
topic and group names are checked against them so a renamed topic cannot leave a stale ACL.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from services.ingest import erasures as ingest_erasures
from services.outreach import effects as outreach_effects
from services.outreach import welcome as outreach_welcome
from services.outreach import worker as outreach_worker
from services.segment import consumer as segment_consumer
from shared.config import Settings
from shared.kafka.topics import (
    CATALOGUE,
    ERASURES,
    OUTREACH_DLQ,
    PROFILES,
    SIGNALS,
    STAGE_CHANGES,
    TOPICS,
    TOUCHPOINTS,
    TOUCHPOINTS_DLQ,
)
from tests.deploy import crds
from tests.deploy.kustomize import build

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
CA_SECRET = "siyu-kafka-cluster-ca-cert"  # Strimzi's: <cluster>-cluster-ca-cert


# What each process's code does on Kafka: (resource type, name) -> operations.
ACLS = {
    "siyu-ingest": {
        ("topic", TOUCHPOINTS): {"Write"},  # webhooks, events, the outbox replay
        ("topic", SIGNALS): {"Write"},  # beside the touchpoints outreach acts on
        ("topic", ERASURES): {"Read"},  # siyu ingest erasures
        ("group", ingest_erasures.GROUP): {"Read"},
        ("topic", TOUCHPOINTS_DLQ): {"Write"},  # the erasure consumer's dead letters
    },
    "siyu-segment": {
        ("topic", TOUCHPOINTS): {"Read", "Write"},  # consumes; enrichment publishes
        ("group", segment_consumer.GROUP): {"Read"},
        ("topic", PROFILES): {"Write"},
        ("topic", STAGE_CHANGES): {"Write"},
        ("topic", CATALOGUE): {"Write"},
        ("topic", ERASURES): {"Write"},
        ("topic", TOUCHPOINTS_DLQ): {"Write"},
    },
    "siyu-outreach": {
        ("topic", PROFILES): {"Read"},
        ("topic", STAGE_CHANGES): {"Read"},
        ("topic", CATALOGUE): {"Read"},
        ("topic", ERASURES): {"Read"},
        ("group", outreach_worker.GROUP): {"Read"},
        ("topic", SIGNALS): {"Read"},  # clicks, replies, welcome codes: never the touchpoints
        ("group", outreach_effects.GROUP): {"Read"},
        ("group", outreach_welcome.GROUP): {"Read"},  # welcome on add, within WeCom's 20 s
        ("topic", OUTREACH_DLQ): {"Write"},
    },
    "siyu-api": {  # drains the segment outbox that staff changes write
        ("topic", PROFILES): {"Write"},
        ("topic", STAGE_CHANGES): {"Write"},
        ("topic", CATALOGUE): {"Write"},
        ("topic", ERASURES): {"Write"},
    },
}

# Which Secrets each container references (env, envFrom, mounted volumes), per Deployment.
PG = {p: f"siyu-pg-{p}" for p in ("ingest", "segment", "outreach", "api")}
PRIVACY = "siyu-privacy-key"  # every process: keyed hashes of identities (docs/privacy.md)
SECRETS = {
    "siyu-ingest": {
        "migrate": {PG["ingest"]},
        "ingest": {PG["ingest"], "siyu-webhook-secrets", "siyu-link-secret", "siyu-ingest",
                   CA_SECRET, PRIVACY},
    },
    "siyu-ingest-erasures": {  # ingest's code and schema, as ingest's roles
        "migrate": {PG["ingest"]},
        "erasures": {PG["ingest"], "siyu-ingest", CA_SECRET, PRIVACY},
    },
    "siyu-segment": {
        "migrate": {PG["segment"]},
        # WeCom's API secrets (enrichment), not the Official Accounts'.
        "segment": {PG["segment"], "siyu-wecom-secrets", "siyu-segment", CA_SECRET, PRIVACY},
    },
    "siyu-outreach": {
        "migrate": {PG["outreach"]},
        "outreach": {PG["outreach"], "siyu-wecom-secrets", "siyu-oa-secrets", "siyu-link-secret",
                     "siyu-outreach", CA_SECRET, PRIVACY},
    },
    "siyu-api": {
        "migrate": {PG["api"]},
        # no tenant secret at all; the console's session key (docs/console.md "Sessions")
        "api": {PG["api"], "siyu-api", CA_SECRET, PRIVACY, "siyu-console-secret"},
    },
}  # fmt: skip

# How each Deployment connects to PostgreSQL and what its init step migrates.
DATABASE = {
    "siyu-ingest": ("siyu_ingest", ["migrate", "--service", "ingest"]),
    "siyu-ingest-erasures": ("siyu_ingest", ["migrate", "--service", "ingest"]),
    "siyu-segment": ("siyu_segment", ["migrate", "--service", "segment"]),
    "siyu-outreach": ("siyu_outreach", ["migrate", "--service", "outreach"]),
    # Owns no schema: waits for the owners of those it uses.
    "siyu-api": ("siyu_api", ["migrate", "--wait", "600"]),
}

# Kafka's implications: each of these also allows Describe (and "All" everything).
IMPLIES_DESCRIBE = {"Read", "Write", "Delete", "Alter"}


@pytest.fixture(scope="module", params=("dev", "prod"))
def objects(request) -> list[dict]:
    return build(DEPLOY / "k8s" / "overlays" / request.param)


def of(objects: list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def allowed(user: dict, rtype: str, name: str, operation: str) -> bool:
    """Would Kafka's StandardAuthorizer let this user do this (allow rules only: we write no
    deny rules, which the test of the users below asserts)?"""
    for acl in user["spec"]["authorization"]["acls"]:
        resource = acl["resource"]
        if resource["type"] != rtype:
            continue
        pattern = resource.get("patternType", "literal")
        hit = name == resource["name"] or resource["name"] == "*"
        if pattern == "prefix":
            hit = name.startswith(resource["name"])
        ops = set(acl["operations"])
        if hit and (operation in ops or "All" in ops or
                    (operation == "Describe" and ops & IMPLIES_DESCRIBE)):  # fmt: skip
            return True
    return False


def granted(user: dict) -> dict[tuple[str, str], set[str]]:
    found: dict[tuple[str, str], set[str]] = {}
    for acl in user["spec"]["authorization"]["acls"]:
        resource = acl["resource"]
        found.setdefault((resource["type"], resource["name"]), set()).update(acl["operations"])
    return found


def config(objects: list[dict]) -> dict[str, str]:
    return of(objects, "ConfigMap")["siyu-config"]["data"]


def test_kafka_admits_only_authenticated_users_and_authorizes_every_request(objects):
    kafka = of(objects, "Kafka")["siyu-kafka"]["spec"]
    listeners = kafka["kafka"]["listeners"]
    assert listeners
    assert all(lst["authentication"]["type"] == "scram-sha-512" for lst in listeners)
    assert all(lst["tls"] is True for lst in listeners)  # SCRAM over TLS only
    assert kafka["kafka"]["authorization"]["type"] == "simple"
    assert "superUsers" not in kafka["kafka"]["authorization"]
    assert "userOperator" in kafka["entityOperator"]  # it turns KafkaUsers into credentials
    # The processes dial the listener that authenticates them.
    port = int(config(objects)["SIYU_KAFKA_BOOTSTRAP"].rpartition(":")[2])
    assert [lst["port"] for lst in listeners] == [port]
    egress = of(objects, "NetworkPolicy")["siyu-egress"]["spec"]["egress"]
    kafka_ports = {p["port"] for rule in egress for p in rule["ports"]
                   if any("strimzi.io/cluster" in str(peer) for peer in rule["to"])}  # fmt: skip
    assert kafka_ports == {port}


def test_every_process_has_a_kafka_user_with_exactly_the_acls_its_code_needs(objects):
    users = of(objects, "KafkaUser")
    assert set(users) == set(ACLS)
    for name, user in users.items():
        assert user["metadata"]["labels"]["strimzi.io/cluster"] == "siyu-kafka", name
        assert user["spec"]["authentication"]["type"] == "scram-sha-512", name
        acls = user["spec"]["authorization"]["acls"]
        assert all(a.get("type", "allow") == "allow" for a in acls), name
        assert all(a["resource"]["patternType"] == "literal" for a in acls), name  # no wildcards
        assert all("host" not in a or a["host"] == "*" for a in acls), name
        assert granted(user) == ACLS[name], name


def test_the_acls_name_real_topics_and_the_groups_the_code_joins(objects):
    """Topic names are those of shared/kafka/topics.py, which the topic operator creates; groups
    are KafkaSettings.group() of each consumer's GROUP, with the cluster's (empty) prefix."""
    kafka = Settings.from_env(config(objects) | {"SIYU_TENANTS": "/dev/null"}).kafka
    assert kafka.topic_prefix == ""
    topics = {t["spec"]["topicName"] for t in of(objects, "KafkaTopic").values()}
    groups = {kafka.group(g) for g in (ingest_erasures.GROUP, segment_consumer.GROUP,
                                       outreach_worker.GROUP, outreach_effects.GROUP,
                                       outreach_welcome.GROUP)}  # fmt: skip
    assert {kafka.topic(t.name) for t in TOPICS} == topics
    for user in of(objects, "KafkaUser").values():
        for rtype, name in granted(user):
            assert name in (topics if rtype == "topic" else groups), (rtype, name)


@pytest.mark.parametrize(
    ("user", "rtype", "name", "operation"),
    [
        # ingest writes touchpoints and nothing else; reads only erasures.
        ("siyu-ingest", "topic", PROFILES, "Read"),
        ("siyu-ingest", "topic", TOUCHPOINTS, "Read"),
        ("siyu-ingest", "topic", STAGE_CHANGES, "Write"),
        ("siyu-ingest", "topic", ERASURES, "Write"),
        ("siyu-ingest", "group", segment_consumer.GROUP, "Read"),
        # segment reads no topic of outreach's and joins no other group.
        ("siyu-segment", "topic", OUTREACH_DLQ, "Write"),
        ("siyu-segment", "topic", PROFILES, "Read"),
        ("siyu-segment", "group", outreach_worker.GROUP, "Read"),
        # outreach writes none of segment's topics nor touchpoints, joins no group of theirs.
        ("siyu-outreach", "topic", TOUCHPOINTS, "Write"),
        ("siyu-outreach", "topic", PROFILES, "Write"),
        ("siyu-outreach", "topic", TOUCHPOINTS_DLQ, "Read"),
        ("siyu-outreach", "group", segment_consumer.GROUP, "Read"),
        ("siyu-outreach", "topic", SIGNALS, "Write"),
        ("siyu-segment", "topic", SIGNALS, "Read"),
        ("siyu-api", "topic", SIGNALS, "Write"),
        # the API reads nothing.
        ("siyu-api", "topic", PROFILES, "Read"),
        ("siyu-api", "topic", TOUCHPOINTS, "Write"),
        # nobody administers topics, the cluster, or transactions.
        *[(u, "topic", TOUCHPOINTS, op) for u in ACLS for op in ("Create", "Delete", "Alter",
                                                                 "AlterConfigs")],
        *[(u, "cluster", "kafka-cluster", op) for u in ACLS for op in ("Create", "Alter",
                                                                      "IdempotentWrite")],
        *[(u, "transactionalId", "siyu", "Write") for u in ACLS],
    ],
)  # fmt: skip
def test_no_user_may_do_more_than_its_service_needs(objects, user, rtype, name, operation):
    assert not allowed(of(objects, "KafkaUser")[user], rtype, name, operation)


@pytest.mark.parametrize("user", sorted(ACLS))
def test_what_the_code_does_is_allowed(objects, user):
    """Every (resource, operation) of the table, Describe included (metadata, offsets)."""
    spec = of(objects, "KafkaUser")[user]
    for (rtype, name), operations in ACLS[user].items():
        for operation in operations | {"Describe"}:
            assert allowed(spec, rtype, name, operation), (rtype, name, operation)


def containers(pod: dict) -> list[dict]:
    return pod.get("initContainers", []) + pod["containers"]


def secrets_of(pod: dict, container: dict) -> set[str]:
    names = {ref["secretRef"]["name"] for ref in container.get("envFrom", []) if "secretRef" in ref}
    names |= {e["valueFrom"]["secretKeyRef"]["name"] for e in container.get("env", [])
              if "secretKeyRef" in e.get("valueFrom", {})}  # fmt: skip
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "secret" in volume:
            names.add(volume["secret"]["secretName"])
        for source in volume.get("projected", {}).get("sources", []):
            if "secret" in source:
                names.add(source["secret"]["name"])
    return names


@pytest.mark.parametrize("deployment", sorted(SECRETS))
def test_each_container_references_only_the_secrets_it_uses(objects, deployment):
    pod = of(objects, "Deployment")[deployment]["spec"]["template"]["spec"]
    seen = {c["name"]: secrets_of(pod, c) for c in containers(pod)}
    assert seen == SECRETS[deployment]
    # A volume of Secrets no container mounts would still be a Secret the pod references.
    mounted = {m["name"] for c in containers(pod) for m in c.get("volumeMounts", [])}
    assert {v["name"] for v in pod["volumes"]} <= mounted


def test_no_process_uses_the_database_owner_or_a_shared_secret(objects):
    text = yaml.safe_dump([o for o in objects if o["kind"] == "Deployment"])
    assert "siyu-pg-app" not in text  # the owner of the database, CloudNativePG's app user
    assert "name: siyu-secrets" not in text  # the former Secret with every tenant's secrets


@pytest.mark.parametrize("deployment", sorted(DATABASE))
def test_each_process_connects_as_its_own_role_and_migrates_only_its_schema(objects, deployment):
    role, init_args = DATABASE[deployment]
    cluster = of(objects, "Cluster")["siyu-pg"]["spec"]
    roles = {r["name"]: r for r in cluster["managed"]["roles"]}
    pod = of(objects, "Deployment")[deployment]["spec"]["template"]["spec"]
    assert [c["args"] for c in pod["initContainers"]] == [init_args]
    for container in containers(pod):
        env = {e["name"]: e for e in container["env"]}
        user = env["PGUSER"]["valueFrom"]["secretKeyRef"]
        password = env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]
        # CloudNativePG sets the role's password from the same Secret.
        assert user["name"] == password["name"] == roles[role]["passwordSecret"]["name"]
        assert (user["key"], password["key"]) == ("username", "password")
        assert "SIYU_DATABASE_URL" not in env  # the DSN in siyu-config names no user
    dsn = config(objects)["SIYU_DATABASE_URL"]
    assert "@" not in dsn
    assert "sslmode=require" in dsn
    # The owners of what the API uses grant it after migrating (shared/migrations.py API_GRANTS).
    (init,) = pod["initContainers"]
    granted_to = {e["name"]: e.get("value") for e in init["env"]}.get("SIYU_DB_API_ROLE")
    if deployment in ("siyu-ingest", "siyu-segment", "siyu-outreach"):
        assert granted_to == "siyu_api"
        assert granted_to in roles
    elif deployment == "siyu-api":
        assert granted_to is None


def test_the_dev_overlay_supplies_every_secret_a_process_references():
    """Except those Strimzi makes (each KafkaUser's password, the cluster CA)."""
    objects = build(DEPLOY / "k8s" / "overlays" / "dev")
    made_by_strimzi = set(of(objects, "KafkaUser")) | {CA_SECRET}
    present = set(of(objects, "Secret"))
    for deployment in of(objects, "Deployment").values():
        pod = deployment["spec"]["template"]["spec"]
        for container in containers(pod):
            assert secrets_of(pod, container) <= present | made_by_strimzi, container["name"]
    for role in of(objects, "Cluster")["siyu-pg"]["spec"]["managed"]["roles"]:
        secret = of(objects, "Secret")[role["passwordSecret"]["name"]]
        assert secret["type"] == "kubernetes.io/basic-auth"  # what CloudNativePG requires
        assert secret["stringData"]["username"] == role["name"]


@pytest.mark.parametrize("deployment", sorted(SECRETS))
def test_the_processes_accept_their_kafka_settings(objects, deployment, tmp_path):
    """The main container's environment, with its mounted files, is one Settings.from_env
    accepts: SASL over TLS as the Deployment's own KafkaUser, whose Secret it mounts."""
    pod = of(objects, "Deployment")[deployment]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = dict(config(objects))
    env |= {e["name"]: e["value"] for e in container["env"] if "value" in e}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    for key in ("SIYU_KAFKA_PASSWORD_FILE", "SIYU_KAFKA_CA_FILE"):
        folder, _, file = env[key].rpartition("/")
        sources = volumes[mounts[folder]]["projected"]["sources"]
        (secret,) = [s["secret"] for s in sources
                     if any(i["path"] == file for i in s["secret"]["items"])]  # fmt: skip
        if key == "SIYU_KAFKA_PASSWORD_FILE":
            assert secret["name"] == env["SIYU_KAFKA_USERNAME"]  # Strimzi's Secret of the user
        else:
            assert secret["name"] == CA_SECRET
        (tmp_path / file).write_text("x", encoding="utf-8")
        env[key] = str(tmp_path / file)
    security = Settings.from_env(env).kafka.security
    assert (security.protocol, security.mechanism) == ("SASL_SSL", "SCRAM-SHA-512")
    # Its own KafkaUser; ingest's erasure consumer is ingest's code, with ingest's user (whose
    # ACLs name its group and siyu.erasures.v1).
    assert security.username == {"siyu-ingest-erasures": "siyu-ingest"}.get(deployment, deployment)
    assert security.username in of(objects, "KafkaUser")


def test_the_on_demand_dead_letter_reader_reads_dead_letters_and_nothing_else():
    """deploy/k8s/ops/dlq-reader.yaml, applied by hand for the SiyuDeadLetters runbook."""
    (user,) = yaml.safe_load_all((DEPLOY / "k8s" / "ops" / "dlq-reader.yaml").read_text("utf-8"))
    assert crds.validate(user) == []
    assert crds.deprecated_fields(user) == []
    for spec in TOPICS:
        dead_letters = spec.name in (TOUCHPOINTS_DLQ, OUTREACH_DLQ)
        assert allowed(user, "topic", spec.name, "Read") is dead_letters, spec.name
        assert not allowed(user, "topic", spec.name, "Write"), spec.name
    assert allowed(user, "group", "console-consumer-4711", "Read")
    for group in (
        ingest_erasures.GROUP,
        segment_consumer.GROUP,
        outreach_worker.GROUP,
        outreach_effects.GROUP,
        outreach_welcome.GROUP,
    ):
        assert not allowed(user, "group", group, "Read")  # cannot move a service's offsets
