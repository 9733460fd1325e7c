"""Welcome on add end to end (docs/domain.md "Welcome on add"), through the real entry points on
the session's PostgreSQL and broker: the fake issues a WelcomeCode when a customer adds zhangwei,
the signed add callback (State of a channel code, WelcomeCode) goes to ingest's app, ingest
publishes the touchpoint, outreach's welcome consumer (its own group) sends the welcome with the
fake's ``send_welcome_msg`` and marks the code's tags with ``mark_tag``.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime

import psycopg
import pytest

from sandbox.fake_wechat import welcome as fake_welcome
from services.outreach import welcome, worker
from shared.envelope import decode_touchpoint
from shared.links import LinkSigner
from tests.integration.ingest.conftest import build
from tests.integration.outreach.conftest import CORP, TENANTS
from tests.kafka_helpers import RunnerThread, read_topic, wait_until

DEADLINE_S = 30.0
SEND = "externalcontact/send_welcome_msg"
STATE = "wecom_ad.w3lc0me"
PUBLIC = "https://hooks.acme.example"


def added(ext: str, at: int, code: str, state: str = STATE,
          change: str = "add_external_contact") -> str:  # fmt: skip
    return (
        f"<xml><ToUserName>ww</ToUserName><FromUserName>sys</FromUserName>"
        f"<CreateTime>{at}</CreateTime><MsgType>event</MsgType>"
        f"<Event>change_external_contact</Event><ChangeType>{change}</ChangeType>"
        f"<UserID>zhangwei</UserID><ExternalUserID>{ext}</ExternalUserID>"
        f"<State>{state}</State><WelcomeCode>{code}</WelcomeCode></xml>"
    )


class Adds:
    def __init__(self, outreach, stack, kafka, schema):
        self.o = outreach
        self.dsn, self.ing = stack.dsn, f"{schema}_ing"
        self.ingest = build(stack, kafka, self.ing)
        settings = replace(outreach.settings, kafka=kafka)
        signer = LinkSigner("test-link-secret-0123456789", TENANTS)
        self.welcomer = welcome.Welcomer(outreach.pool, outreach.clients, TENANTS, signer, PUBLIC)
        self.thread = RunnerThread(worker.build_welcome_runner(settings, self.welcomer)).__enter__()
        self.tag = outreach.world().tags[0].tag_id

    def close(self):
        try:
            self.thread.stop()
        finally:
            self.ingest.deps.publisher.close()
            self.ingest.deps.publisher.pool.close()
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{self.ing}" CASCADE')

    def code(self, content: list[str], *, tags: list[str] | None = None) -> None:
        self.o.sql(
            "INSERT INTO channel_codes (tenant_id, code_id, kind, name, channel, state, staff, "
            "tags, welcome_content) VALUES ('acme', 'expo', 'contact', '展会', 'wecom_ad', %s, "
            "'{zhangwei}', %s, %s)",
            (STATE, tags if tags is not None else [self.tag], content),
        )

    def add(self, ext: str, *, late_by: int = 0, state: str = STATE,
            change: str = "add_external_contact") -> tuple[str, int]:  # fmt: skip
        """The customer adds zhangwei (the fake issues the code); the callback reaches ingest."""
        issued = fake_welcome.issue(self.o.fake.state, CORP, "zhangwei", ext)
        at = issued["create_time"] - late_by
        response = self.ingest.wecom_post(added(ext, at, issued["welcome_code"], state, change))
        assert response.status_code == 200
        return issued["welcome_code"], at

    def outcome(self, code: str) -> dict:
        def done():
            rows = self.o.sql("SELECT * FROM welcomes WHERE welcome_code = %s", (code,))
            return rows[0] if rows and rows[0]["status"] != "claimed" else None

        return wait_until(done, DEADLINE_S, message="the welcome recorded")

    def tag_status(self, welcome_row: dict) -> str | None:
        """The add's tag work (queued per add in ``welcome_adds``, welcome or not)."""
        (found,) = self.o.sql("SELECT tag_status FROM welcome_adds WHERE event_id = %s",
                              (welcome_row["event_id"],))  # fmt: skip
        return found["tag_status"]

    def mark_tags(self) -> None:
        welcome.mark_tags_due(self.o.pool, self.o.clients, datetime.now(UTC))

    def welcomes(self) -> list:
        return self.o.messages("welcome")

    def sends(self) -> int:
        return self.o.fake.count(SEND)


@pytest.fixture
def adds(outreach, stack, kafka, schema):
    built = Adds(outreach, stack, kafka, schema)
    yield built
    built.close()


def test_a_known_contact_gets_the_welcome_for_its_stage_once_with_the_codes_tags(adds, outreach):
    outreach.publish_segments()  # the model's flags: comparison is evaluating
    general = outreach.content("欢迎来到精工", fmt="article", promotional=False)
    for_interest = outreach.content("选型指南", fmt="whitepaper", promotional=False,
                                    stages=["interest"])  # fmt: skip
    adds.code([general, for_interest])
    ext = "wmWelcomeKnown01"
    outreach.profile("c-known", ext=ext, stage="interest")

    code, at = adds.add(ext)
    row = adds.outcome(code)
    assert (row["status"], row["content_id"], row["code_id"]) == ("sent", for_interest, "expo")
    assert row["contact_id"] == "c-known" and row["attempts"] == 1
    assert row["latency_ms"] is not None and adds.tag_status(row) == "pending"
    adds.mark_tags()  # the worker loop's step marks the code's tags, never inside the window
    assert adds.tag_status(row) == "marked"
    (message,) = adds.welcomes()
    assert message.body["welcome_code"] == code
    assert message.body["text"]["content"] == "选型指南"
    (link,) = message.body["attachments"]
    assert link["link"]["url"].startswith(f"{PUBLIC}/r/")  # tracked, naming the contact
    follow = adds.o.world().contacts[ext].follow_user
    assert [f["tag_ids"] for f in follow if f["userid"] == "zhangwei"] == [[adds.tag]]

    # The callback again (WeCom retries) and the same touchpoint handled again: nothing more.
    assert adds.ingest.wecom_post(added(ext, at, code)).status_code == 200
    tp = next(t for t in _touchpoints(adds) if t.attributes.get("welcome_code") == code)
    assert adds.welcomer.handle(tp) == "duplicate"
    time.sleep(1.0)  # let a redelivered touchpoint reach the consumer, if one was published
    assert len(adds.welcomes()) == 1 and adds.sends() == 1


def test_the_no_discount_guard_and_unknown_contacts_get_the_general_welcome(adds, outreach):
    outreach.publish_segments()
    general = outreach.content("欢迎", fmt="article", promotional=False)
    offer = outreach.content("限时折扣", fmt="promotion", promotional=True,
                             stages=["comparison", "interest"])  # fmt: skip
    adds.code([general, offer], tags=[])
    outreach.profile("c-comparing", ext="wmWelcomeCmp01", stage="comparison")

    comparing, _ = adds.add("wmWelcomeCmp01")
    unknown, _ = adds.add("wmWelcomeNew01")
    for code in (comparing, unknown):
        row = adds.outcome(code)
        assert (row["status"], row["content_id"]) == ("sent", general)
        assert adds.tag_status(row) is None
    assert {m.body["text"]["content"] for m in adds.welcomes()} == {"欢迎"}


def test_an_unknown_or_stageless_b2b_contact_meets_a_promotion_through_the_guard(adds, outreach):
    """The guard's e2e: a promotion for everyone comes first in the code's content; a contact
    new to outreach and a known one without a stage (it may be comparing) get the general item,
    and with no general item nothing is sent rather than the discount."""
    outreach.publish_segments()
    offer = outreach.content("新客八折", fmt="promotion", promotional=True)
    general = outreach.content("欢迎", fmt="article", promotional=False)
    adds.code([offer, general], tags=[])
    outreach.profile("c-nostage", ext="wmWelcomeNoStage", stage=None)
    for ext in ("wmWelcomeUnknown", "wmWelcomeNoStage"):
        code, _ = adds.add(ext)
        row = adds.outcome(code)
        assert (row["status"], row["content_id"]) == ("sent", general), ext
    outreach.sql("UPDATE channel_codes SET welcome_content = %s", ([offer],))
    code, _ = adds.add("wmWelcomeUnknown2")
    row = adds.outcome(code)
    assert (row["status"], row["reason"]) == ("no_content", "no_discount_unknown_contact")
    assert {m.body["text"]["content"] for m in adds.welcomes()} == {"欢迎"}


def test_a_late_callback_is_missed_and_never_sent(adds, outreach):
    adds.code([outreach.content("欢迎", fmt="article", promotional=False)])
    code, _ = adds.add("wmWelcomeLate01", late_by=25)
    row = adds.outcome(code)
    assert (row["status"], row["reason"]) == ("missed", "received_after_window")
    assert adds.sends() == 0 and adds.welcomes() == []
    assert adds.tag_status(row) == "pending"  # tags are not bound to the window
    adds.mark_tags()
    assert adds.tag_status(row) == "marked"


def test_a_half_add_with_a_welcome_code_gets_the_welcome_and_counts_once(adds, outreach):
    """外部联系人免验证添加成员 (add_half_external_contact) may carry the WelcomeCode, and the
    full add that follows then comes without one (docs/platform.md "Welcome on add"): the half-add
    is welcomed, and the two count once for the code's daily cap."""
    adds.code([outreach.content("欢迎", fmt="article", promotional=False)], tags=[])
    ext = "wmWelcomeHalf01"
    code, at = adds.add(ext, change="add_half_external_contact")
    row = adds.outcome(code)
    assert (row["status"], row["code_id"]) == ("sent", "expo")
    (message,) = adds.welcomes()
    assert message.body["welcome_code"] == code
    full = added(ext, at + 5, "", change="add_external_contact").replace(
        "<WelcomeCode></WelcomeCode>", ""
    )
    assert adds.ingest.wecom_post(full).status_code == 200
    tp = wait_until(lambda: next((t for t in _touchpoints(adds)
                                  if t.type == "wecom.contact.added"), None),
                    DEADLINE_S, message="the full add published")  # fmt: skip
    assert adds.welcomer.handle(tp) == "counted"  # whether or not the consumer had it first
    (counted,) = adds.o.sql("SELECT adds FROM channel_code_adds")
    assert counted["adds"] == 1 and adds.sends() == 1


def test_41051_is_already_sent_and_41096_is_retried_inside_the_window(adds, outreach):
    adds.code([outreach.content("欢迎", fmt="article", promotional=False)], tags=[])
    outreach.fake.fail(SEND, 41051)
    code, _ = adds.add("wmWelcome41051")
    row = adds.outcome(code)
    assert (row["status"], row["errcode"], row["attempts"]) == ("already_sent", 41051, 1)

    outreach.fake.fail(SEND, 41096)
    code, _ = adds.add("wmWelcome41096")
    row = adds.outcome(code)
    assert (row["status"], row["attempts"]) == ("sent", 2)
    assert [m.body["welcome_code"] for m in adds.welcomes()] == [code]


def test_a_state_of_no_code_of_ours_gets_the_tenants_default_welcome(adds, outreach):
    default = outreach.content("默认欢迎", fmt="article", promotional=False)
    refused = outreach.call("PUT", "/settings/outreach", json={"default_welcome": ["nope"]})
    assert refused.status_code == 400 and "default_welcome[0]" in str(refused.json)
    saved = outreach.call("PUT", "/settings/outreach", json={"default_welcome": [default]})
    assert saved.status_code == 200, saved.json
    code, _ = adds.add("wmWelcomeDflt01", state="somebody.elses")
    row = adds.outcome(code)
    assert (row["status"], row["content_id"], row["code_id"]) == ("sent", default, None)


def _touchpoints(adds):
    return [decode_touchpoint(m.value) for m in read_topic(adds.ingest.kafka, adds.ingest.topic, 1)]
