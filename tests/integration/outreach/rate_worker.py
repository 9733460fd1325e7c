"""A worker process for the shared rate limit test: python -m tests.integration.outreach.rate_worker SECONDS.

Builds the tenants' clients exactly as `siyu outreach worker` does (its settings from the
environment, its pool in the outreach schema, Clients with that pool), then calls WeCom as fast
as the limiter lets it for SECONDS; prints how many calls it made and how many were refused.
"""

from __future__ import annotations

import sys
import time

from services.outreach.clients import Clients
from shared.config import Settings
from shared.db import create_pool
from shared.tenants import load_tenants
from shared.wechat import WeComError


def main(seconds: str) -> int:
    settings = Settings.from_env()
    pool = create_pool(
        settings.require_database(), name="rate-worker", schema=settings.outreach_schema
    )
    client = Clients(settings, load_tenants(settings.tenants_path), pool=pool).wecom("acme")
    calls = refused = 0
    deadline = time.monotonic() + float(seconds)
    while time.monotonic() < deadline:
        try:
            client.list_group_chats()
            calls += 1
        except WeComError as exc:
            print(f"refused: {exc}", file=sys.stderr)
            refused += 1
    pool.close()
    print(f"{calls} {refused}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
