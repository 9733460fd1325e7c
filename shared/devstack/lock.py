"""One `siyu dev` per home: the lock file `<home>/dev.lock` and what it says about the stack.

The owner holds an exclusive flock on the file for as long as it runs; the kernel drops it when
the process dies, even by SIGKILL, so a second start knows for sure whether the first one lives
and reaps leftovers (PostgreSQL, broker) only of a dead one. The file names the owner's pid, its
database and its URLs: for the refusal message, and for commands such as `siyu token create` that
need the running stack's database.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from shared.errors import SiyuError

LOCK_FILE = "dev.lock"


@dataclass(frozen=True)
class DevStackInfo:
    pid: int
    home: str
    started_at: str = ""
    database_url: str = ""
    kafka_bootstrap: str = ""
    urls: dict[str, str] = field(default_factory=dict)  # process name -> URL
    tenants: str = ""  # its tenants file: the token commands and `siyu simulate` beside it use it

    def where(self) -> str:
        lines = [
            f"  PostgreSQL  {self.database_url}",
            f"  Kafka       {self.kafka_bootstrap}",
            *(f"  {name:<11} {url}" for name, url in self.urls.items()),
        ]
        return "\n".join(lines)

    @classmethod
    def parse(cls, text: str) -> DevStackInfo | None:
        """None for an empty or foreign file (an owner that has not written it yet)."""
        try:
            data = json.loads(text)
            return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        except (ValueError, TypeError):
            return None


class StackRunning(SiyuError):
    code = "dev_stack_running"

    def __init__(self, home: Path, owner: DevStackInfo | None):
        if owner is None:  # the owner has taken the lock but not written it yet
            message = f"siyu dev is already running in {home} (it is starting)"
        else:
            message = (
                f"siyu dev is already running in {home} (pid {owner.pid}, since "
                f"{owner.started_at}):\n{owner.where()}\n"
                f"Stop it with Ctrl-C in its terminal or `kill {owner.pid}`; or start a second "
                "stack with its own --home and ports (--pg-port, --kafka-port, --port NAME=PORT)."
            )
        super().__init__(message)
        self.owner = owner


class DevLock:
    def __init__(self, home: Path):
        self.home = Path(home).resolve()
        self.path = self.home / LOCK_FILE
        self._fd: int | None = None

    def acquire(self, info: DevStackInfo) -> None:
        """Take the home or raise StackRunning naming the live owner."""
        self.home.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)  # 0600: it holds the DSN
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise StackRunning(self.home, read_info(self.path)) from None
            # The previous owner may have unlinked the file between our open and our flock:
            # then we hold a lock on a name nobody sees; start over on the current file.
            with contextlib.suppress(FileNotFoundError):
                if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                    break
            os.close(fd)
        self._fd = fd
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(asdict(info), indent=1).encode())

    def release(self) -> None:
        if self._fd is None:
            return
        # Unlink while still holding the lock, so a starter never takes a file we are removing.
        self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None


def read_info(path: Path) -> DevStackInfo | None:
    try:
        return DevStackInfo.parse(path.read_text())
    except OSError:
        return None


def running_stack(home: Path) -> DevStackInfo | None:
    """The stack running in ``home``, or None (no lock file, or its owner has died)."""
    info = read_info(Path(home).resolve() / LOCK_FILE)
    if info is None or not _alive(info.pid):
        return None
    return info


def _alive(pid: int) -> bool:
    # Readers do not take the flock (a brief shared lock would make a concurrent start refuse);
    # a signal 0 says whether the pid exists. A SIGKILLed owner's pid could in theory be reused
    # by then; the next `siyu dev` rewrites the file anyway.
    if pid <= 0:  # 0 and negatives address process groups
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True
