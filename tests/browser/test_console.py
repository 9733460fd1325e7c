"""The console in Chromium: logging in (good, and a wrong password answered in Chinese), the
overview's funnel in Chinese stage names, the switch to English, an account's role grid and a
member's timeline. The
pages' screenshots are saved for README and docs/console.md: to docs/screenshots/<page>.png when
it is missing or with UPDATE_SCREENSHOTS=1 (a run of the suite does not change the tree
otherwise), and always to the test's temporary folder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as seen
from selenium.webdriver.support.ui import WebDriverWait

from tests.integration.console.conftest import PASSWORD

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
AISCEAS = ("注意", "兴趣", "搜索", "比较", "检讨", "行动", "分享")


def log_in(browser, login: str, password: str, tenant: str = "acme") -> None:
    browser.find_element(By.ID, "tenant").clear()
    browser.find_element(By.ID, "tenant").send_keys(tenant)
    browser.find_element(By.ID, "login").send_keys(login)
    browser.find_element(By.ID, "password").send_keys(password)
    browser.find_element(By.ID, "submit").click()


def wait_for(browser, element_id: str):
    return WebDriverWait(browser, 30).until(seen.presence_of_element_located((By.ID, element_id)))


def test_a_wrong_password_is_answered_in_chinese(browser):
    log_in(browser, "li.lei", "not-the-password")
    error = wait_for(browser, "error")
    assert "租户、登录名或密码错误" in error.text
    assert browser.current_url.endswith("/login")


def save_screenshot(browser, folder: Path, name: str) -> None:
    shot = folder / name
    assert browser.save_screenshot(str(shot))
    kept = SCREENSHOTS / name
    if os.environ.get("UPDATE_SCREENSHOTS") == "1" or not kept.exists():
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, kept)


def save_page_screenshot(browser, folder: Path, name: str, tallest: int = 2200) -> None:
    """The whole page, up to ``tallest`` pixels of it, 1280 wide: the window is grown to the
    page's height for the shot (a screenshot is of the viewport), then given back its size."""
    size = browser.get_window_size()
    frame = browser.execute_script("return window.outerHeight - window.innerHeight")
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1280, min(height, tallest) + frame)
    save_screenshot(browser, folder, name)
    browser.set_window_size(size["width"], size["height"])


def test_the_overview_shows_the_funnel_in_chinese_then_english(browser, served, tmp_path):
    log_in(browser, "li.lei", PASSWORD)
    table = wait_for(browser, "funnel-table")
    assert browser.current_url == served.url + "/"
    for stage in AISCEAS:
        assert stage in table.text
    WebDriverWait(browser, 30).until(  # ECharts drew the funnel (console/static/overview.js)
        lambda b: b.find_element(By.ID, "funnel-chart").get_attribute("data-rendered") == "1"
    )
    chart = browser.find_element(By.ID, "funnel-chart").find_element(By.TAG_NAME, "svg")
    assert "比较" in chart.get_attribute("textContent")
    assert browser.find_element(By.CLASS_NAME, "tenant").text  # the tenant's name in the header
    size = browser.get_window_size()
    browser.set_window_size(1280, 2200)  # the whole overview, every section
    save_screenshot(browser, tmp_path, "overview.png")
    browser.set_window_size(size["width"], size["height"])

    browser.find_element(By.ID, "lang-switch").click()
    WebDriverWait(browser, 30).until(
        lambda b: "Comparison" in b.find_element(By.ID, "funnel-table").text
    )
    text = browser.find_element(By.ID, "funnel-table").text
    assert "Attention" in text and "注意" not in text
    assert browser.find_element(By.ID, "lang-switch").text == "中文"

    browser.find_element(By.ID, "lang-switch").click()  # back to Chinese for the next test
    WebDriverWait(browser, 30).until(lambda b: "比较" in b.find_element(By.ID, "funnel-table").text)
    browser.find_element(By.ID, "logout").click()
    wait_for(browser, "login")


def test_an_account_page_shows_the_role_grid_in_chinese(browser, served, tmp_path):
    log_in(browser, "li.lei", PASSWORD)
    wait_for(browser, "funnel-table")
    browser.get(served.url + "/accounts")
    wait_for(browser, "accounts-table").find_element(By.LINK_TEXT, "苏州精工机械有限公司").click()
    grid = wait_for(browser, "role-grid")
    for role in ("决策者", "技术", "财务", "合规/法务", "业务", "采购"):
        assert role in grid.text
    assert "缺失" in grid.text and "王总" in grid.text
    assert browser.find_element(By.ID, "account-name").text == "苏州精工机械有限公司"
    save_page_screenshot(browser, tmp_path, "account.png")  # docs/console.md "Accounts"

    # A member's page: its timeline of touchpoints and stage changes, in the tenant's zone.
    browser.find_element(By.ID, "members-table").find_element(By.LINK_TEXT, "李工").click()
    timeline = wait_for(browser, "timeline")
    assert "CST" in timeline.text and "点击菜单" in timeline.text
    save_page_screenshot(browser, tmp_path, "contact.png")  # docs/console.md "Contacts"
    browser.find_element(By.ID, "logout").click()
    wait_for(browser, "login")
