"""The uplift and its interval (services/outreach/uplift.py): Newcombe's hybrid score interval
against the published values, and the verdicts."""

from __future__ import annotations

import pytest

from services.outreach.uplift import (
    MIN_ARM,
    NEGATIVE,
    NO_DIFFERENCE,
    NO_HOLDOUT,
    TOO_SMALL,
    UPLIFT,
    newcombe,
    uplift,
    wilson,
)

# Newcombe (1998), "Interval estimation for the difference between independent proportions:
# comparison of eleven methods", Statistics in Medicine 17:873-890, Table II, method 10.
NEWCOMBE = [
    ((56, 70, 48, 80), (0.0524, 0.3339)),
    ((9, 10, 3, 10), (0.1705, 0.8090)),
    ((6, 7, 2, 7), (0.0582, 0.8062)),
    ((5, 56, 0, 29), (-0.0381, 0.1926)),
    ((0, 10, 0, 20), (-0.1611, 0.2775)),
    ((0, 10, 0, 10), (-0.2775, 0.2775)),
    ((10, 10, 0, 20), (0.6791, 1.0000)),
    ((10, 10, 0, 10), (0.6075, 1.0000)),
]


@pytest.mark.parametrize(("counts", "interval"), NEWCOMBE)
def test_the_interval_matches_newcombes_table(counts, interval):
    x1, n1, x2, n2 = counts
    d, low, high = newcombe(*counts)
    assert d == pytest.approx(x1 / n1 - x2 / n2)
    assert (round(low, 4), round(high, 4)) == interval


# Wilson score intervals (Newcombe 1998b, "Two-sided confidence intervals for the single
# proportion", Table I, method 3).
WILSON = [((81, 263), (0.2553, 0.3662)), ((15, 148), (0.0624, 0.1605)), ((0, 20), (0.0, 0.1611)),
          ((1, 29), (0.0061, 0.1718))]  # fmt: skip


@pytest.mark.parametrize(("counts", "interval"), WILSON)
def test_wilson_matches_the_published_values(counts, interval):
    low, high = wilson(*counts)
    assert (round(low, 4), round(high, 4)) == interval


VERDICTS = [
    # treated, treated advanced, holdout, holdout advanced -> verdict
    ((900, 270, 100, 10), UPLIFT),
    ((900, 90, 100, 30), NEGATIVE),
    ((900, 100, 100, 11), NO_DIFFERENCE),
    ((900, 270, 0, 0), NO_HOLDOUT),
    ((900, 270, MIN_ARM - 1, 2), TOO_SMALL),  # a holdout below the minimum
    ((MIN_ARM - 1, 20, 100, 10), TOO_SMALL),  # a treated arm below it
    ((300, 2, 40, 2), TOO_SMALL),  # fewer than 5 advances in all
    ((300, 3, 40, 2), NO_DIFFERENCE),  # 5: enough to say something
]


@pytest.mark.parametrize(("counts", "verdict"), VERDICTS)
def test_the_verdict(counts, verdict):
    result = uplift(*counts)
    assert result.verdict == verdict
    if verdict in (TOO_SMALL, NO_HOLDOUT):
        # No misleading number: the rates are shown, the difference and interval are not.
        assert (result.difference, result.low, result.high) == (None, None, None)
    else:
        assert result.low < result.difference < result.high


def test_rates_are_given_even_when_the_sample_is_too_small():
    result = uplift(10, 5, 2, 0)
    assert (result.treated_rate, result.holdout_rate) == (0.5, 0.0)
