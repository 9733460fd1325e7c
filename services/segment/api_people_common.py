"""What the contact, account and segment routes share: stage schemas and checks, the stage
history of a subject, filters naming the tenant's stages and segments, a contact's list columns.

Everything is read from (and written to) the segment schema through ``segment_connection()``,
always filtered by the tenant of the token: another tenant's ids are answered 404, and its
objects never appear in a list. SQL is static or composed with ``psycopg.sql``, with bound
parameters only; optional filters are ``(%(x)s IS NULL OR ...)`` clauses. Lists are
keyset-paginated (``PageArgs`` + ``page``).
"""

from __future__ import annotations

from datetime import UTC, datetime

from marshmallow import Schema, fields, validate
from psycopg import sql

from services.segment.api_common import (
    current_tenant,
    segment_topics,
)
from services.segment.overrides import override_stage
from services.segment.scoring import DEFAULT_SCORING
from services.segment.tenant_model import model_for
from shared.api import (
    audit,
    conflict,
    principal,
    tenant_id,
)
from shared.api.names import check_one, unknown_names
from shared.source_channels import SOURCE_CHANNELS
from shared.tokens import Principal
from shared.vocabulary import BEHAVIOURS, BUYING_ROLES

# Documented example, valid for the demo tenant acme (schemathesis' examples phase sends it).
STAGE_EXAMPLE = {"stage": "action", "reason": "Contract signed on paper"}

UNKNOWN_ROLE = "unknown"  # the group of account members without a buying role
HISTORY_LIMIT = 500  # newest stage transitions shown in a detail (oldest first)


def like(text: str) -> str:
    """A substring ILIKE pattern matching ``text`` literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


# --- shared schemas ------------------------------------------------------------------------------


class RiskFlagSchema(Schema):
    flag = fields.String(
        required=True,
        metadata={"enum": ["payment_risk", "churn_risk", "inactive", "new", "growing"]},
    )
    reason = fields.String(required=True, metadata={"description": "For people, with numbers"})
    since = fields.String(
        allow_none=True, metadata={"description": "When the condition began (ISO 8601), if known"}
    )


class StageChangeSchema(Schema):
    from_stage = fields.String(allow_none=True, metadata={"description": "null: first stage"})
    to_stage = fields.String(required=True)
    cause = fields.String(required=True, metadata={"description": "The rule and evidence"})
    event_id = fields.String(allow_none=True, metadata={"description": "The deciding event"})
    changed_at = fields.DateTime(required=True)
    model = fields.String(required=True, metadata={"description": "Lifecycle model, e.g. aisceas"})
    actor = fields.String(allow_none=True, metadata={"description": "Set by manual overrides"})
    moved_by = fields.String(
        allow_none=True,
        metadata={
            "description": "What moved it: a touchpoint (event), time alone (time: a window "
            "closed, a limit was crossed), a recompute, or staff; null before this was recorded",
            "enum": ["event", "time", "recompute", "staff"],
        },
    )


def reason_field() -> fields.String:
    return fields.String(
        required=True,
        validate=validate.Length(min=1, max=500),
        metadata={"description": "Why (kept in the audit log and, for stages, in the cause)"},
    )


class StageOverrideSchema(Schema):
    stage = fields.String(
        required=True,
        validate=validate.Length(min=1, max=100),
        metadata={"description": "A stage or side stage of the tenant's active lifecycle model"},
    )
    reason = reason_field()


def valid_stages(conn, tenant) -> tuple[str, ...]:
    """The stages and side stages of the tenant's active model (a staff override's choices)."""
    model = model_for(tenant, conn)
    return (*model.stage_names, *model.side_stages)


def check_stage(conn, tenant, stage: str) -> None:
    """400 unless ``stage`` is a stage or side stage of the tenant's active model."""
    model = model_for(tenant, conn)
    valid = valid_stages(conn, tenant)
    error = unknown_names(check_one("stage", f"stage of the {model.name} model", stage, valid))
    if error is not None:
        raise error


def check_filters(conn, args: dict) -> None:
    """400 for a filter naming a stage, behaviour or segment the tenant does not have (it
    would list nobody, which reads as "no such people")."""
    found = []
    if args.get("stage"):
        model = model_for(current_tenant(), conn)
        found += check_one("stage", f"stage of the {model.name} model", args["stage"],
                           (*model.stage_names, *model.side_stages))  # fmt: skip
    found += check_one("behaviour", "behaviour", args.get("behaviour"), BEHAVIOURS)
    if args.get("segment"):
        ids = conn.execute(
            "SELECT segment_id FROM segments WHERE tenant_id = %s ORDER BY segment_id LIMIT 200",
            (tenant_id(),),
        ).fetchall()
        found += check_one("segment", "segment", args["segment"], [r["segment_id"] for r in ids])
    error = unknown_names(found)
    if error is not None:
        raise error


def stage_history(conn, tenant: str, kind: str, subject_id: str) -> list[dict]:
    rows = conn.execute(
        "SELECT * FROM (SELECT id, from_stage, to_stage, cause, event_id, changed_at, model, "
        "  actor, moved_by"
        "  FROM stage_history WHERE tenant_id = %(tenant)s AND subject_kind = %(kind)s "
        "  AND subject_id = %(id)s ORDER BY changed_at DESC, id DESC LIMIT %(n)s) h "
        "ORDER BY changed_at, id",
        {"tenant": tenant, "kind": kind, "id": subject_id, "n": HISTORY_LIMIT},
    ).fetchall()
    return rows


SCORE = (
    "Lead score decayed to the time of the response: it halves every "
    f"{DEFAULT_SCORING.half_life_days:g} days without new points"
)

LAST_ACTIVE = (
    "When the contact last acted themselves (a click, a message, an order...); not a staff edit, "
    "a send result or a profile fetch. Null until they act"
)


def decayed_score(table: str, at_column: str) -> sql.Composed:
    """The stored score of ``table`` decayed from ``at_column`` (when it was derived) to the
    statement's time: scores decay continuously, between derivations too (docs/domain.md
    "Scoring")."""
    # In float8 (extract() is numeric, whose power overflows for a score derived in 1930), and
    # at most 1000 half-lives old (0.5^1000 is still a float8; more would underflow: an error).
    return sql.SQL(
        "({score} * power(0.5::float8, least(1000.0::float8, greatest(0.0::float8, "
        "extract(epoch FROM now() - coalesce({at}, now()))::float8 / {seconds}::float8))))"
    ).format(
        score=sql.Identifier(table, "score"),
        at=sql.Identifier(table, at_column),
        seconds=sql.Literal(DEFAULT_SCORING.half_life_days * 86400.0),
    )


CONTACT_SCORE = decayed_score("c", "score_at")
ACCOUNT_SCORE = decayed_score("a", "refreshed_at")  # an account's roll-up decays like its members

# The columns of an account in a list (GET /accounts, a contact's account).
ACCOUNT_ITEM_COLUMNS = sql.SQL(", ").join(
    [
        *(sql.Identifier("a", column) for column in ("account_id", "name", "stage")),
        sql.SQL("{} AS score").format(ACCOUNT_SCORE),
        *(sql.Identifier("a", column) for column in ("members", "roles_engaged", "risk_flags")),
    ]
)

# The columns of a contact in a list (GET /contacts, a segment's members).
CONTACT_ITEM_COLUMNS = sql.SQL(", ").join(
    [
        *(sql.Identifier("c", column) for column in
          ("contact_id", "name", "title", "corp_name", "role", "stage")),
        sql.SQL("{} AS score").format(CONTACT_SCORE),
        *(sql.Identifier("c", column) for column in
          ("account_id", "last_event_at", "last_active_at")),
    ]
)  # fmt: skip


class ContactItemSchema(Schema):
    contact_id = fields.String(required=True)
    name = fields.String(allow_none=True)
    title = fields.String(allow_none=True, metadata={"description": "Job title (职位)"})
    corp_name = fields.String(allow_none=True, metadata={"description": "Company as given"})
    role = fields.String(
        allow_none=True, metadata={"description": "Buying role (B2B)", "enum": list(BUYING_ROLES)}
    )
    stage = fields.String(allow_none=True, metadata={"description": "Lifecycle stage"})
    score = fields.Float(required=True, metadata={"description": SCORE})
    account_id = fields.String(allow_none=True)
    last_event_at = fields.DateTime(
        required=True, metadata={"description": "The newest event of any kind about the contact"}
    )
    last_active_at = fields.DateTime(allow_none=True, metadata={"description": LAST_ACTIVE})


def override_subject_stage(
    conn,
    tenant,
    kind: str,
    subject_id: str,
    row: dict,
    body: dict,
    who: Principal | str | None = None,
) -> None:
    """A staff stage override of a locked row, audited as ``<kind>.stage_override`` by ``who``
    (the request's token by default; the console passes its user's actor); 409 when the
    subject is in that stage already."""
    if row["stage"] == body["stage"]:
        raise conflict(f"{kind} {subject_id!r} is in stage {body['stage']!r} already")
    who = principal() if who is None else who
    override_stage(
        conn, tenant, kind, row, body["stage"], reason=body["reason"],
        actor=who.token_id if isinstance(who, Principal) else who,
        now=datetime.now(UTC), topics=segment_topics(),
    )  # fmt: skip
    details = {**body, "previous": row["stage"], "model": model_for(tenant, conn).name}
    audit(conn, who, tenant.id, f"{kind}.stage_override", subject_id, details)


# --- source channels (docs/domain.md "Channel codes") --------------------------------------------


class SourceChannelSchema(Schema):
    first = fields.String(
        allow_none=True,
        metadata={"description": "The first channel code's channel (SOURCE_CHANNELS)"},
    )
    first_at = fields.DateTime(allow_none=True)
    latest = fields.String(allow_none=True, metadata={"description": "The latest one"})
    latest_at = fields.DateTime(allow_none=True)


# ?source_channel= on GET /contacts and /accounts (and the console's lists): subjects whose FIRST
# source channel is this (docs/domain.md "Channel codes"), a 400 listing SOURCE_CHANNELS.
SOURCE_CHANNEL_FILTER = fields.String(
    load_default=None,
    validate=validate.OneOf(
        SOURCE_CHANNELS, error="Unknown source channel {input!r}. Valid: {choices}."
    ),
    metadata={"description": "Whose FIRST source channel is this (SOURCE_CHANNELS)"},
)


def channel_cut(alias: str, channel: str | None) -> sql.Composable:
    """``AND <alias>.first_channel = %(source_channel)s``, only when asked: a condition of its
    own (not ``param IS NULL OR ...``) so a prepared plan can read the partial index on
    first_channel (segment migration 0020)."""
    if channel is None:
        return sql.SQL("")
    return sql.SQL("AND {}.first_channel = %(source_channel)s").format(sql.Identifier(alias))


def source_channel(row: dict) -> dict:
    """A contact's or account's source channels (services/segment/sources.py) for the API."""
    return {
        "first": row.get("first_channel"),
        "first_at": row.get("first_channel_at"),
        "latest": row.get("latest_channel"),
        "latest_at": row.get("latest_channel_at"),
    }
