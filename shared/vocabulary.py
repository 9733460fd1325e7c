"""Names both services know, so each can validate what ops staff type without asking the other:
buying roles, the built-in lifecycle models and their stages, the flags a stage may declare, the
outreach channels, account risk flags, B2C behaviour types and time zones. Each is defined here
only; the code imports it. Segment derives with them (its rule packs,
services/segment/rules/*.yaml, must agree: tests/unit/shared/test_vocabulary.py); outreach checks
campaigns against them.
"""

from __future__ import annotations

import difflib
from functools import cache
from zoneinfo import available_timezones

# In tie-break order (services/segment/roles.py: the first listed wins a tie).
BUYING_ROLES = ("decision_maker", "technical", "finance", "compliance", "procurement", "business")

# Funnel stages in order, then side stages, of each built-in model (both modes use the same
# names; their rules differ).
BUILTIN_STAGES = {
    "aisceas": ("attention", "interest", "search", "comparison", "examination", "action", "share"),
    "aarrr": ("acquisition", "activation", "retention", "revenue", "referral"),
}
BUILTIN_SIDE_STAGES = {"aisceas": ("lapsed",), "aarrr": ("lapsed",)}
BUILTIN_MODELS = tuple(sorted(BUILTIN_STAGES))  # ("aarrr", "aisceas")
# The built-in model of each tenant mode, unless the tenant names another.
DEFAULT_MODEL = {"b2b": "aisceas", "b2c": "aarrr"}
MODES = tuple(DEFAULT_MODEL)  # ("b2b", "b2c")
# What a lifecycle model's stage may declare it means (its `flags`, docs/domain.md "Lifecycle
# models"): ``evaluating``, a buyer still comparing (outreach's no-discount guard keeps B2B
# promotions from it); ``lapsed``, a side stage of customers gone quiet.
STAGE_FLAGS = ("evaluating", "lapsed")
EVALUATING = "evaluating"

# Outreach channels: WeCom group or one-to-one messages, Official Account template, mass and
# customer-service messages.
CHANNELS = ("wecom_group", "wecom_single", "oa_template", "oa_mass", "oa_custom")

RISK_FLAGS = ("payment_risk", "churn_risk", "lost", "inactive", "new", "growing")
BEHAVIOURS = ("dissatisfied", "prospect", "lapsed", "new", "loyal", "impulse", "researcher",
              "discount_chaser", "skeptic")  # fmt: skip


def stages_of(model: str) -> tuple[str, ...] | None:
    """Every stage and side stage of a built-in model; None for a tenant's own model."""
    if model not in BUILTIN_STAGES:
        return None
    return BUILTIN_STAGES[model] + BUILTIN_SIDE_STAGES[model]


@cache
def time_zones() -> frozenset[str]:
    """The IANA time zone names this Python knows (tzdata)."""
    return frozenset(available_timezones())


def time_zone_error(name: str) -> str | None:
    """Why ``name`` is not a time zone, or None if it is one. Checked against the names, not by
    opening the file: ZoneInfo("Asia") raises IsADirectoryError, which callers did not expect."""
    if name in time_zones():
        return None
    short = len(name) <= 64  # no look-alikes for a long string
    close = short and difflib.get_close_matches(name, sorted(time_zones()), n=1, cutoff=0.7)
    hint = f" Did you mean {close[0]!r}?" if close else " Give an IANA name such as Asia/Shanghai."
    return f"Unknown time zone {name!r}.{hint}"
