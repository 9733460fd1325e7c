"""Runs the dev stack's services as child processes with prefixed output, and stops them all."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TextIO


@dataclass(frozen=True)
class ChildSpec:
    name: str
    argv: list[str]
    url: str | None = None
    env: dict[str, str] = field(default_factory=dict)


class Child:
    def __init__(self, spec: ChildSpec, process: subprocess.Popen, pump: threading.Thread):
        self.spec, self.process, self.pump = spec, process, pump


class Supervisor:
    """Start children in their own process groups; forward their lines as ``name | line``."""

    def __init__(self, *, out: TextIO | None = None, width: int = 10):
        self.out = out or sys.stdout
        self.width = width
        self.children: list[Child] = []
        self._lock = threading.Lock()

    def say(self, name: str, line: str) -> None:
        with self._lock:
            self.out.write(f"{name:<{self.width}}| {line}\n")
            self.out.flush()

    def start(self, spec: ChildSpec, base_env: dict[str, str]) -> Child:
        process = subprocess.Popen(
            spec.argv,
            env={**base_env, **spec.env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own group: we signal it, and the terminal's ^C does not
            preexec_fn=die_with_parent,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
        )
        pump = threading.Thread(target=self._pump, args=(spec.name, process), daemon=True)
        pump.start()
        child = Child(spec, process, pump)
        self.children.append(child)
        return child

    def _pump(self, name: str, process: subprocess.Popen) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.say(name, line.rstrip("\n"))

    def exited(self) -> list[Child]:
        return [c for c in self.children if c.process.poll() is not None]

    def stop_all(self, timeout: float = 15) -> None:
        """SIGTERM every child group, wait, then SIGKILL what is left: no orphans."""
        for child in reversed(self.children):
            _signal_group(child.process, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in reversed(self.children):
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say(child.spec.name, f"did not stop in {timeout}s; killing")
                _signal_group(child.process, signal.SIGKILL)
                child.process.wait(5)
            child.pump.join(2)


_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Linux: the child gets SIGTERM if `siyu dev` dies, even by SIGKILL (no orphaned services)."""
    # Not Linux: no prctl; the stop path still reaps children.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
