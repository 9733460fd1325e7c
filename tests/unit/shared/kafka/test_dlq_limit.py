"""The DLQ limit's arithmetic (shared/kafka/dlq_limit.py); the broker tests are in
tests/integration/shared/kafka/test_dlq_limit.py."""

from __future__ import annotations

import pytest
from kafka import TopicPartition

from shared.kafka.dlq_limit import DlqLimit, DlqLimitExceeded, DlqLimitState

A, B = TopicPartition("t", 0), TopicPartition("t", 1)


def feed(state: DlqLimitState, pattern: str, tp: TopicPartition = A, start: int = 0) -> None:
    """'v' a valid message, 'x' an invalid one, at consecutive offsets."""
    for i, c in enumerate(pattern):
        if c == "x":
            state.invalid(tp, start + i)
        else:
            state.valid(tp)


def test_a_run_longer_than_the_limit_raises_on_the_first_one_too_many():
    state = DlqLimitState(DlqLimit(max_invalid_ratio=None, max_consecutive=3))
    feed(state, "vxxvxxx")
    with pytest.raises(DlqLimitExceeded, match="4 invalid messages in a row"):
        state.invalid(A, 7)
    assert state.run_start == {A: 4}  # the run that stopped it began at offset 4


def test_a_valid_message_ends_the_run_of_its_partition_only():
    state = DlqLimitState(DlqLimit(max_invalid_ratio=None, max_consecutive=10))
    feed(state, "xx", A, 10)
    feed(state, "xv", B, 20)
    assert state.run_start == {A: 10}
    assert state.consecutive == 0


@pytest.mark.parametrize(
    ("ratio", "pattern", "stops_at"),
    [
        (0.5, "vx" * 10, None),  # exactly half: not over
        (0.4, "vx" * 10, 9),  # first checked when the window (10) is full: 5/10
        (0.4, "v" * 10 + "vvx" * 5, None),  # sliding: at most 4 of any 10
        (0.3, "v" * 10 + "vvx" * 5, 21),  # 12, 15, 18, 21
        (0.25, "v" * 10 + "vvx" * 5, 18),
        (1.0, "x" * 30, None),  # 1 turns the ratio off
    ],
)
def test_the_ratio_over_a_sliding_window(ratio, pattern, stops_at):
    state = DlqLimitState(DlqLimit(max_invalid_ratio=ratio, max_consecutive=None, window=10))
    for i, c in enumerate(pattern):
        if c == "v":
            state.valid(A)
            continue
        try:
            state.invalid(A, i)
        except DlqLimitExceeded:
            assert i == stops_at
            return
    assert stops_at is None
