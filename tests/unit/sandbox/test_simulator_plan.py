"""The simulator's clock: a run replays the days before the present and never dates an event after
now, for a short `siyu simulate` as for the day-long `siyu dev --demo` (a fake wall clock)."""

from __future__ import annotations

import json
import re
from datetime import datetime

import pytest

from sandbox.simulator.plan import SIMULATED_SPAN_S, Present, StreamEnded, requests_for
from shared.tenants import DEMO_TENANTS_PATH, load_tenants

TENANTS = load_tenants(DEMO_TENANTS_PATH)
START = 1_796_000_000  # 2026-11-30 01:33 UTC: any present will do
CREATE_TIME = re.compile(r"<CreateTime>(\d+)</CreateTime>")


class FakeClock:
    """The wall clock of a run: moves when the run sends (its pace) or waits (``sleep``)."""

    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.now += seconds

    def reach(self, moment: float) -> None:
        self.now = max(self.now, moment)


def dated(request) -> list[int]:
    if request.kind == "biz":
        events = json.loads(request.body)["events"]
        return [int(datetime.fromisoformat(e["occurred_at"]).timestamp()) for e in events]
    return [int(t) for t in CREATE_TIME.findall(request.plaintext)]


@pytest.mark.parametrize("tenant", ["acme", "bloom"])
def test_a_run_replays_the_days_before_it_and_ends_at_the_present(tenant):
    """The README's tour: 200 contacts, 20 requests/s for 30 s."""
    clock, rate, duration = FakeClock(START), 20.0, 30.0
    budget = int(rate * duration)
    _population, planner = requests_for(
        TENANTS.get(tenant), contacts=200, seed=1, base_url="http://127.0.0.1:8080",
        events_token="tok", budget=budget, signed_at=lambda: int(clock()),
        present=Present(until=START + duration, clock=clock, sleep=clock.sleep),
    )  # fmt: skip
    times = []
    for i in range(budget):
        clock.reach(START + i / rate)
        try:
            request = planner.next_request(last=i == budget - 1)
        except StreamEnded:
            request = planner.flush()
            if request is None:
                break
        sent = dated(request)
        assert max(sent) <= clock(), "an event dated after the moment it was sent"
        times.extend(sent)
    assert len(times) > budget / 2
    assert min(times) >= START - SIMULATED_SPAN_S
    assert max(times) >= START - 2 * 86400  # the history reaches the present
    assert max(times) <= START + duration


def test_the_day_long_demo_never_runs_ahead_of_the_wall_clock():
    """`siyu dev --demo`: 300 contacts, 5 requests/s for a day (it used to reach 2027-01-01)."""
    clock, rate, duration = FakeClock(START), 5.0, 86400.0
    budget = int(rate * duration)
    _population, planner = requests_for(
        TENANTS.get("acme"), contacts=300, seed=1, base_url="http://127.0.0.1:8080",
        events_token="tok", budget=budget, signed_at=lambda: int(clock()),
        present=Present(until=START + duration, clock=clock, sleep=clock.sleep),
    )  # fmt: skip
    # The actions themselves (rendering 432,000 signed requests would only slow the test down).
    newest, count = 0, 0
    for i, action in enumerate(planner.actions):
        clock.reach(START + i / rate)
        assert action.at <= clock(), f"action {i} dated {action.at - clock():.0f} s after now"
        newest, count = action.at, count + 1
    assert count > budget / 10
    assert START - 86400 <= newest <= START + duration
