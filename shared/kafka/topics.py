"""The topics of docs/architecture.md and their creation when absent."""

from __future__ import annotations

from dataclasses import dataclass, field

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from shared.kafka.settings import KafkaSettings

TOUCHPOINTS = "siyu.touchpoints.v1"
PROFILES = "siyu.profiles.v1"
STAGE_CHANGES = "siyu.stage-changes.v1"
CATALOGUE = "siyu.catalogue.v1"
# The few events outreach needs (clicks, OA message types, welcome codes), written by ingest with
# the touchpoint: ids and a whitelisted attribute subset (shared/signals.py), never payloads.
SIGNALS = "siyu.signals.v1"
# A person erased (docs/privacy.md): segment announces it, outreach and ingest forget the person.
ERASURES = "siyu.erasures.v1"
# One dead-letter topic per consumer group, so each service's refusals are read, alerted on and
# replayed on their own. The segment group (the touchpoints consumer) keeps the name its dead
# letters have always had: renaming it would make Strimzi's topic operator delete them.
TOUCHPOINTS_DLQ = "siyu.touchpoints.dlq.v1"  # group siyu-segment
OUTREACH_DLQ = "siyu.outreach.dlq.v1"  # group siyu-outreach


@dataclass(frozen=True)
class TopicSpec:
    name: str
    configs: dict[str, str] = field(default_factory=dict)


TOPICS = (
    TopicSpec(TOUCHPOINTS),
    TopicSpec(TOUCHPOINTS_DLQ),
    TopicSpec(OUTREACH_DLQ),
    # Latest profile per contact is all outreach needs: compaction keeps the topic bounded.
    TopicSpec(PROFILES, {"cleanup.policy": "compact"}),
    TopicSpec(STAGE_CHANGES),
    TopicSpec(SIGNALS),  # 14 days in deploy/k8s, like the touchpoints they come from
    # A tenant's current model and segments, keyed by tenant: only the newest matters.
    TopicSpec(CATALOGUE, {"cleanup.policy": "compact"}),
    # Ids and keyed hashes only; 30 days in deploy/k8s (a consumer back from a long outage).
    TopicSpec(ERASURES),
)


def ensure_topics(kafka: KafkaSettings, specs: tuple[TopicSpec, ...] = TOPICS) -> list[str]:
    """Create each missing topic with the configured partitions; return the names created."""
    admin = KafkaAdminClient(
        bootstrap_servers=kafka.bootstrap, client_id="siyu-topics", **kafka.security.client_config()
    )
    try:
        existing = set(admin.list_topics())
        missing = [s for s in specs if kafka.topic(s.name) not in existing]
        created = []
        for spec in missing:
            topic = NewTopic(
                kafka.topic(spec.name),
                num_partitions=kafka.partitions,
                replication_factor=kafka.replication,
                topic_configs=dict(spec.configs),
            )
            try:
                admin.create_topics([topic])
                created.append(topic.name)
            except TopicAlreadyExistsError:
                pass  # another process won the race; that is the state we wanted
        return created
    finally:
        admin.close()
