"""Login lockout (docs/console.md "Lockout"): a user's fifth failed login in a row locks the
user for 15 minutes; a good login resets the count. Pure rules; console/users.py stores them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

MAX_FAILURES = 5
LOCK_FOR = timedelta(minutes=15)


@dataclass(frozen=True)
class Attempts:
    failed: int
    locked_until: datetime | None

    def locked(self, now: datetime) -> bool:
        return self.locked_until is not None and now < self.locked_until


def after_failure(state: Attempts, now: datetime) -> Attempts:
    """The state after a failed login. A lock that has run out starts a fresh count; a failure
    while locked changes nothing (the lock is not extended by an attacker's tries)."""
    if state.locked(now):
        return state
    failed = 1 if state.locked_until is not None else state.failed + 1
    if failed >= MAX_FAILURES:
        return Attempts(0, now + LOCK_FOR)
    return Attempts(failed, None)


def after_success() -> Attempts:
    return Attempts(0, None)
