"""The topics the segment service queues messages for, named as the deployment prefixes them.

A module of its own: derivation, the catalogue, erasure and the API all queue to these topics,
and none of them should import another just for the names.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.kafka.topics import CATALOGUE, ERASURES, PROFILES, STAGE_CHANGES


@dataclass(frozen=True)
class Topics:
    profiles: str
    stage_changes: str
    catalogue: str = CATALOGUE
    erasures: str = ERASURES

    @classmethod
    def with_prefix(cls, prefix: str) -> Topics:
        return cls(prefix + PROFILES, prefix + STAGE_CHANGES, prefix + CATALOGUE, prefix + ERASURES)
