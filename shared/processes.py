"""Every Siyu process (docs/architecture.md) and whether this build contains it.

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
    what: str
    port: int | None = None  # default port (HTTP, or metrics for consumers)
    port_flag: str = "--port"
    path: str = ""  # shown after the URL
    # Handles people's data or their keyed hashes: refuses to start without SIYU_PRIVACY_KEY,
    # which every such process of a deployment must share (shared/privacy.py).
    personal: bool = False

    @property
    def built(self) -> bool:
        try:
            return importlib.util.find_spec(self.module) is not None
        except ModuleNotFoundError:
            return False

    def url(self, port: int | None = None) -> str | None:
        port = port or self.port
        return f"http://127.0.0.1:{port}{self.path}" if port else None


PROCESSES = (
    Process(
        "fake-wechat", ("fake-wechat",), "services.outreach.fake_wechat", "fake WeChat/WeCom API",
        8099,
    ),
    Process(
        "ingest", ("ingest", "serve"), "services.ingest.server",
        "webhooks, business events, tracked links", 8080, personal=True,
    ),
    Process(
        "ingest-erasures", ("ingest", "erasures"), "services.ingest.erasures",
        "forgets erased people (keys, outbox)", 9103, "--metrics-port", "/metrics", personal=True,
    ),
    Process(
        "segment", ("segment", "consume"), "services.segment.consumer", "segment consumer", 9101,
        "--metrics-port", "/metrics", personal=True,
    ),
    Process(
        "outreach", ("outreach", "worker"), "services.outreach.worker",
        "outreach scheduler and sender", 9102, "--metrics-port", "/metrics", personal=True,
    ),
    Process("api", ("api", "serve"), "services.api", "admin API", 8090, path="/api/v1",
            personal=True),
)  # fmt: skip


def by_name(name: str) -> Process:
    return next(p for p in PROCESSES if p.name == name)


# One-shot commands that belong to a service, checked the same way.
SIMULATE = Process("simulate", ("simulate",), "services.ingest.simulator", "traffic simulator")
INGEST_TOKEN_CREATE = Process(
    "ingest-token", ("ingest", "token", "create"), "services.ingest.tokens", "event API tokens"
)
SEGMENT_RECOMPUTE = Process(
    "segment-recompute", ("segment", "recompute"), "services.segment.recompute", "recompute"
)
CONTACT_ERASE = Process(
    "contact-erase",
    ("contact", "erase"),
    "services.segment.erasure",
    "erasure of a person",
    personal=True,
)
TOKEN_CREATE = Process(
    "token", ("token", "create"), "services.outreach.tokens", "admin API token store"
)
