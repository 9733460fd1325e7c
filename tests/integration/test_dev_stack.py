"""`siyu dev` end to end: start, serve, stop cleanly, start again with the data kept."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from kafka import KafkaAdminClient

from shared.devstack.ports import free_port, port_open
from shared.kafka.topics import TOPICS

pytestmark = pytest.mark.integration


def start_dev(
    home: Path, pg_port: int, kafka_port: int
) -> tuple[subprocess.Popen, list[str], float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIYU_")}
    started = time.monotonic()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "shared.cli",
            "dev",
            "--home",
            str(home),
            "--pg-port",
            str(pg_port),
            "--kafka-port",
            str(kafka_port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
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


def test_dev_starts_stops_cleanly_and_keeps_data(tmp_path):
    home = tmp_path / "siyu-home"
    pg_port, kafka_port = free_port(), free_port()
    dsn = f"postgresql://postgres@127.0.0.1:{pg_port}/siyu"

    process, lines, seconds = start_dev(home, pg_port, kafka_port)
    try:
        output = "".join(lines)
        assert f"127.0.0.1:{pg_port}" in output and f"127.0.0.1:{kafka_port}" in output
        assert "acme (b2b, aisceas), bloom (b2c, aarrr)" in output
        with psycopg.connect(dsn, autocommit=True) as conn:
            schemas = {r[0] for r in conn.execute("SELECT nspname FROM pg_namespace")}
            assert {"ingest", "segment", "outreach"} <= schemas
            conn.execute("CREATE TABLE public.kept (note text)")
            conn.execute("INSERT INTO public.kept VALUES ('survives a restart')")
        admin = KafkaAdminClient(bootstrap_servers=f"127.0.0.1:{kafka_port}")
        assert {t.name for t in TOPICS} <= set(admin.list_topics())
        admin.close()
    finally:
        rest = stop_dev(process, signal.SIGINT)
    assert process.returncode == 0, rest
    assert "stopped" in rest
    assert not port_open("127.0.0.1", pg_port) and not port_open("127.0.0.1", kafka_port)
    assert not (home / "broker.pid").exists()
    assert not (home / "pg" / "postmaster.pid").exists()

    # Second start: nothing stale blocks it, and the data is still there.
    process, _, seconds_again = start_dev(home, pg_port, kafka_port)
    try:
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT note FROM public.kept").fetchall() == [
                ("survives a restart",)
            ]
    finally:
        stop_dev(process, signal.SIGTERM)
    assert process.returncode == 0
    assert not port_open("127.0.0.1", pg_port) and not port_open("127.0.0.1", kafka_port)
    print(f"siyu dev ready in {seconds:.1f}s (first start), {seconds_again:.1f}s (restart)")


def test_dev_recovers_from_a_killed_run(tmp_path):
    """SIGKILL leaves a broker and a postmaster behind; the next start reaps them."""
    home = tmp_path / "siyu-home"
    pg_port, kafka_port = free_port(), free_port()
    process, _, _ = start_dev(home, pg_port, kafka_port)
    process.kill()
    process.wait(10)
    assert port_open("127.0.0.1", kafka_port)  # orphaned broker still listening

    process, lines, _ = start_dev(home, pg_port, kafka_port)
    stop_dev(process, signal.SIGINT)
    assert process.returncode == 0, "".join(lines)
    assert not port_open("127.0.0.1", pg_port) and not port_open("127.0.0.1", kafka_port)
