"""The status page in a real browser: headless Chromium (Debian's chromium and chromium-driver,
which `make test` installs when it runs as root) driven by Selenium, against the Procfile's
web and worker processes."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
import requests
from redis import Redis

from sandbox.processes import Processes
from tests.integration.conftest import API_TOKEN, HOOK, managed_state
from tests.integration.processes import eventually
from tests.rows import row

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

if CHROMIUM is None or CHROMEDRIVER is None:
    pytest.skip(
        "the browser test needs Debian's chromium and chromium-driver: `make ci-tools` "
        "installs them when run as root; otherwise run `apt-get install chromium chromium-driver`",
        allow_module_level=True,
    )

from selenium import webdriver  # noqa: E402 (only once Chromium is known to be here)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402


@pytest.fixture
def browser(tmp_path) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture
def stack(service_env: dict[str, str], redis: Redis) -> Iterator[Processes]:
    env = {**service_env, "POLL_INTERVAL": "0", "WORKER_PROCESSES": "2"}
    processes = Processes(env, ["web", "worker"])
    try:
        eventually(processes.ready, "the web process to be ready")
        yield processes
    finally:
        processes.stop()


def text_of(browser, css: str) -> str:
    """The text of the first element matching `css`, once the page shows one."""
    element = WebDriverWait(browser, 10).until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css))
    )
    return element.text


def test_the_status_page_in_chromium(browser, stack, wisphub_sim, bqn_sim):
    wisphub_sim.state.upsert_client(row(1, "10.3.0.1", "Activo", "Online_basico", "Nico"))
    wisphub_sim.state.upsert_client(row(2, "10.3.0.2", "Activo", "Online_basico", "Ana"))
    bqn_sim.state.faults.update(fail_every=1, fail_status=400, writes_only=True)
    requests.post(f"{stack.url}/webhooks/wisphub", json={"id_servicio": 2}, headers=HOOK, timeout=5)
    eventually(
        lambda: requests.get(f"{stack.url}/readyz", timeout=5).ok and _failed(stack) == 1,
        "client 2's job to fail",
    )
    bqn_sim.state.faults.clear()
    requests.post(f"{stack.url}/webhooks/wisphub", json={"id_servicio": 1}, headers=HOOK, timeout=5)
    eventually(lambda: "10.3.0.1" in managed_state(bqn_sim), "client 1 on the BQN")

    # sign in once with the API token
    browser.get(stack.url + "/")
    assert "/login" in browser.current_url
    browser.find_element(By.ID, "token").send_keys(API_TOKEN)
    browser.find_element(By.ID, "sign-in").click()
    assert text_of(browser, "#workers") == "2"  # the worker command's pool
    assert text_of(browser, "#failed") == "1"
    assert "Failures (1)" in text_of(browser, "#failures")
    assert browser.find_elements(By.CSS_SELECTOR, "#chart svg rect")

    # search a client: its history, step by step
    box = browser.find_element(By.ID, "client-id")
    box.send_keys("1")
    browser.find_element(By.ID, "search").click()
    history = text_of(browser, "#history")
    assert "sync asked for via webhook" in history
    assert "WispHub says: estado Activo, plan Online_basico, IP 10.3.0.1" in history
    assert "BQN: create subscriber 10.3.0.1 with policy Online_basico: done" in history

    # requeue the failure with its button; it goes through now
    browser.find_element(By.CSS_SELECTOR, "#failures button.requeue").click()
    assert "1 failed job(s) queued again" in text_of(browser, ".flash.ok")
    eventually(lambda: "10.3.0.2" in managed_state(bqn_sim), "the requeued client on the BQN")
    browser.get(stack.url + "/?client=2")
    assert "sync asked for via requeue" in text_of(browser, "#history")
    assert "No failed jobs." in text_of(browser, "#failures")


def _failed(stack: Processes) -> int:
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    return requests.get(f"{stack.url}/api/v1/failures", headers=headers, timeout=5).json()["count"]
