"""End to end in a real browser: JupyterLab (token auth on) serves the inspector notebook, headless
Chromium (Debian's package, driven by Playwright) runs all cells, moves the image slider and toggles a
layer, and the rendered view must change each time. Screenshots go to test-artifacts/e2e/."""
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import papermill as pm
import pytest

from reprokit.configure import from_dict
from reprokit.engine.train import train
from tests.conftest import tiny_raw

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts" / "e2e"
# CI sets REPROKIT_REQUIRE_E2E=1 so a missing browser fails instead of skipping.
MISSING = not Path(CHROMIUM).exists() and os.environ.get("REPROKIT_REQUIRE_E2E") != "1"
pytestmark = [pytest.mark.e2e, pytest.mark.slow,
              pytest.mark.skipif(MISSING, reason="Debian chromium not installed (make test installs it as root)")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory, digits_root):
    """A JupyterLab server on localhost whose root holds the parameterised inspector notebook."""
    work = tmp_path_factory.mktemp("lab")
    raw = tiny_raw(digits_root, method={"name": "stpg", "proj_dim": 16, "bank_size": 8},
                   train={"iters": 6, "ckpt_every": 3, "snapshot_every": 3})
    train(from_dict(raw), work / "run")
    pm.execute_notebook(str(ROOT / "notebooks" / "inspect_pseudo_labels.ipynb"), str(work / "inspect.ipynb"),
                        parameters={"run_dir": str(work / "run"), "export_dir": str(work / "export"), "scale": 6},
                        prepare_only=True)
    token, port = secrets.token_hex(16), free_port()
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
           f"--ServerApp.token={token}", f"--ServerApp.root_dir={work}", "--allow-root",
           "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    log = open(work / "lab.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail(f"JupyterLab did not start: {(work / 'lab.log').read_text()[-2000:]}")
    # token auth is on: without the token the API refuses
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(f"{base}/api/contents", timeout=5)
    yield base, token
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


def view_src(page) -> str:
    return page.locator(".reprokit-inspector img").first.get_attribute("src")


def wait_change(page, old: str, timeout: float = 60) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        src = view_src(page)
        if src and src != old:
            return src
        page.wait_for_timeout(200)
    raise AssertionError("the rendered view did not change")


def test_inspector_in_jupyterlab(lab):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    base, token = lab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{base}/lab/tree/inspect.ipynb?token={token}")
        page.wait_for_selector(".jp-NotebookPanel", timeout=120_000)
        page.wait_for_function("window.jupyterapp && window.jupyterapp.shell.currentWidget", timeout=120_000)
        # a fresh server may ask which kernel to start: accept the notebook's own (Python 3)
        try:
            page.locator(".jp-Dialog button.jp-mod-accept").click(timeout=15_000)
        except PlaywrightTimeout:
            pass
        page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
        # fire the command without awaiting its promise (it settles only when every cell has run)
        page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
        try:
            page.wait_for_selector(".reprokit-inspector img", timeout=180_000)
        finally:
            page.screenshot(path=str(ARTIFACTS / "0-after-run-all.png"), full_page=True)
        first = wait_change(page, "")
        page.screenshot(path=str(ARTIFACTS / "1-opened.png"), full_page=True)

        # move the image slider with the keyboard, as a user would after clicking its handle
        handle = page.locator(".reprokit-inspector .widget-slider .noUi-handle").first
        handle.click()
        handle.press("ArrowRight")
        second = wait_change(page, first)
        page.screenshot(path=str(ARTIFACTS / "2-next-image.png"), full_page=True)

        # toggle a layer
        page.locator(".reprokit-inspector button", has_text="selection category").click()
        third = wait_change(page, second)
        page.screenshot(path=str(ARTIFACTS / "3-selection-layer.png"), full_page=True)
        status = page.locator(".reprokit-inspector").inner_text()
        browser.close()
    assert len({first, second, third}) == 3
    assert "updated in" in status
