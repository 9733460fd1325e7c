"""The nonce replay cache of the OA and WeCom callbacks (docs/security.md "Webhooks").

A signature covers token, timestamp and nonce (and, in safe mode, the encrypted body), and a
timestamp is good for ``max_age_s``. Within that window one signed (timestamp, nonce) may carry
one body only: the claim is a row in ``webhook_nonces`` (migration 0003), shared by every
process and replica through PostgreSQL (``INSERT .. ON CONFLICT DO NOTHING`` decides races).

- first sight: ``NEW``, handle the callback;
- the same body again, the first one handled: ``DONE``, answer "success" and publish nothing;
- the same body again, the first one not (yet) answered: ``RETRY``, handle it again (the platform
  retries after 5 s without an answer, docs/platform.md "Delivery and retries"; the touchpoint's
  event id makes a second publication harmless);
- another body: a replay of a captured signature, refused 403 ``replayed_nonce``.
"""

from __future__ import annotations

import hashlib
import threading
import time
from enum import Enum

import psycopg
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from services.ingest.errors import Refused, malformed
from shared.db import autocommit

CLEANUP_EVERY_S = 60.0
# Rows outlive their window by this much: ingest replicas and the database disagree on the clock.
SKEW_MARGIN_S = 60
MAX_NONCE = 128  # the platforms send about ten digits; a key must fit an index row


CLAIM = """
WITH claimed AS (
    INSERT INTO webhook_nonces (receiver, timestamp, nonce, body_sha256, expires_at)
    VALUES (%(receiver)s, %(ts)s, %(nonce)s, %(digest)s,
            to_timestamp(%(epoch)s) + make_interval(secs => %(ttl)s))
    ON CONFLICT DO NOTHING
    RETURNING true AS new, body_sha256, accepted
)
SELECT * FROM claimed
UNION ALL
SELECT false, body_sha256, accepted FROM webhook_nonces
WHERE receiver = %(receiver)s AND timestamp = %(ts)s AND nonce = %(nonce)s
  AND NOT EXISTS (SELECT 1 FROM claimed)
"""
CURRENT = (
    "SELECT false AS new, body_sha256, accepted FROM webhook_nonces "
    "WHERE receiver = %(receiver)s AND timestamp = %(ts)s AND nonce = %(nonce)s"
)


class Claim(Enum):
    NEW = "new"
    RETRY = "retry"
    DONE = "done"


def replayed() -> Refused:
    return Refused("replayed_nonce", "this timestamp and nonce were already used", status=403)


class NonceCache:
    def __init__(self, pool: ConnectionPool, *, max_age_s: int):
        self.pool = pool
        self.max_age_s = max_age_s
        self._ttl = max_age_s + SKEW_MARGIN_S
        self._cleaned = 0.0
        self._lock = threading.Lock()

    def claim(self, receiver: str, timestamp: str, nonce: str, body: bytes) -> Claim:
        """Claim a signed (receiver, timestamp, nonce) for ``body``; 403 if another body has it."""
        if len(nonce) > MAX_NONCE or "\x00" in nonce:
            raise malformed(f"nonce must be at most {MAX_NONCE} characters, without NUL")
        digest = hashlib.sha256(body).hexdigest()
        key = {"receiver": receiver, "ts": timestamp, "nonce": nonce}
        try:
            with autocommit(self.pool) as conn:
                self._cleanup(conn)
                # One round trip: the claim, or (taken already) the claim that holds the key.
                args = {**key, "digest": digest, "epoch": int(timestamp), "ttl": self._ttl}
                row = conn.execute(CLAIM, args).fetchone()
                if row is None:  # taken by a transaction that committed while this one waited
                    row = conn.execute(CURRENT, key).fetchone()
        except (psycopg.OperationalError, PoolTimeout, PoolClosed):
            # Fail closed; the platform delivers the callback again.
            raise Refused(
                "unavailable", "replay cache unavailable; retry later", status=503
            ) from None
        if row is None or row["body_sha256"] != digest:
            raise replayed()
        if row["new"]:
            return Claim.NEW
        return Claim.DONE if row["accepted"] else Claim.RETRY

    def accepted(self, receiver: str, timestamp: str, nonce: str) -> None:
        """The callback was answered "success": later deliveries of it publish nothing."""
        try:
            with autocommit(self.pool) as conn:
                conn.execute(
                    "UPDATE webhook_nonces SET accepted = true "
                    "WHERE receiver = %s AND timestamp = %s AND nonce = %s",
                    (receiver, timestamp, nonce),
                )
        except (psycopg.OperationalError, PoolTimeout, PoolClosed):
            pass  # the touchpoint is durable already; a retry is then published again, deduped

    def _cleanup(self, conn) -> None:
        """Delete expired rows, at most once a minute per process."""
        now = time.monotonic()
        with self._lock:
            if now - self._cleaned < CLEANUP_EVERY_S:
                return
            self._cleaned = now
        conn.execute("DELETE FROM webhook_nonces WHERE expires_at < now()")
