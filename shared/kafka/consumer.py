"""The consumer runner: poll -> decode -> process (one batch, all or nothing) -> commit, with a DLQ.

Shaped after Sentry's arroyo: each arrow is a small step.
- decode turns bytes into a value; a message that cannot be decoded is invalid.
- process applies a whole batch in one transaction. A transient error (database or broker down)
  retries the same batch with backoff while the partitions are paused, so the group keeps us. Any
  other error splits the batch to find the poison message, which is invalid.
- dead-letter: the invalid messages go, in offset order, to the group's own DLQ topic with their
  error, until the DLQ limit (dlq_limit.py): past it the runner stops with DlqLimitExceeded and
  leaves the current run of invalid messages uncommitted.
- commit stores the *next* offset only after the effect (or the DLQ record) is stored; throttled,
  forced on revocation and on shutdown. Effects must be idempotent: a crash between store and
  commit redelivers the batch.
"""

from __future__ import annotations

import base64
import contextlib
import json
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import psycopg
import psycopg_pool
import structlog
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata

from shared.errors import DeliveryError
from shared.kafka import tansu
from shared.kafka.dlq_limit import DlqLimit, DlqLimitExceeded, DlqLimitState
from shared.kafka.producer import Record, publish
from shared.kafka.settings import KafkaSettings
from shared.metrics import (
    COMMITS,
    CONSUMED,
    CONSUMER_BATCH_SECONDS,
    CONSUMER_LAG,
    CONSUMER_RETRIES,
)

log = structlog.get_logger("siyu.consumer")

T = TypeVar("T")

DLQ_SCHEMA = "dead-letter/1"

# Errors that say "the world is down for a moment", not "this message is bad".
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    psycopg.OperationalError,
    psycopg_pool.PoolTimeout,
    KafkaError,
    DeliveryError,
    ConnectionError,
    TimeoutError,
)


@dataclass(frozen=True)
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp_ms: int | None = None

    @classmethod
    def from_record(cls, record: Any) -> Message:
        return cls(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value if record.value is not None else b"",
            headers=tuple(record.headers or ()),
            timestamp_ms=record.timestamp,
        )

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)


@dataclass(frozen=True)
class Decoded(Generic[T]):
    message: Message
    payload: T


class PoisonMessage(Exception):
    """Raised by a process step to send one message to the DLQ and go on with the rest."""

    def __init__(self, message: Message, reason: str):
        super().__init__(reason)
        self.message = message
        self.reason = reason


class _Shutdown(Exception):
    """Stop requested while a batch was waiting on a transient error: leave it uncommitted."""


def create_consumer(
    kafka: KafkaSettings, *, group_id: str, client_id: str, **overrides: Any
) -> KafkaConsumer:
    config = {
        "bootstrap_servers": kafka.bootstrap,
        "group_id": kafka.group(group_id),
        "client_id": client_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": kafka.session_timeout_ms,
        "heartbeat_interval_ms": kafka.heartbeat_interval_ms,
        "max_poll_interval_ms": kafka.max_poll_interval_ms,
        "fetch_max_wait_ms": kafka.fetch_max_wait_ms,
        "max_poll_records": kafka.max_batch,
        **kafka.security.client_config(),
    }
    config.update(overrides)
    return KafkaConsumer(**config)


class DeadLetterQueue:
    """Publishes a failed message with its error; returns only once the broker has it."""

    def __init__(self, producer: KafkaProducer, topic: str, *, group: str):
        self.producer = producer
        self.topic = topic
        self.group = group

    def record(self, message: Message, error: BaseException | str, *, stage: str) -> Record:
        try:
            envelope = json.loads(message.value.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            envelope = None
        value: dict[str, Any] = {
            "schema": DLQ_SCHEMA,
            "error": {
                "stage": stage,
                "type": type(error).__name__ if isinstance(error, BaseException) else "Rejected",
                "message": str(error)[:4000],
                "details": getattr(error, "details", None) or None,
            },
            "source": {
                "topic": message.topic,
                "partition": message.partition,
                "offset": message.offset,
                "timestamp_ms": message.timestamp_ms,
            },
            "group": self.group,
            "failed_at": datetime.now(UTC).isoformat(),
            "envelope": envelope,
        }
        if envelope is None:
            value["value_base64"] = base64.b64encode(message.value).decode("ascii")
        key = message.key.decode("utf-8", "replace") if message.key else "-"
        headers = [*message.headers, ("siyu-error-stage", stage.encode())]
        return Record(self.topic, key, json.dumps(value, ensure_ascii=False).encode(), headers)

    def send(self, message: Message, error: BaseException | str, *, stage: str) -> None:
        publish(self.producer, [self.record(message, error, stage=stage)])
        CONSUMED.labels(group=self.group, topic=message.topic, outcome="dead_lettered").inc()
        log.warning(
            "dead_lettered",
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            stage=stage,
            error=str(error)[:500],
        )


class OffsetCommitter:
    """Commit step: remembers the next offset per partition, commits at most once per interval."""

    def __init__(self, consumer: KafkaConsumer, group: str, interval_s: float = 1.0):
        self.consumer = consumer
        self.group = group
        self.interval_s = interval_s
        self._pending: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._last = time.monotonic()

    def stage(self, messages: Iterable[Message]) -> None:
        for m in messages:
            if m.offset + 1 > self._pending.get(m.tp, -1):
                self._pending[m.tp] = m.offset + 1

    def maybe_commit(self, hold: dict[TopicPartition, int] | None = None) -> None:
        if self._pending and time.monotonic() - self._last >= self.interval_s:
            self.commit(hold=hold)

    def commit(
        self,
        partitions: Iterable[TopicPartition] | None = None,
        *,
        hold: dict[TopicPartition, int] | None = None,
    ) -> None:
        """Commit the staged offsets, none beyond ``hold`` (per partition: the first offset of a
        run of invalid messages the DLQ limit may yet stop on)."""
        hold = hold or {}
        keys = (
            list(self._pending)
            if partitions is None
            else [p for p in partitions if p in self._pending]
        )
        offsets = {}
        for tp in keys:
            offset = min(self._pending[tp], hold.get(tp, self._pending[tp]))
            if offset != self._committed.get(tp):
                offsets[tp] = OffsetAndMetadata(offset, "", -1)
        self._last = time.monotonic()
        if not offsets:
            return
        try:
            self.consumer.commit(offsets=offsets)
            COMMITS.labels(group=self.group, outcome="ok").inc()
            for tp, committed in offsets.items():
                self._committed[tp] = committed.offset
                # Only forget what is unchanged: a newer offset may have been staged meanwhile.
                if self._pending.get(tp) == committed.offset:
                    del self._pending[tp]
        except (CommitFailedError, KafkaError) as exc:
            # The group moved on (rebalance) or the broker is away: the new owner resumes from the
            # last committed offset and idempotent effects absorb the redelivery.
            COMMITS.labels(group=self.group, outcome="error").inc()
            log.warning(
                "commit_failed",
                error=str(exc),
                offsets={str(k): v.offset for k, v in offsets.items()},
            )

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            self._pending.pop(tp, None)
            self._committed.pop(tp, None)


class ConsumerRunner(Generic[T]):
    """Runs decode -> process -> commit over a subscribed consumer until stopped."""

    def __init__(
        self,
        consumer: KafkaConsumer,
        *,
        topics: list[str],
        group: str,
        decode: Callable[[Message], T],
        process: Callable[[list[Decoded[T]]], None],
        dlq: DeadLetterQueue,
        dlq_limit: DlqLimit | None = None,
        commit_interval_s: float = 1.0,
        poll_timeout_ms: int = 500,
        max_batch: int = 500,
        backoff_s: tuple[float, float] = (0.2, 10.0),
        transient_errors: tuple[type[BaseException], ...] = TRANSIENT_ERRORS,
    ):
        self.consumer = consumer
        self.topics = topics
        self.group = group
        self.decode = decode
        self.process = process
        self.dlq = dlq
        self.limits = DlqLimitState(dlq_limit or DlqLimit())
        self.poll_timeout_ms = poll_timeout_ms
        self.max_batch = max_batch
        self.backoff_s = backoff_s
        self.transient_errors = transient_errors
        self.committer = OffsetCommitter(consumer, group, commit_interval_s)
        self._stop = threading.Event()
        self._revoked: set[TopicPartition] = set()
        self._consumed: dict[TopicPartition, int] = {}
        self._invalid: dict[Message, tuple[BaseException, str]] = {}
        self._exceeded = False
        self.last_poll_at: float | None = None
        # Series that exist at 0 from the start: the first dead letter of a process's life is
        # then an increase, not a series born at 1 that increase() and rate() cannot see.
        for topic in topics:
            for outcome in ("processed", "dead_lettered"):
                CONSUMED.labels(group=group, topic=topic, outcome=outcome)

    # --- lifecycle -------------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT finish the current batch, commit, and leave the group cleanly."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop())

    def run(self) -> None:
        self.consumer.subscribe(self.topics, listener=_Rebalance(self))
        log.info("consumer_started", group=self.group, topics=self.topics)
        try:
            while not self._stop.is_set():
                records = self.consumer.poll(
                    timeout_ms=self.poll_timeout_ms, max_records=self.max_batch
                )
                self.last_poll_at = time.monotonic()
                messages = [Message.from_record(r) for batch in records.values() for r in batch]
                if messages:
                    try:
                        self.handle(messages)
                    except _Shutdown:
                        break
                self.committer.maybe_commit(hold=self.limits.run_start)
                self._update_lag()
        except DlqLimitExceeded as exc:
            self._exceeded = True
            log.error(
                "dlq_limit_exceeded",
                group=self.group,
                reason=str(exc),
                dlq=self.dlq.topic,
                uncommitted_from={
                    f"{tp.topic}[{tp.partition}]": o for tp, o in self.limits.run_start.items()
                },
                hint="the consumer stops instead of dead-lettering the stream: fix the cause "
                "(a bad deploy?) and restart; the run of invalid messages is consumed again",
            )
            raise
        finally:
            self.committer.commit(hold=self._hold())
            self.consumer.close(autocommit=False)  # revokes: on_revoked holds the run back too
            log.info("consumer_stopped", group=self.group)

    # --- steps -----------------------------------------------------------------------------

    def handle(self, messages: list[Message]) -> None:
        self._revoked.clear()
        self._invalid.clear()
        batch: list[Decoded[T]] = []
        for message in messages:
            try:
                batch.append(Decoded(message, self.decode(message)))
            except Exception as exc:
                self._invalid[message] = (exc, "decode")
        self._process(batch)
        kept = [m for m in messages if m.tp not in self._revoked]
        self._dead_letter_invalid(kept)
        for m in kept:
            self._consumed[m.tp] = m.offset
        for topic, count in Counter(m.topic for m in kept).items():
            CONSUMED.labels(group=self.group, topic=topic, outcome="processed").inc(count)
        self.committer.stage(kept)

    def _process(self, batch: list[Decoded[T]]) -> None:
        attempt = 0
        while batch:
            try:
                with CONSUMER_BATCH_SECONDS.labels(group=self.group).time():
                    self.process(batch)
                return
            except PoisonMessage as poison:
                self._invalid[poison.message] = (poison, "process")
                batch = [d for d in batch if d.message != poison.message]
            except self.transient_errors as exc:
                attempt += 1
                batch = self._wait_before_retry(batch, attempt, exc)
            except Exception as exc:
                if len(batch) == 1:
                    self._invalid[batch[0].message] = (exc, "process")
                    return
                # Find the poison: apply one by one (each its own transaction, still idempotent).
                log.warning(
                    "batch_failed_splitting", group=self.group, size=len(batch), error=str(exc)
                )
                for single in batch:
                    self._process([single])
                return

    def _dead_letter_invalid(self, messages: list[Message]) -> None:
        """In offset order: count each message against the DLQ limit (which raises past it),
        then send the invalid ones to the DLQ."""
        for message in messages:
            invalid = self._invalid.get(message)
            if invalid is None:
                self.limits.valid(message.tp)
                continue
            self.limits.invalid(message.tp, message.offset)
            error, stage = invalid
            self._dead_letter(message, error, stage=stage)

    def _dead_letter(self, message: Message, error: BaseException, *, stage: str) -> None:
        attempt = 0
        while True:
            try:
                self.dlq.send(message, error, stage=stage)
                return
            except self.transient_errors as exc:
                attempt += 1
                self._wait_before_retry([], attempt, exc)

    def _wait_before_retry(
        self, batch: list[Decoded[T]], attempt: int, exc: BaseException
    ) -> list[Decoded[T]]:
        """Back off with partitions paused; polling keeps the group membership alive."""
        if self._stop.is_set():
            raise _Shutdown()
        CONSUMER_RETRIES.labels(group=self.group).inc()
        delay = min(self.backoff_s[1], self.backoff_s[0] * 2 ** (attempt - 1))
        log.warning(
            "transient_error_retrying",
            group=self.group,
            attempt=attempt,
            delay_s=delay,
            error=str(exc),
        )
        assigned = self.consumer.assignment()
        self.consumer.pause(*assigned)
        try:
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline and not self._stop.is_set():
                self.consumer.poll(
                    timeout_ms=int(min(200, max(1, (deadline - time.monotonic()) * 1000)))
                )
        finally:
            self.consumer.resume(*self.consumer.assignment())
        if self._stop.is_set():
            raise _Shutdown()
        # Partitions lost during the wait belong to another member now: let it do them.
        return [d for d in batch if d.message.tp not in self._revoked]

    def _update_lag(self) -> None:
        for tp, offset in self._consumed.items():
            hw = tansu.end_offset(self.consumer, tp)  # not end_offsets(): see tansu.py
            if hw is not None:
                CONSUMER_LAG.labels(
                    group=self.group, topic=tp.topic, partition=str(tp.partition)
                ).set(max(0, hw - offset - 1))

    # --- rebalance ---------------------------------------------------------------------------

    def _hold(self) -> dict[TopicPartition, int] | None:
        """Stopped by the DLQ limit: the run of invalid messages stays uncommitted. Otherwise
        (shutdown, rebalance) the dead letters are stored and everything is committed."""
        return self.limits.run_start if self._exceeded else None

    def on_revoked(self, partitions: list[TopicPartition]) -> None:
        self.committer.commit(partitions, hold=self._hold())
        self.committer.forget(partitions)
        self._revoked.update(partitions)
        for tp in partitions:
            self.limits.run_start.pop(tp, None)
        for tp in partitions:
            self._consumed.pop(tp, None)
            with contextlib.suppress(KeyError):
                CONSUMER_LAG.remove(self.group, tp.topic, str(tp.partition))
        log.info("partitions_revoked", group=self.group, partitions=[str(p) for p in partitions])

    def on_assigned(self, partitions: list[TopicPartition]) -> None:
        log.info("partitions_assigned", group=self.group, partitions=[str(p) for p in partitions])


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, runner: ConsumerRunner):
        self.runner = runner

    def on_partitions_revoked(self, revoked):
        self.runner.on_revoked(list(revoked))

    def on_partitions_assigned(self, assigned):
        self.runner.on_assigned(list(assigned))
