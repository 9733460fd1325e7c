"""Ingest throughput and latency: encrypted WeCom callbacks under gunicorn vs a bare Flask app.

Both run under the same server and settings (shared.serving.gunicorn_options), driven by
the same closed-loop load generator in the same run. Ingest does the whole job per request:
signature, AES decryption, safe XML parsing, normalisation, and a Kafka publish acknowledged by the
broker (acks=all) before answering. Target: >= 40% of the bare app's throughput, p99 < 50 ms.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from wechatpy.enterprise.crypto import WeChatCrypto

from bench import report
from bench.loadgen import Result, http_post, run
from shared.devstack.broker import EmbeddedBroker
from shared.devstack.ports import free_port, wait_for_port
from shared.devstack.postgres import EmbeddedPostgres
from shared.kafka.settings import KafkaSettings
from shared.kafka.topics import ensure_topics
from shared.migrations import migrate_service
from shared.tenants import DEMO_SECRETS, DEMO_TENANTS_PATH, load_tenants

WORKERS = int(os.environ.get("BENCH_WORKERS", "2"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "32"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))
WARMUP = 2.0


def wecom_requests(port: int, count: int = 20_000) -> list[bytes]:
    """Distinct callbacks, each with its own nonce: a request sent twice would be answered as
    the platform's retry, without a publish (docs/security.md "Webhooks"), and measure less.
    More than a run sends (about 1,100/s for 12 s)."""
    acme = load_tenants(DEMO_TENANTS_PATH).get("acme")
    corp = acme.wecom
    crypto = WeChatCrypto(corp.token.reveal(), corp.encoding_aes_key.reveal(), corp.corp_id)
    now = int(time.time())
    out = []
    for i in range(count):
        inner = (
            f"<xml><ToUserName><![CDATA[{corp.corp_id}]]></ToUserName><FromUserName><![CDATA[sys]]>"
            f"</FromUserName><CreateTime>{now - i}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
            "<Event><![CDATA[change_external_contact]]></Event>"
            "<ChangeType><![CDATA[add_external_contact]]></ChangeType>"
            f"<UserID><![CDATA[sales{i % 20}]]></UserID>"
            f"<ExternalUserID><![CDATA[wmBench{i:026d}]]></ExternalUserID>"
            "<State><![CDATA[expo2026]]></State><WelcomeCode><![CDATA[WC]]></WelcomeCode></xml>"
        )
        nonce, ts = f"bench{i}", str(now)
        enc = crypto.encrypt_message(inner, nonce, ts)
        encrypt = enc.split("<Encrypt><![CDATA[")[1].split("]]>")[0]
        sig = enc.split("<MsgSignature><![CDATA[")[1].split("]]>")[0]
        body = (
            f"<xml><ToUserName><![CDATA[{corp.corp_id}]]></ToUserName><AgentID>1000002</AgentID>"
            f"<Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
        ).encode()
        path = f"/wecom/{corp.corp_id}?msg_signature={sig}&timestamp={ts}&nonce={nonce}"
        out.append(http_post("127.0.0.1", port, path, body, "text/xml"))
    return out


def serve_and_load(argv: list[str], port: int, env: dict[str, str]) -> Result:
    server = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port("127.0.0.1", port, timeout=30, alive=lambda: server.poll() is None)
        time.sleep(1.0)  # let every worker boot
        return run(
            "127.0.0.1", port, wecom_requests(port), concurrency=CONCURRENCY, warmup_s=WARMUP,
            seconds=SECONDS,
        )  # fmt: skip
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()


def row(name: str, r: Result) -> str:
    bad = r.errors + sum(n for s, n in r.statuses.items() if s != 200)
    return (
        f"| {name} | {r.throughput:,.0f} | {r.p50:.1f} | {r.percentile(99):.1f} | "
        f"{r.requests:,} | {bad} |"
    )


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="siyu-bench-") as tmp:
        postgres = EmbeddedPostgres(Path(tmp) / "pg", port=free_port()).start()
        broker = EmbeddedBroker(Path(tmp) / "broker", port=free_port()).start()
        try:
            migrate_service(postgres.dsn, "ingest")
            ensure_topics(KafkaSettings(bootstrap=broker.bootstrap, partitions=6))
            env = {
                **os.environ,
                **DEMO_SECRETS,  # ingest checks at start that every secret the tenants name is set
                "SIYU_DATABASE_URL": postgres.dsn,
                "SIYU_KAFKA_BOOTSTRAP": broker.bootstrap,
                "SIYU_TENANTS": str(DEMO_TENANTS_PATH),
                "SIYU_LINK_SECRET": "bench-link-secret-0123456789",
                "SIYU_LOG_LEVEL": "WARNING",
            }
            bare_port, ingest_port = free_port(), free_port()
            bare = serve_and_load(
                [sys.executable, "-m", "bench.serve_bare", str(bare_port), str(WORKERS)],
                bare_port,
                env,
            )
            ingest = serve_and_load(
                [
                    sys.executable,
                    "-m",
                    "siyu.cli",
                    "ingest",
                    "serve",
                    "--port",
                    str(ingest_port),
                    "--workers",
                    str(WORKERS),
                ],
                ingest_port,
                env,
            )
        finally:
            broker.stop()
            postgres.stop()

    ratio = ingest.throughput / bare.throughput if bare.throughput else 0.0
    setup = (
        f"{os.cpu_count()} cores, gunicorn gthread {WORKERS}x8, {CONCURRENCY} connections, "
        f"{SECONDS:.0f}s after {WARMUP:.0f}s warm-up"
    )
    print(f"## Ingest: encrypted WeCom callbacks ({setup})\n")
    print("| server | req/s | p50 ms | p99 ms | requests | non-200 |")
    print("|---|---:|---:|---:|---:|---:|")
    print(row("bare Flask (baseline)", bare))
    print(row("siyu ingest (decrypt + parse + Kafka acks=all)", ingest))
    report.add("ingest", "Ingest throughput", "siyu ingest", ingest.throughput,
               "bare Flask", bare.throughput, "req/s")  # fmt: skip
    report.add("ingest", "Ingest p99 latency", "siyu ingest", ingest.percentile(99),
               "bare Flask", bare.percentile(99), "ms")  # fmt: skip
    print(f"\nthroughput ratio ingest/bare: {ratio:.0%} (target >= 40%)")
    print(f"ingest p99: {ingest.percentile(99):.1f} ms (target < 50 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
