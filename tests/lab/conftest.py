"""One JupyterLab server and one headless Chromium for the whole browser test.

JupyterLab serves a temporary copy of the notebooks, so saving in the browser never touches
the committed ones; its kernels write to their own temporary workspace. The browser is a
system Chromium, or Playwright's own where that is installed; never downloaded here. After
the session no process JupyterLab started may be left running.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from labtools import JupyterLab, browser_args, find_browser
from playwright.sync_api import sync_playwright

from mlops_helpers import config
from mlops_helpers.workbook.processes import ServerError

SCREENSHOTS_ENV = "MLOPS_LAB_SCREENSHOTS"
REPORT = pytest.StashKey[dict]()


@pytest.fixture(scope="session")
def screenshots(pytestconfig) -> Path:
    """Where the per-notebook screenshots go: ``$MLOPS_LAB_SCREENSHOTS`` or
    ``<project>/workspace/lab-screenshots`` (git-ignored)."""
    chosen = os.environ.get(SCREENSHOTS_ENV, "").strip()
    folder = Path(chosen) if chosen else config.project_root() / "workspace" / "lab-screenshots"
    folder = folder.resolve()
    pytestconfig.stash[REPORT] = {"folder": folder, "seconds": {}}
    return folder


@pytest.fixture(scope="session")
def run_times(pytestconfig, screenshots) -> dict[str, float]:
    """Seconds each notebook's Run All took in JupyterLab, for the summary."""
    return pytestconfig.stash[REPORT]["seconds"]


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    """A running JupyterLab on a temporary copy of ``notebooks/``; stopped, with every
    process it started, at the end of the session."""
    base = tmp_path_factory.mktemp("lab")
    root = base / "notebooks"
    shutil.copytree(
        config.notebooks_dir(), root, ignore=shutil.ignore_patterns(".ipynb_checkpoints")
    )
    server = JupyterLab(root, base / "state", base / "workspace")
    try:
        server.start()
    except ServerError as exc:
        failure = str(exc)  # failed outside the except block: no chained traceback
    else:
        failure = None
    if failure:
        pytest.fail(failure, pytrace=False)
    yield server
    left = server.stop()
    assert not left, f"JupyterLab left processes running (now killed): {left}"


@pytest.fixture(scope="session")
def browser():
    """A headless Chromium; fails (never skips) with the command that installs one."""
    with sync_playwright() as playwright:
        try:
            path, missing = find_browser(playwright.chromium.executable_path), None
        except LookupError as exc:
            path, missing = None, str(exc)
        if missing:
            pytest.fail(missing, pytrace=False)
        chromium = playwright.chromium.launch(
            executable_path=path, headless=True, args=browser_args()
        )
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def page(browser):
    """One browser page: JupyterLab loads once, each test opens and closes its notebook."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


def pytest_terminal_summary(terminalreporter, config):
    """Where the screenshots went and how long each notebook ran in JupyterLab."""
    report = config.stash.get(REPORT, None)
    if not report or not report["seconds"]:
        return
    terminalreporter.section("JupyterLab browser test")
    for stem, seconds in report["seconds"].items():
        terminalreporter.write_line(f"{stem:<32} Run All {seconds:6.1f} s   {stem}.png")
    terminalreporter.write_line(f"screenshots in {report['folder']}")
