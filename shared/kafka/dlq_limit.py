"""The dead-letter limit: past it a consumer stops instead of dead-lettering a whole stream.

After a bad deploy (a decoder that rejects every envelope, a schema the code does not know) every
message fails; without a limit the consumer would move them all to its DLQ and commit, and the
stream would have to be re-published by hand. Shaped after arroyo's ``DlqLimit``: a maximum ratio
of invalid messages among the last ``window`` ones and a maximum run of consecutive invalid
messages. Checked before a message is dead-lettered: the message that would exceed the limit is
neither dead-lettered nor committed.

The state also knows where each partition's current run of invalid messages began, so the runner
can leave those offsets uncommitted when the limit stops it: after the fix the run is consumed
again (effects are idempotent; the run's dead letters may be written a second time).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from kafka import TopicPartition

from shared.errors import SiyuError
from shared.kafka.settings import KafkaSettings


@dataclass(frozen=True)
class DlqLimit:
    """``max_invalid_ratio``: share of invalid messages among the last ``window`` (checked once
    ``window`` messages were seen); ``max_consecutive``: invalid messages in a row. ``None``
    turns a check off."""

    max_invalid_ratio: float | None = 0.5
    max_consecutive: int | None = 100
    window: int = 1000

    @classmethod
    def of(cls, kafka: KafkaSettings) -> DlqLimit:
        """The limit configured by SIYU_DLQ_MAX_RATIO, SIYU_DLQ_MAX_CONSECUTIVE, SIYU_DLQ_WINDOW."""
        return cls(kafka.dlq_max_ratio, kafka.dlq_max_consecutive, kafka.dlq_window)


class DlqLimitExceeded(SiyuError):
    code = "dlq_limit_exceeded"


class DlqLimitState:
    def __init__(self, limit: DlqLimit):
        self.limit = limit
        self.consecutive = 0
        self._recent: deque[bool] = deque(maxlen=max(1, limit.window))  # True: invalid
        self._invalid_in_window = 0
        # Per partition, the offset of the first invalid message since its last valid one.
        self.run_start: dict[TopicPartition, int] = {}

    def _push(self, invalid: bool) -> None:
        if len(self._recent) == self._recent.maxlen and self._recent[0]:
            self._invalid_in_window -= 1
        self._recent.append(invalid)
        self._invalid_in_window += invalid

    def valid(self, tp: TopicPartition) -> None:
        self.consecutive = 0
        self.run_start.pop(tp, None)
        self._push(False)

    def invalid(self, tp: TopicPartition, offset: int) -> None:
        """Count an invalid message, or raise DlqLimitExceeded if it is one too many."""
        limit = self.limit
        if limit.max_consecutive is not None and self.consecutive + 1 > limit.max_consecutive:
            raise DlqLimitExceeded(
                f"{self.consecutive + 1} invalid messages in a row (limit "
                f"{limit.max_consecutive}, SIYU_DLQ_MAX_CONSECUTIVE)",
                details={"consecutive": self.consecutive + 1},
            )
        seen = len(self._recent) + 1
        if limit.max_invalid_ratio is not None and seen >= self._recent.maxlen:
            dropped = 1 if len(self._recent) == self._recent.maxlen and self._recent[0] else 0
            ratio = (self._invalid_in_window - dropped + 1) / min(seen, self._recent.maxlen)
            if ratio > limit.max_invalid_ratio:
                raise DlqLimitExceeded(
                    f"{ratio:.0%} of the last {self._recent.maxlen} messages were invalid (limit "
                    f"{limit.max_invalid_ratio:.0%}, SIYU_DLQ_MAX_RATIO)",
                    details={"ratio": ratio},
                )
        self.consecutive += 1
        self.run_start.setdefault(tp, offset)
        self._push(True)
