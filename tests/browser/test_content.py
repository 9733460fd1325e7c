"""The content library in Chromium: an operator opens an empty cell of the coverage matrix,
creates an item in the prefilled form, sees it on its page and in the list, and the matrix cell
it filled is no longer a gap. The library's screenshot goes to docs/screenshots/content.png as
the overview's does (tests/browser/test_console.py)."""

from __future__ import annotations

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser.test_console import log_in, save_screenshot, wait_for
from tests.integration.console.conftest import PASSWORD

CELL = 'td[data-stage="comparison"][data-role="finance"]'


def test_an_operator_creates_content_from_a_gap_and_the_matrix_fills(browser, served, tmp_path):
    log_in(browser, "han.meimei", PASSWORD)
    wait_for(browser, "funnel-table")
    browser.find_element(By.LINK_TEXT, "内容").click()
    matrix = wait_for(browser, "coverage-matrix")
    gap = matrix.find_element(By.CSS_SELECTOR, CELL)
    assert "gap" in gap.get_attribute("class") and gap.text.startswith("0")
    gap.find_element(By.CLASS_NAME, "add").click()  # the "+" of the gap: a prefilled form

    form = wait_for(browser, "content-form")
    assert form.find_element(
        By.CSS_SELECTOR, 'input[name="stages"][value="comparison"]'
    ).is_selected()
    assert form.find_element(By.CSS_SELECTOR, 'input[name="roles"][value="finance"]').is_selected()
    browser.find_element(By.ID, "title").send_keys("投资回报测算：数字化工厂")
    browser.find_element(By.CSS_SELECTOR, '#format option[value="case_study"]').click()
    browser.find_element(By.ID, "topics").send_keys("ROI，MES")
    browser.find_element(By.ID, "wecom_text").send_keys("三家客户的投资回报")
    browser.find_element(By.ID, "wecom_link_title").send_keys("投资回报测算")
    browser.find_element(By.ID, "wecom_link_url").send_keys("https://acme.example/roi")
    browser.find_element(By.ID, "save").click()

    assert "内容已创建" in wait_for(browser, "done").text
    assert browser.find_element(By.ID, "content-title").text == "投资回报测算：数字化工厂"
    facts = browser.find_element(By.ID, "content-facts").text
    assert "客户案例" in facts and "比较" in facts and "财务" in facts and "企业微信单聊" in facts

    browser.find_element(By.LINK_TEXT, "内容库").click()
    table = wait_for(browser, "content-table")
    assert "投资回报测算：数字化工厂" in table.text and "ROI" in table.text
    filled = browser.find_element(By.CSS_SELECTOR, f"#coverage-matrix {CELL}")
    assert "covered" in filled.get_attribute("class") and filled.text.startswith("1")
    save_screenshot(browser, tmp_path, "content.png")

    filled.find_element(By.TAG_NAME, "a").click()  # the cell's filtered list
    WebDriverWait(browser, 30).until(lambda b: "stage=comparison" in b.current_url)
    assert "投资回报测算" in wait_for(browser, "content-table").text
    browser.find_element(By.ID, "logout").click()
    wait_for(browser, "login")
