"""The welcome pages in Chromium: a viewer reaches recent welcomes from the nav (Chinese labels,
the tenant's zone), an operator opens the group welcome template form and a bad link is answered
on the form with what was typed kept (the form fails before WeCom is called)."""

from __future__ import annotations

from datetime import UTC, datetime

from selenium.webdriver.common.by import By

from tests.browser.test_console import log_in, wait_for
from tests.integration.console.conftest import PASSWORD


def test_recent_welcomes_and_the_template_form(browser, served):
    served.console.sql(
        "INSERT INTO welcomes (tenant_id, welcome_code, event_id, external_userid, staff_userid, "
        "code_id, status, attempts, callback_at, latency_ms) VALUES ('acme', 'wc-browser', "
        "'e-browser', 'wmBrowser', 'zhangwei', 'expo', 'sent', 1, %s, 850) RETURNING 1",
        (datetime(2026, 12, 1, 2, 0, tzinfo=UTC),),
    )
    log_in(browser, "han.meimei", PASSWORD)
    wait_for(browser, "funnel-table")
    browser.find_element(By.LINK_TEXT, "欢迎语").click()
    table = wait_for(browser, "welcomes-table")
    assert "2026-12-01 10:00" in table.text and "已发送" in table.text and "0.8 s" in table.text
    assert "expo" in table.text and "zhangwei" in table.text

    browser.find_element(By.ID, "group-templates").click()
    assert wait_for(browser, "templates-empty")
    browser.find_element(By.ID, "new-template").click()
    wait_for(browser, "template-form")
    browser.find_element(By.ID, "name").send_keys("新人入群")
    browser.find_element(By.ID, "text").send_keys("欢迎 %NICKNAME%")
    browser.find_element(By.ID, "link_title").send_keys("群规")
    browser.find_element(By.ID, "link_url").send_keys("ftp://acme.example/rules")
    browser.find_element(By.ID, "save").click()
    assert wait_for(browser, "link_url-error")
    assert browser.find_element(By.ID, "name").get_attribute("value") == "新人入群"
    assert "素材未保存" in browser.find_element(By.ID, "form-error").text
