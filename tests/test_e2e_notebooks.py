"""Every notebook as a newcomer meets it: JupyterLab (token auth on, loopback) serves a project laid out like
the repository, headless Chromium (Debian's package, driven by Playwright) opens each notebook of notebooks/
from the file browser, runs all cells with the default parameters, and no cell may show an error; each
artefact notebook must display its table or figure. In the pseudo-label inspector it also moves the image
slider and toggles a layer, and the rendered view must change each time (screenshots in test-artifacts/e2e/).

The project is a temporary folder holding copies of notebooks/*.ipynb (globbed, so notebooks added later are
covered) beside links to the repository's params/, docs/ and shipped backbone: the kernels start in its
notebooks/ folder, as JupyterLab starts them, and must find their paths from the notebook's location. What
the defaults write (outputs/, the train notebook's short run, the demo runs of the notebooks that load
networks) lands there, never in the repository. Screenshots and each notebook's run time go to
test-artifacts/e2e-notebooks/."""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from reprokit.viz.registry import ARTEFACTS

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
ARTIFACTS = ROOT / "test-artifacts" / "e2e-notebooks"
INSPECTOR_ARTIFACTS = ROOT / "test-artifacts" / "e2e"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# CI sets REPROKIT_REQUIRE_E2E=1 so a missing browser fails instead of skipping.
MISSING = not Path(CHROMIUM).exists() and os.environ.get("REPROKIT_REQUIRE_E2E") != "1"
PER_NOTEBOOK_S = 300  # the slowest default (Fig. 7 building two demo runs) takes about 100 s on 2 cores
pytestmark = [pytest.mark.e2e, pytest.mark.slow,
              pytest.mark.skipif(MISSING, reason="Debian chromium not installed (make test installs it as root)")]

FIGURE_ARTEFACTS = {a.name for a in ARTEFACTS if ".png" in a.writes}
TABLE_ARTEFACTS = {a.name for a in ARTEFACTS} - FIGURE_ARTEFACTS
# what each notebook must display once it has run: a CSS selector inside its output areas
SHOWS = {**{n: ".jp-RenderedImage img" for n in FIGURE_ARTEFACTS},
         **{n: ".jp-RenderedMarkdown table" for n in TABLE_ARTEFACTS},
         "evaluate": ".jp-RenderedImage img", "train": ".jp-RenderedHTMLCommon table",
         "inspect_pseudo_labels": ".reprokit-inspector img"}

# the notebook's state in the page: its kernel's status, unexecuted code cells, and error outputs
NOTEBOOK_STATE = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  if (!panel || !panel.content || !panel.sessionContext) return null;
  const code = panel.content.widgets.filter(c => c.model.type === 'code');
  const errors = [];
  for (const cell of code) {
    for (const out of cell.model.outputs.toJSON()) {
      if (out.output_type === 'error') errors.push(`${out.ename}: ${out.evalue}`);
    }
  }
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  return {path: panel.context.path, status: kernel ? kernel.status : 'none', errors,
          pending: code.filter(c => c.model.executionCount === null).length};
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _project(work: Path) -> Path:
    """A folder laid out like the repository: copied notebooks, linked parameters, records and backbone."""
    project = work / "project"
    (project / "notebooks").mkdir(parents=True)
    for nb in NOTEBOOKS:
        shutil.copy2(nb, project / "notebooks" / nb.name)
    for name in ("params", "docs"):
        (project / name).symlink_to(ROOT / name)
    (project / "data").mkdir()
    (project / "data" / "pretrained").symlink_to(ROOT / "data" / "pretrained")
    return project


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    work = tmp_path_factory.mktemp("lab-notebooks")
    project = _project(work)
    token, port = os.urandom(16).hex(), free_port()
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
           f"--ServerApp.token={token}", f"--ServerApp.root_dir={project}", "--allow-root",
           "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=", f"--LabApp.workspaces_dir={work / 'ws'}",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    env = {k: v for k, v in os.environ.items() if k != "REPROKIT_PROJECT"}
    log = open(work / "lab.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=work,
                            env={**env, "PYTHONPATH": str(ROOT), "REPROKIT_PROGRESS": "0"})
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
    with pytest.raises(urllib.error.HTTPError):  # token auth is on: without the token the API refuses
        urllib.request.urlopen(f"{base}/api/contents", timeout=5)
    yield base, token, project
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


def _shut_down_kernels(base: str, token: str) -> None:
    """Shut every open notebook's kernel down through the server's API: fifteen idle kernels would hold
    gigabytes."""
    auth = {"Authorization": f"token {token}"}
    open_kernels = json.load(urllib.request.urlopen(urllib.request.Request(f"{base}/api/sessions", headers=auth)))
    for s in open_kernels:
        urllib.request.urlopen(urllib.request.Request(f"{base}/api/sessions/{s['id']}", method="DELETE",
                                                      headers=auth))


def _run_notebook(page, name: str) -> dict:
    """Open ``name`` from the file browser, run all cells, wait until every cell ran or one failed."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    item = page.locator(".jp-DirListing-item", has=page.locator(".jp-DirListing-itemText",
                                                                 has_text=re.compile(f"^{re.escape(name)}$")))
    item.dblclick()
    page.wait_for_function(f"() => {{ const p = window.jupyterapp.shell.currentWidget; "
                           f"return p && p.context && p.context.path === 'notebooks/{name}'; }}", timeout=60_000)
    deadline = time.time() + 120
    while time.time() < deadline:  # a fresh server may ask which kernel to start: accept the notebook's own
        try:
            page.locator(".jp-Dialog button.jp-mod-accept").click(timeout=500)
        except PlaywrightTimeout:
            pass
        state = page.evaluate(NOTEBOOK_STATE)
        if state and state["status"] == "idle":
            break
    else:
        raise AssertionError(f"{name}: the kernel did not start")
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    deadline = time.time() + PER_NOTEBOOK_S
    while time.time() < deadline:
        page.wait_for_timeout(500)
        state = page.evaluate(NOTEBOOK_STATE)
        if state["errors"] or state["pending"] == 0 and state["status"] == "idle":
            return state
    raise AssertionError(f"{name}: still running after {PER_NOTEBOOK_S} s ({state})")


def _view_src(page) -> str:
    return page.locator(".reprokit-inspector img").first.get_attribute("src")


def _wait_change(page, old: str, timeout: float = 60) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        src = _view_src(page)
        if src and src != old:
            return src
        page.wait_for_timeout(200)
    raise AssertionError("the rendered view did not change")


def _exercise_inspector(page) -> None:
    """Move the image slider with the keyboard, as a user would after clicking its handle, then toggle a
    layer: each must render a new view."""
    INSPECTOR_ARTIFACTS.mkdir(parents=True, exist_ok=True)
    first = _wait_change(page, "")
    page.screenshot(path=str(INSPECTOR_ARTIFACTS / "1-opened.png"))
    handle = page.locator(".reprokit-inspector .widget-slider .noUi-handle").first
    handle.click()
    handle.press("ArrowRight")
    second = _wait_change(page, first)
    page.screenshot(path=str(INSPECTOR_ARTIFACTS / "2-next-image.png"))
    page.locator(".reprokit-inspector button", has_text="selection category").click()
    third = _wait_change(page, second)
    page.screenshot(path=str(INSPECTOR_ARTIFACTS / "3-selection-layer.png"))
    assert len({first, second, third}) == 3
    assert "updated in" in page.locator(".reprokit-inspector").inner_text()


def test_every_notebook_runs_from_its_defaults_in_jupyterlab(lab):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    base, token, project = lab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    timings, failures = {}, []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{base}/lab?reset&token={token}")
        page.wait_for_function("window.jupyterapp && window.jupyterapp.shell", timeout=120_000)
        try:  # JupyterLab asks whether to fetch news: no
            page.get_by_role("button", name="No", exact=True).click(timeout=5_000)
        except PlaywrightTimeout:
            pass
        try:
            page.locator(".jp-DirListing-item[data-isdir='true']", has_text="notebooks").first.dblclick(timeout=60_000)
            page.locator(".jp-DirListing-itemText", has_text="train.ipynb").first.wait_for(timeout=60_000)
        finally:
            page.screenshot(path=str(ARTIFACTS / "file-browser.png"))
        for nb in NOTEBOOKS:
            start = time.perf_counter()
            state = _run_notebook(page, nb.name)
            timings[nb.stem] = round(time.perf_counter() - start, 1)
            shows = SHOWS.get(nb.stem, ".jp-OutputArea-output")
            page.locator(".jp-OutputArea-output").last.scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / f"{nb.stem}.png"))
            shown = page.locator(f".jp-NotebookPanel:visible {shows}").count()
            text = page.locator(".jp-NotebookPanel:visible .jp-OutputArea").all_inner_texts()
            widget_errors = [t for t in text if "Error displaying widget" in t or "Traceback" in t]
            if state["errors"] or widget_errors or not shown:
                failures.append(f"{nb.name}: errors {state['errors'] + widget_errors}, {shows!r} shown {shown} times")
            elif nb.stem == "inspect_pseudo_labels":
                _exercise_inspector(page)
            page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
            page.wait_for_timeout(300)
            page.evaluate("() => window.jupyterapp.commands.execute('application:close-all')")
            _shut_down_kernels(base, token)
        browser.close()
    (ARTIFACTS / "timings.json").write_text(json.dumps(timings, indent=1))
    print("\n".join(f"{name}: {seconds} s" for name, seconds in timings.items()))
    assert not failures, "\n".join(failures)
    assert sorted(timings) == sorted(nb.stem for nb in NOTEBOOKS)
    # the defaults wrote into the project's untracked folders, found from the notebooks' location
    assert (project / "outputs" / "table4.md").is_file()
    assert (project / "runs" / "notebook" / "short-supervised" / "eval.json").is_file()
    assert (project / "runs" / "demo" / "digits-table4-stpg-s0" / "checkpoint.pt").is_file()
