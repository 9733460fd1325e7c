"""Login lockout rules (console/lockout.py): 5 failures in a row lock a user for 15 minutes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from console.lockout import LOCK_FOR, MAX_FAILURES, Attempts, after_failure, after_success

T0 = datetime(2026, 11, 29, 8, 0, tzinfo=UTC)
FRESH = Attempts(0, None)


def fail(times: int, state: Attempts = FRESH, now: datetime = T0) -> Attempts:
    for _ in range(times):
        state = after_failure(state, now)
    return state


@pytest.mark.parametrize(
    ("failures", "locked"),
    [(1, False), (MAX_FAILURES - 1, False), (MAX_FAILURES, True)],
)
def test_the_fifth_failure_in_a_row_locks(failures, locked):
    assert fail(failures).locked(T0) is locked


def test_a_lock_lasts_fifteen_minutes():
    state = fail(MAX_FAILURES)
    assert state.locked_until == T0 + LOCK_FOR
    assert state.locked(T0 + LOCK_FOR - timedelta(seconds=1))
    assert not state.locked(T0 + LOCK_FOR)


def test_failures_while_locked_do_not_extend_the_lock():
    state = fail(MAX_FAILURES)
    later = fail(10, state, T0 + timedelta(minutes=10))
    assert later == state


def test_after_a_lock_runs_out_the_count_starts_again():
    state = fail(MAX_FAILURES)
    after = T0 + LOCK_FOR + timedelta(minutes=1)
    state = fail(1, state, after)
    assert state == Attempts(1, None)
    assert fail(MAX_FAILURES - 1, state, after).locked(after)


def test_a_good_login_resets_the_count():
    assert fail(MAX_FAILURES - 1) != after_success()
    assert after_success() == Attempts(0, None)
    assert not fail(MAX_FAILURES - 1, after_success()).locked(T0)
