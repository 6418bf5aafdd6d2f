"""The console's operations pages in a real headless Chromium (Selenium, Debian's
chromium-driver) against a responder served over HTTP in this process.

An operator turns healing off with the kill switch in the browser, an alert then arrives and
its heal is blocked (the target is never called), the audit entry the page links to names
console:operator, "verify now" shows its result, and healing is turned on again; a read-only
login sees the same pages without a single control. Screenshots of each page are kept in
``artifacts/console-*.png``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from flask import Flask
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from werkzeug.serving import make_server

from monitoriza.responder.app import create_app
from monitoriza.responder.state import responder_of
from tests.support.browser import PAGE_TIMEOUT, chromium_driver, login, save_screenshot
from tests.support.http_targets import HttpTarget
from tests.support.prometheus import PrometheusFactory
from tests.support.responder import TOKEN, post, process
from tests.test_console_ops import (
    FORECASTS,
    VIEWER,
    api_kill_switch,
    audit_kinds,
    ops_config,
    outcomes,
    scraped_prometheus,
    write_drill_results,
)
from tests.test_healing_e2e import notification


@pytest.fixture
def driver() -> Iterator[WebDriver]:
    with chromium_driver() as chromium:
        yield chromium


@contextmanager
def serving(app: Flask) -> Iterator[str]:
    """``app`` on a free loopback port (werkzeug, threaded); its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="console-under-test",
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


def text_of(driver: WebDriver, element_id: str) -> str:
    return str(driver.find_element(By.ID, element_id).text)


def wait_for_text(driver: WebDriver, element_id: str, expected: str) -> None:
    """Wait for ``expected`` in the element; a page that is replaced while it is read (the
    redirect after a form) is read again, not a failure."""
    WebDriverWait(driver, PAGE_TIMEOUT, ignored_exceptions=[StaleElementReferenceException]
                  ).until(lambda d: d.find_elements(By.ID, element_id)
                          and expected in text_of(d, element_id))


def turn_healing_off_then_heal(driver: WebDriver, base: str, app: Flask,
                               http_target: HttpTarget) -> None:
    """The operator turns the kill switch on in the browser; the next heal is blocked and
    never calls the target; the page's link to the audit entry shows it names the operator;
    verify now shows its result."""
    post(app.test_client(), notification("cache", "ServiceDown", fingerprint="c1"))
    process(app)
    assert outcomes(app) == ["failure"]  # the cache's breaker is open now
    driver.get(f"{base}/console/healing")
    assert text_of(driver, "healing-state") == "Healing ON"
    assert "open" in driver.find_element(By.ID, "breakers").text
    save_screenshot(driver, "healing")
    driver.find_element(By.NAME, "reason").send_keys("maintenance by hand")
    driver.find_element(By.ID, "kill-switch-button").click()
    wait_for_text(driver, "healing-state", "Healing OFF")
    assert api_kill_switch(app) is True
    save_screenshot(driver, "healing-off")

    post(app.test_client(), notification("web", "ServiceDown", fingerprint="b1"))
    process(app)
    assert outcomes(app) == ["failure", "blocked"]
    assert http_target.hits("/admin/fix") == 0

    driver.find_element(By.PARTIAL_LINK_TEXT, "audit #").click()
    wait_for_text(driver, "entry", "kill_switch")
    assert '"by": "console:operator"' in text_of(driver, "entry")
    assert '"reason": "maintenance by hand"' in text_of(driver, "entry")
    driver.find_element(By.ID, "verify-button").click()
    wait_for_text(driver, "verify-state", "verified")
    assert "The audit chain verified" in driver.page_source
    save_screenshot(driver, "audit")


def turn_healing_on(driver: WebDriver, base: str, app: Flask) -> None:
    driver.get(f"{base}/console/healing")
    driver.find_element(By.ID, "kill-switch-button").click()
    wait_for_text(driver, "healing-state", "Healing ON")
    assert api_kill_switch(app) is False
    switched = [data["enabled"] for kind, data in audit_kinds(app)
                if kind == "kill_switch" and data["by"] == "console:operator"]
    assert switched == [True, False]


def read_only(driver: WebDriver, base: str) -> None:
    """A read-only login sees the state and not one control."""
    driver.delete_all_cookies()
    login(driver, base, VIEWER)
    driver.get(f"{base}/console/healing")
    assert text_of(driver, "healing-state") == "Healing ON"
    assert not driver.find_elements(By.ID, "kill-switch-form")
    assert not driver.find_elements(By.CSS_SELECTOR, "main button")
    save_screenshot(driver, "healing-viewer")
    driver.get(f"{base}/console/audit")
    assert driver.find_elements(By.ID, "verify-state")
    assert not driver.find_elements(By.ID, "verify-form")


def test_kill_switch_verify_and_read_only(tmp_path: Path, driver: WebDriver,
                                          http_target: HttpTarget,
                                          prometheus_factory: PrometheusFactory) -> None:
    fix = http_target.respond("/admin/fix", status=200)
    broken = http_target.respond("/admin/cache", status=500)
    prometheus_url = scraped_prometheus(prometheus_factory, http_target, points=6)
    write_drill_results(tmp_path / "drills")
    app = create_app(ops_config(tmp_path, f"sqlite:///{tmp_path / 'responder.db'}",
                                fix_url=fix, allowed=http_target.url("/admin/"),
                                prometheus_url=prometheus_url, forecasts=FORECASTS,
                                services={"cache": {"healing": [{"name": "restart", "steps": [
                                    {"action": "http", "url": broken}]}]}},
                                breaker={"consecutive_failures": 1, "open_for": "5m"},
                                # No page reloads itself while the test types into a form.
                                console={"refresh": "1h"}),
                     token=TOKEN, start_worker=False)
    try:
        with serving(app) as base:
            login(driver, base, TOKEN)
            turn_healing_off_then_heal(driver, base, app, http_target)
            turn_healing_on(driver, base, app)
            driver.get(f"{base}/console/forecasts")
            assert driver.find_elements(By.CSS_SELECTOR, ".forecast svg polygon")
            save_screenshot(driver, "forecasts")
            driver.get(f"{base}/console/drills")
            assert driver.find_elements(By.CSS_SELECTOR, "table.matrix td.st-pass")
            save_screenshot(driver, "drills")
            read_only(driver, base)
    finally:
        responder_of(app).journal.engine.dispose()
