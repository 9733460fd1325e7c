"""Event to stage visible, under webhook load: how long a business event takes to show through
the admin API while webhooks arrive at a controlled rate from the same machine.

The whole stack runs as `siyu dev` does it (embedded PostgreSQL and broker, ingest, segment,
outreach, API, all on this machine), in a temporary home with free ports. A probe posts one
``biz.order.paid`` for a fresh contact (its own ``crm_id``) to ``POST /api/v1/events`` (an events
token) and polls ``GET /api/v1/contacts?q=<crm_id>`` (a viewer token) every ``POLL_S`` until the
contact shows ``revenue`` (AARRR B2C: an order alone is revenue); the latency is from just before
the POST to the answer that shows the stage. Probes run one after another, each on a new contact.

Per point, webhooks go to ingest at the asked rate for the warm-up plus the point's duration;
probes run after the warm-up. By default (``BENCH_LATENCY_LOAD=paced``) they are bench/ingest.py's
prepared, encrypted WeCom callbacks (tenant acme, each a new external contact), request i sent
at i / rate over 32 connections from one process of its own. ``BENCH_LATENCY_LOAD=simulate``
runs `siyu simulate` instead, as the target says (bloom's webhooks; no events token: webhooks
only), split over processes of at most ``BENCH_LATENCY_SIM_RATE`` requests/s each, since one
simulator sends synchronously, one request at a time. The simulator is the realistic mix but
costs a few ms of CPU per request: on 2 cores it takes much of what the stack needs and did not
reach 300 req/s (bench/REPORT.md), hence not the default. The achieved rate is what the load
generator counted (answered requests / its elapsed time). The floor is the same probe with no
webhook load, in the same run.

Beside the latency, per point: the POST alone, the segment consumer's batches (its /metrics),
how busy the machine's cores were (/proc/stat: every process, other work's too) and the CPU the
load generator used.

``BENCH_LATENCY_RATES`` (default ``150,270,300,350``) and ``BENCH_LATENCY_SECONDS`` (default 20 per
point) make a longer run. Target: p99 < 250 ms at 300 webhook requests/s.
"""

from __future__ import annotations

import collections
import math
import multiprocessing
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path

import requests

from bench import report
from bench.ingest import wecom_requests
from bench.loadgen import Result, run_paced
from services.ingest.tokens import create_token as create_events_token
from services.outreach.tokens import create_token, seed_tenants
from shared.db import create_pool
from shared.devstack.lock import running_stack
from shared.devstack.ports import free_port, port_open
from shared.devstack.supervisor import die_with_parent
from shared.tenants import DEMO_TENANTS_PATH, load_tenants

RATES = [float(r) for r in os.environ.get("BENCH_LATENCY_RATES", "150,270,300,350").split(",")]
SECONDS = float(os.environ.get("BENCH_LATENCY_SECONDS", "20"))
SIM_RATE = float(os.environ.get("BENCH_LATENCY_SIM_RATE", "25"))  # per simulator process
SIM_CONTACTS = 2000  # per simulator process
# "paced" (bench/ingest.py's prepared WeCom callbacks on a schedule, from one asyncio process) or
# "simulate" (`siyu simulate` processes: on 2 cores they cannot reach 300 req/s, bench/REPORT.md).
LOAD = os.environ.get("BENCH_LATENCY_LOAD", "paced")
PACED_CONNECTIONS = 32
WARMUP_S = 5.0  # simulators import, build their population and reach their pace
POLL_S = 0.02  # also the latency's resolution; 50 polls/s stays under the API's 100/s limit
PROBE_TIMEOUT_S = 10.0
PROBE_GAP_S = 0.05
TENANT = "bloom"
STAGE = "revenue"
TARGET_RATE, TARGET_P99_MS = 300.0, 250.0
# Processes `siyu dev` starts; every one gets a free port (a default one may be taken).
PROCESS_PORTS = ("ingest", "ingest-erasures", "segment", "outreach", "api", "fake-wechat")


@dataclass
class Point:
    asked: float  # webhook requests/s; 0: the floor
    processes: int = 0
    webhooks: int = 0
    achieved: float = 0.0
    webhook_errors: int = 0  # non-2xx answers and failed requests of the simulators
    probe_errors: collections.Counter = field(default_factory=collections.Counter)
    probes: Result = field(default_factory=Result)
    posts_ms: list[float] = field(default_factory=list)  # the POST alone (ingest's answer)
    segment: dict[str, float] = field(default_factory=dict)  # segment /metrics over the point
    machine_busy: float = 0.0  # share of all cores busy while probing (every process, others' too)
    sim_cpu_s: float = 0.0  # CPU seconds the simulators used (user + system)

    @property
    def errors(self) -> int:
        return self.webhook_errors + sum(self.probe_errors.values())


class DevStack:
    """`siyu dev` in a temporary home, every port free; its output kept for a failure report."""

    def __init__(self, home: Path):
        self.home = home
        self.pg, self.kafka = free_port(), free_port()
        self.ports = {name: free_port() for name in PROCESS_PORTS}
        self.lines: collections.deque[str] = collections.deque(maxlen=200)
        self.process: subprocess.Popen | None = None
        self.dsn = ""

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIYU_")}
        return {**env, "SIYU_HOME": str(self.home), "SIYU_LOG_LEVEL": "WARNING"}

    def start(self) -> DevStack:
        argv = [sys.executable, "-m", "siyu.cli", "dev", "--home", str(self.home),
                "--pg-port", str(self.pg), "--kafka-port", str(self.kafka)]  # fmt: skip
        for name, port in self.ports.items():
            argv += ["--port", f"{name}={port}"]
        self.process = subprocess.Popen(
            argv, env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            stdin=subprocess.DEVNULL, preexec_fn=die_with_parent,
        )  # fmt: skip
        ready = threading.Event()
        threading.Thread(target=self._pump, args=(ready,), daemon=True).start()
        if not ready.wait(180) or self.process.poll() is not None:
            raise RuntimeError("siyu dev did not become ready:\n" + "\n".join(self.lines))
        info = running_stack(self.home)
        assert info is not None, "siyu dev is ready but its lock file names no stack"
        self.dsn = info.database_url
        return self

    def _pump(self, ready: threading.Event) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:  # drained to the end: a full pipe would block the stack
            self.lines.append(line.rstrip("\n"))
            if "ready in" in line:
                ready.set()
        ready.set()  # exited

    def stop(self) -> bool:
        """SIGTERM (`siyu dev` stops its services, the broker, PostgreSQL); True if no port of
        the stack is still open afterwards."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(90)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        ports = [self.pg, self.kafka, *self.ports.values()]
        return not any(port_open("127.0.0.1", p) for p in ports)


def tokens(dsn: str) -> tuple[str, str]:
    """An events token and a viewer token of the tenant."""
    events = create_events_token(dsn, TENANT, "bench-latency")
    pool = create_pool(dsn, name="bench-latency", schema="outreach", max_size=1)
    try:
        with pool.connection() as conn:
            seed_tenants(conn, load_tenants(DEMO_TENANTS_PATH))
            viewer = create_token(conn, tenant_id=TENANT, role="viewer", name="bench-latency")[1]
    finally:
        pool.close()
    return events, viewer


class Prober:
    def __init__(self, stack: DevStack, events_token: str, viewer_token: str):
        self.ingest, self.api = stack.url("ingest"), stack.url("api")
        self.session = requests.Session()
        self.session.trust_env = False  # loopback: never through a proxy from the environment
        self.events = {"Authorization": f"Bearer {events_token}"}
        self.viewer = {"Authorization": f"Bearer {viewer_token}"}
        self.run_id = f"{int(time.time())}"
        self.count = 0

    def probe(self, point: Point) -> None:
        """One fresh contact: its latency into ``point.probes`` or a counted error."""
        self.count += 1
        crm_id = f"lat-{self.run_id}-{self.count}"
        event = {
            "idempotency_key": crm_id, "type": "biz.order.paid",
            "occurred_at": datetime.now(UTC).isoformat(), "identity": {"crm_id": crm_id},
            "attributes": {"amount": 1.0, "currency": "CNY"},
        }  # fmt: skip
        started = time.perf_counter()
        try:
            posted = self.session.post(f"{self.ingest}/api/v1/events", json=event,
                                       headers=self.events, timeout=PROBE_TIMEOUT_S)  # fmt: skip
            point.posts_ms.append((time.perf_counter() - started) * 1000)
            if posted.status_code != 200:
                point.probe_errors[f"POST {posted.status_code}"] += 1
                return
            while time.perf_counter() - started < PROBE_TIMEOUT_S:
                answer = self.session.get(f"{self.api}/api/v1/contacts", params={"q": crm_id},
                                          headers=self.viewer, timeout=PROBE_TIMEOUT_S)  # fmt: skip
                if answer.status_code != 200:
                    point.probe_errors[f"GET {answer.status_code}"] += 1
                    if answer.status_code != 429:
                        return
                    time.sleep(float(answer.headers.get("Retry-After", "1")))
                    continue
                items = answer.json()["items"]
                if items and items[0].get("stage") == STAGE:
                    point.probes.latencies_ms.append((time.perf_counter() - started) * 1000)
                    point.probes.requests += 1
                    return
                time.sleep(POLL_S)
            point.probe_errors["not visible in 10 s"] += 1
        except requests.RequestException as exc:
            point.probe_errors[type(exc).__name__] += 1

    def run_for(self, point: Point, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.probe(point)
            time.sleep(PROBE_GAP_S)


SENT = re.compile(r"^(?:sent|interrupted after) (\d+) requests in ([\d.]+) s")
STATUS = re.compile(r"(\d{3}): (\d+)")
FAILED = re.compile(r"^  (\d+) x ")


def simulators(stack: DevStack, rate: float, seconds: float, seed: int) -> list[subprocess.Popen]:
    """`siyu simulate` processes sharing ``rate``, webhooks only (no SIYU_EVENTS_TOKEN)."""
    count = max(1, math.ceil(rate / SIM_RATE))
    env = {**stack.env(), "SIYU_TENANTS": str(DEMO_TENANTS_PATH)}
    sims = []
    for i in range(count):
        argv = [sys.executable, "-m", "siyu.cli", "simulate", "--tenant", TENANT,
                "--contacts", str(SIM_CONTACTS), "--rate", f"{rate / count:.3f}",
                "--duration", f"{seconds:.1f}", "--seed", str(seed + i),
                "--url", stack.url("ingest")]  # fmt: skip
        sims.append(
            subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             stdin=subprocess.DEVNULL, text=True, preexec_fn=die_with_parent)
        )  # fmt: skip
    return sims


def collect(point: Point, sims: list[subprocess.Popen], timeout: float) -> None:
    """Wait for the simulators; add up what they sent, their rate and their failures."""
    for sim in sims:
        try:
            out, _ = sim.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            sim.kill()
            out, _ = sim.communicate()
            point.webhook_errors += 1
        in_errors = False
        for line in out.splitlines():
            if sent := SENT.match(line):
                requests_sent, elapsed = int(sent[1]), float(sent[2])
                point.webhooks += requests_sent
                point.achieved += requests_sent / elapsed if elapsed else 0.0
            elif line.startswith("HTTP status:"):
                point.webhook_errors += sum(
                    int(n) for s, n in STATUS.findall(line) if not 200 <= int(s) < 300
                )
            elif line.startswith(("errors:", "first refusals:")):
                in_errors = line.startswith("errors:")
            elif in_errors and (failed := FAILED.match(line)):
                point.webhook_errors += int(failed[1])


METRICS = {
    "batches": "siyu_consumer_batch_seconds_count",
    "batch_s": "siyu_consumer_batch_seconds_sum",
    "messages": "siyu_consumer_messages_total",
}


def segment_metrics(stack: DevStack, session: requests.Session) -> dict[str, float]:
    """The segment consumer's batch count and time and messages processed, from its /metrics."""
    found = dict.fromkeys(METRICS, 0.0)
    try:
        text = session.get(f"{stack.url('segment')}/metrics", timeout=5).text
    except requests.RequestException:
        return found
    for line in text.splitlines():
        for key, name in METRICS.items():
            if line.startswith(name) and (key != "messages" or 'outcome="processed"' in line):
                found[key] += float(line.rsplit(" ", 1)[1])
    return found


def cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies of all cores since boot, from /proc/stat."""
    fields = [float(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return sum(fields) - idle, sum(fields)


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def paced_load(port: int, rate: float, seconds: float, out: Connection) -> None:
    """A process of its own (not the prober's GIL): prepare, then send for ``seconds``."""
    prepared = wecom_requests(port, count=max(1, int(rate * seconds)))
    r = run_paced("127.0.0.1", port, prepared, rate=rate, concurrency=PACED_CONNECTIONS)
    bad = r.errors + sum(n for status, n in r.statuses.items() if status != 200)
    out.send((r.requests, bad, r.seconds))


def start_load(stack: DevStack, rate: float, seed: int) -> list:
    if LOAD == "paced":
        ours, theirs = multiprocessing.Pipe(duplex=False)
        args = (stack.ports["ingest"], rate, WARMUP_S + SECONDS, theirs)
        process = multiprocessing.get_context("fork").Process(target=paced_load, args=args)
        process.start()
        return [(process, ours)]
    return simulators(stack, rate, WARMUP_S + SECONDS, seed)


def collect_paced(point: Point, loads: list) -> None:
    for process, pipe in loads:
        if pipe.poll(60):
            answered, bad, seconds = pipe.recv()
            point.webhooks += answered
            point.webhook_errors += bad
            point.achieved += answered / seconds if seconds else 0.0
        else:
            point.webhook_errors += 1
        process.join(10)
        if process.is_alive():
            process.kill()
            process.join()


def measure(stack: DevStack, prober: Prober, rate: float, seed: int) -> Point:
    point = Point(rate)
    children_before = children_cpu_s()  # the load's processes are the only children waited for
    loads = start_load(stack, rate, seed) if rate else []
    point.processes = len(loads)
    try:
        time.sleep(WARMUP_S if loads else 0)
        before, busy_before = segment_metrics(stack, prober.session), cpu_times()
        prober.run_for(point, SECONDS)
        after, busy_after = segment_metrics(stack, prober.session), cpu_times()
        point.segment = {k: after[k] - before[k] for k in METRICS}
        busy, total = (a - b for a, b in zip(busy_after, busy_before, strict=True))
        point.machine_busy = busy / total if total else 0.0
    finally:
        if LOAD == "paced":
            collect_paced(point, loads)
        else:
            collect(point, loads, timeout=60)
    point.sim_cpu_s = children_cpu_s() - children_before
    return point


def main() -> int:
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="siyu-bench-latency-") as tmp:
        stack = DevStack(Path(tmp) / "home")
        points: list[Point] = []
        try:
            stack.start()
            prober = Prober(stack, *tokens(stack.dsn))
            warm = Point(0.0)
            prober.run_for(warm, 2.0)  # first connections, caches, the consumer's assignment
            points.append(measure(stack, prober, 0.0, 0))
            for i, rate in enumerate(RATES, 1):
                points.append(measure(stack, prober, rate, 1000 * i))
        finally:
            closed = stack.stop()
    return write(points, closed, load_before)


def write(points: list[Point], closed: bool, load_before: tuple[float, float, float]) -> int:
    load = ("`siyu simulate` (bloom's webhooks)" if LOAD == "simulate" else
            f"paced prepared WeCom callbacks (acme), {PACED_CONNECTIONS} connections")  # fmt: skip
    print(f"## Event to stage visible, under webhook load ({os.cpu_count()} cores, `siyu dev` "
          f"stack and {load} on the same machine, {SECONDS:.0f} s per point after "
          f"{WARMUP_S:.0f} s warm-up, polled every {POLL_S * 1000:.0f} ms)\n")  # fmt: skip
    print("| webhooks asked, req/s | achieved req/s | load processes | webhooks sent | samples "
          "| p50 ms | p99 ms | max ms | POST p50 ms | segment batches/s, mean ms, events each "
          "| machine CPU busy | load generator CPU, cores | errors |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for p in points:
        r = p.probes
        worst = max(r.latencies_ms, default=float("nan"))
        errors = ", ".join(f"{n} {k}" for k, n in p.probe_errors.items())
        errors = f"{p.webhook_errors} webhook" + (f"; probes: {errors}" if errors else "")
        posts = Result(latencies_ms=p.posts_ms)
        batches = p.segment.get("batches", 0.0)
        seg = (f"{batches / SECONDS:,.1f}, {1000 * p.segment['batch_s'] / batches:,.0f}, "
               f"{p.segment['messages'] / batches:,.1f}" if batches else "-")  # fmt: skip
        print(f"| {f'{p.asked:,.0f}' if p.asked else 'none (floor)'} | {p.achieved:,.0f} | "
              f"{p.processes} | {p.webhooks:,} | {r.requests} | {r.p50:,.0f} | "
              f"{r.percentile(99):,.0f} | {worst:,.0f} | {posts.p50:,.0f} | {seg} | "
              f"{p.machine_busy:.0%} | {p.sim_cpu_s / (WARMUP_S + SECONDS):.2f} | "
              f"{errors} |")  # fmt: skip
    floor = points[0].probes
    print(f"\nload average before the run {load_before[0]:.1f} (1 min) on {os.cpu_count()} "
          f"cores; stack stopped, ports closed: {'yes' if closed else 'NO'}")  # fmt: skip
    at_target = next((p for p in points if p.asked == TARGET_RATE), None)
    if at_target is not None and at_target.probes.requests:
        p99 = at_target.probes.percentile(99)
        met = "met" if p99 < TARGET_P99_MS and not at_target.errors else "NOT met"
        print(f"p99 at {TARGET_RATE:.0f} webhook req/s (achieved {at_target.achieved:,.0f}): "
              f"{p99:,.0f} ms beside {floor.percentile(99):,.0f} ms idle; target < "
              f"{TARGET_P99_MS:.0f} ms ({met})")  # fmt: skip
        label = f"at {TARGET_RATE:.0f} webhook req/s ({at_target.achieved:,.0f} achieved)"
        report.add("latency", "Event to stage visible, p99", label, p99, "no webhook load",
                   floor.percentile(99), "ms")  # fmt: skip
        report.add("latency", "Event to stage visible, p50", label, at_target.probes.p50,
                   "no webhook load", floor.p50, "ms")  # fmt: skip
    else:
        print(f"p99 at {TARGET_RATE:.0f} webhook req/s: not measured (target < "
              f"{TARGET_P99_MS:.0f} ms)")  # fmt: skip
    bad = any(p.errors or not p.probes.requests for p in points)
    return 1 if bad or not closed else 0


if __name__ == "__main__":
    sys.exit(main())
