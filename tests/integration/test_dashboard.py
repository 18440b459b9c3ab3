"""The dashboard in a real headless browser (Debian's chromium + chromedriver).

A worker on the real broker, events published, ``/dashboard`` loaded: the
rendered counters are non-zero and a user's list shows in the user box. The
screenshot is kept as ``docs/dashboard.png``. ``.ci/run`` installs chromium
when it is missing; without a chromium binary the test is skipped.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path

import pytest

from streams.kafka import topics
from streams.kafka.broker import free_port
from streams.kafka.clients import publish
from tests.integration.harness import WorkerProcess, event, publish_catalog, publish_events, wait_for_catalog, wait_for_list
from tests.topic_catalog import catalog_items

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "docs" / "dashboard.png"
T0 = 1_700_000_000_000
MINUTE = 60_000
CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
CHROMEDRIVER = shutil.which("chromedriver")


def browser(user_data: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--window-size=1400,1150", f"--user-data-dir={user_data}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


@pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None, reason="no chromium/chromedriver binary (apt-get install chromium chromium-driver; .ci/run does)")
async def test_the_dashboard_renders_live_counters_and_a_users_list(settings, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    port = free_port()
    settings = settings.model_copy(update={"metrics_port": port})
    items = catalog_items()
    await publish_catalog(settings, items)
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    user_data = tempfile.mkdtemp(prefix="chromium-", dir=tmp_path)
    driver = None
    try:
        await wait_for_catalog(settings, len(items))
        users = [f"dash-{n}" for n in range(8)]
        topics_of = ["space", "baking", "football"]
        first = [event(u, f"{topics_of[n % 3]}-{i}", T0 + i * MINUTE) for n, u in enumerate(users) for i in range(3)]
        await publish_events(settings, first)
        await wait_for_list(settings, users[-1], lambda r: r.event_ts == T0 + 2 * MINUTE)
        driver = browser(user_data)
        driver.get(f"http://127.0.0.1:{port}/dashboard")
        # a second wave while the page polls: rates, latency and live quality move
        second = [event(u, f"{topics_of[n % 3]}-{i}", T0 + i * MINUTE) for n, u in enumerate(users) for i in range(3, 7)]
        await publish_events(settings, second)
        await publish(settings, settings.topic(topics.EVENTS), [(b"dash-bad", b"not json")])
        await wait_for_list(settings, users[0], lambda r: r.event_ts == T0 + 6 * MINUTE)

        def number(element_id: str) -> float:
            text = driver.find_element(By.ID, element_id).text.replace(",", "")
            return float(text) if text.replace(".", "", 1).isdigit() else 0.0

        def settled(_) -> bool:
            return number("events-total") >= len(first) + len(second) + 1 and number("lists-total") > 0 and number("online-events") > 0

        await asyncio.to_thread(WebDriverWait(driver, 60, poll_frequency=0.5).until, settled)
        assert number("dead-letters-total") == 1
        assert driver.find_element(By.ID, "latency-p50").text not in ("", "–")
        assert "not_json" in driver.find_element(By.ID, "dead-letters").text
        assert driver.find_element(By.ID, "lag").find_elements(By.TAG_NAME, "tr")[1:], "no lag rows"

        driver.find_element(By.ID, "user-id").send_keys(users[0])
        driver.find_element(By.ID, "user-go").click()
        rows = await asyncio.to_thread(
            WebDriverWait(driver, 30, poll_frequency=0.5).until, lambda d: d.find_elements(By.CSS_SELECTOR, "#user-list tr.list-item")
        )
        assert len(rows) == settings.top_k
        assert "space" in driver.find_element(By.ID, "user-interests").text
        assert driver.find_elements(By.ID, "user-timeline")
        await asyncio.sleep(2.5)  # one more poll: the charts have two points at least
        SCREENSHOT.parent.mkdir(exist_ok=True)
        driver.save_screenshot(str(SCREENSHOT))
        assert SCREENSHOT.stat().st_size > 10_000
    finally:
        if driver is not None:
            driver.quit()
        worker.stop()
