"""The group tasks page in Chromium (docs/console.md "Group tasks"): reached from the menu, the
signed-in admin's own tasks first once their WeCom userid is linked, a filter by another member,
an unknown member answered inline in Chinese with the valid ones and the form kept, and linking a
userid when WeCom cannot be reached (no platform here) refused inline on the users page."""

from __future__ import annotations

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser.test_admin import log_in, replaced
from tests.browser.test_console import wait_for
from tests.integration.console.conftest import PASSWORD


def seed(served) -> None:
    served.console.sql(
        "INSERT INTO group_messages (tenant_id, msgid, campaign_id, run_id, channel, created_at) "
        "VALUES ('acme', 'msgB1', 'cmp_b', 1, 'wecom_group', now() - interval '2 hours'), "
        "('acme', 'msgB2', 'cmp_b', 1, 'wecom_group', now() - interval '1 hour') RETURNING msgid"
    )
    served.console.sql(
        "INSERT INTO group_tasks (tenant_id, msgid, userid, campaign_id, created_at) VALUES "
        "('acme', 'msgB1', 'lina', 'cmp_b', now() - interval '2 hours'), "
        "('acme', 'msgB2', 'zhangwei', 'cmp_b', now() - interval '1 hour') RETURNING userid"
    )
    served.console.sql("UPDATE console_users SET wecom_userid = 'lina' WHERE login = 'boss' "
                       "RETURNING login")  # fmt: skip


def rows(browser) -> list[str]:
    return [r.get_attribute("id") for r in browser.find_elements(By.CSS_SELECTOR, "#tasks tr.task")]


def test_own_tasks_first_filters_and_inline_errors(browser, served):
    seed(served)
    log_in(browser, "boss", PASSWORD)
    wait_for(browser, "funnel-table")
    browser.find_element(By.LINK_TEXT, "群发任务").click()
    wait_for(browser, "tasks")
    assert "lina" in browser.find_element(By.ID, "mine").text
    # lina's task is older, and still first: it is the signed-in user's own.
    assert rows(browser) == ["task-msgB1-lina", "task-msgB2-zhangwei"]
    assert "mine" in browser.find_element(By.ID, "task-msgB1-lina").get_attribute("class")

    staff = browser.find_element(By.ID, "staff")
    staff.send_keys("zhangwei")
    button = browser.find_element(By.ID, "filter-button")
    button.click()
    WebDriverWait(browser, 30).until(replaced(button))
    assert rows(browser) == ["task-msgB2-zhangwei"]

    staff = browser.find_element(By.ID, "staff")
    staff.clear()
    staff.send_keys("linna")
    button = browser.find_element(By.ID, "filter-button")
    button.click()
    WebDriverWait(browser, 30).until(replaced(button))
    error = wait_for(browser, "staff-error").text
    assert "未知员工 linna" in error and "lina, zhangwei" in error
    assert browser.find_element(By.ID, "staff").get_attribute("value") == "linna"

    browser.get(served.url + "/users")
    row = wait_for(browser, "user-li.lei")
    field = row.find_element(By.CLASS_NAME, "wecom-userid")
    field.send_keys("lina")
    link = row.find_element(By.CLASS_NAME, "wecom-button")
    link.click()
    WebDriverWait(browser, 30).until(replaced(link))
    assert "企业微信" in wait_for(browser, "form-error").text
    (user,) = served.console.sql("SELECT wecom_userid FROM console_users WHERE login = 'li.lei'")
    assert user["wecom_userid"] is None
