"""A campaign's effect report in Chromium (docs/console.md "Effect report"): a viewer opens it
from the campaign's page, reads treated against holdout and the verdict in Chinese, narrows the
window to two days and is told the sample is too small. Its screenshot goes to docs/screenshots/
as test_console.py's do (when missing, or UPDATE_SCREENSHOTS=1)."""

from __future__ import annotations

from selenium.webdriver.common.by import By

from tests.browser.test_console import log_in, save_screenshot, wait_for
from tests.integration.console.campaign_world import SEGMENT, world
from tests.integration.console.conftest import PASSWORD
from tests.integration.console.test_effect import seed


def test_a_viewer_reads_the_effect_report_and_narrows_its_window(browser, served, tmp_path):
    desk = world(served.console)
    desk.publish_segments(SEGMENT)
    item = desk.content("保养手册")
    campaign = desk.campaign(channel="wecom_single", audience={"segments": [SEGMENT]},
                             content={"item": item}, trigger={"schedule": {"cron": "0 10 * * TUE"}},
                             holdout_percent=10, launch=False)  # fmt: skip
    seed(served.console, campaign, item, treated=(400, 120), holdout=(50, 3))

    log_in(browser, "li.lei", PASSWORD)
    wait_for(browser, "funnel-table")
    browser.get(f"{served.url}/campaigns/{campaign}")
    wait_for(browser, "effect-link").click()
    numbers = wait_for(browser, "effect-numbers")
    assert "400" in numbers.text and "50" in numbers.text
    verdict = browser.find_element(By.CSS_SELECTOR, "#effect-campaign .verdict")
    assert "活动带动了联系人" in verdict.text and "+24.0" in verdict.text
    save_screenshot(browser, tmp_path, "effect.png")

    days = browser.find_element(By.ID, "days")
    days.clear()
    days.send_keys("2")
    days.submit()
    wait_for(browser, "effect-numbers")
    verdict = browser.find_element(By.CSS_SELECTOR, "#effect-campaign .verdict")
    assert "样本太小" in verdict.text
    assert browser.find_element(By.ID, "effect-csv").get_attribute("href").endswith("days=2")
