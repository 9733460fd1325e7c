"""Welcome on add: from the add callback reaching ingest to the ``send_welcome_msg`` call, while
other webhooks arrive at 500/s (docs/domain.md "Welcome on add"; WeCom's window is 20 s).

Real components on this machine: embedded PostgreSQL and broker, ingest under gunicorn (as
bench/ingest.py runs it), outreach's welcome consumer (its own group on the signals topic,
``services/outreach/worker.py`` ``build_welcome_runner``) in this process, and ``siyu
fake-wechat`` on loopback. A probe asks the fake for a WelcomeCode (a customer adds zhangwei through
a channel code), posts the encrypted add callback with it to ingest, and waits until the fake has
received the welcome; the latency is from just before the POST to the fake's receipt. Probes run
in groups of ``BENCH_WELCOME_WIDTH`` (default 3) concurrent adds, ``BENCH_WELCOME_PROBES``
(default 200) per run. The welcomer is the production one: the shared database rate limiter at
the default WeCom rate (SIYU_WECOM_RATE, 5 calls/s per corp), the link signer and tracked links.
The floor is the same probes with no other traffic, in the same run; the loaded run sends
encrypted ``edit_external_contact`` callbacks (each a new contact) at ``BENCH_WELCOME_RATE``
(default 500) requests/s over 32 connections while the probes run. Target: p99 < 3 s under the
load and no welcome missed. When the load generator achieves less than 95 % of the asked rate
the loaded result is "not measured" at that rate (exit 2): the numbers are printed but say so.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from wechatpy.enterprise.crypto import WeChatCrypto

from bench import report
from bench.loadgen import Result, http_post, run_paced
from bench.outreach import start_fake
from sandbox.fake_wechat import welcome as fake_welcome
from services.outreach import welcome, worker
from services.outreach.clients import Clients
from services.outreach.tokens import seed_tenants
from shared.config import Settings
from shared.db import create_pool
from shared.devstack.broker import EmbeddedBroker
from shared.devstack.ports import free_port, wait_for_port
from shared.devstack.postgres import EmbeddedPostgres
from shared.kafka.settings import KafkaSettings
from shared.kafka.topics import ensure_topics
from shared.migrations import migrate_service
from shared.tenants import DEMO_SECRETS, DEMO_TENANTS_PATH, load_tenants

RATE = float(os.environ.get("BENCH_WELCOME_RATE", "500"))
PROBES = int(os.environ.get("BENCH_WELCOME_PROBES", "200"))
WIDTH = int(os.environ.get("BENCH_WELCOME_WIDTH", "3"))  # concurrent adds per group
GAP_S = 0.6  # between groups: 5 adds/s at most, the corp's default WeCom rate
SECONDS = float(os.environ.get("BENCH_WELCOME_SECONDS", str(PROBES / WIDTH * (GAP_S + 0.4))))
WARMUP = 3.0
STATE = "expo.b3nchm4rk"
TARGET_P99_S = 3.0


def _encrypted(crypto: WeChatCrypto, corp_id: str, inner: str, nonce: str, ts: str):
    enc = crypto.encrypt_message(inner, nonce, ts)
    encrypt = enc.split("<Encrypt><![CDATA[")[1].split("]]>")[0]
    sig = enc.split("<MsgSignature><![CDATA[")[1].split("]]>")[0]
    body = (f"<xml><ToUserName><![CDATA[{corp_id}]]></ToUserName><AgentID>1000002</AgentID>"
            f"<Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>").encode()  # fmt: skip
    return f"/wecom/{corp_id}?msg_signature={sig}&timestamp={ts}&nonce={nonce}", body


def _event(corp_id: str, change: str, user: str, ext: str, at: int, extra: str = "") -> str:
    return (
        f"<xml><ToUserName><![CDATA[{corp_id}]]></ToUserName><FromUserName><![CDATA[sys]]>"
        f"</FromUserName><CreateTime>{at}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        "<Event><![CDATA[change_external_contact]]></Event>"
        f"<ChangeType><![CDATA[{change}]]></ChangeType><UserID><![CDATA[{user}]]></UserID>"
        f"<ExternalUserID><![CDATA[{ext}]]></ExternalUserID>{extra}</xml>"
    )


def other_traffic(port: int, count: int) -> list[bytes]:
    """Distinct encrypted ``edit_external_contact`` callbacks: load on ingest (and touchpoints for
    segment); they give no signal, so the welcome consumer reads only the adds."""
    corp = load_tenants(DEMO_TENANTS_PATH).get("acme").wecom
    crypto = WeChatCrypto(corp.token.reveal(), corp.encoding_aes_key.reveal(), corp.corp_id)
    now, out = int(time.time()), []
    for i in range(count):
        inner = _event(corp.corp_id, "edit_external_contact", f"sales{i % 20}",
                       f"wmOther{i:026d}", now - i % 600)  # fmt: skip
        path, body = _encrypted(crypto, corp.corp_id, inner, f"other{i}", str(now))
        out.append(http_post("127.0.0.1", port, path, body, "text/xml"))
    return out


class Prober:
    def __init__(self, state, ingest_url: str):
        self.state, self.ingest_url = state, ingest_url
        self.corp = load_tenants(DEMO_TENANTS_PATH).get("acme").wecom
        self.crypto = WeChatCrypto(self.corp.token.reveal(), self.corp.encoding_aes_key.reveal(),
                                   self.corp.corp_id)  # fmt: skip
        self.n = 0
        self._lock = threading.Lock()

    def _sent_at(self, code: str) -> float | None:
        with self.state.lock:
            for sent in reversed(self.state.mailbox.sent):
                if sent.kind == "welcome" and sent.body.get("welcome_code") == code:
                    return sent.at
        return None

    def probe(self) -> float:
        """Seconds from the add callback's POST to the fake receiving the welcome."""
        with self._lock:
            self.n += 1
            n = self.n
        ext = f"wmProbe{time.time_ns()}{n:04d}"
        issued = fake_welcome.issue(self.state, self.corp.corp_id, "zhangwei", ext)
        extra = (f"<State><![CDATA[{STATE}]]></State>"
                 f"<WelcomeCode><![CDATA[{issued['welcome_code']}]]></WelcomeCode>")  # fmt: skip
        inner = _event(self.corp.corp_id, "add_external_contact", "zhangwei", ext,
                       issued["create_time"], extra)  # fmt: skip
        path, body = _encrypted(self.crypto, self.corp.corp_id, inner, f"probe{n}",
                                str(int(time.time())))  # fmt: skip
        t0 = time.time()
        answer = requests.post(self.ingest_url + path, data=body,
                                headers={"Content-Type": "text/xml"}, timeout=10)  # fmt: skip
        assert answer.status_code == 200, answer.text[:300]
        deadline = t0 + 25
        while time.time() < deadline:
            at = self._sent_at(issued["welcome_code"])
            if at is not None:
                return at - t0
            time.sleep(0.005)
        return float("inf")  # never sent (missed): counts against the p99

    def run(self, count: int, width: int = 1, gap: float = 0.0) -> list[float]:
        """``count`` probes in groups of ``width`` concurrent adds, ``gap`` s between groups."""
        out: list[float] = []
        with ThreadPoolExecutor(width) as threads:
            while len(out) < count:
                group = [threads.submit(self.probe) for _ in range(min(width, count - len(out)))]
                out.extend(f.result() for f in group)
                time.sleep(gap)
        return out


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] if values else 0.0


def _seed(dsn: str) -> None:
    pool = create_pool(dsn, name="bench-welcome-seed", schema="outreach", max_size=2)
    with pool.connection() as conn:
        seed_tenants(conn, load_tenants(DEMO_TENANTS_PATH))
        conn.execute(
            "INSERT INTO content (tenant_id, content_id, title, format, promotional, payloads) "
            "VALUES ('acme', 'cnt_welcome', '欢迎', 'article', false, %s::jsonb)",
            ('{"wecom": {"text": "欢迎来到精工", "attachments": [{"msgtype": "link", "link": '
             '{"title": "选型指南", "url": "https://acme.example/guide"}}]}}',),
        )  # fmt: skip
        conn.execute(
            "INSERT INTO channel_codes (tenant_id, code_id, kind, name, channel, state, staff, "
            "welcome_content) VALUES ('acme', 'expo', 'contact', '展会', 'expo', %s, "
            "'{zhangwei}', '{cnt_welcome}')",
            (STATE,),
        )
    pool.close()


def main() -> int:
    for key, value in DEMO_SECRETS.items():
        os.environ.setdefault(key, value)
    with tempfile.TemporaryDirectory(prefix="siyu-bench-welcome-") as tmp:
        postgres = EmbeddedPostgres(Path(tmp) / "pg", port=free_port()).start()
        broker = EmbeddedBroker(Path(tmp) / "broker", port=free_port()).start()
        state, fake, base = start_fake(20)
        ingest = runner = pool = None
        try:
            migrate_service(postgres.dsn, "ingest")
            migrate_service(postgres.dsn, "outreach")
            ensure_topics(KafkaSettings(bootstrap=broker.bootstrap, partitions=6))
            _seed(postgres.dsn)
            env = {
                **os.environ, **DEMO_SECRETS, "SIYU_DATABASE_URL": postgres.dsn,
                "SIYU_KAFKA_BOOTSTRAP": broker.bootstrap, "SIYU_TENANTS": str(DEMO_TENANTS_PATH),
                "SIYU_LINK_SECRET": "bench-link-secret-0123456789", "SIYU_LOG_LEVEL": "WARNING",
                "SIYU_PRIVACY_KEY": os.environ.get("SIYU_PRIVACY_KEY")
                or "bench-privacy-key-0123456789",
            }  # fmt: skip
            port = free_port()
            ingest = subprocess.Popen(
                [sys.executable, "-m", "siyu.cli", "ingest", "serve", "--port", str(port),
                 "--workers", "2"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )  # fmt: skip
            try:
                wait_for_port("127.0.0.1", port, timeout=30, alive=lambda: ingest.poll() is None)
            except RuntimeError:
                raise RuntimeError(ingest.stderr.read().decode()[-2000:]) from None
            # The default SIYU_WECOM_RATE: production's limiter and rate.
            settings = Settings.from_env({
                "SIYU_DATABASE_URL": postgres.dsn, "SIYU_KAFKA_BOOTSTRAP": broker.bootstrap,
                "SIYU_WECOM_API_BASE": f"{base}/wecom/cgi-bin/",
                "SIYU_TENANTS": str(DEMO_TENANTS_PATH), "SIYU_LINK_SECRET": env["SIYU_LINK_SECRET"],
                "SIYU_PUBLIC_URL": "https://hooks.acme.example",
            })  # fmt: skip
            tenants = load_tenants(DEMO_TENANTS_PATH)
            pool = create_pool(postgres.dsn, name="bench-welcome", schema="outreach", max_size=10)
            clients = Clients(settings, tenants, pool=pool)  # the shared database limiter
            signer = worker.link_signer(tenants, settings.link_secret)
            assert signer is not None
            welcomer = welcome.Welcomer(pool, clients, tenants, signer, settings.public_url)
            runner = worker.build_welcome_runner(settings, welcomer)
            threading.Thread(target=runner.run, daemon=True).start()
            deadline = time.time() + 60  # an add before the group has joined would be missed
            while not runner.consumer.assignment() and time.time() < deadline:
                time.sleep(0.1)
            prober = Prober(state, f"http://127.0.0.1:{port}")
            prober.run(3)  # the group joined, the token fetched, caches warm
            floor = prober.run(PROBES, WIDTH, GAP_S)
            load: dict[str, Result] = {}
            requests_ = other_traffic(port, int(RATE * (SECONDS + WARMUP)))
            loader = threading.Thread(target=lambda: load.update(
                r=run_paced("127.0.0.1", port, requests_, rate=RATE)))  # fmt: skip
            loader.start()
            time.sleep(WARMUP)
            loaded = prober.run(PROBES, WIDTH, GAP_S)
            loader.join()
            with pool.connection() as conn:
                rows = conn.execute("SELECT status, count(*) AS n FROM welcomes GROUP BY status")
                statuses = {r["status"]: r["n"] for r in rows}
        finally:
            if runner is not None:
                runner.stop()
            if ingest is not None:
                ingest.send_signal(signal.SIGTERM)
                ingest.wait(30)
            if pool is not None:
                pool.close()
            fake.shutdown()
            broker.stop()
            postgres.stop()

    result = load["r"]
    achieved = result.throughput
    measured = achieved >= 0.95 * RATE
    print(f"## Welcome on add: add callback -> send_welcome_msg ({os.cpu_count()} cores, ingest "
          f"gunicorn 2 workers, other webhooks at {RATE:.0f}/s asked, {achieved:.0f}/s "
          f"achieved; shared limiter at {settings.wecom_rate:g} calls/s, groups of {WIDTH} "
          "concurrent adds)\n")  # fmt: skip
    print("| run | probes | p50 s | p99 s | max s | not sent |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, values in (("no other traffic (floor)", floor), ("under webhook load", loaded)):
        lost = sum(1 for v in values if v == float("inf"))
        print(f"| {name} | {len(values)} | {_pct(values, 50):.3f} | {_pct(values, 99):.3f} | "
              f"{max(values):.3f} | {lost} |")  # fmt: skip
    report.add("welcome", "Welcome latency p99", "under load", _pct(loaded, 99), "floor",
               _pct(floor, 99), "s")  # fmt: skip
    bad = result.errors + sum(n for s, n in result.statuses.items() if s != 200)
    print(f"\nwelcomes recorded: {statuses}; other webhooks answered non-200 or failed: {bad}")
    print("The machine's 2 cores are shared with other work: timings are noisy.")
    missed = sum(1 for v in floor + loaded if v == float("inf"))
    if not measured:
        print(f"NOT MEASURED at {RATE:.0f}/s: the load generator achieved {achieved:.0f}/s "
              f"({achieved / RATE:.0%} of the asked rate, < 95 %); the loaded row is at "
              f"{achieved:.0f}/s, not at the asked load.")  # fmt: skip
        return 2
    ok = _pct(loaded, 99) < TARGET_P99_S and missed == 0
    print(f"p99 under load {_pct(loaded, 99):.3f} s (target < {TARGET_P99_S:.0f} s; WeCom's window "
          f"is 20 s); welcomes not sent: {missed}: {'PASS' if ok else 'FAIL'}")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
