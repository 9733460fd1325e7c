"""Every Siyu process (docs/architecture.md, "Processes"): its command, port and what it does.

`siyu dev` starts the long-running ones (``PROCESSES``); the CLI runs each through its
service's ``main`` (siyu/cli.py).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Process:
    name: str
    argv: tuple[str, ...]  # arguments after `siyu`
    what: str
    port: int | None = None  # default port (HTTP, or metrics for consumers)
    port_flag: str = "--port"
    path: str = ""  # shown after the URL
    # Handles people's data or their keyed hashes: refuses to start without SIYU_PRIVACY_KEY,
    # which every such process of a deployment must share (shared/privacy.py).
    personal: bool = False

    def url(self, port: int | None = None) -> str | None:
        port = port or self.port
        return f"http://127.0.0.1:{port}{self.path}" if port else None


PROCESSES = (
    Process(
        "fake-wechat", ("fake-wechat",), "fake WeChat/WeCom API (sandbox)",
        8099,
    ),
    Process(
        "ingest", ("ingest", "serve"),
        "webhooks, business events, tracked links", 8080, personal=True,
    ),
    Process(
        "ingest-erasures", ("ingest", "erasures"),
        "forgets erased people (keys, outbox)", 9103, "--metrics-port", "/metrics", personal=True,
    ),
    Process(
        "segment", ("segment", "consume"), "segment consumer", 9101,
        "--metrics-port", "/metrics", personal=True,
    ),
    Process(
        "outreach", ("outreach", "worker"),
        "outreach scheduler and sender", 9102, "--metrics-port", "/metrics", personal=True,
    ),
    Process("api", ("api", "serve"), "admin API", 8090, path="/api/v1",
            personal=True),
)  # fmt: skip


def by_name(name: str) -> Process:
    return next(p for p in PROCESSES if p.name == name)


# One-shot commands that belong to a service.
SIMULATE = Process("simulate", ("simulate",), "traffic simulator (sandbox)")
INGEST_TOKEN_CREATE = Process("ingest-token", ("ingest", "token", "create"), "event API tokens")
SEGMENT_RECOMPUTE = Process("segment-recompute", ("segment", "recompute"), "recompute")
CONTACT_ERASE = Process(
    "contact-erase",
    ("contact", "erase"),
    "erasure of a person",
    personal=True,
)
TOKEN_CREATE = Process("token", ("token", "create"), "admin API token store")
USER_CREATE = Process("user", ("user", "create"), "console users")
