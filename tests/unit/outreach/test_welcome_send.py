"""The welcome's call attempts (services/outreach/welcome.py ``_send``) against the 20 s window,
with an injected clock and sleep: each attempt is checked right before it (less the skew margin),
the rate limiter's slot is taken only if its wait fits, 45009 is not retried inside the window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.outreach import welcome
from services.outreach.rate_limits import SharedRateLimiter, SlotTooLate
from shared.wechat import RateLimited, WeComError, WeComUnavailable

T0 = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
DEADLINE = T0 + welcome.WINDOW


class Clock:
    def __init__(self, at: datetime):
        self.at = at
        self.slept: list[float] = []

    def __call__(self) -> datetime:
        return self.at

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.at += timedelta(seconds=seconds)


class Client:
    """Answers each call with the next of ``answers`` (an exception or None), each taking
    ``takes`` seconds of the clock."""

    def __init__(self, clock: Clock, answers, *, takes: float = 0.1, limiter=None):
        self.clock, self.answers, self.takes = clock, list(answers), takes
        self.calls: list[tuple[datetime, float]] = []
        if limiter is not None:
            self.limiter = limiter

    def send_welcome_msg(self, body, *, timeout):
        self.calls.append((self.clock(), timeout))
        self.clock.at += timedelta(seconds=self.takes)
        answer = self.answers.pop(0) if self.answers else None
        if answer is not None:
            raise answer


class Limiter(SharedRateLimiter):
    """The shared limiter's contract without a database: waits ``wait`` seconds of the clock,
    or refuses a wait longer than allowed."""

    def __init__(self, clock: Clock, wait: float):
        self.clock, self.wait, self.allowed = clock, wait, []

    def acquire_within(self, max_wait: float) -> float:
        self.allowed.append(max_wait)
        if self.wait > max_wait:
            raise SlotTooLate(self.wait)
        self.clock.at += timedelta(seconds=self.wait)
        return self.wait


def send(clock: Clock, client) -> dict:
    w = welcome.Welcomer(None, None, None, None, "", clock=clock, sleep=clock.sleep)
    return w._send(client, {"welcome_code": "C"}, DEADLINE)


def test_41096_and_outages_are_retried_with_back_off_inside_the_window():
    clock = Clock(T0 + timedelta(seconds=2))
    client = Client(clock, [WeComError(41096, "busy"), WeComUnavailable(None, "timeout"), None])
    out = send(clock, client)
    assert (out["status"], out["attempts"]) == ("sent", 3)
    assert clock.slept == [0.5, 1.0]
    assert out["called_at"] == client.calls[-1][0]


def test_a_retry_that_would_end_past_the_window_is_not_made():
    clock = Clock(T0 + timedelta(seconds=17))
    client = Client(clock, [WeComError(41096, "busy")] * 5)
    out = send(clock, client)
    # 17.1 + 0.5 and 17.6 + 1.0 fit before 18.5 (20 s less the margin); the next does not.
    assert (out["status"], out["reason"]) == ("missed", "retries_outlasted_window")
    assert out["errcode"] == 41096 and len(client.calls) == out["attempts"]
    assert all(at < DEADLINE - welcome.MARGIN for at, _ in client.calls)


@pytest.mark.parametrize("late_by", [0.0, 0.5, 1.4])
def test_no_attempt_starts_inside_the_skew_margin(late_by):
    clock = Clock(DEADLINE - welcome.MARGIN + timedelta(seconds=late_by))
    client = Client(clock, [])
    out = send(clock, client)
    assert (out["status"], out["reason"], out["attempts"]) == (
        "missed", "window_passed_before_call", 0)  # fmt: skip
    assert client.calls == []


def test_the_http_timeout_is_what_remains_of_the_window():
    clock = Clock(T0 + timedelta(seconds=10))
    client = Client(clock, [None])
    send(clock, client)
    ((_, timeout),) = client.calls
    assert timeout == pytest.approx(20 - 10 - welcome.MARGIN.total_seconds())


def test_45009_is_failed_not_retried_inside_the_window():
    clock = Clock(T0 + timedelta(seconds=1))
    client = Client(clock, [RateLimited(45009, "freq", retry_after=120)])
    out = send(clock, client)
    assert (out["status"], out["reason"], out["errcode"], out["attempts"]) == (
        "failed", "rate_limited", 45009, 1)  # fmt: skip
    assert clock.slept == []


def test_the_rate_limiter_never_queues_a_welcome_past_its_window():
    clock = Clock(T0 + timedelta(seconds=15))
    limiter = Limiter(clock, wait=6.0)  # campaign sends hold the corp's next 6 s
    client = Client(clock, [], limiter=limiter)
    out = send(clock, client)
    assert (out["status"], out["reason"]) == ("missed", "rate_limited_past_window")
    assert client.calls == [] and limiter.allowed[0] < 3.5


def test_called_at_is_read_after_the_limiter_and_the_window_checked_again():
    clock = Clock(T0 + timedelta(seconds=2))
    limiter = Limiter(clock, wait=3.0)
    client = Client(clock, [None], limiter=limiter)
    out = send(clock, client)
    assert out["status"] == "sent"
    assert out["called_at"] == T0 + timedelta(seconds=5)  # the latency is the call's
    assert client.calls[0][1] == pytest.approx(20 - 5 - welcome.MARGIN.total_seconds())


def test_a_refusal_that_reached_wecom_after_the_window_says_so():
    clock = Clock(T0 + timedelta(seconds=18))
    client = Client(clock, [WeComError(40058, "invalid welcome_code")], takes=3.0)
    out = send(clock, client)
    assert (out["status"], out["reason"], out["errcode"]) == (
        "failed", "reached_wecom_after_window", 40058)  # fmt: skip
