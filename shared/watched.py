"""A background thread a process cannot run without (a second consumer beside the main one):
watched, so its death is never silent (docs/architecture.md "Processes").

The thread's target returning or raising while no stop was asked is a death: an auth error, the
DLQ limit's stop, a bug. ``check`` then fails the process's readiness probe, and ``on_death``
runs at once (the worker stops its main consumer, so the process exits non-zero and is
restarted) rather than leaving a ready pod whose clicks and replies stay at 0.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import structlog

log = structlog.get_logger("siyu.watched")


class Watched:
    def __init__(self, name: str, target: Callable[[], None], *, stop: Callable[[], None],
                 on_death: Callable[[], None] | None = None):  # fmt: skip
        self.name = name
        self._target, self._stop, self._on_death = target, stop, on_death
        self._stopping = threading.Event()
        self.died: str | None = None  # why, once it died
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Watched:
        self._thread.start()
        return self

    def _run(self) -> None:
        reason = "returned"
        try:
            self._target()
        except BaseException as exc:  # whatever ended it (an auth error, the DLQ limit), a death
            reason = f"{type(exc).__name__}: {str(exc)[:300]}"
            log.exception("thread_died", thread=self.name)
        if self._stopping.is_set():
            return
        self.died = reason
        log.error("thread_stopped_unasked", thread=self.name, reason=reason)
        if self._on_death is not None:
            self._on_death()

    def check(self) -> None:
        """For the readiness probe: raises once the thread died (or never started)."""
        if self.died is not None:
            raise RuntimeError(f"{self.name} stopped: {self.died}")
        if not self._thread.is_alive() and not self._stopping.is_set():
            raise RuntimeError(f"{self.name} is not running")

    def stop(self, timeout: float = 30.0) -> None:
        """Ask it to stop and wait for it (a shutdown, not a death)."""
        self._stopping.set()
        self._stop()
        if self._thread.is_alive():
            self._thread.join(timeout)
