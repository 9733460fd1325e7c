"""What the campaign pages' tests need around the console app (tests/integration/console/
conftest.py ``build``): acme's audience as the segment service projects it into outreach, its
catalogue's segments, content items made through the JSON API, and the worker's parts
(scheduler, executor) at a clock the test sets - the helpers of tests/integration/outreach/
conftest.py (``Outreach``), on the console's app and pool."""

from __future__ import annotations

from datetime import UTC, datetime

from services.outreach.clients import Clients
from services.outreach.schedule import next_due, parsed_schedule
from shared.tenants import DEMO_SECRETS
from tests.fake_wecom import FakeWeCom
from tests.integration.api.conftest import Api, issue_tokens
from tests.integration.outreach.conftest import TENANTS, Outreach

SEGMENT = "seg_buyers"


def fake_platform(monkeypatch) -> tuple[FakeWeCom, dict[str, str]]:
    """The fake WeCom/OA started, and the settings that point the app's clients at it."""
    for key, value in DEMO_SECRETS.items():
        monkeypatch.setenv(key, value)
    fake = FakeWeCom(TENANTS, DEMO_SECRETS, contacts=12).start()
    env = {"SIYU_WECOM_API_BASE": fake.base_url, "SIYU_WECHAT_API_BASE": fake.oa_base_url,
           "SIYU_WECOM_RATE": "1000"}  # fmt: skip
    return fake, env


def world(console, fake: FakeWeCom | None = None) -> Outreach:
    """The outreach helpers on the console's app: API tokens of every role, acme's clients."""
    api = Api(console.app.test_client(), console.app, console.pool, console.schema)
    issue_tokens(api)
    settings = console.app.extensions["siyu.api"].settings
    clients = Clients(settings, TENANTS) if fake is not None else None
    return Outreach(api, console.pool, fake, clients, settings, now=datetime.now(UTC))


def audience(outreach: Outreach, n: int = 3) -> list[str]:
    """n of the fake's WeCom customers projected as acme contacts in SEGMENT (interest stage),
    or n made-up ones without a fake; their contact ids."""
    if outreach.fake is not None:
        people = [ext for ext, _ in outreach.customers(n)]
    else:
        people = [f"wmTest{i}" for i in range(n)]
    ids = []
    for ext in people:
        outreach.profile(f"c_{ext}", ext=ext, segments=[SEGMENT])
        ids.append(f"c_{ext}")
    return ids


def first_slot(console, campaign_id: str) -> datetime:
    """A launched campaign's first scheduled time (the scheduler's own next_due)."""
    (row,) = console.sql(
        "SELECT c.trigger, c.scheduled_until, t.timezone FROM campaigns c "
        "JOIN tenants t USING (tenant_id) WHERE c.campaign_id = %s",
        (campaign_id,),
    )
    schedule = parsed_schedule(row["trigger"]["schedule"])
    return next_due(schedule, row["timezone"], row["scheduled_until"])
