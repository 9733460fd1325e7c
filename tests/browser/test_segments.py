"""The segment builder in Chromium: a typo in a stage name is answered beside the expression in
Chinese, with the API's message (live, then on saving); a valid expression shows its live member
count; saving opens the new segment, whose builder is saved as a screenshot with its live count
(docs/screenshots/segment_builder.png, as tests/browser/test_console.py says); a segment's
members page links to the contacts."""

from __future__ import annotations

import re

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser.test_console import log_in, save_screenshot, wait_for
from tests.integration.console.conftest import PASSWORD

TYPO = '{"stage_at_least": "examinaton"}'
VALID = '{"attribute": "role", "equals": "decision_maker"}'


def type_expression(browser, value: str) -> None:
    box = browser.find_element(By.ID, "expression")
    box.clear()
    box.send_keys(value)


def live_text(browser, wanted) -> str:
    """The live count's text once ``wanted`` (a predicate) holds for it."""
    found = {}

    def ready(driver):
        found["text"] = driver.find_element(By.ID, "live-count").text
        return wanted(found["text"])

    WebDriverWait(browser, 30).until(ready)
    return found["text"]


def test_build_a_segment_with_a_typo_then_a_valid_one(browser, served, tmp_path):
    log_in(browser, "boss", PASSWORD)
    wait_for(browser, "funnel-table")
    browser.get(served.url + "/segments")
    wait_for(browser, "new-segment").click()
    wait_for(browser, "segment-form")

    # A typo: the live answer names it in Chinese, with the valid stages.
    type_expression(browser, TYPO)
    text = live_text(browser, lambda t: "examinaton" in t)
    assert "表达式有误" in text and "examination" in text

    # Saved anyway: the page comes back (400) with the error beside the expression, form kept.
    browser.find_element(By.ID, "segment_id").send_keys("bosses")
    browser.find_element(By.ID, "name").send_keys("老板们")
    browser.find_element(By.ID, "save-segment").click()
    error = wait_for(browser, "expression-error")
    assert "表达式有误" in error.text and "examinaton" in error.text
    assert browser.find_element(By.ID, "name").get_attribute("value") == "老板们"

    # A valid expression: a live count, a number of members.
    type_expression(browser, VALID)
    text = live_text(browser, lambda t: "位成员" in t)
    assert re.search(r"\d+ 位联系人中有 \d+ 位成员", text), text
    browser.find_element(By.ID, "save-segment").click()
    wait_for(browser, "segment-facts")
    assert browser.current_url.startswith(served.url + "/segments/bosses")
    assert "分群已保存" in browser.find_element(By.ID, "done").text

    # Its builder again: the saved expression is counted as the page opens.
    browser.get(served.url + "/segments/bosses/edit")
    wait_for(browser, "segment-form")
    live_text(browser, lambda t: "位成员" in t)
    save_screenshot(browser, tmp_path, "segment_builder.png")  # docs/console.md "Segments"

    # A built segment's members page links to its contacts.
    browser.get(served.url + "/segments/deciders")
    table = wait_for(browser, "members-table")
    assert "王总" in table.text
    table.find_element(By.LINK_TEXT, "王总").click()
    wait_for(browser, "timeline")
    assert "/contacts/" in browser.current_url
