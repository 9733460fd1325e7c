"""Ingest's part of an erasure (services/ingest/erasures.py): the person's keys are destroyed
and their touchpoints still waiting in the outbox (the broker was away) never reach the topic;
another person's key and queued touchpoints are untouched."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
from psycopg.rows import dict_row

from services.ingest.erasures import forget
from services.ingest.shredding import PREFIX
from shared.envelope import Identity, Touchpoint
from shared.privacy import identity_hash

AT = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)


def biz(n: int, **identity) -> Touchpoint:
    return Touchpoint(
        event_id=f"{n:032x}", tenant_id="acme", source="api", type="biz.contact.updated",
        occurred_at=AT, received_at=AT, identity=Identity(**identity),
        attributes={"name": "x"}, raw='{"name": "李雷"}',
    )  # fmt: skip


def test_an_erasure_destroys_the_keys_and_the_queued_touchpoints_of_that_person_only(ingest):
    publisher = ingest.deps.publisher
    erased = [biz(1, crm_id="C-1"), biz(2, openid="oLi", crm_id="C-1")]
    kept = [biz(3, crm_id="C-2")]
    sealed = publisher.keys.seal(erased + kept)
    assert all(tp.raw.startswith(PREFIX) for tp in sealed)
    records = publisher._records(sealed)
    publisher.store(sealed, records)  # what a broker outage leaves behind
    hashes = [identity_hash("acme", "crm_id", "C-1"), identity_hash("acme", "openid", "oLi")]

    with psycopg.connect(publisher.pool.conninfo, row_factory=dict_row,
                         options=f"-c search_path={ingest.schema}") as conn:  # fmt: skip
        assert conn.execute("SELECT count(*) AS n FROM person_keys").fetchone()["n"] == 3
        done = forget(conn, {"tenant_id": "acme", "contact_id": "c_1", "identity_hashes": hashes})
        assert done == (2, 2)
        assert forget(conn, {"tenant_id": "acme", "contact_id": "c_1",
                             "identity_hashes": hashes}) == (0, 0)  # fmt: skip
        left = conn.execute("SELECT event_id FROM outbox").fetchall()
        assert [r["event_id"] for r in left] == [kept[0].event_id]
        assert conn.execute("SELECT count(*) AS n FROM person_keys").fetchone()["n"] == 1
    assert publisher.keys.open(sealed[0]) is None
    assert publisher.keys.open(sealed[1]) is None
    assert publisher.keys.open(sealed[2]) == '{"name": "李雷"}'


def test_an_erasure_drops_the_persons_queued_signals_with_their_touchpoints(ingest):
    """A reply queued while the broker was away: its signal (siyu.signals.v1) names the person
    as the touchpoint does, and goes with it."""
    publisher = ingest.deps.publisher
    reply = Touchpoint(event_id=f"{9:032x}", tenant_id="acme", source="wechat_oa",
                       type="oa.message", occurred_at=AT, received_at=AT,
                       identity=Identity(openid="oHan"), attributes={"msg_type": "text"})  # fmt: skip
    other = Touchpoint(event_id=f"{10:032x}", tenant_id="acme", source="wechat_oa",
                       type="oa.message", occurred_at=AT, received_at=AT,
                       identity=Identity(openid="oMei"), attributes={"msg_type": "text"})  # fmt: skip
    publisher.store([reply, other], publisher._records([reply, other]))
    with psycopg.connect(publisher.pool.conninfo, row_factory=dict_row,
                         options=f"-c search_path={ingest.schema}") as conn:  # fmt: skip
        topics = [r["topic"] for r in conn.execute("SELECT topic FROM outbox").fetchall()]
        assert sorted(topics) == sorted([publisher.topic, publisher.signals_topic] * 2)
        hashes = [identity_hash("acme", "openid", "oHan")]
        assert forget(conn, {"tenant_id": "acme", "contact_id": "c_9",
                             "identity_hashes": hashes}) == (0, 2)  # fmt: skip
        left = conn.execute("SELECT DISTINCT event_id FROM outbox").fetchall()
        assert [r["event_id"] for r in left] == [other.event_id]
