"""Time alone moves an idle customer (docs/architecture.md "Time-driven evaluation"): after the
last touchpoint, the tick, given an injected clock, decays the score, raises the account's churn
risk and inactivity, and lapses the contact, published to siyu.stage-changes.v1 as moved by time.
"""

from __future__ import annotations

from datetime import timedelta

from services.segment.overrides import override_stage
from services.segment.tick import Ticker, tick
from services.segment.topics import Topics
from shared import messages
from shared.kafka.producer import create_producer
from shared.kafka.topics import STAGE_CHANGES
from shared.outbox import drain
from tests.integration.segment.test_consumer import T0, TENANTS, Segment, send, tp
from tests.kafka_helpers import RunnerThread, read_topic, wait_until

COMPANY = "杭州云帆科技有限公司"
DAY = 24 * 60  # minutes


def _wang(segment: Segment) -> dict:
    (row,) = segment.rows(
        "SELECT c.contact_id, c.stage, c.score, c.score_at, c.due_at, a.risk_flags, a.due_at "
        "FROM contacts c JOIN accounts a USING (tenant_id, account_id) "
        "WHERE c.contact_id = (SELECT contact_id FROM identities WHERE value = 'uWang')"
    )
    keys = ("contact_id", "stage", "score", "score_at", "due_at", "flags", "account_due")
    found = dict(zip(keys, row, strict=True))
    found["flags"] = sorted(f["flag"] for f in found["flags"])
    return found


def _tick(segment: Segment, kafka, now) -> tuple[int, int]:
    done = tick(segment.pool, TENANTS.tenants, Topics.with_prefix(kafka.topic_prefix), now)
    producer = create_producer(kafka, client_id="tick-test")
    try:
        while drain(segment.pool, lambda: producer):
            pass
    finally:
        producer.close()
    return done.contacts, done.accounts


def test_an_idle_customer_moves_with_time_alone(segment, kafka):
    # A buyer who clicked every five days for six weeks, then signed: the account's baseline.
    start = _signed_buyer(segment, kafka)
    assert "churn_risk" not in start["flags"] and "inactive" not in start["flags"]
    assert start["due_at"] is not None and start["account_due"] is not None

    # Nothing is due before the first instant computed: a tick then reads nothing.
    first_due = min(start["due_at"], start["account_due"])
    assert _tick(segment, kafka, first_due - timedelta(seconds=1)) == (0, 0)
    assert _wang(segment) == start

    # A month later: interactions fell from about 5 a month to none.
    month = T0 + timedelta(days=31)
    contacts, accounts = _tick(segment, kafka, month)
    assert contacts >= 1 and accounts >= 1
    after_month = _wang(segment)
    assert "churn_risk" in after_month["flags"]
    assert after_month["stage"] == "action"
    assert after_month["score_at"] == month
    assert after_month["score"] < start["score"] / 2  # 31 days of a 30-day half-life
    # The same instant again: everything was re-derived, nothing is due any more.
    assert _tick(segment, kafka, month) == (0, 0)

    # Past the inactivity limit (45 days).
    _tick(segment, kafka, T0 + timedelta(days=46))
    assert "inactive" in _wang(segment)["flags"]

    # Past 180 days without an own action, the buyer lapses (aisceas B2B: action -> lapsed).
    half_year = T0 + timedelta(days=181)
    _tick(segment, kafka, half_year)
    lapsed = _wang(segment)
    assert lapsed["stage"] == "lapsed"
    history = segment.rows(
        "SELECT from_stage, to_stage, moved_by, event_id, changed_at FROM stage_history "
        "WHERE subject_id = %s ORDER BY changed_at DESC LIMIT 1",
        lapsed["contact_id"],
    )
    assert history == [("action", "lapsed", "time", None, history[0][4])]
    assert half_year - timedelta(days=1) < history[0][4] <= half_year

    records = read_topic(kafka, kafka.topic(STAGE_CHANGES), expected=6)
    changes = [messages.decode(messages.STAGE_CHANGE, r.value) for r in records]
    by_time = [c for c in changes if c["moved_by"] == "time"]
    # The buyer first; then its company, none of whose members acted since (an account lapses on
    # its members' own actions, not on business events alone).
    assert [(c["subject"], c["from_stage"], c["to_stage"]) for c in by_time] == [
        ("contact", "action", "lapsed"),
        ("account", "action", "lapsed"),
    ]
    assert by_time[0]["subject_id"] == lapsed["contact_id"]
    assert all(c["event_id"] is None for c in by_time)
    assert all(c["moved_by"] == "event" for c in changes if c not in by_time)


def test_the_consumer_s_ticker_runs_the_tick_on_its_timer(segment, kafka):
    """The timer the segment consumer starts (services/segment/consumer.py), with an injected
    clock: an idle B2C customer's decayed score reaches its due instant without any call."""
    order = tp(40, "biz.order.paid", tenant="bloom", crm_id="B-1",
               attributes={"amount": 99, "currency": "CNY"})  # fmt: skip
    send(kafka, [order])
    with RunnerThread(segment.runner("ticker")):
        wait_until(lambda: segment.count("events") == 1, message="the order applied")
    (due,) = segment.rows("SELECT due_at FROM contacts")[0]
    assert due is not None
    ticks = []
    ticker = Ticker(segment.pool, lambda: TENANTS.tenants, Topics.with_prefix(kafka.topic_prefix),
                    interval_s=0.05, clock=lambda: due,
                    after_batch=lambda: ticks.append(1))  # fmt: skip
    ticker.start()
    try:
        wait_until(lambda: ticks, message="a tick re-derived the due contact")
        (score_at, next_due) = segment.rows("SELECT score_at, due_at FROM contacts")[0]
        assert score_at == due and next_due > due
    finally:
        ticker.stop()


def _signed_buyer(segment: Segment, kafka) -> dict:
    """The buyer of the first test, consumed: clicks for six weeks, then a contract at T0."""
    profile = tp(1, "biz.contact.updated", minutes=-50 * DAY, crm_id="C-9", unionid="uWang",
                 account_key=COMPANY,
                 attributes={"name": "王敏", "title": "采购经理", "company": COMPANY})  # fmt: skip
    clicks = [
        tp(
            10 + i,
            "oa.click",
            minutes=-45 * DAY + i * 5 * DAY,
            openid="oWang",
            unionid="uWang",
            attributes={"event_key": "CASES"},
        )
        for i in range(10)
    ]
    signed = tp(30, "biz.contract.signed", minutes=0, crm_id="C-9",
                attributes={"amount": 120000, "currency": "CNY"})  # fmt: skip
    send(kafka, [profile, *clicks, signed])
    with RunnerThread(segment.runner("tick")):
        wait_until(lambda: segment.count("events") == 12, message="12 events applied")
        wait_until(lambda: _wang(segment)["stage"] == "action", message="signed: action")
    return _wang(segment)


def test_a_stage_staff_set_stands_against_time_until_new_evidence(segment, kafka):
    start = _signed_buyer(segment, kafka)
    with segment.pool.connection() as conn, conn.transaction():
        (row,) = conn.execute(
            "SELECT * FROM contacts WHERE contact_id = %s FOR UPDATE", (start["contact_id"],)
        ).fetchall()
        override_stage(conn, TENANTS.get("acme"), "contact", row, "interest",
                       reason="客户说还在比较", actor="li.lei", now=T0 + timedelta(days=1),
                       topics=Topics.with_prefix(kafka.topic_prefix))  # fmt: skip
    # Half a year on: the buyer would have lapsed; staff's stage stands, the rest moves on.
    half_year = T0 + timedelta(days=181)
    _tick(segment, kafka, half_year)
    after = _wang(segment)
    assert after["stage"] == "interest"
    assert after["score_at"] == half_year and after["score"] < start["score"] / 50
    assert "inactive" in after["flags"]


def test_a_late_click_undoes_a_lapse_time_had_made(segment, kafka):
    _signed_buyer(segment, kafka)
    half_year = T0 + timedelta(days=181)
    _tick(segment, kafka, half_year)
    assert _wang(segment)["stage"] == "lapsed"
    # A click from day 175 arrives late (a delayed partition): the buyer was not idle for 180 days
    # at day 181. The lapse is re-settled away, and time lapses the buyer again 180 days later.
    late = tp(50, "oa.click", minutes=175 * DAY, openid="oWang", unionid="uWang",
              attributes={"event_key": "CASES"})  # fmt: skip
    send(kafka, [late])
    with RunnerThread(segment.runner("tick")):
        wait_until(lambda: segment.count("events") == 13, message="the late click applied")
        wait_until(lambda: _wang(segment)["stage"] == "action", message="lapse undone")
    contact = _wang(segment)["contact_id"]
    lapses = segment.rows(
        "SELECT changed_at FROM stage_history WHERE subject_id = %s AND to_stage = 'lapsed'",
        contact,
    )
    assert lapses == []
    assert _wang(segment)["score_at"] == half_year  # never derived as of an earlier instant
    _tick(segment, kafka, half_year + timedelta(days=1))
    assert _wang(segment)["stage"] == "action"
    _tick(segment, kafka, T0 + timedelta(days=175 + 181))
    assert _wang(segment)["stage"] == "lapsed"
