"""Fixtures for the web/ tests: Node.js with the project's npm packages, and headless Chromium.

`.ci/run` installs both (npm ci in web/, Debian's chromium and chromium-driver); the tests
skip, saying what is missing, only where that could not be done.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from tests.conftest import ROOT

WEB = ROOT / "web"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# Chromium as root on a machine with no network: no sandbox, no calls home.
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=800,760",
)


@pytest.fixture(scope="session")
def node() -> str:
    """Path of `node`, once web/'s npm packages are installed; else skip, saying why."""
    path = shutil.which("node")
    if path is None:
        pytest.skip("needs Node.js (node not on PATH)")
    if not (WEB / "node_modules" / "onnxruntime-node").is_dir():
        pytest.skip("needs web/'s npm packages: npm ci --ignore-scripts --prefix web")
    return path


def run_node(node: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([node, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="session")
def page_url():
    """The draw-a-digit page, served by `mnist-edge serve-web`'s server on a free port."""
    if not (WEB / "node_modules" / "onnxruntime-web").is_dir():
        pytest.skip("needs web/'s npm packages: npm ci --ignore-scripts --prefix web")
    from runtime.webpage import make_server

    server = make_server("127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    yield f"http://{host}:{port}/web/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    """Headless Debian Chromium driven by Selenium through Debian's chromedriver."""
    pytest.importorskip("selenium.webdriver", reason="needs selenium (dev extra)")
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        pytest.skip("needs Debian's Chromium: apt-get install chromium chromium-driver")
    driver = start_chromium(tmp_path_factory.mktemp("chromium"))
    driver.set_script_timeout(60)
    yield driver
    driver.quit()


def start_chromium(profile: Path):
    """Debian's headless Chromium driven through its chromedriver, its profile in `profile`,
    its console kept for the tests to read."""
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(str(CHROMEDRIVER)))
