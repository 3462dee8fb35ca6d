"""The documentation site as a reader meets it: `mkdocs build --strict` (no broken link or anchor,
no page outside the nav), served on loopback and opened in Debian's headless Chromium: the front
page, a generated reference page and the picture of how it works render, with the navigation
and search a reader uses, and no request leaves for the internet. Screenshots go to artifacts/."""

import functools
import http.server
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from .chromium import screenshot
from .conftest import ROOT

MKDOCS = Path(sys.executable).with_name("mkdocs")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    requests = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.requests.append(self.path)
        super().do_GET()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The built site, served on 127.0.0.1; yields its base URL."""
    out = tmp_path_factory.mktemp("site")
    r = subprocess.run([str(MKDOCS), "build", "--strict", "--site-dir", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(out)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def offsite_requests(driver):
    """Every resource the page loaded from anywhere but the local site (fonts or scripts from a
    CDN would make it depend on the internet, and tell a third party who reads it)."""
    entries = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    return [url for url in entries if not url.startswith("http://127.0.0.1:")]


def test_front_page_reads_with_its_navigation(site, browser):
    driver = browser()
    driver.get(site)
    wait = WebDriverWait(driver, 30)
    title = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "article h1"))).text
    assert "fabjupyter" in title.lower() or "jupyter" in title.lower(), title
    nav = driver.find_element(By.CSS_SELECTOR, "nav.md-nav--primary").get_attribute("textContent")
    for page in ("Getting started", "Troubleshooting", "Settings", "How it works"):
        assert page in nav, f"{page!r} is not in the navigation: {nav[:300]}"
    screenshot(driver, "site-front-page")
    assert offsite_requests(driver) == []


def test_settings_reference_is_a_table_of_every_setting(site, browser):
    from tasks.hosts.inventory import SETTING_KEYS

    driver = browser()
    driver.get(site + "reference/settings/")
    WebDriverWait(driver, 30).until(EC.presence_of_element_located((By.CSS_SELECTOR, "article table")))
    text = driver.find_element(By.CSS_SELECTOR, "article").text
    missing = [key for key in SETTING_KEYS if key not in text]
    assert not missing, f"the settings page does not show {missing}"
    screenshot(driver, "site-settings-reference")
    assert offsite_requests(driver) == []


def test_how_it_works_shows_its_picture(site, browser):
    driver = browser()
    driver.get(site + "how-it-works/")
    image = WebDriverWait(driver, 30).until(EC.presence_of_element_located((By.CSS_SELECTOR, "article img[src$='how-it-works.svg']")))
    WebDriverWait(driver, 30).until(lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image))
    assert image.size["width"] > 300, image.size  # drawn, not a broken-image icon
    screenshot(driver, "site-how-it-works")
