"""The plan of a run: which request goes next (one per webhook, business events batched), and
when (the simulated clock, held back so that no action is dated after now).

Time: a run replays the ``SIMULATED_SPAN_S`` before it started, faster than real time, and is
paced to reach the present as it ends. No event is dated after now: ingest refuses business
events from the future, and segment would judge every company by a clock that ran ahead (an
account looks inactive when the newest evidence is weeks after its last touch). When the model
gets ahead of the wall clock, the run waits for it (``Present``), so the rest is live traffic.

Reproducibility: the same seed and start give the same population, the same payloads (inner XML
and JSON, with ``CreateTime``/``occurred_at`` from the simulated clock) and the same nonces. What
differs between two runs is the AES frame's random 16-byte prefix (so ``Encrypt`` and
``msg_signature``), the query ``timestamp`` (the wall clock at sending time: ingest refuses a
signature timestamp more than 5 minutes away from now) and, with it, where the timeline starts.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sandbox.population.actions import Action
from sandbox.population.journey import action_stream
from sandbox.population.model import Population
from sandbox.simulator.wire import Renderer, WireRequest
from shared.tenants import Tenant

BATCH_SIZE = 50  # business events per request
FLUSH_AFTER = 25  # a partial batch goes out after this many webhook requests
SIMULATED_SPAN_S = 90 * 86400  # a run replays about the 90 days before it started


class Planner:
    """The run's requests, in order: one per webhook, business events batched."""

    def __init__(
        self,
        actions: Iterator[Action],
        renderer: Renderer,
        *,
        batch_size: int = BATCH_SIZE,
        flush_after: int = FLUSH_AFTER,
    ):
        self.actions = actions
        self.renderer = renderer
        self.batch_size = batch_size
        self.flush_after = flush_after
        self._pending: list[Action] = []
        self._since = 0
        self._held: Action | None = None

    def _flush(self) -> WireRequest:
        batch, self._pending, self._since = self._pending, [], 0
        return self.renderer.biz(batch)

    def next_request(self, *, last: bool = False) -> WireRequest:
        """The next request; ``last`` sends the business events still waiting, if any."""
        if last and self._pending:
            return self._flush()
        if self._held is not None:
            action, self._held = self._held, None
            return self.renderer.render(action)
        unusable = 0
        for action in self.actions:
            if not self.renderer.accepts(action):
                unusable += 1
                if unusable > 100_000:
                    raise RuntimeError("the model produced nothing this tenant can receive")
                continue
            unusable = 0
            if action.kind == "biz":
                self._pending.append(action)
                if len(self._pending) >= self.batch_size:
                    return self._flush()
                continue
            if self._pending:
                self._since += 1
                if self._since >= self.flush_after:
                    self._held = action  # sent as the next request
                    return self._flush()
            return self.renderer.render(action)
        raise StreamEnded("no action is due before the run ends")

    def flush(self) -> WireRequest | None:
        """The business events still waiting, as one request, if any."""
        return self._flush() if self._pending else None


class StreamEnded(Exception):
    """The actions stopped (the model is endless; a run's ``Present`` is not)."""


@dataclass
class Present:
    """The wall clock a run must not overtake: an action is held until it is due.

    ``until`` is the end of the run (wall clock, s); an action due later ends the stream.
    """

    until: float
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep

    def hold(self, actions: Iterator[Action]) -> Iterator[Action]:
        for action in actions:
            if action.at > self.until:
                return
            while (ahead := action.at - self.clock()) > 0:
                self.sleep(min(ahead, 1.0))  # short naps: Ctrl-C stays responsive
            yield action


def requests_for(
    tenant: Tenant,
    *,
    contacts: int,
    seed: int,
    base_url: str,
    events_token: str | None,
    budget: int = 1000,
    signed_at: Callable[[], int] | None = None,
    present: Present | None = None,
) -> tuple[Population, Planner]:
    """The population and the planner of a run (deterministic for a seed and a start).

    The simulated clock starts ``SIMULATED_SPAN_S`` before ``signed_at()`` (the wall clock unless
    given); with ``present``, no action leaves before the wall clock reaches its time.

    Seeded ``random.Random`` on purpose: reproducible traffic, not secrets. The AES frame's prefix
    comes from wechatpy's own generator.
    """
    signed_at = signed_at or (lambda: int(time.time()))
    master = random.Random(seed)  # noqa: S311
    population_rng = random.Random(master.getrandbits(64))  # noqa: S311
    action_rng = random.Random(master.getrandbits(64))  # noqa: S311
    wire_rng = random.Random(master.getrandbits(64))  # noqa: S311
    population = Population.generate(population_rng, tenant.mode, contacts)
    mean_step = int(min(6 * 3600, max(20, SIMULATED_SPAN_S // max(1, budget))))
    # The model's own pace varies (nights are skipped, a step may emit several actions): paced for
    # the span, it reaches the present about when the run ends, sometimes earlier (then it waits).
    start = int(signed_at()) - SIMULATED_SPAN_S
    stream = action_stream(population, action_rng, start=start, mean_step_s=mean_step)
    if present is not None:
        stream = present.hold(stream)
    renderer = Renderer(tenant, base_url, wire_rng, events_token=events_token, signed_at=signed_at)
    return population, Planner(stream, renderer)
