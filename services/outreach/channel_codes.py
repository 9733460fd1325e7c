"""Channel codes (渠道活码, docs/domain.md "Channel codes"): WeCom "contact me" configs and
customer-group join codes that carry a source channel in their ``state``, with a daily cap of
adds per staff member.

The domain functions take the connection, the tenant's WeCom client and the actor, so the admin
API (api_channel_codes.py) and the console act through the same code and audit log.

Order of writes, so that nothing is lost or left half-made:
- create: names are checked, WeCom creates the config, then the row is inserted and committed;
  if the insert or the commit fails, the WeCom config is deleted again (a config whose id we lose
  can never be changed or deleted: WeCom's admin does not show API-made configs). A WeCom refusal
  leaves nothing behind.
- edit: the row is locked, WeCom's config is updated, then the row; a WeCom refusal changes
  nothing. The state never changes (contacts already carry it), so neither does the channel.
- delete: WeCom's config first, then the row is marked deleted (kept: its state still names the
  channel of the contacts it brought).

Daily cap: ``record_add`` counts each add per code, staff member and tenant-local day. A staff
member at the cap is left out of the code's WeCom config (``update_contact_way`` with the rest);
never an empty list: when everyone is capped the config stays as it is and the code says
``all_capped``. ``apply_caps`` (one call in the outreach worker's loop, leader only) brings every
config to what today's counts say, which also restores capped staff on the next local day.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from psycopg import Connection, sql
from psycopg_pool import ConnectionPool

from shared.api import audit, conflict, invalid, not_found, unknown_tenant
from shared.api.errors import ApiError
from shared.api.names import Unknown, check, check_one, unknown_names
from shared.source_channels import SOURCE_CHANNELS, new_state
from shared.wechat import WeComClient
from shared.wechat.wecom import RateLimited, WeComError, WeComUnavailable

log = structlog.get_logger("siyu.outreach")

KINDS = ("contact", "group")
MAX_CHATS = 5  # WeCom: a join code names at most 5 customer groups
MAX_STAFF = 100  # WeCom: a contact me config has at most 100 users
CODE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
COLUMNS = sql.SQL(", ").join(
    map(sql.Identifier, ("code_id", "kind", "name", "channel", "state", "config_id", "qr_code",
                         "staff", "chat_ids", "daily_cap", "tags", "welcome_content",
                         "skip_verify", "config_users", "cap_status", "status", "created_by",
                         "created_at", "updated_at"))
)  # fmt: skip


def _q(text: str) -> sql.Composed:
    """A statement whose ``{}`` is the code columns."""
    return sql.SQL(text).format(COLUMNS)


@dataclass(frozen=True)
class Known:
    """What a code's names may be: the corp's customer-contact staff, the tenant's active
    customer groups, corp tag ids and active content ids (None: not asked, nothing to check)."""

    staff: tuple[str, ...] | None
    chats: tuple[str, ...]
    tags: tuple[str, ...] | None
    content: tuple[str, ...]


def unknowns(code: dict[str, Any], known: Known) -> list[Unknown]:
    """Every name in ``code`` that does not exist, and the structural rules (pure)."""
    found = check_one("channel", "source channel", code.get("channel"), SOURCE_CHANNELS)
    found += check_one("kind", "kind", code.get("kind"), KINDS)
    found += check("staff", "staff member", code.get("staff") or (), known.staff or ())
    found += check("chat_ids", "customer group", code.get("chat_ids") or (), known.chats)
    found += check("tags", "corp tag", code.get("tags") or (), known.tags or ())
    found += check("welcome_content", "content item", code.get("welcome_content") or (),
                   known.content)  # fmt: skip
    return found


def shape_errors(code: dict[str, Any]) -> dict[str, list[str]]:
    """What a code of its kind must have (pure): staff for a contact code (1..100), 1..5
    groups for a join code, and nothing of the other kind."""
    errors: dict[str, list[str]] = {}
    staff, chats = code.get("staff") or [], code.get("chat_ids") or []
    if code.get("kind") == "contact":
        if not staff:
            errors["staff"] = ["a contact code needs at least one staff member"]
        elif len(staff) > MAX_STAFF:
            errors["staff"] = [f"at most {MAX_STAFF} staff members (WeCom)"]
        if chats:
            errors["chat_ids"] = ["only a group code names customer groups"]
    elif code.get("kind") == "group":
        if not chats:
            errors["chat_ids"] = ["a group code needs at least one customer group"]
        elif len(chats) > MAX_CHATS:
            errors["chat_ids"] = [f"at most {MAX_CHATS} customer groups per join code (WeCom)"]
        if staff:
            errors["staff"] = ["only a contact code names staff members"]
        if code.get("daily_cap"):
            errors["daily_cap"] = ["a daily cap applies to a contact code's staff"]
    if len(set(staff)) != len(staff):
        errors.setdefault("staff", []).append("a staff member is listed twice")
    if len(set(chats)) != len(chats):
        errors.setdefault("chat_ids", []).append("a customer group is listed twice")
    return errors


def known_names(conn: Connection, tenant: str, client: WeComClient | None,
                code: dict[str, Any]) -> Known:  # fmt: skip
    """The names ``code`` is checked against; WeCom is asked only for what the code names."""
    chats = conn.execute(
        "SELECT chat_id FROM groups WHERE tenant_id = %s AND status = 'active' ORDER BY chat_id",
        (tenant,),
    ).fetchall()
    content = conn.execute(
        "SELECT content_id FROM content WHERE tenant_id = %s AND status = 'active' "
        "ORDER BY content_id",
        (tenant,),
    ).fetchall()
    staff = tags = None
    if code.get("staff") or code.get("tags"):
        client = _require(client)
        with wecom_errors():
            staff = tuple(client.get_follow_user_list()) if code.get("staff") else None
            tags = tuple(client.corp_tag_ids()) if code.get("tags") else None
    return Known(staff, tuple(r["chat_id"] for r in chats), tags,
                 tuple(r["content_id"] for r in content))  # fmt: skip


# --- WeCom ---------------------------------------------------------------------------------------


class wecom_errors:  # used as ``with wecom_errors():``
    """WeCom's answers as the API's errors: unavailable or rate-limited is a 503 to retry; a
    refusal is a 400 ``wecom_refused`` naming WeCom's errcode and message."""

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if isinstance(exc, RateLimited | WeComUnavailable):
            raise ApiError(503, "wecom_unavailable", f"WeCom is unavailable; retry later ({exc})",
                           {"errcode": exc.errcode}) from None  # fmt: skip
        if isinstance(exc, WeComError):
            raise ApiError(400, "wecom_refused", f"WeCom refused: {exc}",
                           {"errcode": exc.errcode, "errmsg": exc.errmsg}) from None  # fmt: skip
        return False


def _require(client: WeComClient | None) -> WeComClient:
    if client is None:
        raise ApiError(409, "no_wecom", "this tenant has no WeCom app configured (tenants file)")
    return client


def _contact_body(code: dict[str, Any], users: list[str]) -> dict[str, Any]:
    return {"type": 1 if len(code["staff"]) == 1 else 2, "scene": 2, "state": code["state"],
            "user": users, "skip_verify": code.get("skip_verify", True),
            "remark": code["name"][:30]}  # fmt: skip


def _join_body(code: dict[str, Any]) -> dict[str, Any]:
    return {"scene": 2, "state": code["state"], "chat_id_list": code["chat_ids"],
            "remark": code["name"][:30], "auto_create_room": 0}  # fmt: skip


def _create_config(client: WeComClient, code: dict[str, Any]) -> tuple[str, str | None]:
    with wecom_errors():
        if code["kind"] == "contact":
            made = client.add_contact_way(_contact_body(code, code["staff"]))
            return made["config_id"], made.get("qr_code")
        config_id = client.add_join_way(_join_body(code))["config_id"]
        try:
            return config_id, client.get_join_way(config_id).get("qr_code")
        except WeComError:
            _delete_config(client, code["kind"], config_id)
            raise


def _delete_config(client: WeComClient, kind: str, config_id: str) -> None:
    """Best effort (a compensation): logged when WeCom refuses."""
    try:
        (client.del_contact_way if kind == "contact" else client.del_join_way)(config_id)
    except WeComError as exc:
        log.warning("channel_code_config_not_deleted", config_id=config_id, error=str(exc))


# --- the store ----------------------------------------------------------------------------------


def code_row(conn: Connection, tenant: str, code_id: str, *, lock: bool = False) -> dict:
    query = _q("SELECT {} FROM channel_codes WHERE tenant_id = %s AND code_id = %s "
               "AND status = 'active'")  # fmt: skip
    row = conn.execute(
        query + sql.SQL(" FOR UPDATE") if lock else query,
        (tenant, code_id),
    ).fetchone()
    if row is None:
        raise not_found("channel code", code_id)
    return row


def tenant_day(conn: Connection, tenant: str, at: datetime):
    row = conn.execute("SELECT timezone FROM tenants WHERE tenant_id = %s", (tenant,)).fetchone()
    if row is None:
        raise unknown_tenant(tenant)
    return at.astimezone(ZoneInfo(row["timezone"])).date()


def adds_on(conn: Connection, tenant: str, day, code_ids: list[str]) -> dict[str, dict[str, int]]:
    """``{code_id: {staff_userid: adds}}`` on the tenant-local ``day``."""
    found: dict[str, dict[str, int]] = {}
    for r in conn.execute(
        "SELECT code_id, staff_userid, adds FROM channel_code_adds "
        "WHERE tenant_id = %s AND day = %s AND code_id = ANY(%s)",
        (tenant, day, code_ids),
    ).fetchall():
        found.setdefault(r["code_id"], {})[r["staff_userid"]] = r["adds"]
    return found


def code_rows(conn: Connection, tenant: str, now: datetime) -> list[dict]:
    """The tenant's active codes, newest first, each with ``adds_today`` per staff member."""
    rows = conn.execute(
        _q(
            "SELECT {} FROM channel_codes WHERE tenant_id = %s AND status = 'active' "
            "ORDER BY created_at DESC, code_id"
        ),
        (tenant,),
    ).fetchall()
    today = adds_on(conn, tenant, tenant_day(conn, tenant, now), [r["code_id"] for r in rows])
    return [{**r, "adds_today": today.get(r["code_id"], {})} for r in rows]


def with_adds(conn: Connection, tenant: str, row: dict, now: datetime) -> dict:
    today = adds_on(conn, tenant, tenant_day(conn, tenant, now), [row["code_id"]])
    return {**row, "adds_today": today.get(row["code_id"], {})}


def _check(conn, tenant: str, client: WeComClient | None, code: dict[str, Any]) -> None:
    shape = shape_errors(code)
    if shape:
        first = next(iter(shape.values()))[0]
        raise invalid(first, details=shape)
    error = unknown_names(unknowns(code, known_names(conn, tenant, client, code)))
    if error is not None:
        raise error


def create(conn: Connection, client: WeComClient | None, tenant: str, body: dict[str, Any],
           who) -> dict:  # fmt: skip
    """A new code (a validated ChannelCodeIn body), audited as ``who``: 409 for a code id the
    tenant has had already, 400 for unknown names, WeCom's refusal as ``wecom_refused``.
    Commits on success (see the module docstring for why)."""
    tenant_day(conn, tenant, datetime.now().astimezone())  # 404 for an unknown tenant
    if conn.execute("SELECT 1 FROM channel_codes WHERE tenant_id = %s AND code_id = %s",
                    (tenant, body["code_id"])).fetchone():  # fmt: skip
        raise conflict(f"channel code {body['code_id']!r} exists (ids are never reused)")
    code = {"staff": [], "chat_ids": [], "tags": [], "welcome_content": [], "daily_cap": None,
            "skip_verify": True, **body}  # fmt: skip
    _check(conn, tenant, client, code)
    client = _require(client)
    code["state"] = new_state(code["channel"])
    config_id, qr_code = _create_config(client, code)
    try:
        conn.execute(
            "INSERT INTO channel_codes (tenant_id, code_id, kind, name, channel, state, "
            "config_id, qr_code, staff, chat_ids, daily_cap, tags, welcome_content, skip_verify, "
            "created_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (tenant, code["code_id"], code["kind"], code["name"], code["channel"], code["state"],
             config_id, qr_code, code["staff"], code["chat_ids"], code["daily_cap"],
             code["tags"], code["welcome_content"], code["skip_verify"], actor_id(who)),
        )  # fmt: skip
        audit(conn, who, tenant, "channel_code.create", code["code_id"],
              {**body, "state": code["state"], "config_id": config_id})  # fmt: skip
        row = code_row(conn, tenant, code["code_id"])
        conn.commit()
    except BaseException:
        conn.rollback()
        _delete_config(client, code["kind"], config_id)
        raise
    return row


EDITABLE = ("name", "staff", "chat_ids", "daily_cap", "tags", "welcome_content", "skip_verify")


def update(conn: Connection, client: WeComClient | None, tenant: str, code_id: str,
           body: dict[str, Any], who, now: datetime) -> dict:  # fmt: skip
    """Change a code (a validated ChannelCodePatch body); kind, channel and state never change.
    WeCom's config is changed first: a refusal leaves the code as it was."""
    current = code_row(conn, tenant, code_id, lock=True)
    merged = {**current, **{k: v for k, v in body.items() if k in EDITABLE}}
    _check(conn, tenant, client, merged)
    if current["kind"] == "contact" and (len(merged["staff"]) == 1) != (len(current["staff"]) == 1):
        message = ("WeCom cannot turn a one-member code into a several-member one or back: "
                   "delete the code and create a new one")  # fmt: skip
        raise invalid(message, details={"staff": [message]})
    client = _require(client)
    users = _users_today(conn, tenant, merged, now)
    with wecom_errors():
        if current["kind"] == "contact":
            client.update_contact_way({"config_id": current["config_id"],
                                       **_contact_body(merged, users[0])})  # fmt: skip
        else:
            client.update_join_way({"config_id": current["config_id"], **_join_body(merged)})
    conn.execute(
        "UPDATE channel_codes SET name = %s, staff = %s, chat_ids = %s, daily_cap = %s, "
        "tags = %s, welcome_content = %s, skip_verify = %s, config_users = %s, cap_status = %s, "
        "updated_at = clock_timestamp() WHERE tenant_id = %s AND code_id = %s",
        (merged["name"], merged["staff"], merged["chat_ids"], merged["daily_cap"],
         merged["tags"], merged["welcome_content"], merged["skip_verify"],
         users[0] if current["kind"] == "contact" else None, users[1], tenant, code_id),
    )  # fmt: skip
    audit(conn, who, tenant, "channel_code.update", code_id, body)
    return code_row(conn, tenant, code_id)


def delete(conn: Connection, client: WeComClient | None, tenant: str, code_id: str,
           who) -> dict:  # fmt: skip
    """Delete WeCom's config, then mark the code deleted (its state keeps naming the channel of
    the contacts it brought). A config WeCom no longer knows (40058 invalid config_id) is gone
    already."""
    current = code_row(conn, tenant, code_id, lock=True)
    client = _require(client)
    remove = client.del_contact_way if current["kind"] == "contact" else client.del_join_way
    try:
        with wecom_errors():
            remove(current["config_id"])
    except ApiError as exc:
        if (exc.details or {}).get("errcode") != 40058:
            raise
    conn.execute(
        "UPDATE channel_codes SET status = 'deleted', updated_at = clock_timestamp() "
        "WHERE tenant_id = %s AND code_id = %s",
        (tenant, code_id),
    )
    audit(conn, who, tenant, "channel_code.delete", code_id, {"config_id": current["config_id"]})
    return {**current, "status": "deleted"}


def actor_id(who) -> str:
    return getattr(who, "token_id", who)


# --- daily cap ------------------------------------------------------------------------------------


def _users_today(conn, tenant: str, code: dict, now: datetime) -> tuple[list[str], str]:
    """The users the code's WeCom config should hold now, and the code's cap status."""
    staff = list(code["staff"])
    if code["kind"] != "contact" or not code.get("daily_cap"):
        return staff, "ok"
    counts = adds_on(conn, tenant, tenant_day(conn, tenant, now), [code["code_id"]])
    adds = counts.get(code["code_id"], {})
    free = [s for s in staff if adds.get(s, 0) < code["daily_cap"]]
    return (free, "ok") if free else (staff, "all_capped")


def record_add(conn: Connection, tenant_id: str, state: str, staff_userid: str, at: datetime,
               *, client: WeComClient | None = None) -> dict | None:  # fmt: skip
    """Count an add through the code whose state is ``state`` (``at``'s tenant-local day) and
    return the code's row, or None when the state is not one of the tenant's codes. With
    ``client``, a staff member who just reached the cap leaves WeCom's config at once; without,
    ``apply_caps`` does it on its next pass."""
    row = conn.execute(
        _q("SELECT {} FROM channel_codes WHERE tenant_id = %s AND state = %s"),
        (tenant_id, state),
    ).fetchone()
    if row is None:
        return None
    if row["status"] == "active" and row["kind"] == "contact":
        conn.execute(
            "INSERT INTO channel_code_adds (tenant_id, code_id, staff_userid, day, adds) "
            "VALUES (%s, %s, %s, %s, 1) ON CONFLICT (tenant_id, code_id, day, staff_userid) "
            "DO UPDATE SET adds = channel_code_adds.adds + 1",
            (tenant_id, row["code_id"], staff_userid, tenant_day(conn, tenant_id, at)),
        )
        if client is not None and row["daily_cap"]:
            row = _apply_cap(conn, client, tenant_id, row, at) or row
    return row


def _apply_cap(conn, client: WeComClient, tenant: str, row: dict, now: datetime) -> dict | None:
    """Bring one code's WeCom config to today's users; the updated row, or None if unchanged."""
    users, status = _users_today(conn, tenant, row, now)
    current = list(row["config_users"]) if row["config_users"] is not None else list(row["staff"])
    if users == current and status == row["cap_status"]:
        return None
    if users != current:
        client.update_contact_way({"config_id": row["config_id"], "user": users})
    stored = None if users == list(row["staff"]) else users
    log.info("channel_code_capped", tenant_id=tenant, code_id=row["code_id"], users=users,
             cap_status=status)  # fmt: skip
    return conn.execute(
        _q(
            "UPDATE channel_codes SET config_users = %s, cap_status = %s "
            "WHERE tenant_id = %s AND code_id = %s RETURNING {}"
        ),
        (stored, status, tenant, row["code_id"]),
    ).fetchone()


def apply_caps(pool: ConnectionPool, clients, now: datetime) -> int:
    """The worker's periodic step: every capped code's WeCom config as today's adds say (a
    capped member leaves, and is back the next tenant-local day). Returns configs changed."""
    changed = 0
    with pool.connection() as conn:
        codes = conn.execute(
            _q(
                "SELECT tenant_id, {} FROM channel_codes "
                "WHERE status = 'active' AND daily_cap IS NOT NULL AND kind = 'contact'"
            )
        ).fetchall()
    for row in codes:
        client = clients.wecom(row["tenant_id"])
        if client is None:
            continue
        try:
            with pool.connection() as conn, conn.transaction():
                locked = conn.execute(
                    _q(
                        "SELECT {} FROM channel_codes WHERE tenant_id = %s "
                        "AND code_id = %s AND status = 'active' FOR UPDATE"
                    ),
                    (row["tenant_id"], row["code_id"]),
                ).fetchone()
                if locked and _apply_cap(conn, client, row["tenant_id"], locked, now):
                    changed += 1
        except WeComError as exc:
            log.warning("channel_code_cap_failed", tenant_id=row["tenant_id"],
                        code_id=row["code_id"], error=str(exc))  # fmt: skip
    return changed
