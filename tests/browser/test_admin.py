"""An admin's pages in Chromium: a user locked out after five wrong passwords (the login page
says no more than for any failure), unlocked by an admin on the users page, then logging in; a
forged POST (the CSRF token removed by script on the page itself, and a form posted from a file:
URL, another origin) refused; the settings page (its screenshot to docs/screenshots/settings.png,
as tests/browser/test_console.py says), then a new API token's secret shown once."""

from __future__ import annotations

from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser.test_console import save_screenshot, wait_for
from tests.integration.console.conftest import PASSWORD

WRONG = "租户、登录名或密码错误"
FORGED = "表单已过期或并非来自本站"


def log_in(browser, login: str, password: str) -> None:
    """The login form, every field typed afresh (a failed login keeps tenant and login); back
    once the answer has replaced the page (not the last answer's error, still on screen)."""
    for field, value in (("tenant", "acme"), ("login", login), ("password", password)):
        browser.find_element(By.ID, field).clear()
        browser.find_element(By.ID, field).send_keys(value)
    submit = browser.find_element(By.ID, "submit")
    submit.click()
    WebDriverWait(browser, 30).until(replaced(submit))


def replaced(element):
    """A wait's condition: ``element``'s page was replaced. Chromium's driver reports a node
    detached mid-check as "does not belong to the document" rather than as a stale element:
    both mean the page is gone."""

    def gone(_browser) -> bool:
        try:
            element.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as exc:
            if "does not belong to the document" not in str(exc):
                raise
            return True
        return False

    return gone


def patient(browser) -> WebDriverWait:
    """A wait that looks again when the page it read was replaced meanwhile."""
    return WebDriverWait(browser, 30, ignored_exceptions=(StaleElementReferenceException,))


def log_out(browser) -> None:
    browser.find_element(By.ID, "logout").click()
    wait_for(browser, "login")


def role_of(served, login: str) -> str:
    (row,) = served.console.sql(
        "SELECT role FROM console_users WHERE tenant_id = 'acme' AND login = %s", (login,)
    )
    return row["role"]


def test_a_locked_out_user_is_unlocked_by_an_admin(browser, served):
    for _ in range(5):
        log_in(browser, "li.lei", "not-the-password")
        assert WRONG in wait_for(browser, "error").text
    log_in(browser, "li.lei", PASSWORD)  # right, but locked: the same answer
    assert WRONG in wait_for(browser, "error").text
    assert browser.current_url.endswith("/login")
    (row,) = served.console.sql("SELECT locked_until FROM console_users WHERE login = 'li.lei'")
    assert row["locked_until"] is not None

    log_in(browser, "boss", PASSWORD)
    wait_for(browser, "funnel-table")
    browser.get(served.url + "/users")
    row = wait_for(browser, "user-li.lei")
    assert row.find_element(By.CLASS_NAME, "locked").text  # locked until, in the tenant's zone
    unlock = row.find_element(By.CLASS_NAME, "unlock-button")
    unlock.click()
    WebDriverWait(browser, 30).until(replaced(unlock))
    assert "用户已解锁" in wait_for(browser, "done").text
    assert not browser.find_element(By.ID, "user-li.lei").find_elements(By.CLASS_NAME, "locked")
    log_out(browser)

    log_in(browser, "li.lei", PASSWORD)
    wait_for(browser, "funnel-table")
    log_out(browser)


def test_a_forged_post_is_refused(browser, served, tmp_path):
    log_in(browser, "boss", PASSWORD)
    wait_for(browser, "funnel-table")
    browser.get(served.url + "/users")
    row = wait_for(browser, "user-han.meimei")
    # The page's own form without its CSRF token: refused, though the session cookie is sent.
    browser.execute_script(
        "const form = arguments[0].querySelector('form');"
        "form.querySelector('input[name=csrf_token]').remove();"
        "form.querySelector('select[name=role]').value = 'admin';",
        row,
    )
    row.find_element(By.CLASS_NAME, "role-button").click()
    patient(browser).until(lambda b: FORGED in b.find_element(By.TAG_NAME, "main").text)
    assert role_of(served, "han.meimei") == "operator"

    # A page of another origin (a file) posting to the console: refused too.
    page = tmp_path / "forged.html"
    page.write_text(
        f'<form method="post" action="{served.url}/users/han.meimei/role">'
        '<input name="role" value="admin"><button id="go" type="submit">go</button></form>',
        encoding="utf-8",
    )
    browser.get(page.as_uri())
    browser.find_element(By.ID, "go").click()
    WebDriverWait(browser, 30).until(lambda b: b.current_url.startswith(served.url))
    assert FORGED in browser.find_element(By.TAG_NAME, "main").text
    assert role_of(served, "han.meimei") == "operator"
    browser.get(served.url + "/")
    log_out(browser)


def test_a_new_tokens_secret_is_shown_once(browser, served, tmp_path):
    log_in(browser, "boss", PASSWORD)
    wait_for(browser, "funnel-table")
    browser.find_element(By.LINK_TEXT, "设置").click()
    wait_for(browser, "settings-form")
    assert browser.find_element(By.ID, "save-settings")  # an admin may change them
    save_screenshot(browser, tmp_path, "settings.png")  # docs/console.md "Settings"
    browser.find_element(By.LINK_TEXT, "API 令牌").click()
    wait_for(browser, "admin-name").send_keys("crm-sync")
    create = browser.find_element(By.ID, "create-admin-token")
    create.click()
    WebDriverWait(browser, 30).until(replaced(create))
    secret = wait_for(browser, "secret").text
    assert secret.startswith("siyu_adm_")
    assert "只显示这一次" in browser.find_element(By.ID, "new-secret").text
    table = browser.find_element(By.ID, "admin-tokens").text
    assert "crm-sync" in table and secret not in table

    browser.get(served.url + "/settings/tokens")  # again: listed, the secret gone
    assert "crm-sync" in wait_for(browser, "admin-tokens").text
    assert not browser.find_elements(By.ID, "secret")
    assert secret not in browser.page_source
    log_out(browser)
