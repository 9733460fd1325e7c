"""`siyu simulate` against the real ingest app on a real HTTP port, read back from the broker."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from sandbox.simulator import main as simulate
from shared.config import Settings
from shared.health import BackgroundServer
from shared.tenants import DEMO_TENANTS_PATH
from tests.kafka_helpers import read_topic


@pytest.mark.parametrize("tenant", ["acme", "bloom"])
def test_simulated_traffic_is_accepted_and_normalised(ingest, tenant, capsys):
    app = ingest.client.application
    server = BackgroundServer(app, "127.0.0.1", 0).start()
    # The token belongs to acme; bloom gets its own so its business events land in bloom.
    token = ingest.token if tenant == "acme" else _token(ingest, "bloom")
    settings = Settings.from_env(
        {"SIYU_TENANTS": str(DEMO_TENANTS_PATH), "SIYU_EVENTS_TOKEN": token}
    )
    try:
        code = simulate(
            settings, tenant=tenant, contacts=40, rate=200, duration=60, seed=11,
            url=f"http://127.0.0.1:{server.port}", requests_limit=150,
        )  # fmt: skip
    finally:
        server.stop()
    out = capsys.readouterr()
    assert code == 0, out.err + out.out
    assert "HTTP status: 200:" in out.out + out.err

    records = read_topic(ingest.kafka, ingest.topic, 50, timeout=10)
    envelopes = [json.loads(r.value) for r in records]
    assert len(envelopes) >= 50
    assert {e["tenant_id"] for e in envelopes} == {tenant}
    sources = Counter(e["source"] for e in envelopes)
    assert sources["wechat_oa"], sources
    assert sources["wecom"], sources
    assert sources["api"], sources
    types = Counter(e["type"] for e in envelopes)
    if tenant == "acme":
        assert any(t.startswith("biz.") for t in types)
    else:
        assert types["biz.order.paid"] or types["biz.registered"]


def _token(ingest, tenant_id: str) -> str:
    from services.ingest.tokens import create_token

    return create_token(ingest.deps.publisher.pool.conninfo, tenant_id, "sim", schema=ingest.schema)
