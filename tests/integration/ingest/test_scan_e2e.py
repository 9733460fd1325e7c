"""`siyu simulate scan` (sandbox/simulator/scan.py) through the real entry point: the fake WeCom
adds a customer through a channel code's config, and the signed add callback (State and a live
WelcomeCode) reaches the real ingest app on a real HTTP port, read back from the broker. Its
errors: an unknown tenant or config, the fake or ingest not running."""

from __future__ import annotations

import json
import os
import socket

import pytest
import requests
from click.testing import CliRunner

from shared.health import BackgroundServer
from shared.tenants import DEMO_SECRETS, DEMO_TENANTS_PATH, load_tenants
from siyu.cli import main
from tests.fake_wecom import FakeWeCom
from tests.kafka_helpers import read_topic

TENANTS = load_tenants(DEMO_TENANTS_PATH)
CORP = TENANTS.get("acme").wecom.corp_id


@pytest.fixture
def fake():
    with FakeWeCom(TENANTS, DEMO_SECRETS) as running:
        yield running


@pytest.fixture
def ingest_url(ingest):
    server = BackgroundServer(ingest.client.application, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{server.port}"
    server.stop()


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("SIYU_TENANTS", str(DEMO_TENANTS_PATH))
    monkeypatch.setenv("SIYU_HOME", str(tmp_path))  # no `siyu dev` runs there


def config_id(fake: FakeWeCom, state: str = "expo.k3v9x2m8qa") -> str:
    secret = os.environ.get("ACME_WECOM_SECRET") or DEMO_SECRETS["ACME_WECOM_SECRET"]
    token = requests.get(f"{fake.base_url}gettoken", params={"corpid": CORP, "corpsecret": secret},
                         timeout=5).json()["access_token"]  # fmt: skip
    made = requests.post(f"{fake.base_url}externalcontact/add_contact_way",
                         params={"access_token": token}, timeout=5,
                         json={"type": 1, "scene": 2, "state": state, "user": ["lina"]}).json()  # fmt: skip
    return made["config_id"]


def scan(ingest_url: str, fake_url: str, *extra: str, tenant: str = "acme"):
    return CliRunner().invoke(main, ["simulate", "scan", "--tenant", tenant, "--code", "expo-booth",
                                     "--url", ingest_url, "--fake-url", fake_url, *extra])  # fmt: skip


def root(fake: FakeWeCom) -> str:
    return fake.base_url.split("/wecom/")[0]


def test_a_scan_posts_the_add_with_its_state_and_a_live_welcome_code(env, ingest, ingest_url,
                                                                     fake):  # fmt: skip
    result = scan(ingest_url, root(fake), "--config-id", config_id(fake), "--name", "展会访客")
    assert result.exit_code == 0, result.output
    ext = result.output.split("external_userid ", 1)[1].split()[0]
    assert "展会访客 added lina through code expo-booth" in result.output
    assert "state expo.k3v9x2m8qa" in result.output
    (record,) = read_topic(ingest.kafka, ingest.topic, 1, timeout=10)
    envelope = json.loads(record.value)
    assert (envelope["tenant_id"], envelope["type"]) == ("acme", "wecom.contact.added")
    text = json.dumps(envelope, ensure_ascii=False)
    assert "expo.k3v9x2m8qa" in text
    # The callback's WelcomeCode is the one the fake issued: a welcome with it is accepted once.
    with fake.state.lock:
        from sandbox.fake_wechat.welcome import book

        (code,) = [c for c, w in book(fake.state).codes.items() if w.external_userid == ext]
    assert code in text
    assert fake.world(CORP).contacts[ext].external_contact["name"] == "展会访客"


def test_errors_say_what_is_wrong(env, ingest, ingest_url, fake):
    unknown_tenant = scan(ingest_url, root(fake), "--config-id", "x", tenant="nope")
    assert unknown_tenant.exit_code == 2
    assert "unknown tenant 'nope' (known: acme, bloom)" in unknown_tenant.output
    unknown_config = scan(ingest_url, root(fake), "--config-id", "no-such-config")
    assert unknown_config.exit_code == 1
    assert "the fake WeCom does not know config no-such-config" in unknown_config.output
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    no_fake = scan(ingest_url, closed, "--config-id", "x")
    assert no_fake.exit_code == 1
    assert "the fake WeCom at" in no_fake.output and "does not answer" in no_fake.output
    no_ingest = scan(closed, root(fake), "--config-id", config_id(fake))
    assert no_ingest.exit_code == 1
    assert "ingest at" in no_ingest.output and "does not answer" in no_ingest.output
    not_local = scan("http://example.com", root(fake), "--config-id", "x")
    assert not_local.exit_code == 2
    assert "not a loopback address" in not_local.output


def test_without_a_config_id_or_a_stack_it_says_how(env, ingest_url, fake, monkeypatch):
    monkeypatch.delenv("SIYU_DATABASE_URL", raising=False)
    result = scan(ingest_url, root(fake))
    assert result.exit_code == 1
    assert "no siyu dev runs in" in result.output
