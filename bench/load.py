"""Load: ingest at its measured maximum for a few minutes (loopback), in 10-second windows.

The same closed loop as bench/ingest.py (every connection sends again as soon as it is
answered, so the rate is the server's maximum), for ``BENCH_LOAD_SECONDS`` (default 120; the
callbacks' timestamps must stay within WeChat's 300-second window). Per window: throughput,
p50/p99, errors, and the resident memory of every ingest process (gunicorn master and
workers). Expected: zero errors and no memory growth after the first windows. The baseline is
the first window of the same run (throughput and memory later in the run / at the start).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import report
from bench.ingest import CONCURRENCY, WORKERS, wecom_requests
from bench.loadgen import run
from shared.devstack.broker import EmbeddedBroker
from shared.devstack.ports import free_port, wait_for_port
from shared.devstack.postgres import EmbeddedPostgres
from shared.kafka.settings import KafkaSettings
from shared.kafka.topics import ensure_topics
from shared.migrations import migrate_service
from shared.tenants import DEMO_SECRETS, DEMO_TENANTS_PATH

SECONDS = min(float(os.environ.get("BENCH_LOAD_SECONDS", "120")), 240.0)
WINDOW = 10.0


def process_tree_rss_mb(pid: int) -> dict[int, float]:
    """RSS of a process and its children (gunicorn master and workers), MB by pid."""
    found: dict[int, float] = {}
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    found[current] = int(line.split()[1]) / 1024
            for task in Path(f"/proc/{current}/task").iterdir():
                children = (task / "children").read_text().split()
                todo.extend(int(c) for c in children)
        except (OSError, ValueError):
            continue
    return found


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="siyu-bench-load-") as tmp:
        postgres = EmbeddedPostgres(Path(tmp) / "pg", port=free_port()).start()
        broker = EmbeddedBroker(Path(tmp) / "broker", port=free_port()).start()
        try:
            migrate_service(postgres.dsn, "ingest")
            ensure_topics(KafkaSettings(bootstrap=broker.bootstrap, partitions=6))
            return load(postgres.dsn, broker.bootstrap)
        finally:
            broker.stop()
            postgres.stop()


def load(dsn: str, bootstrap: str) -> int:
    port = free_port()
    env = {**os.environ, **DEMO_SECRETS, "SIYU_DATABASE_URL": dsn,
           "SIYU_KAFKA_BOOTSTRAP": bootstrap, "SIYU_TENANTS": str(DEMO_TENANTS_PATH),
           "SIYU_LOG_LEVEL": "WARNING",
           "SIYU_LINK_SECRET": "bench-link-secret-0123456789"}  # fmt: skip
    server = subprocess.Popen(
        [sys.executable, "-m", "siyu.cli", "ingest", "serve", "--port", str(port),
         "--workers", str(WORKERS)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    windows = []
    try:
        wait_for_port("127.0.0.1", port, timeout=30, alive=lambda: server.poll() is None)
        time.sleep(1.0)
        requests = wecom_requests(port, count=150_000)  # distinct for 120 s at full speed
        started = time.monotonic()
        while time.monotonic() - started < SECONDS:
            result = run("127.0.0.1", port, requests, concurrency=CONCURRENCY, warmup_s=0,
                         seconds=WINDOW)  # fmt: skip
            windows.append((result, sum(process_tree_rss_mb(server.pid).values())))
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()

    print(f"## Load: ingest at its maximum for {SECONDS:.0f} s ({os.cpu_count()} cores, "
          f"gunicorn {WORKERS} workers, {CONCURRENCY} connections)\n")  # fmt: skip
    print("| window | req/s | p50 ms | p99 ms | errors / non-200 | ingest RSS MB (all processes) |")
    print("|---:|---:|---:|---:|---:|---:|")
    bad_total = 0
    for i, (r, rss) in enumerate(windows, 1):
        bad = r.errors + sum(n for s, n in r.statuses.items() if s != 200)
        bad_total += bad
        print(f"| {i} | {r.throughput:,.0f} | {r.p50:.1f} | {r.percentile(99):.1f} | {bad} | "
              f"{rss:,.0f} |")  # fmt: skip
    first, last = windows[0], windows[-1]
    total = sum(r.requests for r, _ in windows)
    print(f"\n{total:,} requests, {bad_total} errors or non-200 answers; memory "
          f"{first[1]:,.0f} MB after the first window, {last[1]:,.0f} MB at the end "
          f"({(last[1] - first[1]) / first[1]:+.1%})")  # fmt: skip
    report.add("load", "Load: throughput, last window", "last window", last[0].throughput,
               "first window", first[0].throughput, "req/s")  # fmt: skip
    report.add("load", "Load: ingest memory", "end of run", last[1], "after the first window",
               first[1], "MB")  # fmt: skip
    return 1 if bad_total else 0


if __name__ == "__main__":
    sys.exit(main())
