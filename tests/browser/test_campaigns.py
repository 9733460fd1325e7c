"""The campaigns area in Chromium (docs/console.md "Campaigns"): an operator creates a campaign in
the wizard (its schedule's next run times update as the time changes), previews it (the page
polls the preview job and shows its counts), launches it; the real scheduler and executor run it
against the fake platform, and its page shows the run and the delivery log. A viewer sees no
launch button, and its forged POST is refused. Screenshots of the wizard and a campaign's page
go to docs/screenshots/ as test_console.py's do (when missing, or UPDATE_SCREENSHOTS=1)."""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as seen
from selenium.webdriver.support.ui import Select, WebDriverWait
from werkzeug.serving import make_server

from shared.devstack.ports import free_port
from shared.jobs import EXTENSION as JOBS
from tests.browser.conftest import Served
from tests.browser.test_console import log_in, save_screenshot, wait_for
from tests.integration.console.campaign_world import (
    SEGMENT,
    audience,
    fake_platform,
    first_slot,
    world,
)
from tests.integration.console.conftest import PASSWORD, build, csrf
from tests.integration.console.conftest import log_in as log_in_client


@pytest.fixture(scope="module")
def live(stack):
    """The console served on a free port, sending to the fake platform, its job threads running
    previews; the outreach helpers (audience, content, scheduler, executor) beside it."""
    schema = f"t_{uuid.uuid4().hex[:10]}"
    with pytest.MonkeyPatch.context() as monkeypatch:
        fake, env = fake_platform(monkeypatch)
        console, segment_schema = build(stack, schema, env=env, run_jobs=True)
        port = free_port()
        server = make_server("127.0.0.1", port, console.app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, name="console-server", daemon=True)
        thread.start()
        outreach = world(console, fake)
        outreach.publish_segments(SEGMENT)
        try:
            yield Served(f"http://127.0.0.1:{port}", console), outreach
        finally:
            server.shutdown()
            thread.join(timeout=10)
            console.app.extensions[JOBS].stop()
            fake.stop()
            console.pool.close()
            with psycopg.connect(stack.dsn, autocommit=True) as conn:
                for name in (schema, segment_schema):
                    conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def browser(chromium, live):
    served, _ = live
    chromium.get(served.url + "/login")
    chromium.delete_all_cookies()
    chromium.get(served.url + "/login")
    return chromium


def text_in(browser, element_id: str, wanted: str) -> None:
    WebDriverWait(browser, 30).until(
        seen.text_to_be_present_in_element((By.ID, element_id), wanted)
    )


def click(browser, element_id: str) -> None:
    browser.find_element(By.ID, element_id).click()


def test_create_preview_launch_and_see_the_run_and_its_deliveries(browser, live, tmp_path):
    served, outreach = live
    contacts = audience(outreach, 3)
    item = outreach.content(title="白皮书：数字化工厂")
    log_in(browser, "han.meimei", PASSWORD)
    wait_for(browser, "funnel-table")
    browser.get(served.url + "/campaigns")
    wait_for(browser, "campaigns-empty")
    click(browser, "new-campaign")

    # The wizard: audience, content, channel, a weekly schedule whose times follow the form.
    wait_for(browser, "campaign-form")
    browser.find_element(By.ID, "name").send_keys("每周二白皮书")
    Select(browser.find_element(By.ID, "segments")).select_by_value(SEGMENT)
    Select(browser.find_element(By.ID, "item")).select_by_value(item)
    Select(browser.find_element(By.ID, "channel")).select_by_value("wecom_single")
    assert "每周二 10:00" in browser.find_element(By.ID, "schedule-words").text
    time_field = browser.find_element(By.ID, "time")
    time_field.clear()
    time_field.send_keys("09:30")
    text_in(browser, "schedule-words", "每周二 09:30")  # campaigns.js asked the server
    text_in(browser, "next-runs", "09:30 CST")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#next-runs li")) == 5
    save_screenshot(browser, tmp_path, "campaign_new.png")
    click(browser, "save-campaign")

    # The draft's page: preview it (the page polls the job, then shows its result).
    text_in(browser, "campaign-status", "草稿")
    campaign_id = browser.current_url.split("/campaigns/")[1].split("?")[0]
    click(browser, "preview-button")
    text_in(browser, "preview-recipients", "3")
    assert browser.find_element(By.ID, "preview-to-send").text == "3"
    samples = browser.find_element(By.ID, "preview-samples").text
    assert all(c in samples for c in contacts) and "白皮书：数字化工厂" in samples

    # Launch; the worker runs it at its first slot against the fake platform.
    click(browser, "launch-button")
    text_in(browser, "campaign-status", "进行中")
    assert not browser.find_elements(By.ID, "launch-button")
    outreach.now = first_slot(served.console, campaign_id)
    assert outreach.schedule() == 1
    assert outreach.send() == 1
    assert outreach.messages("single")
    browser.get(f"{served.url}/campaigns/{campaign_id}")
    runs = wait_for(browser, "runs").text
    assert "完成" in runs and "已发送 3" in runs
    log = browser.find_element(By.ID, "deliveries")
    assert len(log.find_elements(By.CSS_SELECTOR, "tr.delivery-sent")) == 3
    assert all(c in log.text for c in contacts)
    browser.execute_script("document.getElementById('runs-card').scrollIntoView()")
    save_screenshot(browser, tmp_path, "campaign.png")  # docs/console.md "Campaigns"
    Select(browser.find_element(By.ID, "delivery-status")).select_by_value("failed")
    click(browser, "filter-deliveries")
    wait_for(browser, "no-deliveries")


def test_a_viewer_sees_no_launch_button_and_a_forged_post_is_refused(browser, live):
    served, outreach = live
    operator = served.console.client()
    log_in_client(operator, "han.meimei")
    item = outreach.content(title="案例：苏州精工")
    answer = operator.post("/campaigns/new", data={
        "name": "草稿活动", "segments": [SEGMENT], "content_kind": "item", "item": item,
        "channel": "wecom_single", "trigger_kind": "schedule", "schedule_kind": "daily",
        "time": "11:00", "csrf_token": csrf(operator, "/campaigns/new"),
    })  # fmt: skip
    assert answer.status_code == 302
    campaign_id = answer.headers["Location"].split("/campaigns/")[1].split("?")[0]

    log_in(browser, "li.lei", PASSWORD)
    wait_for(browser, "funnel-table")
    browser.get(f"{served.url}/campaigns/{campaign_id}")
    text_in(browser, "campaign-status", "草稿")
    for button in ("launch-button", "preview-button", "archive-button"):
        assert not browser.find_elements(By.ID, button)
    # A launch forged with the viewer's own session and CSRF token (the logout form's).
    status = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "const token = document.querySelector('input[name=csrf_token]').value;"
        "fetch(arguments[0], {method: 'POST', credentials: 'same-origin',"
        " headers: {'Content-Type': 'application/x-www-form-urlencoded'},"
        " body: 'csrf_token=' + encodeURIComponent(token)}).then(r => done(r.status));",
        f"{served.url}/campaigns/{campaign_id}/launch",
    )
    assert status == 403
    (row,) = served.console.sql("SELECT status FROM campaigns WHERE campaign_id = %s",
                                (campaign_id,))  # fmt: skip
    assert row["status"] == "draft"
