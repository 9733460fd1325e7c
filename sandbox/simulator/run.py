"""Sending a run's requests: paced at a rate for a duration, each answer counted into a
``Summary`` (requests by type, business events, HTTP statuses, the first refusals).
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import click
import requests

from sandbox.simulator.plan import Planner, StreamEnded
from sandbox.simulator.wire import WireRequest

TIMEOUT_S = 10.0


@dataclass
class Summary:
    requests: int = 0
    by_kind: Counter = field(default_factory=Counter)  # webhook types and 'biz' batches
    events: Counter = field(default_factory=Counter)  # business event types sent
    statuses: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)
    interrupted: bool = False
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return (
            self.requests > 0
            and not self.errors
            and all(200 <= s < 300 for s in self.statuses.elements())
        )

    def lines(self) -> list[str]:
        rate = self.requests / self.elapsed_s if self.elapsed_s > 0 else 0.0
        out = [
            f"{'interrupted after' if self.interrupted else 'sent'} {self.requests} requests "
            f"in {self.elapsed_s:.1f} s ({rate:.1f}/s)"
        ]
        for kind, n in sorted(self.by_kind.items()):
            out.append(f"  {kind:<36} {n:>7}")
        if self.events:
            out.append(f"business events: {sum(self.events.values())}")
            for kind, n in sorted(self.events.items()):
                out.append(f"  {kind:<36} {n:>7}")
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(self.statuses.items())) or "none"
        out.append(f"HTTP status: {statuses}")
        if self.errors:
            out.append("errors:")
            out.extend(f"  {n} x {e}" for e, n in self.errors.most_common())
        if self.samples:
            out.append("first refusals:")
            out.extend(f"  {s}" for s in self.samples)
        return out


def _record(summary: Summary, request: WireRequest) -> None:
    summary.requests += 1
    summary.by_kind["biz batches" if request.kind == "biz" else request.label] += 1
    summary.events.update(request.events)


def send_all(
    planner: Planner,
    session: requests.Session,
    *,
    rate: float,
    duration: float,
    budget: int | None = None,
    show_progress: bool = True,
) -> Summary:
    """Send at ``rate`` per second for at most ``duration`` seconds and at most ``budget``
    requests (default: rate × duration); Ctrl-C stops with a summary."""
    budget = budget or max(1, int(rate * duration))
    summary = Summary()
    start = time.monotonic()
    bar = click.progressbar(
        length=budget, label="simulate", file=sys.stderr, show_pos=True, show_eta=True
    )
    try:
        with bar:
            for i in range(budget):
                due = start + i / rate
                now = time.monotonic()
                if now - start >= duration and i:
                    break
                if due > now:
                    time.sleep(due - now)
                try:
                    request = planner.next_request(last=i == budget - 1)
                except StreamEnded:  # the rest of the model is due after the run's end
                    if (request := planner.flush()) is not None:
                        _send(session, request, summary)
                    break
                _send(session, request, summary)
                if show_progress:
                    bar.update(1)
    except KeyboardInterrupt:
        summary.interrupted = True
    summary.elapsed_s = time.monotonic() - start
    return summary


def _send(session: requests.Session, request: WireRequest, summary: Summary) -> None:
    _record(summary, request)
    try:
        response = session.request(
            request.method,
            request.url,
            data=request.body,
            headers=request.headers,
            timeout=TIMEOUT_S,
            allow_redirects=False,
        )
    except requests.RequestException as exc:
        summary.errors[f"{type(exc).__name__}: {_short(str(exc))}"] += 1
        return
    summary.statuses[response.status_code] += 1
    if not 200 <= response.status_code < 300 and len(summary.samples) < 5:
        path = urlsplit(request.url).path
        text = _short(response.text.replace("\n", " "))
        summary.samples.append(f"{response.status_code} {request.label} {path}: {text}")


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
