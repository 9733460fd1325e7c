"""Outreach: audience resolution of 1M contacts with caps and policies; deliveries/s to the fake.

Resolution: a 1:1 campaign whose audience is a segment of 1M contacts (a tenth of them already
exposed this week, some no longer WeCom contacts, B2B buyers in Comparison facing a promotion)
is planned through ``services.outreach.plan`` (SQL filters, exposures joined, every recipient
decided by the pure policies), beside the bare streaming ``SELECT`` of the same rows in the same
run. Target: < 10 s.

Deliveries: an OA template campaign (one API call per person) and a WeCom 1:1 mass message (one
call per 10,000 customers) sent by the executor to ``siyu fake-wechat`` on loopback, beside the
raw rate of the same OA endpoint called in a loop with one HTTP session.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests
from psycopg.types.json import Jsonb
from werkzeug.serving import make_server

from bench import report
from sandbox.fake_wechat import FakeConfig, FakeState, create_app
from services.outreach.clients import Clients
from services.outreach.plan import Campaign, plan
from services.outreach.policies import Tally
from services.outreach.runs import Executor
from shared.config import Settings
from shared.db import create_pool
from shared.devstack.ports import free_port
from shared.devstack.postgres import EmbeddedPostgres
from shared.migrations import migrate_service
from shared.tenants import DEMO_SECRETS, DEMO_TENANTS_PATH, load_tenants
from shared.vocabulary import BUILTIN_STAGES

CONTACTS = int(os.environ.get("BENCH_OUTREACH_CONTACTS", "1000000"))
SENDS = int(os.environ.get("BENCH_OUTREACH_SENDS", "400"))
NOW = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)

POPULATE = """
INSERT INTO audience (tenant_id, contact_id, mode, stage, role, account_id, account_stage,
    segments, openids, external_userids, oa_follower, wecom_contact, updated_at)
SELECT 'acme', 'c' || lpad(i::text, 8, '0'), CASE WHEN i %% 4 = 0 THEN 'b2c' ELSE 'b2b' END,
    (ARRAY['attention', 'interest', 'search', 'comparison', 'examination', 'action'])[1 + i %% 6],
    (ARRAY['technical', 'finance', 'procurement', 'business'])[1 + i %% 4],
    'acct' || (i %% 20000), (ARRAY['interest', 'comparison', 'action'])[1 + i %% 3],
    CASE WHEN i %% 2 = 0 THEN ARRAY['newsletter', 'webinar'] ELSE ARRAY['newsletter'] END,
    ARRAY['o' || i], ARRAY['wm' || i], i %% 50 <> 0, i %% 40 <> 0, %(now)s
FROM generate_series(1, %(n)s) AS i
"""
EXPOSE = """
INSERT INTO exposures (tenant_id, subject_kind, subject_id, channel, delivery_id, at)
SELECT 'acme', 'contact', 'c' || lpad(i::text, 8, '0'), 'wecom_group', i, %(at)s
FROM generate_series(1, %(n)s, 10) AS i
"""


def resolution(pool) -> tuple[float, float, dict]:
    campaign = Campaign("acme", "cmp_bench", "wecom_single", {"segments": ["newsletter"]},
                        {"item": "cnt_promo"}, {"schedule": {"cron": "0 10 * * 2"}}, None,
                        False, "active")  # fmt: skip
    with pool.connection() as conn:
        t0 = time.perf_counter()
        with conn.cursor(name="raw") as cursor:
            cursor.itersize = 5000
            cursor.execute(
                "SELECT contact_id, stage, external_userids[1] FROM audience "
                "WHERE tenant_id = 'acme' AND segments && ARRAY['newsletter']"
            )
            raw_rows = sum(1 for _ in cursor)
        raw_s = time.perf_counter() - t0
    with pool.connection() as conn:
        t0 = time.perf_counter()
        tally = Tally()
        for recipient, decision in plan(conn, campaign, NOW):
            tally.add(recipient, decision)
        plan_s = time.perf_counter() - t0
    result = tally.result()
    assert result["recipients"] == raw_rows, (result, raw_rows)
    return raw_s, plan_s, result


def start_fake(contacts: int):
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    # The platform's per-minute limits would cap the measurement, not the code under test.
    state = FakeState.from_tenants(
        load_tenants(DEMO_TENANTS_PATH),
        contacts=contacts,
        secret_defaults=DEMO_SECRETS,
        config=FakeConfig(rate_limit=10**9),
    )
    server = make_server("127.0.0.1", 0, create_app(state), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return state, server, f"http://127.0.0.1:{server.server_port}"


def delivery_rates(dsn: str) -> dict[str, float]:
    state, server, base = start_fake(SENDS)
    app_id = next(iter(state.apps))
    openids = [o for o in state.followers[app_id]][:SENDS]
    externals = sorted(state.worlds[next(iter(state.worlds))].contacts)[:SENDS]
    try:
        raw = _raw_template_rate(base, app_id, openids)
        settings = Settings.from_env({
            "SIYU_DATABASE_URL": dsn, "SIYU_WECOM_API_BASE": f"{base}/wecom/cgi-bin/",
            "SIYU_WECHAT_API_BASE": f"{base}/oa/cgi-bin/", "SIYU_WECOM_RATE": "100000",
            "SIYU_TENANTS": str(DEMO_TENANTS_PATH),
        })  # fmt: skip
        for key, value in DEMO_SECRETS.items():
            os.environ.setdefault(key, value)
        clients = Clients(settings, load_tenants(DEMO_TENANTS_PATH))
        pool = create_pool(dsn, name="bench-send", schema="outreach", max_size=4)
        rates = {"raw OA template/send calls (baseline)": raw}
        for channel, ids in (("oa_template", openids), ("wecom_single", externals)):
            rates[f"siyu outreach {channel}"] = _send(pool, clients, channel, ids)
        pool.close()
        return rates
    finally:
        server.shutdown()


def _raw_template_rate(base: str, app_id: str, openids: list[str]) -> float:
    http = requests.Session()
    token = http.post(f"{base}/oa/cgi-bin/stable_token", json={
        "grant_type": "client_credential", "appid": app_id,
        "secret": DEMO_SECRETS["ACME_OA_SECRET"]}).json()["access_token"]  # fmt: skip
    t0 = time.perf_counter()
    for i, openid in enumerate(openids):
        body = {"touser": openid, "template_id": "TPL", "data": {"first": {"value": "x"}},
                "client_msg_id": f"raw-{i}"}  # fmt: skip
        assert (
            http.post(
                f"{base}/oa/cgi-bin/message/template/send",
                params={"access_token": token},
                json=body,
            ).json()["errcode"]
            == 0
        )
    return len(openids) / (time.perf_counter() - t0)


def _send(pool, clients: Clients, channel: str, ids: list[str]) -> float:
    column = "openids" if channel.startswith("oa") else "external_userids"
    campaign_id = f"cmp_{channel}"
    with pool.connection() as conn, conn.transaction():
        conn.execute("DELETE FROM exposures")
        conn.execute(
            f"UPDATE audience SET segments = '{{}}', {column} = ARRAY[v] FROM "  # noqa: S608
            "unnest(%s::text[]) WITH ORDINALITY AS u(v, n) "
            "WHERE contact_id = 'c' || lpad(n::text, 8, '0')",
            (ids,),
        )
        conn.execute(
            "UPDATE audience SET segments = ARRAY[%s], oa_follower = true, wecom_contact = true, "
            "mode = 'b2c' WHERE contact_id <= %s",
            (campaign_id, "c" + str(len(ids)).rjust(8, "0")),
        )
        conn.execute(
            "INSERT INTO content (tenant_id, content_id, title, format, promotional, payloads) "
            # A service notice: the one format oa_template may carry (docs/platform.md).
            "VALUES ('acme', 'cnt_article', '白皮书', 'service_notice', false, %s) "
            "ON CONFLICT DO NOTHING",
            (Jsonb({"wecom": {"text": "白皮书"}, "oa_template": {"template_id": "TPL",
                    "data": {"first": {"value": "白皮书"}}}}),),
        )  # fmt: skip
        conn.execute(
            "INSERT INTO campaigns (tenant_id, campaign_id, name, channel, status, audience, "
            "content, trigger, launched_at) VALUES ('acme', %s, 'bench', %s, 'active', %s, %s, "
            "%s, %s)",
            (campaign_id, channel, Jsonb({"segments": [campaign_id]}),
             Jsonb({"item": "cnt_article"}), Jsonb({"schedule": {"cron": "0 10 * * 2"}}),
             NOW - timedelta(days=1)),
        )  # fmt: skip
        conn.execute(
            "INSERT INTO campaign_runs (tenant_id, campaign_id, trigger_key, due_at) "
            "VALUES ('acme', %s, 'bench', %s)",
            (campaign_id, NOW),
        )
    executor = Executor(pool, clients, clock=lambda: NOW)
    t0 = time.perf_counter()
    executor.run_due()
    elapsed = time.perf_counter() - t0
    with pool.connection() as conn:
        sent = conn.execute(
            "SELECT count(*) AS n FROM deliveries WHERE campaign_id = %s AND status = 'sent'",
            (campaign_id,),
        ).fetchone()["n"]
    assert sent == len(ids), (channel, sent, len(ids))
    return sent / elapsed


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="siyu-bench-out-") as tmp:
        postgres = EmbeddedPostgres(Path(tmp) / "pg", port=free_port()).start()
        try:
            return run(postgres.dsn)
        finally:
            postgres.stop()


def run(dsn: str) -> int:
    migrate_service(dsn, "outreach")
    pool = create_pool(dsn, name="bench-outreach", schema="outreach", max_size=2)
    with pool.connection() as conn, conn.transaction():
        conn.execute("INSERT INTO tenants (tenant_id, name, mode, lifecycle_model) "
                     "VALUES ('acme', 'ACME', 'b2b', 'aisceas')")  # fmt: skip
        conn.execute(
            "INSERT INTO content (tenant_id, content_id, title, format, promotional, payloads) "
            "VALUES ('acme', 'cnt_promo', '年终大促', 'promotion', true, %s)",
            (Jsonb({"wecom": {"text": "8折"}}),),
        )
        # What segment publishes for acme (siyu.catalogue.v1): the guard's evaluating stages.
        conn.execute(
            "INSERT INTO catalogue (tenant_id, model, model_builtin, stages, side_stages, "
            "stage_flags, segments, published_at) VALUES ('acme', 'aisceas', true, %s, "
            "ARRAY['lapsed'], %s, '[]', now())",
            (list(BUILTIN_STAGES["aisceas"]),
             Jsonb({"comparison": ["evaluating"], "examination": ["evaluating"]})),
        )  # fmt: skip
        t0 = time.perf_counter()
        conn.execute(POPULATE, {"n": CONTACTS, "now": NOW})
        conn.execute(EXPOSE, {"n": CONTACTS, "at": NOW - timedelta(hours=3)})
    with pool.connection() as conn:
        conn.execute("ANALYZE audience")
        conn.execute("ANALYZE exposures")
    setup_s = time.perf_counter() - t0
    raw_s, plan_s, result = resolution(pool)
    pool.close()
    rates = delivery_rates(dsn)

    report.add("outreach", "Audience resolution, 1M contacts", "siyu plan", plan_s,
               "bare streaming SELECT", raw_s, "s")  # fmt: skip
    raw_rate = rates["raw OA template/send calls (baseline)"]
    template_rate = rates["siyu outreach oa_template"]
    report.add("outreach", "OA template deliveries", "siyu outreach", template_rate,
               "raw endpoint loop", raw_rate, "per s")  # fmt: skip
    print(f"## Outreach ({os.cpu_count()} cores, {CONTACTS:,} contacts; setup {setup_s:.1f} s)\n")
    print("| audience resolution | seconds |")
    print("|---|---:|")
    print(f"| bare streaming SELECT of the segment (baseline) | {raw_s:.1f} |")
    print(f"| siyu plan: filters, exposures, policies per recipient | {plan_s:.1f} |")
    print(f"\n{result['recipients']:,} recipients: {result['to_send']:,} to send, excluded "
          f"{result['excluded']}; ratio plan/bare {plan_s / raw_s:.1f}x; target < 10 s "
          f"({'met' if plan_s < 10 else 'NOT met'})\n")  # fmt: skip
    print("| deliveries to the fake platform (loopback) | per second |")
    print("|---|---:|")
    for name, rate in rates.items():
        print(f"| {name} | {rate:,.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
