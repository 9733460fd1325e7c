"""Keyed identity hashes, the erasure message and the sealing of envelope ``raw`` payloads
(docs/privacy.md), without a database: the end-to-end path is tests/integration/segment/test_erasure_e2e.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from psycopg_pool import PoolTimeout

from services.ingest.shredding import PREFIX, PersonKeys, open_raw, seal_raw, subject_of
from shared.envelope import Identity, Touchpoint, decode_touchpoint
from shared.privacy import (
    decode_erasure,
    encode_erasure,
    identity_hash,
    install_privacy_key,
    pseudonym,
)

AT = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)
RAW = "<xml><ExternalUserID>wmLi</ExternalUserID><Name>李雷</Name></xml>"


def touchpoint(raw: str | None = RAW, **identity) -> Touchpoint:
    return Touchpoint(
        event_id="0" * 32, tenant_id="acme", source="wecom", type="wecom.contact.added",
        occurred_at=AT, received_at=AT, identity=Identity(**(identity or {"external_userid": "wmLi"})),
        raw=raw,
    )  # fmt: skip


def test_identity_hashes_are_keyed_and_name_tenant_kind_and_value(monkeypatch):
    first = identity_hash("acme", "openid", "o1")
    assert first == identity_hash("acme", "openid", "o1")
    assert len(first) == 64
    assert len({first, identity_hash("bloom", "openid", "o1"), identity_hash("acme", "unionid", "o1"),
                identity_hash("acme", "openid", "o2")}) == 4  # fmt: skip
    install_privacy_key("another deployment's key")  # the conftest fixture restores the tests
    assert identity_hash("acme", "openid", "o1") != first  # no key, no confirming a guess
    assert pseudonym("o1").startswith("h:")
    assert "o1" not in pseudonym("o1")


def test_a_sealed_raw_opens_only_with_its_key_and_for_its_event():
    tp = touchpoint()
    key = AESGCM.generate_key(bit_length=256)
    sealed = seal_raw(tp, "external_userid", key)
    assert sealed.startswith(f"{PREFIX}external_userid:")
    assert "李雷" not in sealed
    opened = Touchpoint(**{**tp.__dict__, "raw": sealed})
    assert open_raw(opened, key) == RAW
    with pytest.raises(InvalidTag):
        open_raw(opened, AESGCM.generate_key(bit_length=256))  # a destroyed key's replacement
    moved = Touchpoint(**{**opened.__dict__, "event_id": "1" * 32})
    with pytest.raises(InvalidTag):
        open_raw(moved, key)  # bound to its tenant and event id


def test_sealed_plain_and_absent_raw_payloads_all_load_as_touchpoint_1():
    key = AESGCM.generate_key(bit_length=256)
    sealed = touchpoint(seal_raw(touchpoint(), "external_userid", key))
    for tp in (sealed, touchpoint(), touchpoint(None)):
        loaded = decode_touchpoint(tp.to_json())
        assert loaded.raw == tp.raw
        assert loaded.schema == "touchpoint/1"


def test_the_key_is_the_first_person_identity_in_kafka_key_order():
    assert subject_of(touchpoint(openid="o1", unionid="u1"))[0] == "openid"
    assert subject_of(touchpoint(crm_id="C-1", unionid="u1"))[0] == "crm_id"
    assert subject_of(touchpoint(chat_id="wr1", staff_userid="zhang")) is None  # not a person


class _AwayPool:
    def connection(self, timeout=None):
        raise PoolTimeout("database away")


def test_without_the_key_table_a_persons_raw_is_dropped_never_published_in_clear():
    person, group = touchpoint(), touchpoint(chat_id="wr1")
    sealed = PersonKeys(_AwayPool()).seal([person, group])
    assert sealed[0].raw is None  # the event itself is kept
    assert sealed[1].raw == RAW  # a group's payload carries no personal field


def test_the_erasure_message_names_people_by_contact_id_and_hashes_only():
    value = encode_erasure({"tenant_id": "acme", "contact_id": "c_1", "merged": ["c_0"],
                            "identity_hashes": ["ab" * 32], "erased_at": AT.isoformat()})  # fmt: skip
    assert set(json.loads(value)) == {"schema", "tenant_id", "contact_id", "merged",
                                      "identity_hashes", "erased_at"}  # fmt: skip
    later = json.dumps({**json.loads(value), "added_in_a_later_version": 1}).encode()
    loaded = decode_erasure(later)  # consumers accept additions within erasure/1
    assert loaded["contact_id"] == "c_1"
    assert loaded["erased_at"] == AT


def test_enrichment_keeps_a_members_notes_about_the_person_off_the_topic():
    from services.segment.enrichment import enriched_touchpoint

    detail = {
        "external_contact": {"external_userid": "wmLi", "name": "李工", "type": 1},
        "follow_user": [{"userid": "zhangwei", "remark": "李工-13800000000", "createtime": 1,
                         "remark_mobiles": ["13800000000"], "description": "住在苏州"}],
    }  # fmt: skip
    tp = enriched_touchpoint("acme", "wmLi", detail, fetched_at=AT, answers=AT)
    text = tp.to_json().decode()
    assert "13800000000" not in text
    assert "苏州" not in text
    assert "remark" not in text
    assert tp.attributes["follow_users"][0]["userid"] == "zhangwei"
