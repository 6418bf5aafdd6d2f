"""The console in a real headless Chromium (Selenium, Debian's chromium-driver), on the demo
stack (``monitoriza up --demo``): log in, the overview's scores, and a Redis outage that
appears on the overview by the page's own refresh, then its incident page with the restart
action and its outcome. Screenshots of each page are kept under artifacts/console-*.png.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.support.browser import chromium_driver, login, save_screenshot
from tests.support.stack import DemoStack

SCORES_TIMEOUT = 60.0
INCIDENT_TIMEOUT = 90.0


@pytest.fixture(scope="module")
def driver() -> Iterator[WebDriver]:
    """One Chromium for the module's tests, like one person's browser through the story."""
    with chromium_driver() as chromium:
        yield chromium


def wait_for(driver: WebDriver, timeout: float, condition: Callable[[WebDriver], Any],
             what: str) -> Any:
    """Wait while the page refreshes itself: an element read mid-refresh is just retried."""
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.5,
                             ignored_exceptions=(StaleElementReferenceException,)).until(
            condition)
    except WebDriverException as exc:
        raise AssertionError(f"the console never showed {what} (within {timeout:.0f} s); "
                             f"the page:\n{driver.find_element(By.TAG_NAME, 'main').text}"
                             ) from exc


def row_of(driver: WebDriver, service: str) -> Any:
    return driver.find_element(By.CSS_SELECTOR, f'tr[data-service="{service}"]')


def demo_services(stack: DemoStack) -> list[str]:
    return sorted(yaml.safe_load(stack.config.read_text())["services"])


class TestConsoleOnTheDemo:
    """What an operator sees of the demo, in the order they would see it."""

    def test_login_and_overview_scores(self, demo_stack: DemoStack, driver: WebDriver) -> None:
        """A wrong token is refused with the login page; the right one shows every demo
        service, each with its health score once Prometheus has one."""
        driver.get(f"{demo_stack.responder}/console/")
        assert "/console/login" in driver.current_url
        save_screenshot(driver, "login")
        login(driver, demo_stack.responder, "not-the-token")
        assert driver.find_element(By.CSS_SELECTOR, "[role=alert]").text == \
            "That token is not valid for this console."
        save_screenshot(driver, "login-refused")
        login(driver, demo_stack.responder, demo_stack.token)
        assert driver.current_url.endswith("/console/")
        services = demo_services(demo_stack)

        def every_score(page: WebDriver) -> bool:
            scores = {str(row.get_attribute("data-service")): row.find_elements(
                By.CSS_SELECTOR, "td.num .pill")[0].text
                for row in page.find_elements(By.CSS_SELECTOR, "tr[data-service]")}
            return sorted(scores) == services and all(
                score.isdigit() for score in scores.values())

        # The page refreshes itself until every service has its score.
        wait_for(driver, SCORES_TIMEOUT, every_score, "a score for every demo service")
        assert driver.find_elements(By.CSS_SELECTOR, "tr[data-service] svg.spark")
        save_screenshot(driver, "overview")
        driver.get(f"{demo_stack.responder}/console/no-such-page")
        assert "404" in driver.find_element(By.TAG_NAME, "h1").text
        save_screenshot(driver, "not-found")

    def test_redis_outage_appears_by_itself(self, demo_stack: DemoStack,
                                            driver: WebDriver) -> None:
        """After ``monitoriza demo fault redis down`` the overview, left alone, shows the
        incident with Redis as root cause; its page, left alone, shows the restart action
        and then its outcome."""
        driver.get(f"{demo_stack.responder}/console/")
        assert driver.current_url.endswith("/console/"), "logged in by the previous test"
        demo_stack.fault("redis", "down")

        def redis_incident_link(page: WebDriver) -> str | None:
            links = row_of(page, "redis").find_elements(
                By.CSS_SELECTOR, 'a[href*="/console/incidents/"]')
            causes = row_of(page, "redis").find_elements(By.CSS_SELECTOR, ".root-cause")
            if links and causes and causes[0].text == "redis":
                return str(links[0].get_attribute("href"))
            return None

        href = wait_for(driver, INCIDENT_TIMEOUT, redis_incident_link,
                        "an open incident on the redis row with redis as root cause")
        save_screenshot(driver, "overview-incident")
        driver.find_element(By.CSS_SELECTOR, f'a[href$="{href.split("/console")[1]}"]').click()
        assert driver.find_element(By.ID, "root-cause").find_element(
            By.TAG_NAME, "strong").text == "redis"

        def restart_outcome(page: WebDriver) -> str | None:
            for card in page.find_elements(By.CSS_SELECTOR, ".action-card"):
                if "restart-redis" in card.text:
                    pill = card.find_element(By.CSS_SELECTOR, "p .pill").text
                    return pill if pill in {"success", "failure"} else None
            return None

        outcome = wait_for(driver, INCIDENT_TIMEOUT, restart_outcome,
                           "the restart-redis action with its outcome")
        assert outcome == "success"
        card = driver.find_element(By.CSS_SELECTOR, ".action-card")
        assert "action.started" in card.text and "action.success" in card.text
        save_screenshot(driver, "incident")
