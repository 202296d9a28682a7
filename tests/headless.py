"""Headless Debian Chromium driven by Selenium through the system chromedriver, for the page tests
and the browser benchmark. Selenium never downloads a browser or driver here: both paths are
given, so Selenium Manager does not run."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Screenshots the page tests keep (CI can collect them; the README's come from here).
ARTIFACTS = Path(os.environ.get("BPO_TEST_ARTIFACTS", REPO / ".bpo-cache" / "test-artifacts"))


def browser_paths() -> tuple[str | None, str | None]:
    return shutil.which("chromium"), shutil.which("chromedriver")


def missing_reason() -> str | None:
    """Why the browser tests cannot run here (None: they can)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e .[dev], or make setup)"
    chromium, driver = browser_paths()
    if not chromium or not driver:
        return "Debian's chromium and chromium-driver are not installed (make setup installs them as root)"
    return None


@contextlib.contextmanager
def chromium(width: int = 1280, height: int = 900):
    """A headless Chromium WebDriver, quit on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = browser_paths()
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={width},{height}",
        "--disable-extensions",
        "--no-first-run",
    ):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def wait_state(driver, state: str, timeout: float = 30.0) -> None:
    """Wait until the page sets ``document.body.dataset.state`` to ``state``."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(
        lambda d: d.execute_script("return document.body && document.body.dataset.state") == state
    )


def screenshot(driver, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    driver.save_screenshot(str(path))
    return path
