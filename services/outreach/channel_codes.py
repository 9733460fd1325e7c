"""Channel codes (渠道活码, docs/domain.md "Channel codes"): WeCom "contact me" configs and
customer-group join codes that carry a source channel in their ``state``, with a daily cap of
adds per staff member.

The domain functions take the connection, the tenant's WeCom client and the actor, so the admin
API (api_channel_codes.py) and the console act through the same code and audit log.

Order of writes, so that nothing is lost or left half-made (a config whose id we lose can never
be changed or deleted: WeCom's admin does not show API-made configs):
- create: names are checked; a ``pending`` row (no config id) is inserted and committed, so a
  concurrent create of the same id is a 409; WeCom creates the config; its id is recorded and
  committed at once; then the row turns active (audited, committed). A WeCom refusal deletes the
  pending row. A failure after WeCom deletes the config again, unless the commit did land. A
  process killed half-way leaves a pending row that the leader's ``settle_pending`` removes
  after PENDING_FOR (deleting WeCom's config first when its id was recorded).
- edit: names are checked without a lock; then the row is locked for ONE WeCom call (the
  config's update) and the row's update, committed; a failed commit puts the previous config
  back in WeCom. The state never changes (contacts already carry it), so neither does the
  channel. A concurrent edit is a 409 (the row's updated_at moved).
- delete: WeCom's config first, then the row is marked deleted (kept: its state still names the
  channel of the contacts it brought), committed.

Daily cap: ``record_add`` counts each add per code, staff member and tenant-local day. A staff
member at the cap is left out of the code's WeCom config (``update_contact_way`` with the rest);
never an empty list: when everyone is capped the config stays as it is and the code says
``all_capped``. ``step`` (one call in the outreach worker's loop, leader only; every 30 s and
when a quarter hour begins) settles pending codes and runs ``apply_caps``, which brings every
config that differs from today's counts to them, which also restores capped staff on the next
local day. A config WeCom no longer knows marks its code (``config_missing_at``) and is skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from psycopg import Connection, sql
from psycopg.errors import UniqueViolation
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
                         "created_at", "updated_at", "config_missing_at"))
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
        except BaseException:
            _delete_config(client, code["kind"], config_id)
            raise


def _delete_config(client: WeComClient, kind: str, config_id: str) -> bool:
    """A compensation: whether the config is gone (deleted now, or unknown to WeCom); logged
    when WeCom refuses or is unavailable."""
    try:
        _delete_way(client, kind, config_id)
    except WeComError as exc:
        if not isinstance(exc, RateLimited | WeComUnavailable) and not _known(
            client, kind, config_id
        ):
            return True
        log.warning("channel_code_config_not_deleted", config_id=config_id, error=str(exc))
        return False
    return True


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
    tenant has had already (or is creating at the same moment), 400 for unknown names, WeCom's
    refusal as ``wecom_refused``. Commits (see the module docstring for the order)."""
    tenant_day(conn, tenant, datetime.now().astimezone())  # 404 for an unknown tenant
    if conn.execute("SELECT 1 FROM channel_codes WHERE tenant_id = %s AND code_id = %s",
                    (tenant, body["code_id"])).fetchone():  # fmt: skip
        raise _taken(body["code_id"])
    code = {"staff": [], "chat_ids": [], "tags": [], "welcome_content": [], "daily_cap": None,
            "skip_verify": True, **body}  # fmt: skip
    _check(conn, tenant, client, code)
    client = _require(client)
    code["state"] = new_state(code["channel"])
    try:  # the pending row, durable before WeCom makes anything
        conn.execute(
            "INSERT INTO channel_codes (tenant_id, code_id, kind, name, channel, state, staff, "
            "chat_ids, daily_cap, tags, welcome_content, skip_verify, created_by, status) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'pending')",
            (tenant, code["code_id"], code["kind"], code["name"], code["channel"], code["state"],
             code["staff"], code["chat_ids"], code["daily_cap"], code["tags"],
             code["welcome_content"], code["skip_verify"], actor_id(who)),
        )  # fmt: skip
        conn.commit()
    except UniqueViolation:
        conn.rollback()
        raise _taken(code["code_id"]) from None
    try:
        config_id, qr_code = _create_config(client, code)
    except BaseException:  # WeCom made nothing (or its answer is lost: see settle_pending)
        _drop_pending(conn, tenant, code["code_id"])
        raise
    try:
        recorded = conn.execute(
            "UPDATE channel_codes SET config_id = %s, qr_code = %s "
            "WHERE tenant_id = %s AND code_id = %s AND status = 'pending'",
            (config_id, qr_code, tenant, code["code_id"]),
        ).rowcount
        conn.commit()  # the config id is ours now, whatever happens next
        if not recorded:
            raise RuntimeError("the pending code was settled while WeCom answered")
        conn.execute(
            "UPDATE channel_codes SET status = 'active', updated_at = clock_timestamp() "
            "WHERE tenant_id = %s AND code_id = %s AND status = 'pending'",
            (tenant, code["code_id"]),
        )
        audit(conn, who, tenant, "channel_code.create", code["code_id"],
              {**body, "state": code["state"], "config_id": config_id})  # fmt: skip
        row = code_row(conn, tenant, code["code_id"])
        conn.commit()
    except BaseException:
        row = _undo_create(conn, client, tenant, code, config_id)
        if row is None:
            raise
    return row


def _taken(code_id: str) -> ApiError:
    return conflict(f"channel code {code_id!r} exists (ids are never reused)")


def _drop_pending(conn: Connection, tenant: str, code_id: str) -> None:
    try:
        conn.rollback()
        conn.execute(
            "DELETE FROM channel_codes WHERE tenant_id = %s AND code_id = %s "
            "AND status = 'pending'",
            (tenant, code_id),
        )
        conn.commit()
    except Exception:  # the leader's settle_pending removes it
        log.warning("channel_code_pending_left", tenant_id=tenant, code_id=code_id)


def _undo_create(conn: Connection, client: WeComClient, tenant: str, code: dict,
                 config_id: str) -> dict | None:  # fmt: skip
    """After a failure past WeCom: the row if the commit did land (a commit can raise after the
    server committed), else the WeCom config deleted and the pending row with it. When the
    database cannot answer, nothing is deleted: the pending row keeps the config id (or does
    not exist, if the config id never got in) and settle_pending decides later."""
    try:
        conn.rollback()
        found = conn.execute(
            "SELECT status, config_id FROM channel_codes WHERE tenant_id = %s AND code_id = %s",
            (tenant, code["code_id"]),
        ).fetchone()
        conn.rollback()
    except Exception:
        log.warning("channel_code_create_unsettled", tenant_id=tenant, code_id=code["code_id"],
                    config_id=config_id)  # fmt: skip
        return None
    if found is not None and found["status"] == "active" and found["config_id"] == config_id:
        return code_row(conn, tenant, code["code_id"])
    if _delete_config(client, code["kind"], config_id):
        _drop_pending(conn, tenant, code["code_id"])
    return None


PENDING_FOR = timedelta(minutes=5)  # far longer than a create's WeCom calls take


def settle_pending(pool: ConnectionPool, clients, now: datetime) -> int:
    """The leader's step: pending codes older than PENDING_FOR belong to a create that died.
    With a config id, WeCom's config is deleted, then the row (a WeCom failure keeps the row
    for the next pass); without one, the row goes: either WeCom was never asked or its answer
    was lost with the process. Such a lost config cannot be found again (WeCom's admin does not
    show API-made configs); its state names no code, so adds through it count for nothing.
    Returns the rows removed."""
    removed = 0
    with pool.connection() as conn:
        stale = conn.execute(
            "SELECT tenant_id, code_id FROM channel_codes WHERE status = 'pending' "
            "AND created_at < %s",
            (now - PENDING_FOR,),
        ).fetchall()
    for item in stale:
        try:
            with pool.connection() as conn, conn.transaction():
                row = conn.execute(
                    "SELECT kind, config_id FROM channel_codes WHERE tenant_id = %s "
                    "AND code_id = %s AND status = 'pending' FOR UPDATE SKIP LOCKED",
                    (item["tenant_id"], item["code_id"]),
                ).fetchone()
                if row is None:
                    continue
                if row["config_id"] is not None:
                    client = clients.wecom(item["tenant_id"])
                    if client is None or not _delete_config(client, row["kind"], row["config_id"]):
                        continue
                else:
                    log.warning("channel_code_config_maybe_lost", **item)
                conn.execute(
                    "DELETE FROM channel_codes WHERE tenant_id = %s AND code_id = %s",
                    (item["tenant_id"], item["code_id"]),
                )
                removed += 1
        except Exception:
            log.exception("channel_code_settle_failed", **item)
    return removed


EDITABLE = ("name", "staff", "chat_ids", "daily_cap", "tags", "welcome_content", "skip_verify")


def update(conn: Connection, client: WeComClient | None, tenant: str, code_id: str,
           body: dict[str, Any], who, now: datetime, *,
           updated_at: datetime | None = None) -> dict:  # fmt: skip
    """Change a code (a validated ChannelCodePatch body); kind, channel and state never change.
    Names are checked before the row is locked; under the lock WeCom's config is changed
    (one call), then the row, and the change commits. A WeCom refusal leaves the code as it
    was; a failed commit puts the previous config back in WeCom. ``updated_at``: the version
    the caller edited (409 if the code changed since). Commits."""
    tenant_day(conn, tenant, now)  # 404 unknown_tenant
    current = code_row(conn, tenant, code_id)
    if updated_at is not None and current["updated_at"] != updated_at:
        raise _changed(code_id)
    merged = {**current, **{k: v for k, v in body.items() if k in EDITABLE}}
    _check(conn, tenant, client, merged)
    if current["kind"] == "contact" and (len(merged["staff"]) == 1) != (len(current["staff"]) == 1):
        message = ("WeCom cannot turn a one-member code into a several-member one or back: "
                   "delete the code and create a new one")  # fmt: skip
        raise invalid(message, details={"staff": [message]})
    client = _require(client)
    conn.rollback()  # no snapshot held while the names were checked
    locked = code_row(conn, tenant, code_id, lock=True)
    if locked["updated_at"] != current["updated_at"]:
        conn.rollback()
        raise _changed(code_id)
    users, status = _users_today(conn, tenant, merged, now)
    try:
        with wecom_errors():
            _push(client, merged, users)
    except BaseException:
        conn.rollback()
        raise
    try:
        conn.execute(
            "UPDATE channel_codes SET name = %s, staff = %s, chat_ids = %s, daily_cap = %s, "
            "tags = %s, welcome_content = %s, skip_verify = %s, config_users = %s, "
            "cap_status = %s, updated_at = clock_timestamp() "
            "WHERE tenant_id = %s AND code_id = %s",
            (merged["name"], merged["staff"], merged["chat_ids"], merged["daily_cap"],
             merged["tags"], merged["welcome_content"], merged["skip_verify"],
             _stored(merged, users), status, tenant, code_id),
        )  # fmt: skip
        audit(conn, who, tenant, "channel_code.update", code_id, body)
        row = code_row(conn, tenant, code_id)
        conn.commit()
    except BaseException:
        try:
            conn.rollback()
        finally:
            _push_back(client, locked)
        raise
    return row


def _changed(code_id: str) -> ApiError:
    return conflict(f"channel code {code_id!r} was changed meanwhile: reload and edit again")


def _push(client: WeComClient, code: dict, users: list[str] | None) -> None:
    if code["kind"] == "contact":
        client.update_contact_way({"config_id": code["config_id"],
                                   **_contact_body(code, users)})  # fmt: skip
    else:
        client.update_join_way({"config_id": code["config_id"], **_join_body(code)})


def _push_back(client: WeComClient, previous: dict) -> None:
    """A compensation: WeCom's config as the row (still) says; logged when WeCom refuses."""
    users = previous["config_users"] if previous["config_users"] is not None else previous["staff"]
    try:
        _push(client, previous, list(users))
    except WeComError as exc:
        log.warning("channel_code_config_not_restored", code_id=previous["code_id"],
                    config_id=previous["config_id"], error=str(exc))  # fmt: skip


def _stored(code: dict, users: list[str]) -> list[str] | None:
    """``config_users`` as stored: NULL when the config holds all of the staff."""
    return None if code["kind"] != "contact" or users == list(code["staff"]) else users


def delete(conn: Connection, client: WeComClient | None, tenant: str, code_id: str,
           who) -> dict:  # fmt: skip
    """Delete WeCom's config, then mark the code deleted (its state keeps naming the channel of
    the contacts it brought), and commit. WeCom's refusal is taken for "already gone" only when
    WeCom no longer knows the config either (``get_*_way`` refuses it too): 40058 is WeCom's
    generic invalid-parameter code, not a "no such config"."""
    tenant_day(conn, tenant, datetime.now().astimezone())  # 404 unknown_tenant
    current = code_row(conn, tenant, code_id, lock=True)
    client = _require(client)
    if current["config_missing_at"] is None:
        try:
            with wecom_errors():
                try:
                    _delete_way(client, current["kind"], current["config_id"])
                except WeComError as exc:
                    if isinstance(exc, RateLimited | WeComUnavailable) or _known(
                        client, current["kind"], current["config_id"]
                    ):
                        raise
        except BaseException:
            conn.rollback()
            raise
    conn.execute(
        "UPDATE channel_codes SET status = 'deleted', updated_at = clock_timestamp() "
        "WHERE tenant_id = %s AND code_id = %s",
        (tenant, code_id),
    )
    audit(conn, who, tenant, "channel_code.delete", code_id, {"config_id": current["config_id"]})
    conn.commit()  # if this fails, the cap step finds the config gone and marks the code
    return {**current, "status": "deleted"}


def _delete_way(client: WeComClient, kind: str, config_id: str) -> None:
    (client.del_contact_way if kind == "contact" else client.del_join_way)(config_id)


def _known(client: WeComClient, kind: str, config_id: str) -> bool:
    """Whether WeCom still has the config (``get_contact_way`` / ``get_join_way`` answers)."""
    try:
        (client.get_contact_way if kind == "contact" else client.get_join_way)(config_id)
    except (RateLimited, WeComUnavailable):
        return True  # cannot tell: assume it is there
    except WeComError:
        return False
    return True


def actor_id(who) -> str:
    return getattr(who, "token_id", who)


# --- daily cap ------------------------------------------------------------------------------------


def _users_today(conn, tenant: str, code: dict, now: datetime) -> tuple[list[str], str]:
    """The users the code's WeCom config should hold now, and the code's cap status. When every
    member is capped the config keeps what it holds (never an empty list; those of the staff)."""
    staff = list(code["staff"])
    if code["kind"] != "contact" or not code.get("daily_cap"):
        return staff, "ok"
    counts = adds_on(conn, tenant, tenant_day(conn, tenant, now), [code["code_id"]])
    adds = counts.get(code["code_id"], {})
    free = [s for s in staff if adds.get(s, 0) < code["daily_cap"]]
    if free:
        return free, "ok"
    holds = [u for u in code.get("config_users") or staff if u in staff]
    return holds or staff, "all_capped"


def record_add(conn: Connection, tenant_id: str, state: str, staff_userid: str,
               at: datetime) -> dict | None:  # fmt: skip
    """Count an add through the code whose state is ``state`` (``at``'s tenant-local day) and
    return the code's row, or None when the state is not one of the tenant's codes. The cap
    step (``apply_caps``) takes a member who reached the cap out of WeCom's config."""
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
    return row


def _apply_cap(conn, client: WeComClient, tenant: str, row: dict, now: datetime) -> dict | None:
    """Bring one code's WeCom config to today's users; the updated row, or None if unchanged.
    A config WeCom no longer knows marks the code (``config_missing_at``) instead."""
    users, status = _users_today(conn, tenant, row, now)
    current = list(row["config_users"]) if row["config_users"] is not None else list(row["staff"])
    if users == current and status == row["cap_status"]:
        return None
    if users != current:
        try:
            client.update_contact_way({"config_id": row["config_id"], "user": users})
        except WeComError as exc:
            if isinstance(exc, RateLimited | WeComUnavailable) or _known(
                client, "contact", row["config_id"]
            ):
                raise
            log.warning("channel_code_config_missing", tenant_id=tenant,
                        code_id=row["code_id"], config_id=row["config_id"])  # fmt: skip
            conn.execute(
                "UPDATE channel_codes SET config_missing_at = %s "
                "WHERE tenant_id = %s AND code_id = %s",
                (now, tenant, row["code_id"]),
            )
            return None
    log.info("channel_code_capped", tenant_id=tenant, code_id=row["code_id"], users=users,
             cap_status=status)  # fmt: skip
    return conn.execute(
        _q(
            "UPDATE channel_codes SET config_users = %s, cap_status = %s "
            "WHERE tenant_id = %s AND code_id = %s RETURNING {}"
        ),
        (_stored(row, users), status, tenant, row["code_id"]),
    ).fetchone()


# The codes whose WeCom config is not what today's adds want, in one statement: a code's free
# staff (under the cap on the tenant-local day), or, when none is free, all_capped with the
# config left as it is. Codes of deleted tenants (no tenants row) and codes whose config WeCom
# no longer knows are not looked at.
DRIFTED = """
WITH c AS (
    SELECT cc.tenant_id, cc.code_id, cc.cap_status, COALESCE(cc.config_users, cc.staff) AS holds,
           ARRAY(SELECT u.s FROM unnest(cc.staff) WITH ORDINALITY AS u(s, i)
                 WHERE COALESCE((SELECT a.adds FROM channel_code_adds a
                                 WHERE a.tenant_id = cc.tenant_id AND a.code_id = cc.code_id
                                   AND a.day = (%(now)s::timestamptz AT TIME ZONE t.timezone)::date
                                   AND a.staff_userid = u.s), 0) < cc.daily_cap
                 ORDER BY u.i) AS free
    FROM channel_codes cc JOIN tenants t ON t.tenant_id = cc.tenant_id
    WHERE cc.status = 'active' AND cc.kind = 'contact' AND cc.daily_cap IS NOT NULL
      AND cc.config_missing_at IS NULL
)
SELECT tenant_id, code_id FROM c
WHERE CASE WHEN cardinality(free) = 0 THEN cap_status <> 'all_capped'
           ELSE cap_status <> 'ok' OR free <> holds END
ORDER BY tenant_id, code_id
"""


def apply_caps(pool: ConnectionPool, clients, now: datetime) -> int:
    """Every capped code's WeCom config as today's adds say (a capped member leaves, and is back
    the next tenant-local day): one query finds the codes that differ, then each is changed in
    a transaction of its own. A code locked by an edit is skipped (SKIP LOCKED: the next pass
    takes it); any failure is logged and the next code goes on. Returns configs changed."""
    changed = 0
    with pool.connection() as conn:
        drifted = conn.execute(DRIFTED, {"now": now}).fetchall()
    for item in drifted:
        client = clients.wecom(item["tenant_id"])
        if client is None:
            continue
        try:
            with pool.connection() as conn, conn.transaction():
                locked = conn.execute(
                    _q(
                        "SELECT {} FROM channel_codes WHERE tenant_id = %s "
                        "AND code_id = %s AND status = 'active' FOR UPDATE SKIP LOCKED"
                    ),
                    (item["tenant_id"], item["code_id"]),
                ).fetchone()
                if locked and _apply_cap(conn, client, item["tenant_id"], locked, now):
                    changed += 1
        except Exception:
            log.exception("channel_code_cap_failed", **item)
    return changed


STEP_EVERY = timedelta(seconds=30)
ROLLOVER = 15 * 60  # every time zone's midnight falls on a quarter hour (UTC)


class Step:
    """The worker's periodic step (leader only): settle stale pending codes and bring capped
    configs to today's adds, every STEP_EVERY and at once when a quarter hour begins (a
    tenant-local day may have begun: capped members come back then)."""

    def __init__(self) -> None:
        self.last: datetime | None = None

    def due(self, now: datetime) -> bool:
        if self.last is None or now - self.last >= STEP_EVERY:
            return True
        return int(now.timestamp()) // ROLLOVER != int(self.last.timestamp()) // ROLLOVER

    def __call__(self, pool: ConnectionPool, clients, now: datetime) -> int:
        if not self.due(now):
            return 0
        self.last = now
        try:
            settle_pending(pool, clients, now)
        except Exception:
            log.exception("channel_code_settle_failed")
        return apply_caps(pool, clients, now)


step = Step()
