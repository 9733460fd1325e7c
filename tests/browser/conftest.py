"""The console in a real browser: the admin API app (siyu/api.py) served by werkzeug in a
thread on a free port, on the session's PostgreSQL with the seeded segment people and console
users of tests/integration/console/conftest.py, driven by Debian's Chromium headless through
Selenium and /usr/bin/chromedriver.

Chromium comes with Debian's ``chromium``, ``chromium-driver`` and ``fonts-noto-cjk`` packages
(`make test` installs them when missing); without them these tests fail, never skip. The
machine may have no network: Chromium is started with everything that would call out turned
off, and Selenium is given the driver, so its manager downloads nothing.
"""

from __future__ import annotations

import os
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from werkzeug.serving import make_server

from shared.devstack.ports import free_port
from tests.integration.console.conftest import build

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-dev-shm-usage",
        "--window-size=1280,900", "--lang=zh-CN")  # fmt: skip


@dataclass
class Served:
    url: str
    console: object


@pytest.fixture(scope="module")
def served(stack):
    schema = f"t_{uuid.uuid4().hex[:10]}"
    console, segment_schema = build(stack, schema, ingest=True)
    port = free_port()
    server = make_server("127.0.0.1", port, console.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="console-server", daemon=True)
    thread.start()
    try:
        yield Served(f"http://127.0.0.1:{port}", console)
    finally:
        server.shutdown()
        thread.join(timeout=10)
        console.pool.close()
        with psycopg.connect(stack.dsn, autocommit=True) as conn:
            for name in (schema, segment_schema, console.ingest_schema):
                conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture(scope="module")
def chromium():
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    assert not missing, (
        f"{', '.join(missing)} missing: install Debian's chromium, chromium-driver and "
        "fonts-noto-cjk (`make system-packages` does)"
    )
    os.environ.setdefault("SE_AVOID_STATS", "true")  # Selenium Manager: no telemetry
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ARGS:
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def browser(chromium, served):
    """A browser with no cookies of the site yet, at the login page."""
    chromium.get(served.url + "/login")
    chromium.delete_all_cookies()
    chromium.get(served.url + "/login")
    return chromium
