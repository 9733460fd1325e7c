"""Ingest under test: the real app wired to the session's Postgres (own schema) and broker."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass, replace

import pytest
from wechatpy.crypto import WeChatCrypto
from wechatpy.enterprise.crypto import WeChatCrypto as WeComCrypto

from services.ingest.app import IngestDeps, create_app
from services.ingest.tokens import create_token
from services.ingest.wiring import build_deps
from shared.db import create_pool
from shared.envelope import load_touchpoint
from shared.kafka.topics import TOUCHPOINTS, ensure_topics
from shared.migrations import migrate_service
from shared.tenants import DEMO_TENANTS_PATH, TenantRegistry, load_tenants

TENANTS = load_tenants(DEMO_TENANTS_PATH)
ACME = TENANTS.get("acme")
OA = ACME.wechat_oa[0]
CORP = ACME.wecom


def plain_signature(token: str, timestamp: str, nonce: str) -> str:
    return hashlib.sha1("".join(sorted([token, timestamp, nonce])).encode()).hexdigest()  # noqa: S324


@dataclass
class Ingest:
    client: object
    kafka: object
    deps: IngestDeps
    token: str
    schema: str

    @property
    def topic(self) -> str:
        return self.kafka.topic(TOUCHPOINTS)

    def raw(self, envelope: dict) -> str | None:
        """An envelope's raw payload in clear: a person's is sealed with their key
        (services/ingest/shredding.py)."""
        return self.deps.publisher.keys.open(load_touchpoint(envelope))

    # --- request builders, independent of the app's own code (wechatpy + hashlib) -------

    def oa_post(self, xml: str, *, aes: bool = True, app_id: str = OA.app_id, ts=None, **over):
        # Safe mode by default: acme's OA has an EncodingAESKey, so plaintext is refused.
        ts = str(int(time.time())) if ts is None else str(ts)
        nonce = over.pop("nonce", None) or secrets.token_hex(8)  # one body per nonce
        token = OA.token.reveal()
        args = {"signature": plain_signature(token, ts, nonce), "timestamp": ts, "nonce": nonce}
        body = xml
        if aes:
            crypto = WeChatCrypto(token, OA.encoding_aes_key.reveal(), app_id)
            enc = crypto.encrypt_message(xml, nonce, ts)
            encrypt = enc.split("<Encrypt><![CDATA[")[1].split("]]>")[0]
            msg_sig = enc.split("<MsgSignature><![CDATA[")[1].split("]]>")[0]
            args.update(encrypt_type="aes", msg_signature=msg_sig)
            body = f"<xml><ToUserName><![CDATA[gh_acme]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
        args.update(over.pop("args", {}))
        headers = over.pop("headers", {"Content-Type": "text/xml"})
        return self.client.post(
            f"/wechat/oa/{app_id}", query_string=args, data=body, headers=headers
        )

    def wecom_post(
        self, xml: str, *, corp_id: str = CORP.corp_id, ts=None, signature=None, nonce=None
    ):
        ts = str(int(time.time())) if ts is None else str(ts)
        nonce = nonce or secrets.token_hex(8)
        crypto = WeComCrypto(CORP.token.reveal(), CORP.encoding_aes_key.reveal(), corp_id)
        enc = crypto.encrypt_message(xml, nonce, ts)
        encrypt = enc.split("<Encrypt><![CDATA[")[1].split("]]>")[0]
        msg_sig = signature or enc.split("<MsgSignature><![CDATA[")[1].split("]]>")[0]
        body = (
            f"<xml><ToUserName><![CDATA[{corp_id}]]></ToUserName><AgentID>1000002</AgentID>"
            f"<Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
        )
        return self.client.post(
            f"/wecom/{CORP.corp_id}",
            query_string={"msg_signature": msg_sig, "timestamp": ts, "nonce": nonce},
            data=body,
            headers={"Content-Type": "text/xml"},
        )


def build(stack, kafka, schema, *, producer_factory=None, dsn=None) -> Ingest:
    migrate_service(stack.dsn, "ingest", schema=schema)
    ensure_topics(kafka)
    pool = create_pool(dsn or stack.dsn, name="ingest-test", schema=schema, max_size=4, timeout=3)
    deps = build_deps(
        TENANTS, pool, kafka, "test-link-secret-0123456789", producer_factory=producer_factory
    )
    token = create_token(stack.dsn, "acme", "test", schema=schema)
    app = create_app(deps)
    return Ingest(app.test_client(), kafka, deps, token, schema)


@pytest.fixture
def ingest(stack, kafka, schema, monkeypatch):
    for key, value in {"ACME_OA_SECRET": "x", "ACME_WECOM_SECRET": "y"}.items():
        monkeypatch.setenv(key, value)
    built = build(stack, kafka, schema)
    yield built
    built.deps.publisher.close()
    built.deps.publisher.pool.close()


def with_oas(registry, **changes):
    """The registry with every OA changed, e.g. ``plaintext_allowed=True`` or no AES key."""
    tenants = tuple(
        replace(t, wechat_oa=tuple(replace(oa, **changes) for oa in t.wechat_oa)) for t in registry
    )
    return TenantRegistry(tenants, source=registry.source)
