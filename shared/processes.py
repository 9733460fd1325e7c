"""Every Siyu process (ARCHITECTURE.md) and whether this build contains it.

`siyu dev` starts the built ones; a command whose service is not built exits with a clear message.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass


@dataclass(frozen=True)
class Process:
    name: str
    argv: tuple[str, ...]  # arguments after `siyu`
    module: str  # the module that implements it; absent means not built yet
    url: str | None
    what: str

    @property
    def built(self) -> bool:
        try:
            return importlib.util.find_spec(self.module) is not None
        except ModuleNotFoundError:
            return False


PROCESSES = (
    Process(
        "fake-wechat",
        ("fake-wechat",),
        "services.outreach.fake_wechat",
        "http://127.0.0.1:8099",
        "fake WeChat/WeCom API",
    ),
    Process(
        "ingest",
        ("ingest", "serve"),
        "services.ingest.server",
        "http://127.0.0.1:8080",
        "webhooks, business events, tracked links",
    ),
    Process(
        "segment",
        ("segment", "consume"),
        "services.segment.consumer",
        "http://127.0.0.1:9101/metrics",
        "segment consumer",
    ),
    Process(
        "outreach",
        ("outreach", "worker"),
        "services.outreach.worker",
        "http://127.0.0.1:9102/metrics",
        "outreach scheduler and sender",
    ),
    Process("api", ("api", "serve"), "services.api", "http://127.0.0.1:8090/api/v1", "admin API"),
)


def by_name(name: str) -> Process:
    return next(p for p in PROCESSES if p.name == name)


# One-shot commands that belong to a service, checked the same way.
SIMULATE = Process(
    "simulate", ("simulate",), "services.ingest.simulator", None, "traffic simulator"
)
INGEST_TOKEN_CREATE = Process(
    "ingest-token",
    ("ingest", "token", "create"),
    "services.ingest.tokens",
    None,
    "event API tokens",
)
TOKEN_CREATE = Process(
    "token", ("token", "create"), "services.outreach.tokens", None, "admin API token store"
)
