"""Welcome on add beyond the happy path (docs/domain.md "Welcome on add"), through the Welcomer
and the worker loop's ``welcome.step`` on the session's PostgreSQL and the fake: nothing after
the claim loses a welcome, a lost claim is swept, a batch larger than the pool, a call that
reaches WeCom after its 20 s, images only by a media id uploaded ahead, every add counted once
for the daily cap, tags marked later with back-off, erasure and retention."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from sandbox.fake_wechat import welcome as fake_welcome
from sandbox.fake_wechat.media import PNG
from services.outreach import erasure, metrics, welcome
from shared.kafka.consumer import Decoded, Message
from shared.privacy import identity_hash
from tests.integration.outreach.conftest import CORP, TENANTS

STATE = "wecom_ad.upk33p"
SEND = "externalcontact/send_welcome_msg"


def code(outreach, content: list[str], tags: list[str] | None = None) -> None:
    outreach.sql(
        "INSERT INTO channel_codes (tenant_id, code_id, kind, name, channel, state, staff, "
        "tags, welcome_content) VALUES ('acme', 'upkeep', 'contact', '展会', 'wecom_ad', %s, "
        "'{zhangwei}', %s, %s)",
        (STATE, tags or [], content),
    )


def add(outreach, ext: str, *, with_code: bool = True, event_id: str | None = None,
        at: datetime | None = None) -> welcome.Add:  # fmt: skip
    """The customer adds zhangwei now (the fake issues the code)."""
    issued = fake_welcome.issue(outreach.fake.state, CORP, "zhangwei", ext) if with_code else {}
    now = at or datetime.now(UTC)
    return welcome.Add("acme", event_id or uuid.uuid4().hex, now, now, ext, "zhangwei", STATE,
                       issued.get("welcome_code"))  # fmt: skip


def welcomer(outreach) -> welcome.Welcomer:
    return welcome.Welcomer(outreach.pool, outreach.clients, TENANTS, None, "")


def row(outreach, welcome_code: str) -> dict:
    (found,) = outreach.sql("SELECT * FROM welcomes WHERE welcome_code = %s", (welcome_code,))
    return found


def tags_of(outreach, a: welcome.Add) -> dict:
    """The add's tag work (``welcome_adds``: queued per add, welcome or not)."""
    (found,) = outreach.sql("SELECT * FROM welcome_adds WHERE event_id = %s", (a.event_id,))
    return found


def test_an_error_after_the_claim_still_ends_in_a_status(outreach, monkeypatch):
    tag = outreach.world().tags[0].tag_id
    code(outreach, [outreach.content("欢迎", fmt="article", promotional=False)], tags=[tag])
    w = welcomer(outreach)
    monkeypatch.setattr(w, "_prepare", lambda *a: 1 / 0)
    a = add(outreach, "wmUpkeepBoom")
    assert w.handle(a) == "failed"
    found = row(outreach, a.welcome_code)
    assert (found["status"], found["error"]) == ("failed", "internal error: ZeroDivisionError")
    assert w.handle(a) == "duplicate"  # the runner's retry sends nothing again
    assert tags_of(outreach, a)["tag_status"] == "pending"  # the add's tags are not lost


def test_a_claim_left_without_an_outcome_is_swept_as_lost(outreach):
    outreach.sql(
        "INSERT INTO welcomes (tenant_id, welcome_code, event_id, external_userid, callback_at, "
        "created_at) VALUES ('acme', 'LOST', 'e1', 'wmLost', now() - interval '2 minutes', "
        "now() - interval '2 minutes'), ('acme', 'YOUNG', 'e2', 'wmYoung', now(), now())"
    )
    lost = metrics.WELCOMES_LOST.labels("acme")._value.get()
    welcome.step(outreach.pool, outreach.clients, TENANTS, datetime.now(UTC))
    assert (row(outreach, "LOST")["status"], row(outreach, "LOST")["reason"]) == (
        "missed", "lost_after_claim")  # fmt: skip
    assert row(outreach, "YOUNG")["status"] == "claimed"
    assert metrics.WELCOMES_LOST.labels("acme")._value.get() == lost + 1


def test_a_batch_of_more_adds_than_threads_is_sent_in_full(outreach):
    code(outreach, [outreach.content("欢迎", fmt="article", promotional=False)])
    adds = [add(outreach, f"wmUpkeepBatch{i:02d}") for i in range(welcome.PARALLEL + 4)]
    batch = [Decoded(Message("t", 0, i, None, b""), a) for i, a in enumerate(adds)]
    welcomer(outreach).process(batch)
    statuses = outreach.sql("SELECT status, count(*) AS n FROM welcomes GROUP BY status")
    assert statuses == [{"status": "sent", "n": len(adds)}]
    assert len(outreach.messages("welcome")) == len(adds)


def test_a_call_that_reaches_wecom_after_the_20_s_is_recorded_as_refused(outreach):
    """Our clock says the window is open; WeCom's (the fake's) says 21 s have passed."""
    code(outreach, [outreach.content("欢迎", fmt="article", promotional=False)])
    a = add(outreach, "wmUpkeepLate")
    outreach.fake.state.offset += 21
    try:
        assert welcomer(outreach).handle(a) == "failed"
    finally:
        outreach.fake.state.offset -= 21
    found = row(outreach, a.welcome_code)
    assert (found["errcode"], found["attempts"]) == (40058, 1)
    assert outreach.messages("welcome") == []


def test_an_image_is_sent_only_by_a_media_id_uploaded_ahead(outreach):
    source = outreach.fake.base_url.split("/wecom")[0] + "/_fake/image.png"
    body = {"title": "欢迎图", "format": "article", "promotional": False,
            "payloads": {"wecom": {"text": "欢迎", "attachments": [
                {"msgtype": "image", "image": {"url": source}}]}}}  # fmt: skip
    created = outreach.call("POST", "/content", "operator", json=body)
    assert created.status_code == 201, created.json
    code(outreach, [created.json["content_id"]])
    w = welcomer(outreach)
    # Not uploaded yet: the welcome goes without the image (nothing downloaded in the window).
    first = add(outreach, "wmUpkeepImg1")
    assert w.handle(first) == "sent"
    assert row(outreach, first.welcome_code)["reason"] == "image_not_ready"
    assert "attachments" not in outreach.messages("welcome")[0].body
    # The leader's step uploads it; the next welcome carries it by media id (the fake checks).
    welcome.refresh_media(outreach.pool, outreach.clients, TENANTS, datetime.now(UTC),
                          fetch=lambda url: (PNG, "image/png"))  # fmt: skip
    second = add(outreach, "wmUpkeepImg2")
    assert w.handle(second) == "sent"
    assert row(outreach, second.welcome_code)["reason"] is None
    (image,) = outreach.messages("welcome")[1].body["attachments"]
    assert image["image"]["media_id"].startswith("3")


def test_every_add_is_counted_once_for_the_daily_cap(outreach):
    code(outreach, [])
    w = welcomer(outreach)
    without = add(outreach, "wmUpkeepNoCode", with_code=False)
    assert w.handle(without) == "counted"
    assert w.handle(without) == "counted"  # redelivered: the same event
    assert w.handle(add(outreach, "wmUpkeepCode")) == "no_content"
    (counted,) = outreach.sql("SELECT adds FROM channel_code_adds")
    assert counted["adds"] == 2


def test_a_half_add_and_its_full_add_count_once(outreach):
    """Two events (add_half_external_contact, then add_external_contact) of one customer, one
    member and one code on one tenant-local day are one add; the next day's is another."""
    code(outreach, [])
    w = welcomer(outreach)
    now = datetime.now(UTC)
    half = add(outreach, "wmUpkeepHalf", with_code=False, at=now)
    full = add(outreach, "wmUpkeepHalf", with_code=False, at=now + timedelta(seconds=3))
    assert w.handle(half) == w.handle(full) == "counted"
    other = add(outreach, "wmUpkeepHalf2", with_code=False, at=now)
    w.handle(other)
    (counted,) = outreach.sql("SELECT sum(adds)::int AS adds FROM channel_code_adds")
    assert counted["adds"] == 2


def test_tags_are_marked_by_the_loop_with_back_off(outreach):
    tag = outreach.world().tags[0].tag_id
    code(outreach, [], tags=[tag])
    a = add(outreach, "wmUpkeepTag")
    welcomer(outreach).handle(a)
    assert tags_of(outreach, a)["tag_status"] == "pending"
    outreach.fake.fail("externalcontact/mark_tag", 45009)
    now = datetime.now(UTC) + timedelta(seconds=1)
    welcome.mark_tags_due(outreach.pool, outreach.clients, now)
    found = tags_of(outreach, a)
    assert (found["tag_status"], found["tag_errcode"], found["tag_attempts"]) == (
        "pending", 45009, 1)  # fmt: skip
    assert found["tag_next_at"] >= now + timedelta(seconds=120)  # WeCom's retry_after
    welcome.mark_tags_due(outreach.pool, outreach.clients, now + timedelta(seconds=60))
    assert tags_of(outreach, a)["tag_status"] == "pending"  # not due yet
    welcome.mark_tags_due(outreach.pool, outreach.clients, now + timedelta(seconds=121))
    assert tags_of(outreach, a)["tag_status"] == "marked"


def test_an_add_through_a_code_without_a_welcome_code_gets_the_codes_tags(outreach):
    """WeCom withholds the WelcomeCode (a welcome configured for the member, a chat already
    started): no welcome, but the code's tags are marked on the new contact all the same."""
    tag = outreach.world().tags[0].tag_id
    code(outreach, [outreach.content("欢迎", fmt="article", promotional=False)], tags=[tag])
    ext = "wmUpkeepTagNoCode"
    a = replace(add(outreach, ext), welcome_code=None)  # the fake's customer, no code on the add
    assert welcomer(outreach).handle(a) == "counted"
    assert outreach.sql("SELECT 1 FROM welcomes") == []
    assert tags_of(outreach, a)["tags"] == [tag]
    welcome.mark_tags_due(outreach.pool, outreach.clients, datetime.now(UTC) + timedelta(seconds=1))
    assert tags_of(outreach, a)["tag_status"] == "marked"
    follow = outreach.world().contacts[ext].follow_user
    assert [f["tag_ids"] for f in follow if f["userid"] == "zhangwei"] == [[tag]]


def test_tags_a_half_added_customer_refused_are_tried_again_at_the_full_add(outreach):
    tag = outreach.world().tags[0].tag_id
    code(outreach, [], tags=[tag])
    w = welcomer(outreach)
    now = datetime.now(UTC)
    # Half-added: not yet the member's customer in the fake, so mark_tag answers 40096.
    half = add(outreach, "wmUpkeepHalfTag", with_code=False, at=now)
    assert w.handle(half) == "counted"
    welcome.mark_tags_due(outreach.pool, outreach.clients, now + timedelta(seconds=1))
    assert tags_of(outreach, half)["tag_status"] == "failed"
    # The full add (the fake's customer now, no WelcomeCode: the half-add had it).
    full = replace(add(outreach, "wmUpkeepHalfTag", at=now + timedelta(seconds=5)),
                   welcome_code=None)  # fmt: skip
    assert w.handle(full) == "counted"
    assert w.handle(half) == "counted"  # the half-add redelivered: nothing more
    assert tags_of(outreach, half)["tag_status"] == "pending"
    welcome.mark_tags_due(outreach.pool, outreach.clients, now + timedelta(seconds=6))
    assert tags_of(outreach, half)["tag_status"] == "marked"


def test_an_erased_person_s_welcomes_go_and_old_ones_are_pruned(outreach):
    code(outreach, [outreach.content("欢迎", fmt="article", promotional=False)])
    w = welcomer(outreach)
    gone, kept = add(outreach, "wmUpkeepErased"), add(outreach, "wmUpkeepKept")
    w.handle(gone)
    w.handle(kept)
    with outreach.pool.connection() as conn:
        erasure.forget(conn, [{"tenant_id": "acme", "contact_id": "c-erased", "merged": [],
                               "erased_at": datetime.now(UTC),
                               "identity_hashes": [identity_hash("acme", "external_userid",
                                                                 "wmUpkeepErased")]}])  # fmt: skip
    assert [r["external_userid"] for r in outreach.sql("SELECT * FROM welcomes")] == [
        "wmUpkeepKept"]  # fmt: skip
    assert [r["external_userid"] for r in outreach.sql("SELECT * FROM welcome_adds")] == [
        "wmUpkeepKept"]  # fmt: skip
    outreach.sql("UPDATE welcomes SET created_at = now() - interval '31 days'")
    outreach.sql("UPDATE welcome_adds SET created_at = now() - interval '31 days'")
    welcome.prune(outreach.pool)
    assert outreach.sql("SELECT * FROM welcomes") == []
    assert outreach.sql("SELECT * FROM welcome_adds") == []
