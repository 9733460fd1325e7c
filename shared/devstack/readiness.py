"""Wait until HTTP processes answer their readiness endpoint: `siyu dev` says "ready" only then."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Callable


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
            return response.status == 200
    except OSError:  # refused (not bound yet), or an HTTPError such as 503 (not ready)
        return False


def wait_ready(
    urls: dict[str, str],
    *,
    timeout: float,
    stop: threading.Event,
    failed: Callable[[], str | None] = lambda: None,
) -> list[str]:
    """Poll every URL until it answers 200; return the names still not ready (empty: all are).

    Gives up early when ``stop`` is set or ``failed()`` names a process that has exited.
    """
    pending = dict(urls)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline and not stop.is_set() and not failed():
        for name, url in list(pending.items()):
            if answers(url):
                del pending[name]
        if pending:
            stop.wait(0.1)
    return list(pending)
