"""The status page in a real browser: headless Chromium (Debian's chromium and chromium-driver,
which `make test` installs when it runs as root) driven by Selenium, against the Procfile's
web and worker processes.

It runs once with the browser set to Spanish (es-CO) and once to English (en-US): the same
steps, each checked in the words of that language (`WORDS`).

With `SAVE_SCREENSHOTS=1` the test also saves the screenshots the docs show
(`docs/images/console-*.png` in English, `docs/images/console-*-es.png` in Spanish); without
it, it writes nothing into the tree."""

from __future__ import annotations

import base64
import json
import os
import shutil
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import requests
from redis import Redis
from rq.job import JobStatus

from sandbox.processes import Processes
from tests.integration.conftest import API_TOKEN, HOOK, managed_state
from tests.integration.processes import eventually
from tests.rows import row
from worker.queue import queueing

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
from selenium.common.exceptions import (  # noqa: E402
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402

# Where the docs' screenshots go, when SAVE_SCREENSHOTS=1.
IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
# The overview reloads itself this often here (10 s by default).
REFRESH_SECONDS = 3

# What the pages say at each step, in each language the browser asks for.
WORDS = {
    "en-US": {
        "failures": "Failures (2)",
        "times": "Times in America/Bogota (-05)",
        "in_step": "In step",
        "created": "BQN: create subscriber 10.3.0.3 with policy Online_basico: done",
        "differ": "1 BQN entry differs",
        "differs": "≠ differs",
        "change": "update subscriber 10.3.0.3 with policy Online_basico",
        "queued": "sync of client 3 queued",
        "asked": "sync asked for via status-page",
        "read": "WispHub says: estado Activo, plan Online_basico, IP 10.3.0.3",
        "updated": "BQN: update subscriber 10.3.0.3 with policy Online_basico: done",
        "found": "4 clients found",
        "requeued": "1 failed job queued again",
        "dismissed": "1 failed job dismissed",
        "no_failures": "No failed jobs.",
        "cleared": "dismissed via status-page",
        "resumed": "writes resumed",
    },
    "es-CO": {
        "failures": "Fallas (2)",
        "times": "Horas en America/Bogota (-05)",
        "in_step": "Al día",
        "created": "BQN: crear suscriptor 10.3.0.3 con la política Online_basico: hecho",
        "differ": "1 entrada del BQN difiere",
        "differs": "≠ difiere",
        "change": "actualizar suscriptor 10.3.0.3 con la política Online_basico",
        "queued": "sincronización del cliente 3 encolada",
        "asked": "sincronización pedida vía status-page",
        "read": "WispHub dice: estado Activo, plan Online_basico, IP 10.3.0.3",
        "updated": "BQN: actualizar suscriptor 10.3.0.3 con la política Online_basico: hecho",
        "found": "4 clientes encontrados",
        "requeued": "1 trabajo fallido vuelto a encolar",
        "dismissed": "1 trabajo fallido descartado",
        "no_failures": "No hay trabajos fallidos.",
        "cleared": "descartada vía status-page",
        "resumed": "escrituras reanudadas",
    },
}


@pytest.fixture(params=list(WORDS))
def locale(request) -> str:
    """The language the browser asks for."""
    return request.param


@pytest.fixture
def browser(tmp_path, locale: str) -> Iterator[webdriver.Chrome]:
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
    options.add_argument("--window-size=1280,900")
    options.add_argument(f"--lang={locale}")
    options.add_argument(f"--accept-lang={locale}")
    options.add_experimental_option("prefs", {"intl.accept_languages": locale})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture
def stack(service_env: dict[str, str], redis: Redis) -> Iterator[Processes]:
    env = {
        **service_env,
        "POLL_INTERVAL": "0",
        "WORKER_PROCESSES": "2",
        "STATUS_REFRESH_SECONDS": str(REFRESH_SECONDS),
        "TZ": "America/Bogota",
    }
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


def test_the_status_page_in_chromium(browser, locale, stack, wisphub_sim, bqn_sim, queue):
    words = WORDS[locale]
    shot = "" if locale.startswith("en") else "-es"
    wisphub_sim.load(30)  # ids from 12 on
    for client in (
        row(1, "10.3.0.1", "Activo", "Online_basico", "Nico Ortiz"),
        row(2, "10.3.0.2", "Activo", "Online_basico", "Ana Restrepo"),
        row(3, "10.3.0.3", "Activo", "Online_basico", "Íñigo Zúñiga Ñáñez"),
        row(4, "10.3.0.4", "Activo", "Online_basico", "Eva Lucía Mora", cedula="71234567"),
    ):
        wisphub_sim.state.upsert_client(client)
    api(stack, "post", "/api/v1/reconcile")  # fills the BQN, indexes the clients, keeps the plans
    eventually(lambda: "10.3.0.4" in managed_state(bqn_sim), "the reconcile")
    # the poller's section, with its comparison; the changes below must come after it: a poll
    # reading them would queue their syncs, which would go through once the faults are gone
    poll = queue.enqueue(queueing.POLL_CHANGES.path)
    eventually(lambda: api(stack, "get", "/api/v1/reconciles")["reconciles"], "its record")
    eventually(lambda: poll.get_status(refresh=True) == JobStatus.FINISHED, "the poll")
    eventually(lambda: _failed(stack) == 0 and _idle(stack), "what the poll queued")
    bqn_sim.state.faults.update(fail_every=1, fail_status=400, writes_only=True)
    for key in (2, 4):
        wisphub_sim.state.update_client(key, estado="Suspendido")
        requests.post(
            f"{stack.url}/webhooks/wisphub", json={"id_servicio": key}, headers=HOOK, timeout=5
        )
    eventually(lambda: _failed(stack) == 2, "the jobs of clients 2 and 4 to fail")
    bqn_sim.state.faults.clear()

    # sign in once with the API token
    browser.get(stack.url + "/")
    assert "/login" in browser.current_url
    browser.find_element(By.ID, "token").send_keys(API_TOKEN)
    browser.find_element(By.ID, "sign-in").click()
    assert text_of(browser, "#workers") == "2"  # the worker command's pool
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == locale[:2]
    assert text_of(browser, "#failed") == "2", _cleared_by(stack)
    assert words["failures"] in text_of(browser, "#failures")
    assert "Ana Restrepo" in text_of(browser, "#failures")  # a name, not only a number
    assert words["times"] in text_of(browser, "#live")
    assert browser.find_elements(By.CSS_SELECTOR, "#chart svg rect")
    assert browser.find_elements(By.CSS_SELECTOR, "#plans td.policy-ok")
    screenshot(browser, f"console-overview{shot}")

    # find a client by name with and without its accents, by IP, by cédula: one hit, its page
    for typed, key, name in (
        ("Lucía Mora", 4, "Eva Lucía Mora"),
        ("10.3.0.2", 2, "Ana Restrepo"),
        ("71234567", 4, "Eva Lucía Mora"),
        ("inigo zuniga", 3, "Íñigo Zúñiga Ñáñez"),
    ):
        browser.get(stack.url + "/?refresh=off")  # nothing reloads while typing
        browser.find_element(By.ID, "q").send_keys(typed)
        browser.find_element(By.ID, "search").click()
        assert name in text_of(browser, "#summary h2"), typed
        assert browser.current_url.endswith(f"/clients/{key}"), typed
    assert words["in_step"] in text_of(browser, "#compare")
    assert words["created"] in text_of(browser, "#history")
    first = browser.find_element(By.CSS_SELECTOR, "#history td[title]")
    utc = datetime.fromisoformat(first.get_attribute("title"))
    assert utc.astimezone(ZoneInfo("America/Bogota")).strftime("%H:%M:%S -05") in first.text

    # what the BQN holds, changed by hand, beside WispHub; what a sync would do
    with bqn_sim.state.lock:
        bqn_sim.state.subscribers["10.3.0.3"]["policyRate"] = "Online_Free"
    browser.find_element(By.ID, "what-would-change").click()
    assert words["differ"] in text_of(browser, "#compare")
    assert words["differs"] in text_of(browser, "#compare tr.differs")
    assert words["change"] in text_of(browser, "#changes")
    screenshot(browser, f"console-client{shot}")
    browser.find_element(By.ID, "sync-now").click()
    assert words["queued"] in text_of(browser, ".flash.ok")
    eventually(lambda: managed_state(bqn_sim)["10.3.0.3"][1] == "Online_basico", "the sync")
    browser.get(stack.url + "/clients/3")
    history = text_of(browser, "#history")
    assert words["asked"] in history
    assert words["read"] in history
    assert words["updated"] in history
    assert words["in_step"] in text_of(browser, "#compare")

    # several hits: a list
    browser.find_element(By.ID, "q").send_keys("10.3.0.")
    browser.find_element(By.ID, "search").click()
    assert words["found"] in text_of(browser, "#results h2")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#hits tr.hit")) == 4
    screenshot(browser, f"console-search{shot}")

    # requeue one failure, dismiss the other
    browser.get(stack.url + "/?refresh=off")
    browser.find_element(By.CSS_SELECTOR, "#failures button.requeue").click()
    assert words["requeued"] in text_of(browser, ".flash.ok")
    browser.get(stack.url + "/?refresh=off")
    browser.find_element(By.CSS_SELECTOR, "#failures button.dismiss").click()
    assert words["dismissed"] in text_of(browser, ".flash.ok")
    eventually(lambda: _failed(stack) == 0, "no failure left")
    browser.get(stack.url + "/?refresh=off")
    assert words["no_failures"] in text_of(browser, "#failures")
    assert words["cleared"] in text_of(browser, "#cleared")

    # pause writes for a BQN's maintenance, then resume them
    browser.find_element(By.CSS_SELECTOR, "#pause-form input[name=reason]").send_keys("core swap")
    browser.find_element(By.ID, "pause").click()
    assert "core swap" in text_of(browser, "#paused")
    assert api(stack, "get", "/api/v1/pause")["paused"] is True
    browser.get(stack.url + "/?refresh=off")
    browser.find_element(By.ID, "resume").click()
    assert words["resumed"] in text_of(browser, ".flash.ok")
    assert not browser.find_elements(By.ID, "paused")
    assert api(stack, "get", "/api/v1/pause")["paused"] is False

    # the overview reloads itself: a job queued meanwhile shows without any navigation
    api(stack, "post", "/api/v1/pause")  # the job waits in the queue
    browser.get(stack.url + "/")
    before = browser.find_element(By.ID, "queued")
    assert before.text == "0"
    api(stack, "post", "/api/v1/clients/1/sync")
    WebDriverWait(browser, 4 * REFRESH_SECONDS).until(lambda b: _text(b, "queued") == "1")
    assert browser.current_url == stack.url + "/"
    with pytest.raises(StaleElementReferenceException):
        before.text  # noqa: B018 (the page was reloaded: the element is gone)
    api(stack, "post", "/api/v1/resume")


def api(stack: Processes, method: str, path: str) -> dict:
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    response = requests.request(method, f"{stack.url}{path}", headers=headers, timeout=10)
    assert response.ok, response.text
    return response.json()


def _failed(stack: Processes) -> int:
    return api(stack, "get", "/api/v1/failures")["count"]


def _cleared_by(stack: Processes) -> str:
    """The failures cleared, each with the job that cleared it, and the histories of the
    failing clients: what a failure that left the list too soon needs to be understood."""
    cleared = api(stack, "get", "/api/v1/failures")["cleared"]
    jobs = [
        api(stack, "get", f"/api/v1/jobs/{entry['by']}")
        for entry in cleared
        if entry["cleared"] == "resolved"  # by a job (dismissed: by a person)
    ]
    histories = {key: api(stack, "get", f"/api/v1/clients/{key}/history") for key in (2, 4)}
    return json.dumps({"cleared": cleared, "by": jobs, "histories": histories}, indent=1)


def _idle(stack: Processes) -> bool:
    writes = api(stack, "get", "/api/v1/pause")
    return writes["queued"] == writes["running"] == 0


def _text(browser: webdriver.Chrome, element_id: str) -> str | None:
    """An element's text, or None while the page is being reloaded."""
    try:
        return browser.find_element(By.ID, element_id).text
    except WebDriverException:  # gone or stale mid-reload: look again
        return None


def screenshot(browser: webdriver.Chrome, name: str) -> None:
    """Save the whole page as `docs/images/<name>.png`, only with SAVE_SCREENSHOTS=1."""
    if os.environ.get("SAVE_SCREENSHOTS") != "1":
        return
    size = browser.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    whole = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
    shot = browser.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": whole}
    )
    IMAGES.mkdir(exist_ok=True)
    (IMAGES / f"{name}.png").write_bytes(base64.b64decode(shot["data"]))
