"""Pictures of pages with Debian's headless Chromium, kept under artifacts/ for people to look
at (the stack's alerts page, the drill matrix), and a Chromium that tests drive through
Selenium (the console: log in, follow links, wait for a page's own refresh)."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options as ChromeOptions
from selenium.webdriver.chrome.service import Service as ChromeService
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.support.binaries import require_binary


def screenshot(url: str, path: Path, *, size: str = "1400,1100") -> None:
    """Headless Chromium's picture of ``url`` (an http:// or file:// address)."""
    chromium = require_binary("chromium")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={profile}", f"--window-size={size}",
             "--virtual-time-budget=10000", f"--screenshot={path}", url],
            capture_output=True, timeout=90, check=True)


# -- a browser a test drives (Selenium over Debian's chromium-driver) ----------------------------

ARTIFACTS = Path(__file__).resolve().parent.parent.parent / "artifacts"
WINDOW = (1400, 1000)
PAGE_TIMEOUT = 30.0


@contextmanager
def chromium_driver() -> Iterator[WebDriver]:
    """Headless Chromium (``/usr/bin/chromium``) driven through ``/usr/bin/chromedriver``,
    in a private profile, a 1400 by 1000 window; quit when the block ends."""
    options = ChromeOptions()
    options.binary_location = require_binary("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--no-first-run", "--disable-background-networking", "--disable-sync",
                 "--disable-component-update", f"--window-size={WINDOW[0]},{WINDOW[1]}"):
        options.add_argument(flag)
    with tempfile.TemporaryDirectory() as profile:
        options.add_argument(f"--user-data-dir={profile}")
        driver = webdriver.Chrome(options=options,
                                  service=ChromeService(require_binary("chromedriver")))
        try:
            driver.set_page_load_timeout(PAGE_TIMEOUT)
            yield driver
        finally:
            driver.quit()


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    """A headless Chromium for one test (see :func:`chromium_driver`)."""
    with chromium_driver() as driver:
        yield driver


def login(driver: WebDriver, base_url: str, token: str) -> None:
    """Log in to the console at ``base_url`` (the responder's root URL) with ``token``, as a
    person would: the login form, then wait to land on a page that is not the login page."""
    driver.get(f"{base_url}/console/login")
    field = driver.find_element(By.NAME, "token")
    field.send_keys(token)
    field.submit()
    WebDriverWait(driver, PAGE_TIMEOUT).until(
        lambda d: "/console/login" not in d.current_url or d.find_elements(
            By.CSS_SELECTOR, "[role=alert]"))


def save_screenshot(driver: WebDriver, name: str) -> Path:
    """The whole page as ``artifacts/console-NAME.png`` (the window grown to the page's
    height for the picture, then put back)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"console-{name}.png"
    height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    driver.set_window_size(WINDOW[0], max(WINDOW[1], min(height + 120, 6000)))
    try:
        if not driver.save_screenshot(str(path)):
            raise AssertionError(f"Chromium did not write the screenshot {path}")
    finally:
        driver.set_window_size(*WINDOW)
    return path
