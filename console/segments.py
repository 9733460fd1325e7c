"""What the segments pages show and how their form reads (docs/console.md "Segments"): the rows
of GET /api/v1/segments and .../members, labelled for display, the expression a user writes
(YAML or JSON text of the segment grammar) turned into the rule the API stores, and the live
member count of an unsaved expression (services/segment/preview.py, the build's evaluation).

Saving, replacing and deleting go through the API's own functions (services/segment/
api_segments.py ``create_in``, ``replace_in``, ``delete_in``): the same validation, audit log,
catalogue and build."""

from __future__ import annotations

import json
import math
from typing import ClassVar

import yaml
from flask_babel import gettext as _

from console import labels
from services.segment.api_segments import check_rule, member_rows, segment_row, segment_rows
from services.segment.preview import Preview, count_members
from services.segment.tenant_model import model_for
from shared.api.errors import ApiError
from shared.tenants import Tenant
from shared.vocabulary import BEHAVIOURS, BUYING_ROLES, RISK_FLAGS

SEGMENTS_PAGE = 100  # at most segments.MAX_SEGMENTS_PER_TENANT: one page holds them all
MEMBERS_PAGE = 50
# The expression as typed (YAML or JSON, indented): twice the grammar's 8 KiB of compact JSON
# (rule_limits.MAX_RULE_BYTES), which the API then checks on the rule itself.
MAX_EXPRESSION_CHARS = 16 * 1024
# A live count is a request, not a build: the first contacts by id, within a time budget and
# the connection's statement timeout (docs/console.md "Segments").
PREVIEW_CONTACTS = 5_000
PREVIEW_BUDGET_S = 2.0
PREVIEW_STATEMENT_TIMEOUT = "3s"
# Names no console segment may take: they are the console's own paths under /segments/.
RESERVED_IDS = ("new", "preview")

EXAMPLES = (
    {"attribute": "role", "equals": "technical"},
    {"stage_at_least": "comparison"},
    {"all": [{"tag": "risk:payment_risk"}, {"days_since_last_event": {"gte": 30}}]},
    {"account": {"roles_engaged": {"includes": ["decision_maker"]}}},
)


TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"


class _AliasRefused(yaml.YAMLError):
    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


class RuleLoader(yaml.SafeLoader):
    """YAML as a rule needs it: no aliases (``*a`` lets a few hundred characters stand for
    millions of nodes) and no implicit dates (``2024-01-01`` stays text, as in JSON)."""

    yaml_implicit_resolvers: ClassVar[dict] = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != TIMESTAMP_TAG]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            raise _AliasRefused(self.peek_event().anchor)
        return super().compose_node(parent, index)


def _json_like(value) -> bool:
    """Text, finite numbers, booleans, null, lists and mappings with text keys: what JSON (and
    the stored rule, jsonb) can hold; not ``!!timestamp``, ``!!binary``, ``!!set`` or ``.nan``."""
    if value is None or isinstance(value, (str, bool, int)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_json_like(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _json_like(v) for k, v in value.items())
    return False


class BadExpression(Exception):
    """The expression cannot be read as a rule; ``message`` says why (the API's own words when
    the API refused it)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def expression_text(rule: dict) -> str:
    """A stored rule as the editor shows it: indented JSON (valid YAML too)."""
    return json.dumps(rule, ensure_ascii=False, indent=2)


def one_line(rule: dict) -> str:
    return json.dumps(rule, ensure_ascii=False, separators=(", ", ": "))


def parse_expression(text: str) -> dict:
    """The rule of an expression (YAML or JSON text), or BadExpression."""
    if not text.strip():
        raise BadExpression(_("Write an expression (see the examples below)."))
    if len(text) > MAX_EXPRESSION_CHARS:
        raise BadExpression(
            _("The expression has %(n)d characters; at most %(max)d.", n=len(text),
              max=MAX_EXPRESSION_CHARS)
        )  # fmt: skip
    try:
        doc = yaml.load(text, Loader=RuleLoader)  # noqa: S506 - RuleLoader is a SafeLoader
    except _AliasRefused as exc:
        raise BadExpression(
            _("The expression uses a YAML alias (*%(name)s): write the condition out instead.",
              name=exc.name)
        ) from None  # fmt: skip
    except RecursionError:
        raise BadExpression(_("The expression is nested too deeply.")) from None
    except ValueError:  # a number past Python's int conversion limit (4,300 digits)
        raise BadExpression(_("The expression holds a number too long to read.")) from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        if where is None:
            raise BadExpression(_("The expression is not valid YAML or JSON.")) from None
        raise BadExpression(
            _("The expression is not valid YAML or JSON (line %(line)d).", line=where.line + 1)
        ) from None
    if not _json_like(doc):
        raise BadExpression(
            _("The expression holds a value JSON cannot: put dates and other such values in "
              "quotes.")
        )  # fmt: skip
    if not isinstance(doc, dict):
        raise BadExpression(
            _("The expression must be one condition: a mapping such as %(example)s",
              example=one_line(EXAMPLES[0]))
        )  # fmt: skip
    return doc


def checked_rule(conn, tenant: Tenant, text: str):
    """(rule, compiled condition) of an expression, checked as a save checks it (grammar, limits,
    names); BadExpression with the API's message otherwise."""
    rule = parse_expression(text)
    try:
        return rule, check_rule(conn, tenant.id, rule)
    except ApiError as exc:
        raise BadExpression(exc.message) from None


def preview(conn, tenant: Tenant, text: str) -> Preview:
    """The live count of an expression (BadExpression if it is not a valid rule)."""
    conn.execute("SELECT set_config('statement_timeout', %s, true)", (PREVIEW_STATEMENT_TIMEOUT,))
    _, condition = checked_rule(conn, tenant, text)
    return count_members(
        conn, tenant, condition, max_contacts=PREVIEW_CONTACTS, budget_s=PREVIEW_BUDGET_S
    )


def count_text(found: Preview) -> str:
    if found.error is not None:
        return _("The rule failed while being evaluated: %(reason)s", reason=found.error)
    if found.partial:
        return _(
            "%(count)d members among the first %(evaluated)d of %(total)d contacts (a preview "
            "stops there; saving builds the whole membership)",
            count=found.count, evaluated=found.evaluated, total=found.total,
        )  # fmt: skip
    return _("%(count)d members of %(total)d contacts", count=found.count, total=found.total)


def _status(row: dict) -> str:
    status = labels.segment_status(row["status"])
    progress = row.get("progress")
    if row["status"] == "building" and progress:
        return f"{status} {progress['done']}/{progress['total']}"
    return status


def _labelled(row: dict) -> dict:
    return {
        **row,
        "status_label": _status(row),
        "expression": one_line(row["rule"]),
        "subject_label": labels.segment_subject(),
    }


def segment_list(conn, tenant: Tenant) -> list[dict]:
    return [_labelled(r) for r in segment_rows(conn, tenant.id, None, SEGMENTS_PAGE)]


def segment(conn, tenant: Tenant, segment_id: str) -> dict | None:
    """A segment of the tenant, labelled; None if it has none by that id (the page is 404)."""
    try:
        row = segment_row(conn, tenant.id, segment_id)
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise
    return {**_labelled(row), "expression_text": expression_text(row["rule"])}


def members(conn, tenant: Tenant, segment_id: str, after: str | None) -> dict:
    """One page of members (by contact id), labelled, and the cursor of the next."""
    rows = member_rows(conn, tenant.id, segment_id, after, MEMBERS_PAGE + 1)
    more = len(rows) > MEMBERS_PAGE
    rows = rows[:MEMBERS_PAGE]
    return {
        "rows": [
            {
                **r,
                "stage_label": labels.stage(r["stage"]),
                "role_label": labels.buying_role(r["role"]),
            }
            for r in rows
        ],
        "next": rows[-1]["contact_id"] if more and rows else None,
    }


def vocabulary(conn, tenant: Tenant) -> dict:
    """The names an expression may use, for the builder's reference panel."""
    model = model_for(tenant, conn)
    stages = (*model.stage_names, *model.side_stages)
    return {
        "stages": [{"code": s, "label": labels.stage(s)} for s in stages],
        "funnel": list(model.stage_names),
        "roles": [{"code": r, "label": labels.buying_role(r)} for r in BUYING_ROLES],
        "risk": [{"code": f"risk:{f}", "label": labels.risk_flag(f)} for f in RISK_FLAGS],
        "behaviour": [f"behaviour:{b}" for b in BEHAVIOURS],
        "examples": [one_line(e) for e in EXAMPLES],
    }
