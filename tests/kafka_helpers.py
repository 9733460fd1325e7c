"""Helpers for tests that talk to the session's broker."""

from __future__ import annotations

import threading
import time

from kafka import KafkaConsumer, TopicPartition

from shared.kafka.settings import KafkaSettings


def read_topic(kafka: KafkaSettings, topic: str, expected: int, timeout: float = 20.0) -> list:
    """Read a whole topic (all partitions, from the start) until ``expected`` records arrive."""
    consumer = KafkaConsumer(bootstrap_servers=kafka.bootstrap, enable_auto_commit=False)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        consumer.assign([TopicPartition(topic, p) for p in partitions])
        consumer.seek_to_beginning()
        records, deadline = [], time.monotonic() + timeout
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
        # A little longer, to catch records that should not be there.
        for batch in consumer.poll(timeout_ms=300).values():
            records.extend(batch)
        return records
    finally:
        consumer.close()


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.1, message=""):
    """Poll ``predicate`` until it returns something truthy, and return that; fail after
    ``timeout`` seconds saying what was awaited (``message``, or a callable giving it at the
    time of failure, e.g. to show the state reached)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    what = message() if callable(message) else message
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")


class RunnerThread:
    """Run a ConsumerRunner in a thread; stop() leaves the group the way SIGTERM would."""

    def __init__(self, runner):
        self.runner = runner
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        try:
            self.runner.run()
        except BaseException as exc:  # surfaced by stop()
            self.error = exc

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        self.runner.stop()
        self.thread.join(30)
        assert not self.thread.is_alive(), "runner did not stop"
        if self.error:
            raise self.error
