"""The effect report's pages (docs/console.md "Effect report"): the wizard's holdout field (saved
through the API's own ``create``, refused inline), a campaign's report with treated against
holdout, the uplift and its interval and the verdict in Chinese, "sample too small" when it is,
the N-day window checked, another tenant's campaign a 404, and the CSV (BOM, Chinese, no
formulas)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest

from tests.integration.console.campaign_world import SEGMENT, world
from tests.integration.console.conftest import csrf
from tests.integration.console.test_campaigns import logged_in, page


@pytest.fixture
def desk(console):
    outreach = world(console)
    outreach.publish_segments(SEGMENT)
    return outreach


def wizard(content_id: str, **changes) -> dict:
    form = {"name": "保养提醒", "segments": [SEGMENT], "content_kind": "item", "item": content_id,
            "channel": "wecom_single", "trigger_kind": "schedule", "schedule_kind": "weekly",
            "time": "10:00", "weekdays": ["TUE"]}  # fmt: skip
    form.update(changes)
    return form


def create(client, form: dict):
    return client.post(
        "/campaigns/new", data={**form, "csrf_token": csrf(client, "/campaigns/new")}
    )


def seed(console, campaign_id: str, item: str, treated: tuple[int, int],
         holdout: tuple[int, int]) -> None:  # fmt: skip
    """A run of the campaign: ``treated`` = (contacts sent to, of them advanced within a week),
    ``holdout`` likewise, and a click of the first treated contact."""
    at = datetime.now(UTC) - timedelta(days=20)
    with console.pool.connection() as conn:
        _seed(conn, campaign_id, item, treated, holdout, at)


def _seed(conn, campaign_id, item, treated, holdout, at) -> None:
    run = conn.execute(
        "INSERT INTO campaign_runs (tenant_id, campaign_id, trigger_key, due_at, status) "
        "VALUES ('acme', %s, 'at:seed', %s, 'done') RETURNING run_id", (campaign_id, at)
    ).fetchone()  # fmt: skip
    rows = []
    for arm, (n, advanced) in (("t", treated), ("h", holdout)):
        for i in range(n):
            contact = f"ct_{arm}{i:04d}"
            status, reason = ("delivered", None) if arm == "t" else ("excluded", "held_out")
            rows.append((contact, status, reason))
            if i < advanced:
                conn.execute("INSERT INTO stage_advances VALUES ('acme', %s, 'comparison', %s, "
                            "'interest', 'aisceas')", (contact, at + timedelta(days=3)))  # fmt: skip
    for contact, status, reason in rows:
        conn.execute(
            "INSERT INTO deliveries (tenant_id, run_id, campaign_id, recipient_kind, recipient_id, "
            "channel, content_id, status, reason, created_at) VALUES ('acme', %s, %s, 'contact', "
            "%s, 'wecom_single', %s, %s, %s, %s)",
            (run["run_id"], campaign_id, contact, item, status, reason, at),
        )
    conn.execute("INSERT INTO effect_events VALUES ('acme', 'ev1', 'click', 'ct_t0000', %s, %s, "
                "%s)", (campaign_id, item, at + timedelta(hours=1)))  # fmt: skip


def test_the_wizard_saves_a_holdout_and_refuses_a_bad_one_inline(console, desk):
    item = desk.content()
    operator = logged_in(console, "han.meimei")
    response = create(operator, wizard(item, holdout_percent="10"))
    assert response.status_code == 302, page(response, 302)
    campaign_id = response.headers["Location"].split("/campaigns/")[1].split("?")[0]
    (row,) = console.sql("SELECT holdout_percent FROM campaigns WHERE campaign_id = %s",
                         (campaign_id,))  # fmt: skip
    assert row["holdout_percent"] == 10
    detail = page(operator.get(f"/campaigns/{campaign_id}"))
    assert 'id="campaign-holdout">10%' in detail and 'id="effect-link"' in detail
    for value in ("abc", "60"):
        refused = page(create(operator, wizard(item, holdout_percent=value)), 400)
        assert f'value="{value}"' in refused  # the form kept
        assert 'id="holdout_percent"' in refused and 'class="error"' in refused
    grouped = page(create(operator, wizard(item, holdout_percent="10", channel="wecom_group")),
                   400)  # fmt: skip
    assert "contact-addressed" in grouped or "客户群" in grouped
    assert len(console.sql("SELECT 1 FROM campaigns")) == 1


def test_the_report_shows_the_uplift_with_its_interval_and_the_csv_is_excel_safe(console, desk):
    item = desk.content('=HYPERLINK("https://evil.example")', fmt="whitepaper")
    campaign_id = desk.campaign(channel="wecom_single", audience={"segments": [SEGMENT]},
                                content={"item": item}, trigger={"schedule": {"cron": "0 10 * * TUE"}},
                                holdout_percent=10, launch=False)  # fmt: skip
    seed(console, campaign_id, item, treated=(400, 120), holdout=(50, 3))
    viewer = logged_in(console, "li.lei")
    shown = page(viewer.get(f"/campaigns/{campaign_id}/effect"))
    assert '<td class="treated-contacts">400</td><td class="holdout-contacts">50</td>' in shown
    assert '<td class="treated-advanced">120</td><td class="holdout-advanced">3</td>' in shown
    # WeCom brings no reply back: "—", not a zero; no send failed.
    assert '<td class="treated-replied">—</td><td class="holdout-replied">—</td>' in shown
    assert '<td class="treated-failed">0</td>' in shown
    assert "30.0%" in shown and "6.0%" in shown
    assert "+24.0" in shown  # percentage points
    assert "活动带动了联系人" in shown  # the verdict, in Chinese
    assert 'id="effect-item-1"' in shown  # per content item
    # A window outside 1..90 days: the page says so, with the value kept.
    bad = page(viewer.get(f"/campaigns/{campaign_id}/effect?days=365"), 400)
    assert 'id="error"' in bad and 'value="365"' in bad
    # A 2-day window sees no advance at all (they came on day 3): too small to tell.
    narrow = page(viewer.get(f"/campaigns/{campaign_id}/effect?days=2"))
    assert "样本太小" in narrow

    download = viewer.get(f"/campaigns/{campaign_id}/effect.csv?days=14")
    assert download.status_code == 200
    assert download.mimetype == "text/csv"
    assert "attachment" in download.headers["Content-Disposition"]
    raw = download.get_data()
    assert raw.startswith(b"\xef\xbb\xbf")  # the BOM Excel needs for UTF-8
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0][:4] == ["范围", "内容 ID", "组别", "联系人"]
    campaign_rows = [r for r in rows[1:] if r[1] == ""]
    assert [r[3] for r in campaign_rows] == ["400", "50"]
    failed, replied = rows[0].index("失败"), rows[0].index("回复")
    assert [r[failed] for r in campaign_rows] == ["0", ""]  # the holdout is never sent to
    assert {r[replied] for r in rows[1:]} == {"—"}
    item_rows = [r for r in rows[1:] if r[1] == item]
    assert item_rows and all(r[0].startswith("'=HYPERLINK") for r in item_rows)
    assert not any(cell.startswith(("=", "+", "@")) for r in rows for cell in r)


def test_another_tenants_campaign_is_a_404_and_an_empty_report_says_what_to_do(console, desk):
    item = desk.content()
    campaign_id = desk.campaign(channel="wecom_single", audience={"segments": [SEGMENT]},
                                content={"item": item}, trigger={"schedule": {"cron": "0 10 * * TUE"}},
                                launch=False)  # fmt: skip
    viewer = logged_in(console, "li.lei")
    empty = page(viewer.get(f"/campaigns/{campaign_id}/effect"))
    assert 'id="effect-empty"' in empty
    assert page(viewer.get("/campaigns/cmp_nope/effect"), 404)
    assert viewer.get("/campaigns/cmp_nope/effect.csv").status_code == 404
