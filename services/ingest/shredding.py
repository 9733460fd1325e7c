"""Crypto-shredding of envelope ``raw`` payloads (docs/privacy.md, docs/architecture.md).

The raw callback or request body of a touchpoint about a person is encrypted (AES-256-GCM) with
that person's key before it leaves ingest: ``siyu-aesgcm1:<kind>:<base64(nonce + ciphertext)>``,
the additional data binding it to its tenant and event id. The key is found by the tenant and
the keyed hash of the envelope identity of ``kind`` (the first person identity, in the order
of the Kafka key), and is created on first use in ``person_keys``. Erasing the person deletes
their keys (services/ingest/erasures.py): the payloads left on the topics can no longer be read.

Touchpoints about no person (a group, a tag) keep their raw in clear; they carry no personal
fields beyond platform ids. If the key table cannot be reached, the raw payload is dropped rather
than published in clear or the event refused: nothing downstream needs it to build state.

Keys are cached per process for ``ttl_s``: a key destroyed meanwhile may still seal a few new
payloads, which are then unreadable (what erasure wants anyway).
"""

from __future__ import annotations

import base64
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import replace

import psycopg
import structlog
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from shared.envelope import Touchpoint
from shared.privacy import identity_hash

log = structlog.get_logger("siyu.ingest.shredding")

PREFIX = "siyu-aesgcm1:"
# The person identity whose key seals a payload: the order of the envelope's Kafka key.
KEY_KINDS = ("openid", "external_userid", "crm_id", "unionid")
NONCE_BYTES = 12

Subject = tuple[str, str]  # (tenant_id, identity hash)


def subject_of(tp: Touchpoint) -> tuple[str, Subject] | None:
    """(kind, (tenant, hash)) of the identity whose key seals ``tp``'s raw, or None."""
    for kind in KEY_KINDS:
        value = getattr(tp.identity, kind)
        if value:
            return kind, (tp.tenant_id, identity_hash(tp.tenant_id, kind, value))
    return None


def is_sealed(raw: str | None) -> bool:
    return bool(raw) and raw.startswith(PREFIX)


def _aad(tp: Touchpoint) -> bytes:
    return f"{tp.tenant_id}\x1f{tp.event_id}".encode()


def seal_raw(tp: Touchpoint, kind: str, key: bytes) -> str:
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(key).encrypt(nonce, tp.raw.encode("utf-8"), _aad(tp))
    return f"{PREFIX}{kind}:{base64.b64encode(nonce + sealed).decode('ascii')}"


def open_raw(tp: Touchpoint, key: bytes) -> str:
    """The clear raw payload of a sealed touchpoint (raises InvalidTag on a wrong key)."""
    kind_and_data = tp.raw[len(PREFIX) :]
    _, data = kind_and_data.split(":", 1)
    blob = base64.b64decode(data)
    plain = AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], _aad(tp))
    return plain.decode("utf-8")


class PersonKeys:
    """Get-or-create per-person keys in ``person_keys``; seal and open envelopes with them."""

    def __init__(self, pool: ConnectionPool, *, ttl_s: float = 60.0, max_entries: int = 50_000):
        self.pool = pool
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._cache: OrderedDict[Subject, tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def _cached(self, subject: Subject) -> bytes | None:
        with self._lock:
            found = self._cache.get(subject)
            if found is None or found[0] < time.monotonic():
                return None
            self._cache.move_to_end(subject)
            return found[1]

    def _remember(self, keys: dict[Subject, bytes]) -> None:
        expires = time.monotonic() + self.ttl_s
        with self._lock:
            for subject, key in keys.items():
                self._cache[subject] = (expires, key)
                self._cache.move_to_end(subject)
            while len(self._cache) > self.max_entries:
                self._cache.popitem(last=False)

    def keys_for(self, subjects: Iterable[Subject]) -> dict[Subject, bytes]:
        """The key of each subject, created where absent (one statement for all of them)."""
        wanted = sorted(set(subjects))
        found = {s: k for s in wanted if (k := self._cached(s)) is not None}
        missing = [s for s in wanted if s not in found]
        if missing:
            fresh = [AESGCM.generate_key(bit_length=256) for _ in missing]
            with self.pool.connection(timeout=2) as conn:
                rows = conn.execute(
                    "WITH wanted AS (SELECT * FROM unnest(%s::text[], %s::text[], %s::bytea[]) "
                    "  AS w(t, h, k)), "
                    "ins AS (INSERT INTO person_keys (tenant_id, identity_hash, key) "
                    "  SELECT t, h, k FROM wanted ON CONFLICT DO NOTHING "
                    "  RETURNING tenant_id, identity_hash, key) "
                    "SELECT tenant_id, identity_hash, key FROM ins UNION ALL "
                    "SELECT p.tenant_id, p.identity_hash, p.key FROM person_keys p "
                    "JOIN wanted w ON p.tenant_id = w.t AND p.identity_hash = w.h",
                    ([t for t, _ in missing], [h for _, h in missing], fresh),
                ).fetchall()
            loaded = {(r["tenant_id"], r["identity_hash"]): bytes(r["key"]) for r in rows}
            self._remember(loaded)
            found.update(loaded)
        return found

    def key(self, tenant_id: str, hash_: str) -> bytes | None:
        """An existing key (never created): None once the person was erased."""
        with self.pool.connection(timeout=2) as conn:
            row = conn.execute(
                "SELECT key FROM person_keys WHERE tenant_id = %s AND identity_hash = %s",
                (tenant_id, hash_),
            ).fetchone()
        return None if row is None else bytes(row["key"])

    def seal(self, touchpoints: Sequence[Touchpoint]) -> list[Touchpoint]:
        """The touchpoints with the raw payload of each person's sealed with their key."""
        todo = {}
        for i, tp in enumerate(touchpoints):
            if tp.raw and not is_sealed(tp.raw) and (found := subject_of(tp)) is not None:
                todo[i] = found
        if not todo:
            return list(touchpoints)
        try:
            keys = self.keys_for(subject for _, subject in todo.values())
        except (psycopg.Error, PoolTimeout, PoolClosed) as exc:
            log.warning("person_keys_unavailable_raw_dropped", error=str(exc)[:300])
            return [replace(tp, raw=None) if i in todo else tp for i, tp in enumerate(touchpoints)]
        out = []
        for i, tp in enumerate(touchpoints):
            if i in todo:
                kind, subject = todo[i]
                tp = replace(tp, raw=seal_raw(tp, kind, keys[subject]))
            out.append(tp)
        return out

    def open(self, tp: Touchpoint) -> str | None:
        """The clear raw payload, or None when it cannot be read any more (key destroyed)."""
        if not is_sealed(tp.raw):
            return tp.raw
        kind = tp.raw[len(PREFIX) :].split(":", 1)[0]
        value = getattr(tp.identity, kind, None) if kind in KEY_KINDS else None
        if not value:
            return None
        key = self.key(tp.tenant_id, identity_hash(tp.tenant_id, kind, value))
        if key is None:
            return None
        return open_raw(tp, key)


def destroy_keys(conn: psycopg.Connection, tenant_id: str, hashes: list[str]) -> int:
    """Delete the keys of these identity hashes (in the caller's transaction)."""
    return conn.execute(
        "DELETE FROM person_keys WHERE tenant_id = %s AND identity_hash = ANY(%s)",
        (tenant_id, hashes),
    ).rowcount
