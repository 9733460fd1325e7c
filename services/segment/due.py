"""When a derivation is next due: the first instant time alone may change what the rules derive
(docs/architecture.md "Time-driven evaluation"). Pure: no I/O, ``now`` is an argument.

Without a new event, what the rules derive changes only when

- an event (or the subject's creation) ages past a window or a limit: the ``days`` of the lifecycle
  and segment rules (``Horizons``), of behaviour and of risk flags; or
- the decaying score crosses a threshold a rule compares it with (``Horizons.scores``).

So the next due instant is the earliest such crossing after ``now``. It is a superset of the
instants that matter (at some nothing changes: the derivation then just stores the next one), and
never misses one: a contact with nothing due is never read by the tick.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from services.segment.behaviour import TIME_FEATURES
from services.segment.lifecycle.conditions import Horizons

# Windows are inclusive (an event exactly N days old still counts): it leaves just after.
EPSILON = timedelta(microseconds=1)


def horizon_days(found: Horizons, *extra: Iterable[float]) -> frozenset[float]:
    """The ages in days to watch: the rules' windows and limits, their limits on age features
    (``behaviour.TIME_FEATURES``), and ``extra`` (behaviour's, risk's)."""
    ages = {limit for name, limit in found.attributes if name in TIME_FEATURES}
    return frozenset(d for d in (*found.days, *ages, *(x for e in extra for x in e)) if d >= 0)


def next_age_crossing(
    times: Sequence[datetime], now: datetime, days: Iterable[float]
) -> datetime | None:
    """The first instant after ``now`` at which one of ``times`` (sorted) becomes older than one
    of ``days``, or a future time arrives (clock skew: rules count it from then on)."""
    best: datetime | None = None
    later = bisect_left(times, now + EPSILON)
    if later < len(times):
        best = times[later]
    for d in days:
        span = timedelta(days=d)
        try:
            i = bisect_left(times, now - span)  # the oldest time still within ``d`` days
        except OverflowError:  # the window reaches before year 1: every time is within it
            i = 0
        if i < len(times):
            try:
                at = times[i] + span + EPSILON
            except OverflowError:  # ages out after year 9999
                continue
            if at > now and (best is None or at < best):
                best = at
    return best


def next_score_crossing(
    score: float, now: datetime, thresholds: Iterable[float], half_life_days: float
) -> datetime | None:
    """When the score, ``score`` at ``now`` and halving every ``half_life_days``, first falls
    to a threshold below it (decay never reaches 0 or rises)."""
    best: datetime | None = None
    for limit in thresholds:
        if 0 < limit < score:
            try:
                at = now + timedelta(days=half_life_days * math.log2(score / limit)) + EPSILON
            except OverflowError:
                continue
            if best is None or at < best:
                best = at
    return best


def next_due(
    times: Iterable[datetime],
    now: datetime,
    days: Iterable[float],
    *,
    score: float = 0.0,
    score_limits: Iterable[float] = (),
    half_life_days: float = 30.0,
) -> datetime | None:
    """The subject's next due instant (None: time alone changes nothing any more)."""
    candidates = [
        next_age_crossing(sorted(times), now, days),
        next_score_crossing(score, now, score_limits, half_life_days),
    ]
    found = [c for c in candidates if c is not None]
    return min(found) if found else None
