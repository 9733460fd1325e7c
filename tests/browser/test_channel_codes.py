"""Channel codes in Chromium: an operator creates a contact code for a trade fair against the
fake WeCom and sees it listed with its QR code, channel and staff."""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest
from selenium.webdriver.common.by import By
from werkzeug.serving import make_server

from shared.devstack.ports import free_port
from tests.browser.conftest import Served
from tests.browser.test_console import log_in, wait_for
from tests.integration.console.campaign_world import fake_platform
from tests.integration.console.conftest import PASSWORD, build


@pytest.fixture(scope="module")
def live(stack):
    """The console served on a free port, its WeCom client on the fake platform."""
    schema = f"t_{uuid.uuid4().hex[:10]}"
    with pytest.MonkeyPatch.context() as monkeypatch:
        fake, env = fake_platform(monkeypatch)
        console, segment_schema = build(stack, schema, env=env)
        port = free_port()
        server = make_server("127.0.0.1", port, console.app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, name="console-server", daemon=True)
        thread.start()
        try:
            yield Served(f"http://127.0.0.1:{port}", console)
        finally:
            server.shutdown()
            thread.join(timeout=10)
            fake.stop()
            console.pool.close()
            with psycopg.connect(stack.dsn, autocommit=True) as conn:
                for name in (schema, segment_schema):
                    conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def browser(chromium, live):
    chromium.get(live.url + "/login")
    chromium.delete_all_cookies()
    chromium.get(live.url + "/login")
    return chromium


def test_an_operator_creates_a_channel_code(browser, live):
    log_in(browser, "han.meimei", PASSWORD)
    wait_for(browser, "funnel-table")
    browser.find_element(By.LINK_TEXT, "渠道活码").click()
    wait_for(browser, "codes-empty")
    browser.find_element(By.ID, "new-code").click()
    wait_for(browser, "code-form")
    browser.find_element(By.ID, "code_id").send_keys("expo-2026")
    browser.find_element(By.CSS_SELECTOR, '#channel option[value="expo"]').click()
    browser.find_element(By.ID, "name").send_keys("2026 工博会展位")
    browser.find_element(By.ID, "staff").send_keys("zhangwei, lina")
    browser.find_element(By.ID, "daily_cap").send_keys("50")
    browser.find_element(By.ID, "save").click()

    assert "渠道活码已创建" in wait_for(browser, "done").text
    row = browser.find_element(By.ID, "code-expo-2026").text
    assert "2026 工博会展位" in row and "展会" in row and "zhangwei" in row and "50" in row
    qr = browser.find_element(By.CSS_SELECTOR, "#code-expo-2026 a.qr").get_attribute("href")
    assert qr.startswith("https://")
