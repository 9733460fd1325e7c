"""The run: which subject acts when, and the endless, time-ordered stream of their actions.

Pure: no I/O and no clock reads. Every random choice comes from the ``random.Random`` passed in,
so the same seed gives the same actions in the same order. A step mutates only the model's own
state (people, companies, chats); the B2B and B2C steps live in b2b.py and b2c.py.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from sandbox.population.actions import Action, Emitter
from sandbox.population.b2b import company_step
from sandbox.population.b2c import consumer_step
from sandbox.population.model import EPOCH, STAGE, Company, Person, Population


def activity(subject: Person | Company) -> float:
    """How likely the subject is to do something when picked (0..1)."""
    if isinstance(subject, Company):
        if subject.stall_stage is not None and subject.stage >= subject.stall_stage:
            return 0.12
        if subject.stage == STAGE["customer"]:
            return 0.4
        return 0.6 if subject.stage == 0 else 0.9
    if subject.gone:
        return 0.02
    return {
        "loyal": 1.0,
        "researcher": 0.8,
        "discount_chaser": 0.6,
        "impulse": 0.5,
        "skeptic": 0.5,
        "lapsed": 0.8 if subject.steps <= subject.lapse_after else 0.05,
    }.get(subject.b2c_type or "", 0.5)


def next_actions(
    population: Population, subject: Person | Company, sim_time: int, rng: random.Random
) -> list[Action]:
    """What the subject does next, starting at ``sim_time``."""
    emit = Emitter(population, rng, sim_time)
    if isinstance(subject, Company):
        company_step(subject, emit)
    else:
        consumer_step(subject, emit)
    return emit.actions


def staff_actions(population: Population, sim_time: int, rng: random.Random) -> list[Action]:
    """Corp-level changes by staff: tags created, renamed or reordered."""
    emit = Emitter(population, rng, sim_time)
    tag = rng.choice(population.tags)
    change = rng.choice(("create", "update", "update", "delete", "shuffle"))
    fields = {"Event": "change_external_tag", "Id": tag, "TagType": "tag", "ChangeType": change}
    if rng.random() < 0.2:
        fields["TagType"] = "tag_group"
    emit.add("wecom", "wecom.tag.changed", fields, "staff")
    return emit.actions


def _daytime(t: int) -> int:
    """Nights are quiet: a time between 23:00 and 08:00 (UTC+8) moves to 08:00 plus a little."""
    hour = ((t // 3600) + 8) % 24
    if hour >= 23 or hour < 8:
        days = 1 if hour >= 23 else 0
        local_midnight = ((t + 8 * 3600) // 86400 + days) * 86400 - 8 * 3600
        return local_midnight + 8 * 3600 + (t % 1800)
    return t


def action_stream(
    population: Population,
    rng: random.Random,
    *,
    start: int = EPOCH,
    mean_step_s: int = 600,
) -> Iterator[Action]:
    """Every action of the run, in simulated-time order (strictly increasing ``at``). Endless."""
    subjects: list[Person] | list[Company] = (
        population.companies if population.mode == "b2b" else population.people
    )
    clock = start
    mean_step_s = max(2, int(mean_step_s))
    quiet = 0
    while True:
        # The clock moves only when someone acts, so the pace of simulated time does not depend
        # on how many quiet subjects were passed over.
        step_at = _daytime(clock + rng.randint(1, 2 * mean_step_s))
        if rng.random() < 0.004:
            actions = staff_actions(population, step_at, rng)
        else:
            subject = rng.choice(subjects)
            if rng.random() >= activity(subject) and quiet < 50:
                quiet += 1
                continue
            actions = next_actions(population, subject, step_at, rng)
        quiet = 0
        if actions:
            yield from actions
            clock = actions[-1].at + 1
        else:
            clock = step_at
