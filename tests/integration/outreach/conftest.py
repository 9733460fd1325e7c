"""Outreach under test: the admin API and the worker's parts on the session's Postgres (a private
schema), the fake WeChat/WeCom server on a free port as the remote platform, and a clock the
test moves (schedules, quiet hours, caps and back-offs are about time)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.outreach import catalogue as catalogue_store
from services.outreach import groups, projection, scheduler
from services.outreach.clients import Clients
from services.outreach.runs import Executor
from shared.config import Settings
from shared.db import create_pool
from shared.links import LinkSigner
from shared.migrations import migrate_service
from shared.tenants import DEMO_SECRETS, DEMO_TENANTS_PATH, load_tenants
from shared.vocabulary import BUILTIN_STAGES
from siyu.api import create_app
from tests.fake_wecom import FakeWeCom
from tests.integration.api.conftest import Api, finished_job, issue_tokens

TENANTS = load_tenants(DEMO_TENANTS_PATH)
ACME = TENANTS.get("acme")
CORP = ACME.wecom.corp_id
APP = ACME.wechat_oa[0].app_id
# Tuesday 1 December 2026, 10:00 in Shanghai.
TUESDAY_10 = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)


@dataclass
class Outreach:
    api: Api
    pool: Any
    fake: FakeWeCom
    clients: Clients
    settings: Settings
    now: datetime = TUESDAY_10
    segments: set[str] = field(default_factory=set)

    # --- the audience, as the segment service publishes it

    def profile(
        self,
        contact_id: str,
        *,
        ext: str | None = None,
        openid: str | None = None,
        mode: str = "b2b",
        updated_at: datetime | None = None,
        **fields,
    ) -> dict:
        p = self._profile(contact_id, ext=ext, openid=openid, mode=mode, updated_at=updated_at,
                          **fields)  # fmt: skip
        with self.pool.connection() as conn, conn.transaction():
            projection.apply_profiles(conn, [p], self.now)
        if p["segments"]:  # segment defined them: its catalogue names them
            self.publish_segments(*p["segments"])
        return p

    def _profile(self, contact_id: str, *, ext: str | None = None, openid: str | None = None,
                 mode: str = "b2b", updated_at: datetime | None = None, **fields) -> dict:  # fmt: skip
        return {
            "schema": "profile/1", "tenant_id": "acme", "contact_id": contact_id, "mode": mode,
            "identities": {**({"external_userid": [ext]} if ext else {}),
                           **({"openid": [openid]} if openid else {})},
            "model": "aisceas", "stage": "interest", "role": None, "account_id": None,
            "account_stage": None, "risk_flags": [], "score": 10.0, "tags": [], "segments": [],
            "behaviour": [], "wecom_contact": True if ext else None,
            "oa_follower": True if openid else None, "oa_last_message_at": None,
            "updated_at": updated_at or self.now - timedelta(hours=1), **fields,
        }  # fmt: skip

    def profiles(self, people: list[dict]) -> None:
        """Many profiles at once (one batch, as the projection consumer applies them): each
        dict has contact_id, and ext/openid and profile fields as ``profile`` takes them."""
        made = []
        for p in people:
            p = dict(p)
            ext, openid = p.pop("ext", None), p.pop("openid", None)
            made.append(self._profile(p.pop("contact_id"), ext=ext, openid=openid, **p))
        with self.pool.connection() as conn, conn.transaction():
            projection.apply_profiles(conn, made, self.now)
        self.publish_segments(*{s for p in made for s in p["segments"]})

    def close(self) -> None:
        self.fake.stop()
        self.pool.close()

    def publish_segments(self, *segment_ids: str) -> None:
        """acme's catalogue as segment publishes it (siyu.catalogue.v1), naming these segments
        too: campaigns may only name segments the catalogue has."""
        self.segments |= set(segment_ids)
        catalogue = {
            "schema": "catalogue/1", "tenant_id": "acme",
            "model": {"name": "aisceas", "builtin": True,
                      "stages": list(BUILTIN_STAGES["aisceas"]), "side_stages": ["lapsed"],
                      "flags": {"comparison": ["evaluating"], "examination": ["evaluating"],
                                "lapsed": ["lapsed"]}},
            "segments": [{"segment_id": s, "name": s} for s in sorted(self.segments)],
            "published_at": datetime.now(UTC),
        }  # fmt: skip
        with self.pool.connection() as conn, conn.transaction():
            catalogue_store.apply_catalogues(conn, [catalogue])

    def world(self):
        return self.fake.world(CORP)

    def customers(self, n: int) -> list[tuple[str, str | None]]:
        """(external_userid, openid) of n customers the fake WeCom knows."""
        found = []
        for ext, c in sorted(self.world().contacts.items()):
            found.append((ext, c.person.openid if c.person else None))
            if len(found) == n:
                break
        return found

    def add_group(self, chat_id: str, owner: str, members: list[str]) -> None:
        """A customer group in the fake corp (B2B demo corps start without any)."""
        member_list = [{"userid": owner, "type": 1, "join_time": 1, "join_scene": 1}] + [
            {"userid": m, "type": 2, "join_time": 2, "join_scene": 3} for m in members
        ]
        self.fake.add_chat(CORP, chat_id, {"chat_id": chat_id, "name": chat_id, "owner": owner,
                                           "create_time": 1, "member_list": member_list})  # fmt: skip

    def groups(self, n: int, size: int = 3) -> dict[str, list[str]]:
        """n groups of ``size`` distinct customers each, owned by two staff members."""
        customers = [ext for ext, _ in self.customers(n * size)]
        made = {}
        for i in range(n):
            chat_id = f"wrTest{i}"
            made[chat_id] = customers[i * size : (i + 1) * size]
            self.add_group(chat_id, ("zhangwei", "lina")[i % 2], made[chat_id])
        return made

    # --- ops staff, through the admin API

    def call(self, method: str, path: str, who: str = "admin", **kw):
        return self.api.call(method, path, who, **kw)

    def preview(self, campaign_id: str, who: str = "operator", **kw) -> dict:
        """POST .../preview (a background job: 202), then its result once done."""
        queued = self.call("POST", f"/campaigns/{campaign_id}/preview", who, **kw)
        assert queued.status_code == 202, queued.json
        return finished_job(self.api, queued, who)["result"]

    def content(
        self,
        title: str = "白皮书：数字化工厂",
        *,
        fmt: str = "whitepaper",
        promotional: bool | None = None,
        **fields,
    ) -> str:
        body = {"title": title, "format": fmt,
                "payloads": {"wecom": {"text": f"{title}", "attachments": [
                    {"msgtype": "link", "link": {"title": title, "url": "https://acme.example/wp"}}
                ]}, "oa_template": {"template_id": "TPL-1", "url": "https://acme.example/wp",
                                    "data": {"first": {"value": title}}}},
                **fields}  # fmt: skip
        if promotional is not None:
            body["promotional"] = promotional
        response = self.call("POST", "/content", "operator", json=body)
        assert response.status_code == 201, response.json
        return response.json["content_id"]

    def campaign(self, *, launch: bool = True, who: str = "operator", **body) -> str:
        audience = body.get("audience") or {}
        named = (audience.get("segments") or []) + (
            (audience.get("exclude") or {}).get("segments") or []
        )
        if named:
            self.publish_segments(*named)
        response = self.call("POST", "/campaigns", who, json={"name": "campaign", **body})
        assert response.status_code == 201, response.json
        campaign_id = response.json["campaign_id"]
        if launch:
            launched = self.call("POST", f"/campaigns/{campaign_id}/launch", "operator")
            assert launched.status_code == 200, launched.json
            # Launched "now" by the API's clock; the test's clock is the scheduler's.
            self.sql("UPDATE campaigns SET launched_at = %s, scheduled_until = NULL "
                     "WHERE campaign_id = %s", (self.now - timedelta(days=1), campaign_id))  # fmt: skip
        return campaign_id

    # --- the worker's parts, at the test's clock

    def sync_groups(self) -> None:
        groups.sync_groups(self.pool, "acme", self.clients.wecom("acme"), self.now)

    def schedule(self) -> int:
        return scheduler.materialise(self.pool, self.now)

    def executor(self) -> Executor:
        signer = LinkSigner("test-link-secret-0123456789", TENANTS)
        return Executor(self.pool, self.clients, signer, "https://hooks.acme.example",
                        clock=lambda: self.now,
                        allow_private_media=self.settings.media_allow_private)  # fmt: skip

    def send(self) -> int:
        return self.executor().run_due()

    def sql(self, query: str, params=()) -> list[dict]:
        with self.pool.connection() as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else []

    def messages(self, kind: str | None = None) -> list:
        with self.fake.state.lock:
            return [m for m in self.fake.state.mailbox.sent if kind in (None, m.kind)]

    def deliveries(self, campaign_id: str) -> list[dict]:
        return self.sql("SELECT * FROM deliveries WHERE campaign_id = %s ORDER BY delivery_id",
                        (campaign_id,))  # fmt: skip


def outreach_world(stack, schema, monkeypatch, *, contacts: int = 60) -> Outreach:
    """The fixture's world, for tests that need another size of fake corp (close() it)."""
    for key, value in DEMO_SECRETS.items():
        monkeypatch.setenv(key, value)
    migrate_service(stack.dsn, "outreach", schema=schema)
    pool = create_pool(stack.dsn, name="outreach-test", schema=schema, max_size=6, timeout=5)
    fake = FakeWeCom(TENANTS, DEMO_SECRETS, contacts=contacts).start()
    settings = Settings.from_env({
        "SIYU_DATABASE_URL": stack.dsn, "SIYU_WECOM_API_BASE": fake.base_url,
        "SIYU_WECHAT_API_BASE": fake.oa_base_url, "SIYU_WECOM_RATE": "1000",
        "SIYU_TENANTS": str(DEMO_TENANTS_PATH), "SIYU_MEDIA_ALLOW_PRIVATE": "1",
    })  # fmt: skip
    app = create_app(
        settings,
        pool=pool,
        token_cache_ttl_s=0,
        schema_for=lambda service: schema if service == "outreach" else service,
    )
    api = Api(app.test_client(), app, pool, schema)
    issue_tokens(api)
    return Outreach(api, pool, fake, Clients(settings, TENANTS), settings)


@pytest.fixture
def outreach(stack, schema, monkeypatch):
    built = outreach_world(stack, schema, monkeypatch)
    yield built
    built.close()
