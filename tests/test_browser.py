"""End to end in a real browser (Debian's headless Chromium, driven by Selenium with the system
chromedriver): log in through the tunnel, open a notebook, run a cell, see its output; the same
over HTTPS in public mode with the certificate pinned by its key; a wrong password refused.
Screenshots of each final page go to artifacts/ (not committed); with FABJUPYTER_DOCS_IMAGES=1
the notebook reached through the tunnel also becomes the documentation's picture
(docs/images/jupyterlab.png, shown where getting started says what you will see)."""

import os
import shutil

from cryptography import x509
from selenium.common.exceptions import (
    ElementClickInterceptedException,
    ElementNotInteractableException,
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from tasks.ops.cert import spki_hash

from .chromium import ARTIFACTS, screenshot
from .conftest import ROOT
from .test_cert import local_copy

PASSWORD = "browser horse"
DOCS_IMAGE = ROOT / "docs" / "images" / "jupyterlab.png"


def log_in(driver, url, password):
    driver.get(url)
    field = WebDriverWait(driver, 30).until(EC.presence_of_element_located((By.ID, "password_input")))
    field.send_keys(password)
    driver.find_element(By.ID, "login_submit").click()


def run_a_cell(driver, name):
    """In JupyterLab: a new Python notebook from the launcher, `print(6*7)`, Shift+Enter, 42."""
    wait = WebDriverWait(driver, 90)

    def on(selector, *keys):
        """Click (or type into) the element, found anew at each try: JupyterLab re-renders the
        launcher and the cell while it loads, which leaves an element found earlier stale."""
        def attempt(d):
            try:
                element = d.find_element(By.CSS_SELECTOR, selector)
                element.click()
                for k in keys:
                    element.send_keys(*k)
                return True
            except (StaleElementReferenceException, ElementClickInterceptedException, NoSuchElementException,
                    ElementNotInteractableException):
                return False

        wait.until(attempt)

    try:
        on('.jp-LauncherCard[data-category="Notebook"]')
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, ".jp-Notebook-ExecutionIndicator[data-status='idle']")))
        on(".jp-Notebook .jp-Cell .cm-content", ("print(6*7)",))
        # Run it (Shift+Enter on the first cell). On a loaded machine JupyterLab now and then
        # advances without sending the first request; a person would press it again, and so do we
        # (at most three times): the output must still come from the kernel through the forward.
        for attempt in range(3):
            on(".jp-Notebook .jp-Cell .cm-content", (Keys.SHIFT, Keys.ENTER))
            try:
                WebDriverWait(driver, 30).until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, ".jp-OutputArea-output"), "42"))
                break
            except TimeoutException:
                if attempt == 2:
                    raise
    finally:
        screenshot(driver, name)
    return driver.find_element(By.CSS_SELECTOR, ".jp-OutputArea-output").text


def test_log_in_through_the_tunnel_and_run_a_cell(fab, local_port, browser):
    fab.hosts("", tcp=False)  # the default: a Unix socket, as a user gets it
    fab.setup(password=PASSWORD)
    proc, url, out = fab.tunnel("--local-port", str(local_port))
    assert url == f"http://localhost:{local_port}/", out
    driver = browser()
    log_in(driver, url, PASSWORD)
    assert run_a_cell(driver, "tunnel-notebook").strip() == "42"  # the kernel's websocket works through the forward
    if os.environ.get("FABJUPYTER_DOCS_IMAGES") == "1":
        shutil.copyfile(ARTIFACTS / "tunnel-notebook.png", DOCS_IMAGE)


def test_wrong_password_stays_on_the_login_page(fab, local_port, browser):
    fab.setup(password=PASSWORD)
    proc, url, out = fab.tunnel("--local-port", str(local_port))
    driver = browser()
    log_in(driver, url, "not the password")
    try:
        WebDriverWait(driver, 20).until(EC.text_to_be_present_in_element((By.TAG_NAME, "body"), "Invalid credentials"))
        assert "/login" in driver.current_url
        assert driver.find_elements(By.ID, "password_input")
    finally:
        screenshot(driver, "wrong-password")


def test_public_mode_https_with_the_pinned_certificate(fab, browser):
    fab.setup("--mode", "public", password=PASSWORD)
    cert = x509.load_pem_x509_certificate((local_copy(fab) / "cert.pem").read_bytes())
    # trust exactly this key (not a blanket ignore): a different certificate would still be refused
    driver = browser(f"--ignore-certificate-errors-spki-list={spki_hash(cert)}")
    log_in(driver, f"https://127.0.0.1:{fab.port}/", PASSWORD)
    assert run_a_cell(driver, "public-https-notebook").strip() == "42"
    assert driver.current_url.startswith(f"https://127.0.0.1:{fab.port}/")


def test_unpinned_browser_refuses_the_self_signed_certificate(fab, browser):
    """Without the pin, Chromium stops at its certificate error for this very server (not a
    refused connection or a wrong port); with the pin, the same URL shows the login page."""
    fab.setup("--mode", "public", password=PASSWORD)
    url = f"https://127.0.0.1:{fab.port}/"
    driver = browser()
    driver.get(url)
    try:
        WebDriverWait(driver, 20).until(lambda d: "ERR_CERT" in d.page_source)
        assert "ERR_CERT_AUTHORITY_INVALID" in driver.page_source
        assert not driver.find_elements(By.ID, "password_input")
    finally:
        screenshot(driver, "public-unpinned")
    cert = x509.load_pem_x509_certificate((local_copy(fab) / "cert.pem").read_bytes())
    pinned = browser(f"--ignore-certificate-errors-spki-list={spki_hash(cert)}")
    pinned.get(url)
    WebDriverWait(pinned, 20).until(EC.presence_of_element_located((By.ID, "password_input")))
