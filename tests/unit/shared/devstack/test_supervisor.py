from __future__ import annotations

import io
import os
import sys
import time

from shared.devstack.supervisor import ChildSpec, Supervisor
from tests.kafka_helpers import wait_until

PRINT_AND_WAIT = (
    "import sys, time, subprocess\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
    "print('grandchild', child.pid, flush=True)\n"
    "time.sleep(60)\n"
)
IGNORE_TERM = (
    "import signal, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('stubborn', flush=True)\n"
    "time.sleep(60)\n"
)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose.
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"


def wait_for(text: str, out: io.StringIO, timeout: float = 10) -> str:
    wait_until(lambda: text in out.getvalue(), timeout=timeout, interval=0.02,
               message=lambda: f"{text!r} in the output: {out.getvalue()!r}")  # fmt: skip
    return out.getvalue()


def test_children_output_is_prefixed_and_whole_groups_are_stopped():
    out = io.StringIO()
    supervisor = Supervisor(out=out)
    child = supervisor.start(
        ChildSpec("worker", [sys.executable, "-c", PRINT_AND_WAIT]), dict(os.environ)
    )
    text = wait_for("grandchild", out)
    line = next(ln for ln in text.splitlines() if "grandchild" in ln)
    assert line.startswith("worker    | grandchild ")
    grandchild = int(line.split()[-1])

    supervisor.stop_all(timeout=5)
    assert child.process.poll() is not None
    wait_until(lambda: not alive(grandchild), timeout=5, interval=0.02,
               message="the grandchild to be stopped with its group (orphaned?)")  # fmt: skip


def test_a_child_that_ignores_sigterm_is_killed():
    out = io.StringIO()
    supervisor = Supervisor(out=out)
    child = supervisor.start(
        ChildSpec("stubborn", [sys.executable, "-c", IGNORE_TERM]), dict(os.environ)
    )
    wait_for("stubborn", out)
    started = time.monotonic()
    supervisor.stop_all(timeout=1)
    assert child.process.returncode == -9
    assert time.monotonic() - started < 5
    assert "did not stop in 1s; killing" in out.getvalue()


def test_exited_children_are_reported():
    supervisor = Supervisor(out=io.StringIO())
    supervisor.start(
        ChildSpec("quick", [sys.executable, "-c", "raise SystemExit(4)"]), dict(os.environ)
    )
    exited = wait_until(supervisor.exited, timeout=10, interval=0.02,
                        message="the quick child to be reported as exited")  # fmt: skip
    assert exited[0].process.returncode == 4
