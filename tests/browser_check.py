"""Open a page in headless Chromium and collect what went wrong: JavaScript errors and resource loads.

Chromium's console log (``goog:loggingPrefs`` "browser") reports uncaught exceptions (source
``javascript``) and failed loads (source ``network``, "Failed to load resource"); its DevTools network
events (the "performance" log, ``Network.requestWillBeSent``) list every request the page made, so a
load that succeeded is caught too. The report must request nothing but itself: its figures are data
URIs and its script and style are inline.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

#: Where Debian's ``chromium`` and ``chromium-driver`` packages put them (``.ci/run`` installs both).
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DRIVER = "chromedriver"


def find_chromium() -> tuple[str, str] | None:
    """Paths of a Chromium binary and its chromedriver, or None when either is missing."""
    browser = next((p for p in map(shutil.which, BROWSERS) if p), None)
    driver = shutil.which(DRIVER)
    return (browser, driver) if browser and driver else None


@dataclass
class PageCheck:
    js_errors: list[str] = field(default_factory=list)
    failed_loads: list[str] = field(default_factory=list)
    fetched: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        return (
            [f"JavaScript error: {e}" for e in self.js_errors]
            + [f"failed load: {e}" for e in self.failed_loads]
            + [f"fetched a resource: {u}" for u in self.fetched]
        )


def start_chromium(*, width: int = 1280, height: int = 900) -> webdriver.Chrome:
    """Headless Chromium with its console log kept (the caller quits it)."""
    found = find_chromium()
    if found is None:
        raise RuntimeError("Chromium or chromedriver not found")
    browser, driver = found
    options = webdriver.ChromeOptions()
    options.binary_location = browser  # with both paths given, Selenium Manager downloads nothing
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--window-size={width},{height}",
        "--disable-background-networking",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)


def collect(driver: webdriver.Chrome, check: PageCheck | None = None, *, page: str | None = None) -> PageCheck:
    """Add the console's errors and the requests other than ``page`` and data URIs since the last call."""
    check = check or PageCheck()
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            url = message["params"]["request"]["url"]
            if not url.startswith("data:") and url.split("#")[0] != (page or "").split("#")[0]:
                check.fetched.append(url)
    for entry in driver.get_log("browser"):
        if entry["level"] != "SEVERE":
            continue
        if entry.get("source") == "network" or "Failed to load resource" in entry["message"]:
            check.failed_loads.append(entry["message"])
        else:
            check.js_errors.append(entry["message"])
    return check


def open_page(driver: webdriver.Chrome, path: Path) -> PageCheck:
    """Load a local file and wait for it to finish (window load: images decoded, scripts run)."""
    driver.get_log("performance")  # drop what earlier pages logged
    driver.get_log("browser")
    uri = path.resolve().as_uri()
    driver.get(uri)
    driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "if (document.readyState === 'complete') { done(); } else { window.addEventListener('load', () => done()); }"
    )
    return collect(driver, page=uri)
