"""The uplift of a campaign: the difference of two proportions (stage advance rate, treated minus
holdout) with its 95 % confidence interval, and whether the sample says anything at all
(docs/domain.md "Effect report"). Pure arithmetic.

The interval is Newcombe's hybrid score interval (Newcombe 1998, method 10): each arm's Wilson
score interval, combined by the square-and-add rule. Unlike the Wald interval it stays inside
[-1, 1], does not collapse to zero width when an arm has no advances (a small holdout often has
none) and keeps close to its nominal 95 % coverage at the small rates and unequal arms a 10 %
holdout gives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Z95 = 1.959963984540054  # the normal quantile of 0.975
MIN_ARM = 30  # contacts in each arm
MIN_EVENTS = 5  # advances in the two arms together

# Verdicts: what the numbers allow one to say.
NO_HOLDOUT = "no_holdout"  # nothing to compare with: the campaign holds no one out (yet)
TOO_SMALL = "too_small"  # an arm below MIN_ARM contacts, or fewer than MIN_EVENTS advances
UPLIFT = "uplift"  # the whole interval above zero
NEGATIVE = "negative"  # the whole interval below zero
NO_DIFFERENCE = "no_difference"  # the interval holds zero


def wilson(x: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval of the proportion x/n; (0, 1) for an empty sample."""
    if n == 0:
        return 0.0, 1.0
    p = x / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe(x1: int, n1: int, x2: int, n2: int, z: float = Z95) -> tuple[float, float, float]:
    """p1 - p2 and its hybrid score interval (Newcombe's method 10)."""
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson(x1, n1, z)
    l2, u2 = wilson(x2, n2, z)
    d = p1 - p2
    return (d, d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2),
            d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2))  # fmt: skip


@dataclass(frozen=True)
class Uplift:
    verdict: str
    treated_rate: float | None
    holdout_rate: float | None
    difference: float | None  # None unless the sample allows a number
    low: float | None
    high: float | None


def uplift(treated: int, treated_advanced: int, holdout: int, holdout_advanced: int) -> Uplift:
    """The verdict, and the rates, difference and interval when the sample is big enough."""
    t_rate = treated_advanced / treated if treated else None
    h_rate = holdout_advanced / holdout if holdout else None
    if not holdout:
        return Uplift(NO_HOLDOUT, t_rate, h_rate, None, None, None)
    if min(treated, holdout) < MIN_ARM or treated_advanced + holdout_advanced < MIN_EVENTS:
        return Uplift(TOO_SMALL, t_rate, h_rate, None, None, None)
    d, low, high = newcombe(treated_advanced, treated, holdout_advanced, holdout)
    verdict = UPLIFT if low > 0 else NEGATIVE if high < 0 else NO_DIFFERENCE
    return Uplift(verdict, t_rate, h_rate, d, low, high)
