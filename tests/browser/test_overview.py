"""The overview in Chromium: ECharts (the vendored copy, no CDN) draws the funnel with the
Chinese stage names and the weekly movement of the last 8 weeks, as SVG in the page, under the
console's CSP (script-src 'self'); the tables stay beside the charts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser.test_console import AISCEAS, log_in, wait_for
from tests.integration.api.test_segment_people import JINGGONG
from tests.integration.console.conftest import PASSWORD


def drawn(browser, element_id: str):
    """The chart's SVG once overview.js has drawn it."""
    WebDriverWait(browser, 30).until(
        lambda b: b.find_element(By.ID, element_id).get_attribute("data-rendered") == "1"
    )
    return WebDriverWait(browser, 30).until(
        lambda b: b.find_element(By.ID, element_id).find_elements(By.TAG_NAME, "svg")
    )[0]


def svg_text(browser, svg) -> str:
    return browser.execute_script(
        "return Array.from(arguments[0].querySelectorAll('text')).map(t => t.textContent)"
        ".join(' ')",
        svg,
    )


def test_the_overview_draws_the_funnel_and_the_weekly_movement_with_echarts(browser, served):
    console = served.console
    seg = f'"{console.schema}_seg"'
    (account,) = console.sql(f"SELECT account_id FROM {seg}.accounts WHERE name = %s", (JINGGONG,))
    zone = ZoneInfo("Asia/Shanghai")
    today = datetime.now(UTC).astimezone(zone)
    monday = (today - timedelta(days=today.weekday())).replace(hour=0, minute=10)
    console.sql(
        f"INSERT INTO {seg}.stage_history (tenant_id, subject_kind, subject_id, model, from_stage,"
        " to_stage, cause, changed_at, moved_by) VALUES ('acme', 'account', %s, 'aisceas', "
        "'search', 'comparison', 'stage comparison: 1 of biz.demo.requested', %s, 'event') "
        "RETURNING id",
        (account["account_id"], monday),
    )

    log_in(browser, "li.lei", PASSWORD)
    wait_for(browser, "funnel-table")
    funnel = svg_text(browser, drawn(browser, "funnel-chart"))
    for stage in AISCEAS:
        assert stage in funnel
    movement = svg_text(browser, drawn(browser, "movement-chart"))
    assert f"{monday:%m-%d}" in movement  # this week, in the tenant's zone
    assert "比较" in movement  # the legend: stages by their Chinese names
    bars = browser.execute_script(
        "return document.querySelectorAll('#movement-chart svg path').length"
    )
    assert bars > 0
    # The script is the console's own copy: nothing from another site.
    sources = browser.execute_script(
        "return Array.from(document.scripts).map(s => s.src).filter(Boolean)"
    )
    assert sources and all(s.startswith(served.url + "/console/static/") for s in sources)
    assert browser.find_element(By.ID, "movement-table").text  # the accessible table stays
    browser.find_element(By.ID, "logout").click()
    wait_for(browser, "login")
