"""Headless Chromium for the report's browser tests: Debian's ``chromium`` and
``chromium-driver`` driven by Selenium (``pip install '.[browser-test]'``; ``.ci/run``
installs all three). Nothing is downloaded: the driver is the one at /usr/bin/chromedriver
(or ``$SEGAUDIT_CHROMEDRIVER``), so selenium-manager never runs.

Without them the tests are skipped, saying what is missing.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage")


def _find(variable: str, *names: str) -> str | None:
    given = os.environ.get(variable)
    if given:
        return given if Path(given).is_file() else None
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


def start_chromium(download_dir: Path, width: int = 1400, height: int = 1000):
    """A Selenium driver of headless Chromium downloading into ``download_dir``, with a
    fresh profile; pytest.skip (with the reason) when Selenium, Chromium or its driver
    is missing."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install '.[browser-test]'): the report's browser tests need it")
    binary = _find("SEGAUDIT_CHROMIUM", "chromium", "chromium-browser")
    driver_path = _find("SEGAUDIT_CHROMEDRIVER", "chromedriver")
    if binary is None or driver_path is None:
        missing = " and ".join(n for n, p in (("chromium", binary), ("chromedriver", driver_path)) if p is None)
        pytest.skip(f"no {missing} (apt-get install chromium chromium-driver): the report's browser tests need it")
    options = Options()
    options.binary_location = binary
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="segaudit-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    options.add_experimental_option("prefs", {"download.default_directory": str(download_dir),
                                              "download.prompt_for_download": False})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(download_dir)})
    driver.segaudit_profile = profile
    return driver


def stop_chromium(driver) -> None:
    driver.quit()
    shutil.rmtree(driver.segaudit_profile, ignore_errors=True)


def wait_for(predicate, timeout: float = 10.0, what: str = "the page"):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
