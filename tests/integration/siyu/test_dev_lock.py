"""One `siyu dev` per home: a second start refuses and leaves the first running; "ready" means
ingest and the API answer; the token commands find the running stack's database (issue 13).

One stack runs for the whole module (started from a working folder, home `.siyu` by default,
as `make run` does); the test of a second start comes last, since before the lock it broke the
first stack.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from shared.devstack.ports import free_port, port_open
from tests.integration.siyu.test_dev_stack import Ports, get, stop_dev


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SIYU_")}


def siyu(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "siyu.cli", *args],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def dev_argv(ports: Ports, outreach: int) -> list[str]:
    return [sys.executable, "-m", "siyu.cli", "dev",
            "--pg-port", str(ports.pg), "--kafka-port", str(ports.kafka),
            "--port", f"ingest={ports.ingest}", "--port", f"segment={ports.segment}",
            "--port", f"api={ports.api}", "--port", f"fake-wechat={ports.fake_wechat}",
            "--port", f"outreach={outreach}"]  # fmt: skip


@dataclass
class RunningDev:
    process: subprocess.Popen
    output: str  # up to the "ready" line
    cwd: Path
    ports: Ports
    outreach_port: int

    @property
    def home(self) -> Path:
        return self.cwd / ".siyu"

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.ports.pg}/siyu"


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("workdir")
    ports, outreach_port = Ports.free(), free_port()
    process = subprocess.Popen(
        dev_argv(ports, outreach_port), cwd=cwd, env=clean_env(),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: list[str] = []
    for line in process.stdout:
        lines.append(line)
        if "ready in" in line:
            break
    else:
        process.wait(10)
        raise AssertionError("siyu dev did not become ready:\n" + "".join(lines))
    dev = RunningDev(process, "".join(lines), cwd, ports, outreach_port)
    try:
        yield dev
    finally:
        rest = stop_dev(process, signal.SIGINT)
    assert process.returncode == 0, rest
    assert ports.all_closed()
    assert not (dev.home / "dev.lock").exists()


def test_dev_says_the_embedded_broker_keeps_data_in_memory_and_how_to_use_a_real_kafka(running):
    assert "keeps messages in memory only" in running.output
    assert "lost when it stops" in running.output
    assert "SIYU_KAFKA_BOOTSTRAP" in running.output


def test_ready_means_ingest_and_the_api_accept_requests(running):
    # Asked the moment "ready" is printed, without waiting.
    assert get(f"http://127.0.0.1:{running.ports.ingest}/readyz")[0] == 200
    assert get(f"http://127.0.0.1:{running.ports.api}/readyz")[0] == 200


def test_token_commands_use_the_database_of_the_running_dev_stack(running):
    ingest = siyu("ingest", "token", "create", "--tenant", "acme", "--name", "crm", cwd=running.cwd)
    assert ingest.returncode == 0, ingest.stderr
    admin = siyu("token", "create", "--tenant", "acme", "--role", "admin", cwd=running.cwd)
    assert admin.returncode == 0, admin.stderr
    for result in (ingest, admin):
        # The token alone on stdout (scripts capture it); where it was stored on stderr.
        assert len(result.stdout.split()) == 1
        assert f"siyu dev stack running in {running.home}" in result.stderr
        assert f"pid {running.process.pid}" in result.stderr
        assert running.dsn in result.stderr
    with psycopg.connect(running.dsn) as conn:
        assert conn.execute("SELECT count(*) FROM ingest.api_tokens").fetchone()[0] == 1
    # The admin token works against the stack's API.
    status, _ = get_with_token(
        f"http://127.0.0.1:{running.ports.api}/api/v1/me", admin.stdout.strip()
    )
    assert status == 200


def get_with_token(url: str, token: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback only
        return response.status, response.read()


def test_token_commands_without_a_running_stack_name_the_variable_and_an_example(tmp_path):
    # A lock file whose owner has died (a SIGKILLed `siyu dev`) is not a running stack.
    home = tmp_path / ".siyu"
    home.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    (home / "dev.lock").write_text(
        f'{{"pid": {dead.pid}, "home": "{home}", "database_url": "postgresql://nowhere/siyu"}}'
    )
    for argv in (["ingest", "token", "create", "--tenant", "acme"], ["token", "create"]):
        result = siyu(*argv, cwd=tmp_path)
        assert result.returncode == 1
        assert "SIYU_DATABASE_URL is not set" in result.stderr
        assert "export SIYU_DATABASE_URL=postgresql://postgres@127.0.0.1:5433/siyu" in (
            result.stderr
        )
        assert f"no siyu dev runs in {home}" in result.stderr


def test_a_second_dev_on_the_same_home_refuses_and_leaves_the_first_running(running):
    started = time.monotonic()
    second = subprocess.run(
        dev_argv(running.ports, running.outreach_port), cwd=running.cwd, env=clean_env(),
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    output = second.stdout + second.stderr
    assert second.returncode == 1, output
    assert time.monotonic() - started < 15
    assert "ready" not in second.stdout
    # Where the running stack is and how to stop it.
    pid = running.process.pid
    for fact in (
        f"siyu dev is already running in {running.home} (pid {pid}",
        f"127.0.0.1:{running.ports.pg}",
        f"127.0.0.1:{running.ports.kafka}",
        f"http://127.0.0.1:{running.ports.ingest}",
        f"http://127.0.0.1:{running.ports.api}/api/v1",
        f"kill {pid}",
    ):
        assert fact in output, output

    # The first stack was not touched: its processes, servers and lock are as they were.
    assert running.process.poll() is None
    assert port_open("127.0.0.1", running.ports.kafka)
    with psycopg.connect(running.dsn, connect_timeout=5) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert get(f"http://127.0.0.1:{running.ports.ingest}/readyz")[0] == 200
    assert get(f"http://127.0.0.1:{running.ports.api}/readyz")[0] == 200
    assert f'"pid": {pid}' in (running.home / "dev.lock").read_text()
