"""Spacing out a write that only records "recently": at most once per key per interval and
process (a token's ``last_used_at``), without a database round trip to decide."""

from __future__ import annotations

import threading
import time


class Spacing:
    """``due(key)`` is True at most once per ``every_s`` seconds per key; bounded in memory."""

    def __init__(self, every_s: float, *, max_entries: int = 10_000):
        self.every_s = every_s
        self.max_entries = max_entries
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def due(self, key: str) -> bool:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.every_s:
                return False
            if len(self._last) >= self.max_entries:  # bounded whatever the number of keys
                self._last.clear()
            self._last[key] = now
            return True
