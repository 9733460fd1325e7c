"""When an event happened, as ingest accepts it: clocks disagree by seconds, not by years.

Segment evaluates stages, scores and risk flags at the newest evidence (event time), so one event
dated in the future would move a whole account's clock ahead. Hence:

- a business event dated more than ``MAX_SKEW_S`` after the server's clock is refused, per item,
  with the code ``occurred_in_future`` (the batch is all or nothing, as for any invalid item);
- a WeChat or WeCom callback must never fail (the platform retries, then drops it), so one whose
  ``CreateTime`` is that far ahead is dated when it was received, and the platform's own time is
  kept in ``attributes.create_time`` (and in ``raw``). Its event id still derives from
  ``CreateTime``, so the platform's retries keep deduplicating.

Pure: the server's clock is an argument.
"""

from __future__ import annotations

from datetime import datetime, timedelta

MAX_SKEW_S = 300  # the replay window of signed callbacks (services/ingest/crypto.py) too
FUTURE = "occurred_in_future"


def too_far_ahead(occurred_at: datetime, now: datetime) -> bool:
    return occurred_at - now > timedelta(seconds=MAX_SKEW_S)


def future_error(occurred_at: datetime, now: datetime) -> str | None:
    """The per-item message for a business event from the future, or None."""
    if not too_far_ahead(occurred_at, now):
        return None
    return (
        f"{FUTURE}: {occurred_at.isoformat()} is later than the server's clock "
        f"({now.isoformat(timespec='seconds')}) plus {MAX_SKEW_S} s of clock skew"
    )
