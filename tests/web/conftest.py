"""The browser of the web-page tests: headless Debian Chromium driven by Selenium.

Every browser test skips (with the reason) when selenium, chromium or chromedriver is missing;
``make test`` installs them (the ``web`` extra and Debian's chromium + chromium-driver).
"""

from __future__ import annotations

import shutil

import pytest

from tests.web.helpers import WAIT_S


@pytest.fixture(scope="session")
def browser():
    """A headless Chromium (1280 px wide) for the session; skips when it cannot start."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed "
                                    "(pip install -e '.[web]')")  # fmt: skip
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not (chromium and driver_path):
        pytest.skip("chromium / chromedriver not found (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1280,1400", "--lang=en-US"):  # fmt: skip
        options.add_argument(argument)
    # The driver's path is given, so Selenium Manager never tries to download one.
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(WAIT_S)
    yield driver
    driver.quit()
