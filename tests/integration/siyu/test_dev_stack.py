"""`siyu dev` end to end: start, serve a webhook through the real server, stop cleanly, restart."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psycopg
from kafka import KafkaAdminClient
from wechatpy.crypto import WeChatCrypto

from shared.devstack.ports import free_port, port_open
from shared.kafka.settings import KafkaSettings
from shared.kafka.topics import TOPICS, TOUCHPOINTS
from shared.tenants import DEMO_TENANTS_PATH, load_tenants
from tests.kafka_helpers import read_topic, wait_until


@dataclass
class Ports:
    pg: int
    kafka: int
    ingest: int
    segment: int
    api: int
    fake_wechat: int
    outreach: int  # every port given: a default one may be taken on a busy machine

    @classmethod
    def free(cls) -> Ports:
        return cls(*(free_port() for _ in range(7)))

    def all_closed(self) -> bool:
        ports = (self.pg, self.kafka, self.ingest, self.segment, self.api, self.fake_wechat,
                 self.outreach)  # fmt: skip
        return not any(port_open("127.0.0.1", p) for p in ports)


def start_dev(home: Path, ports: Ports) -> tuple[subprocess.Popen, list[str], float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIYU_")}
    started = time.monotonic()
    argv = [sys.executable, "-m", "siyu.cli", "dev", "--home", str(home),
            "--pg-port", str(ports.pg), "--kafka-port", str(ports.kafka),
            "--port", f"ingest={ports.ingest}", "--port", f"segment={ports.segment}",
            "--port", f"api={ports.api}", "--port", f"fake-wechat={ports.fake_wechat}",
            "--port", f"outreach={ports.outreach}"]  # fmt: skip
    process = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    lines: list[str] = []
    for line in process.stdout:
        lines.append(line)
        if "ready in" in line:
            return process, lines, time.monotonic() - started
    process.wait(10)
    raise AssertionError("siyu dev did not become ready:\n" + "".join(lines))


def stop_dev(process: subprocess.Popen, sig: int) -> str:
    process.send_signal(sig)
    rest, _ = process.communicate(timeout=60)
    return rest


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback only
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except urllib.error.URLError:
        return 0, b""  # not listening yet


def send_subscribe(port: int) -> None:
    """In safe mode: the demo OA has an EncodingAESKey, so plaintext is refused."""
    oa = load_tenants(DEMO_TENANTS_PATH).get("acme").wechat_oa[0]
    ts, nonce = str(int(time.time())), "dev-test"
    token = oa.token.reveal()
    sig = hashlib.sha1("".join(sorted([token, ts, nonce])).encode()).hexdigest()  # noqa: S324
    inner = (
        f"<xml><ToUserName>gh_acme</ToUserName><FromUserName>oDevTest</FromUserName>"
        f"<CreateTime>{ts}</CreateTime><MsgType>event</MsgType><Event>subscribe</Event></xml>"
    )
    crypto = WeChatCrypto(token, oa.encoding_aes_key.reveal(), oa.app_id)
    enc = crypto.encrypt_message(inner, nonce, ts)
    encrypt = enc.split("<Encrypt><![CDATA[")[1].split("]]>")[0]
    msg_sig = enc.split("<MsgSignature><![CDATA[")[1].split("]]>")[0]
    body = f"<xml><ToUserName>gh_acme</ToUserName><Encrypt>{encrypt}</Encrypt></xml>".encode()
    query = f"signature={sig}&timestamp={ts}&nonce={nonce}&encrypt_type=aes&msg_signature={msg_sig}"
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/wechat/oa/{oa.app_id}?{query}",
        data=body,
        headers={"Content-Type": "text/xml"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        assert response.status == 200
        assert response.read() == b"success"


def test_dev_starts_serves_stops_cleanly_and_keeps_data(tmp_path):
    home = tmp_path / "siyu-home"
    ports = Ports.free()
    dsn = f"postgresql://postgres@127.0.0.1:{ports.pg}/siyu"

    process, lines, seconds = start_dev(home, ports)
    try:
        output = "".join(lines)
        assert f"127.0.0.1:{ports.pg}" in output
        assert f"127.0.0.1:{ports.kafka}" in output
        assert f"ingest      http://127.0.0.1:{ports.ingest}" in output
        assert "acme (b2b, aisceas), bloom (b2c, aarrr)" in output
        with psycopg.connect(dsn, autocommit=True) as conn:
            schemas = {r[0] for r in conn.execute("SELECT nspname FROM pg_namespace")}
            assert {"ingest", "segment", "outreach"} <= schemas
            conn.execute("CREATE TABLE public.kept (note text)")
            conn.execute("INSERT INTO public.kept VALUES ('survives a restart')")
        admin = KafkaAdminClient(bootstrap_servers=f"127.0.0.1:{ports.kafka}")
        assert {t.name for t in TOPICS} <= set(admin.list_topics())
        admin.close()

        # The real server (gunicorn) answers, is ready, and puts a webhook on the topic.
        wait_until(lambda: get(f"http://127.0.0.1:{ports.ingest}/readyz")[0] == 200, timeout=30)
        send_subscribe(ports.ingest)
        kafka = KafkaSettings(bootstrap=f"127.0.0.1:{ports.kafka}")
        (record,) = read_topic(kafka, TOUCHPOINTS, 1)
        assert json.loads(record.value)["type"] == "oa.subscribe"
        status, metrics = get(f"http://127.0.0.1:{ports.ingest}/metrics")
        assert status == 200
        assert b'siyu_ingest_events_total{outcome="produced"' in metrics
        # The segment consumer and the admin API run too.
        wait_until(lambda: get(f"http://127.0.0.1:{ports.segment}/healthz")[0] == 200, timeout=30)
        wait_until(lambda: get(f"http://127.0.0.1:{ports.api}/readyz")[0] == 200, timeout=30)
        status, body = get(f"http://127.0.0.1:{ports.api}/api/v1/me")
        assert status == 401
        assert json.loads(body)["error"]["code"] == "unauthenticated"
        # The fake WeChat/WeCom API runs too and accepts the demo tenants' secrets.
        fake = f"http://127.0.0.1:{ports.fake_wechat}"
        wait_until(lambda: get(f"{fake}/readyz")[0] == 200, timeout=30)
        status, body = get(
            f"{fake}/wecom/cgi-bin/gettoken?corpid=ww1234567890abcdef"
            "&corpsecret=acme-wecom-demo-secret"
        )
        assert status == 200
        assert json.loads(body)["errcode"] == 0
    finally:
        rest = stop_dev(process, signal.SIGINT)
    assert process.returncode == 0, rest
    assert "stopped" in rest
    assert ports.all_closed()
    assert not (home / "broker.pid").exists()
    assert not (home / "pg" / "postmaster.pid").exists()

    # Second start: nothing stale blocks it, and the data is still there.
    process, _, seconds_again = start_dev(home, ports)
    try:
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT note FROM public.kept").fetchall() == [
                ("survives a restart",)
            ]
    finally:
        stop_dev(process, signal.SIGTERM)
    assert process.returncode == 0
    assert ports.all_closed()
    print(f"siyu dev ready in {seconds:.1f}s (first start), {seconds_again:.1f}s (restart)")


def test_dev_recovers_from_a_killed_run(tmp_path):
    """SIGKILL: children die with their parent; PostgreSQL is reaped by the next start."""
    home = tmp_path / "siyu-home"
    ports = Ports.free()
    process, _, _ = start_dev(home, ports)
    wait_until(lambda: port_open("127.0.0.1", ports.ingest), timeout=30)
    process.kill()
    process.wait(10)
    wait_until(
        lambda: (
            not port_open("127.0.0.1", ports.kafka) and not port_open("127.0.0.1", ports.ingest)
        ),
        timeout=30,
        message="broker and ingest to die with their parent",
    )
    assert port_open("127.0.0.1", ports.pg)  # a daemon: left for the next start to reap

    process, lines, _ = start_dev(home, ports)
    stop_dev(process, signal.SIGINT)
    assert process.returncode == 0, "".join(lines)
    assert ports.all_closed()
