"""Lost customers end to end (docs/domain.md "Lost customers"), through the real entry points on
the session's PostgreSQL and broker: a signed WeCom callback to ingest's app, the segment
consumer, the admin API app (its process drains the segment outbox), outreach's consumer, the
worker's alert sender and the fake platform's ``message/send``.

A customer added by zhangwei, in an account, deletes him: the contact and its account are lost
(with reason, staff and time), the contact leaves 1:1 reach, and zhangwei gets one text card
linking to the contact in the console. Re-added, the contact is no longer lost and reachable.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from services.outreach import lost_alerts, worker
from services.outreach.clients import Clients
from shared.config import Settings
from shared.db import create_pool
from shared.migrations import migrate_service
from shared.tenants import DEMO_SECRETS, DEMO_TENANTS_PATH, load_tenants
from siyu.api import SEGMENT_OUTBOX, create_app
from tests.fake_wecom import FakeWeCom
from tests.integration.ingest.conftest import build
from tests.integration.segment.test_consumer import Segment
from tests.kafka_helpers import RunnerThread, wait_until

DEADLINE_S = 30.0
NOW = int(time.time()) - 600
EXT = "wmLostLi01"
CONSOLE = "https://console.acme.example"
TENANTS = load_tenants(DEMO_TENANTS_PATH)


def relation(change: str, at: int) -> str:
    return (
        f"<xml><ToUserName>ww</ToUserName><FromUserName>sys</FromUserName>"
        f"<CreateTime>{at}</CreateTime><MsgType>event</MsgType>"
        f"<Event>change_external_contact</Event><ChangeType>{change}</ChangeType>"
        f"<UserID>zhangwei</UserID><ExternalUserID>{EXT}</ExternalUserID></xml>"
    )


class World:
    def __init__(self, stack, kafka, schema, monkeypatch):
        for key, value in DEMO_SECRETS.items():
            monkeypatch.setenv(key, value)
        self.dsn = stack.dsn
        self.out, self.seg, self.ing = schema, f"{schema}_seg", f"{schema}_ing"
        self.fake = FakeWeCom(TENANTS, DEMO_SECRETS, contacts=5).start()
        self.ingest = build(stack, kafka, self.ing)
        self.segment = Segment(stack, kafka, self.seg)
        migrate_service(stack.dsn, "outreach", schema=self.out)
        self.settings = Settings.from_env({
            "SIYU_DATABASE_URL": stack.dsn, "SIYU_WECOM_API_BASE": self.fake.base_url,
            "SIYU_WECHAT_API_BASE": self.fake.oa_base_url, "SIYU_WECOM_RATE": "1000",
            "SIYU_TENANTS": str(DEMO_TENANTS_PATH), "SIYU_CONSOLE_URL": CONSOLE + "/",
        })  # fmt: skip
        self.settings = replace(self.settings, kafka=kafka)
        self.pool = create_pool(stack.dsn, name="lost-e2e", schema=self.out, max_size=4)
        schemas = {"outreach": self.out, "segment": self.seg, "ingest": self.ing}
        self.app = create_app(self.settings, pool=self.pool,
                              schema_for=lambda s: schemas.get(s, s), token_cache_ttl_s=0)  # fmt: skip
        self.clients = Clients(self.settings, TENANTS)
        self.threads = [
            RunnerThread(self.segment.runner("lost-e2e")).__enter__(),
            RunnerThread(worker.build_runner(self.settings, self.pool)).__enter__(),
        ]

    def close(self):
        try:
            for thread in self.threads:
                thread.stop()
        finally:
            drainer = self.app.extensions[SEGMENT_OUTBOX]
            drainer.stop()
            drainer.pool.close()
            self.ingest.deps.publisher.close()
            self.ingest.deps.publisher.pool.close()
            self.segment.pool.close()
            self.pool.close()
            self.fake.stop()
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                for name in (self.seg, self.ing):
                    conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')

    def one(self, schema: str, query: str, *params):
        with psycopg.connect(self.dsn, options=f"-c search_path={schema}") as conn:
            row = conn.execute(query, params).fetchone()
            return row[0] if row else None

    def biz(self, key: str, minutes: int, **attributes):
        at = datetime.fromtimestamp(NOW, UTC) + timedelta(minutes=minutes)
        body = {"idempotency_key": key, "type": "biz.contact.updated", "occurred_at": at.isoformat(),
                "identity": {"external_userid": EXT}, "attributes": attributes}  # fmt: skip
        response = self.ingest.client.post(
            "/api/v1/events", json=body, headers={"Authorization": f"Bearer {self.ingest.token}"}
        )
        assert response.status_code == 200, response.json

    def send_alerts(self) -> dict[str, int]:
        return lost_alerts.send_due(self.pool, self.clients, TENANTS, self.settings.console_url)

    def app_messages(self) -> list:
        with self.fake.state.lock:
            return [m for m in self.fake.state.mailbox.sent if m.kind == "app"]


@pytest.fixture
def world(stack, kafka, schema, monkeypatch):
    built = World(stack, kafka, schema, monkeypatch)
    yield built
    built.close()


def test_a_customer_deleting_their_staff_member_is_lost_notified_and_back_when_re_added(world):
    assert world.ingest.wecom_post(relation("add_external_contact", NOW)).status_code == 200
    world.biz("crm-li", 1, name="李雷", title="CTO", company="苏州精工机械有限公司")
    contact = wait_until(
        lambda: world.one(world.seg, "SELECT contact_id FROM identities WHERE value = %s", EXT),
        DEADLINE_S, message="the contact",
    )  # fmt: skip
    wait_until(lambda: world.one(world.out, "SELECT wecom_contact FROM audience WHERE "
                                 "contact_id = %s AND account_id IS NOT NULL", contact),
               DEADLINE_S, message="reachable in outreach's audience")  # fmt: skip

    # The customer deletes zhangwei.
    assert world.ingest.wecom_post(relation("del_follow_user", NOW + 300)).status_code == 200
    lost = wait_until(lambda: world.one(world.seg, "SELECT lost FROM contacts WHERE "
                                        "contact_id = %s", contact), DEADLINE_S, message="lost")  # fmt: skip
    assert (lost["reason"], lost["staff_userid"]) == ("customer_deleted_staff", "zhangwei")
    assert datetime.fromisoformat(lost["at"]) == datetime.fromtimestamp(NOW + 300, UTC)
    flags = world.one(world.seg, "SELECT a.risk_flags FROM accounts a JOIN contacts c ON "
                      "c.account_id = a.account_id WHERE c.contact_id = %s", contact)  # fmt: skip
    (flag,) = [f for f in flags if f["flag"] == "lost"]
    assert flag["reason"] == "1 member lost (1 deleted their staff contact)"
    assert flag["members"][0]["contact_id"] == contact
    # Out of 1:1 reach (outreach's deleted_contact exclusion), and its alert queued once.
    wait_until(lambda: world.one(world.out, "SELECT count(*) FROM lost_notices") == 1
               and world.one(world.out, "SELECT wecom_contact FROM audience WHERE contact_id = %s",
                             contact) is False, DEADLINE_S, message="the notice queued")  # fmt: skip

    assert world.send_alerts() == {"sent": 1}
    (message,) = world.app_messages()
    assert message.body["touser"] == "zhangwei"
    assert message.body["msgtype"] == "textcard"
    assert message.body["textcard"]["url"] == f"{CONSOLE}/contacts/{contact}"
    # The callback redelivered (WeCom retries): no second loss, no second notice.
    assert world.ingest.wecom_post(relation("del_follow_user", NOW + 300)).status_code == 200
    assert world.send_alerts() == {}
    assert len(world.app_messages()) == 1

    # Re-added: not lost, reachable again, the account's flag gone.
    assert world.ingest.wecom_post(relation("add_external_contact", NOW + 400)).status_code == 200
    wait_until(lambda: world.one(world.out, "SELECT wecom_contact FROM audience WHERE "
                                 "contact_id = %s", contact) is True,
               DEADLINE_S, message="reachable again")  # fmt: skip
    assert world.one(world.seg, "SELECT lost FROM contacts WHERE contact_id = %s", contact) is None
    flags = world.one(world.seg, "SELECT a.risk_flags FROM accounts a JOIN contacts c ON "
                      "c.account_id = a.account_id WHERE c.contact_id = %s", contact)  # fmt: skip
    assert "lost" not in [f["flag"] for f in flags]
    assert world.send_alerts() == {}
