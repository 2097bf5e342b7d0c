"""The JupyterLab browser test's machinery: find a Chromium, run JupyterLab on 127.0.0.1
isolated from the user's Jupyter files, and drive one notebook through JupyterLab's menus
the way a learner would (clear outputs, run all, save, shut the kernel down)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import psutil

from mlops_helpers.workbook import warmstart
from mlops_helpers.workbook.processes import HOST, ServerProcess, free_port, venv_env

BROWSER_ENV = "MLOPS_BROWSER"
SYSTEM_BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
NO_BROWSER = f"""no Chromium for the JupyterLab browser test (nothing on PATH named {", ".join(SYSTEM_BROWSERS)},
and Playwright's own Chromium is not installed). Install one, then rerun:
  make browser                            # as root on Debian/Ubuntu: installs the chromium package
  sudo apt-get install chromium           # Debian/Ubuntu, as a user
  .venv/bin/playwright install chromium   # Playwright's own build, where downloads are allowed
or point {BROWSER_ENV} at a Chromium or Chrome executable."""

RUN_TIMEOUT = 300.0  # seconds for one Run All: 05 and 06 take 40 s, 2 min on a busy machine
KERNEL_TIMEOUT = 60.0  # seconds for a kernel to start, go idle or shut down
SCREENSHOT_MAX_HEIGHT = 16_000  # pixels; a whole notebook fits, Chromium stays happy

# JupyterLab settings for the test: every cell attached to the page (the default lazy
# rendering would hide outputs scrolled out of view), and no news prompt over the notebook.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}


def find_browser(playwright_chromium: str | None) -> str:
    """The Chromium to drive: ``$MLOPS_BROWSER``, a system Chromium or Chrome on PATH, or
    Playwright's own (``playwright_chromium``, when it exists). LookupError says the fix."""
    chosen = os.environ.get(BROWSER_ENV, "").strip()
    if chosen:
        path = shutil.which(chosen)
        if not path:
            raise LookupError(f"{BROWSER_ENV}={chosen} is not an executable (unset it to search)")
        return path
    for name in SYSTEM_BROWSERS:
        if path := shutil.which(name):
            return path
    if playwright_chromium and Path(playwright_chromium).is_file():
        return playwright_chromium
    raise LookupError(NO_BROWSER)


def browser_args() -> list[str]:
    """Chromium flags for a container: no sandbox as root, no reliance on a small /dev/shm."""
    args = ["--disable-dev-shm-usage"]
    if os.geteuid() == 0:
        args.append("--no-sandbox")
    return args


class JupyterLab:
    """JupyterLab on 127.0.0.1, a free port and a random token, serving ``root``.

    Its Jupyter config, data, runtime, IPython and layout folders live in ``state``, so the
    user's settings and saved layout stay out; its kernels write to ``workspace``.
    """

    def __init__(self, root: Path, state: Path, workspace: Path):
        self.root, self.state, self.workspace = root, state, workspace
        self.token = secrets.token_hex(16)
        self.port = free_port()
        self.server: ServerProcess | None = None

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"http://{HOST}:{self.port}"

    @property
    def app_url(self) -> str:
        """The URL that loads JupyterLab with its default layout (``reset``) and logs in."""
        return f"{self.url}/lab?reset&token={self.token}"

    def _environment(self) -> dict[str, str]:
        dirs = {
            "JUPYTER_CONFIG_DIR": "config",
            "JUPYTER_DATA_DIR": "data",
            "JUPYTER_RUNTIME_DIR": "runtime",
            "IPYTHONDIR": "ipython",
            "JUPYTERLAB_SETTINGS_DIR": "config/lab/user-settings",
            "JUPYTERLAB_WORKSPACES_DIR": "config/lab/workspaces",
        }
        env = venv_env({key: str(self.state / sub) for key, sub in dirs.items()})
        env["MLOPS_WORKBOOK_HOME"] = str(self.workspace)
        # JupyterLab starts as make lab starts it from a shell: its kernels start the usual
        # way, not warm as the test session's do; what they start through the workbook's
        # helpers is warm from templates each kernel owns (warmstart.enable_here).
        for key in (
            "JUPYTER_PATH", "JUPYTER_CONFIG_PATH", "PYTHONSTARTUP",
            warmstart.PROVISIONER_ENV, warmstart.OWNER_ENV,
        ):  # fmt: skip
            env.pop(key, None)
        return env

    def _write_settings(self) -> None:
        for plugin, values in LAB_SETTINGS.items():
            path = self.state / "config/lab/user-settings" / f"{plugin}.jupyterlab-settings"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))

    def start(self) -> JupyterLab:
        """Start the server and wait until its API answers (its log is shown if it never does)."""
        self._write_settings()
        command = [
            str(Path(sys.executable).with_name("jupyter")), "lab", "--no-browser",
            f"--ServerApp.ip={HOST}", f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
            "--ServerApp.open_browser=False", "--ServerApp.terminals_enabled=False",
            "--LabApp.news_url=None", "--LabApp.extension_manager=readonly",
            "--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate",
        ]  # fmt: skip
        if os.geteuid() == 0:
            command.append("--allow-root")
        self.server = ServerProcess(
            "JupyterLab", command, f"{self.url}/api/status?token={self.token}",
            self.state / "jupyterlab.log", self._environment(), ready_timeout=90,
        )  # fmt: skip
        self.server.start()
        return self

    def api(self, path: str, method: str = "GET"):
        """Call the server's REST API; the decoded JSON (None for an empty answer)."""
        request = urllib.request.Request(
            f"{self.url}/api/{path}", method=method,
            headers={"Authorization": f"token {self.token}"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=10) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def session(self, notebook: str) -> dict | None:
        """The server's session for ``notebook`` (its kernel's name and state), if any."""
        return next((s for s in self.api("sessions") if s["path"] == notebook), None)

    def processes(self) -> list[psutil.Process]:
        """Every process the server started and that still runs (kernels and their children)."""
        try:
            return psutil.Process(self.server.process.pid).children(recursive=True)
        except (psutil.NoSuchProcess, AttributeError):
            return []

    def kernel_is_plain(self, notebook: str) -> bool | None:
        """Whether the notebook's kernel was started the usual way: JupyterLab's own child
        running ``python -m ipykernel_launcher -f <its connection file>``, not a process
        forked from a warm template (None: no session)."""
        session = self.session(notebook)
        if not session:
            return None
        connection_file = f"kernel-{session['kernel']['id']}.json"
        for proc in self.processes():
            with contextlib.suppress(psutil.Error):
                if (
                    any(arg.endswith(connection_file) for arg in proc.cmdline())
                    and proc.ppid() == self.server.process.pid
                    and warmstart.forked_as(proc.pid) is None
                ):
                    return True
        return False

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server's log."""
        return self.server.log_tail(lines) if self.server else "(not started)"

    def stop(self) -> list[str]:
        """Stop the server's process group; the command lines of anything it left running
        (killed now), which should be none."""
        if not self.server or not self.server.process:
            return []
        leader = self.server.process.pid
        everything = self.processes()
        self.server.stop()
        with_group = [p for p in psutil.process_iter() if _pgid(p) == leader]
        return reap(everything + with_group)


def _pgid(proc: psutil.Process) -> int | None:
    try:
        return os.getpgid(proc.pid)
    except (ProcessLookupError, PermissionError):
        return None


def reap(processes: list[psutil.Process], timeout: float = 15.0) -> list[str]:
    """Wait for ``processes`` to end; kill the ones still running after ``timeout`` seconds
    and return their command lines."""
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    left = []
    for proc in alive:
        try:
            left.append(" ".join(proc.cmdline()) or proc.name())
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    return left


PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"  # the notebook on screen

# What the page shows: per cell its kind, prompt, first source line and outputs (the
# renderer's mime type, the start of the text, the loaded width of each image).
CELLS_JS = """(panelSelector) => {
  const panel = document.querySelector(panelSelector);
  if (!panel) return null;
  return Array.from(panel.querySelectorAll('.jp-Cell')).map(cell => ({
    code: cell.classList.contains('jp-CodeCell'),
    prompt: (cell.querySelector('.jp-InputArea-prompt')?.innerText || '').trim(),
    source: (cell.querySelector('.cm-line')?.innerText || '').trim(),
    outputs: Array.from(cell.querySelectorAll('.jp-OutputArea-output')).map(out => ({
      mime: out.getAttribute('data-mime-type') || '',
      text: out.innerText.slice(0, 4000),
      images: Array.from(out.querySelectorAll('img')).map(img => img.complete ? img.naturalWidth : 0),
    })),
  }));
}"""

# Where Run All is, cheaply enough to ask twice a second: per code cell its prompt, and
# whether any output shows stderr. textContent, not innerText: no layout is forced.
PROGRESS_JS = """(panelSelector) => {
  const panel = document.querySelector(panelSelector);
  if (!panel) return null;
  return {
    prompts: Array.from(panel.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt'))
      .map(p => p.textContent.trim()),
    stderr: panel.querySelector(
      '.jp-CodeCell .jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
    ) !== null,
  };
}"""

# Scroll the notebook back to its top; the height of its content and where it starts.
EXTENT_JS = """(panelSelector) => {
  const scroller = document.querySelector(panelSelector + ' .jp-WindowedPanel-outer');
  scroller.scrollTop = 0;
  return [scroller.scrollHeight, scroller.getBoundingClientRect().top];
}"""

STDERR = "application/vnd.jupyter.stderr"  # errors and warnings render with this mime type
NUMBERED = re.compile(r"^\[\d+\]:$")


@dataclass
class LabRun:
    """What one notebook did in JupyterLab."""

    notebook: str
    kernel: str = ""
    plain: bool | None = None  # its kernel started the usual way (None: no session)
    cells: list[dict] = field(default_factory=list)  # CELLS_JS, after the run
    saved: nbformat.NotebookNode | None = None  # the notebook as JupyterLab saved it
    seconds: float = 0.0  # from Run All to the last cell's end
    problems: list[str] = field(default_factory=list)  # of the run itself: timeout, leftovers
    listening: int = 0  # TCP ports the kernel and its children listen on after Run All
    reruns_started: float = 0.0  # time.time() when the first re-run began
    reruns: list[Rerun] = field(default_factory=list)  # cells run again after Run All


@dataclass
class Rerun:
    """One cell a learner runs again after Run All, and what followed."""

    first_line: str  # how the test names the cell: the start of its first line
    cell: dict  # CELLS_JS's view of it after the re-run (None: not found or timed out)
    listening: int  # TCP ports the kernel and its children listen on afterwards


def click_menu(page, menu: str, item: str) -> None:
    """Choose ``menu`` > ``item`` from JupyterLab's menu bar."""
    page.locator(".lm-MenuBar-item").filter(has_text=re.compile(f"^{menu}$")).click()
    label = page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{re.escape(item)}$"))
    page.locator(".lm-Menu-item").filter(has=label).click()


def cell_label(index: int, cell: dict) -> str:
    """``cell 12 (In [7]: `model = fit(...)`)``: how a failure names a cell."""
    prompt = cell["prompt"].replace("[", "In [").rstrip(":") or "not run"
    return f"cell {index} ({prompt}: `{cell['source'][:60]}`)"


def listening(lab: JupyterLab) -> int:
    """How many TCP ports the server's kernels and everything they started listen on."""
    count = 0
    for proc in lab.processes():
        with contextlib.suppress(psutil.Error):
            count += sum(c.status == psutil.CONN_LISTEN for c in proc.net_connections("tcp"))
    return count


def rerun_cell(page, lab: JupyterLab, first_line: str) -> Rerun:
    """Run the code cell whose first line starts with ``first_line`` once more, as a learner
    does: click into it, Ctrl+Enter (run, stay on the cell); wait until it has a new number."""
    cells = page.evaluate(CELLS_JS, PANEL)
    found = [i for i, c in enumerate(cells) if c["code"] and c["source"].startswith(first_line)]
    if len(found) != 1:
        return Rerun(first_line, None, listening(lab))
    index, before = found[0], cells[found[0]]["prompt"]
    page.locator(f"{PANEL} .jp-Cell").nth(index).locator(".jp-InputArea-editor").click()
    page.keyboard.press("Control+Enter")
    deadline = time.monotonic() + RUN_TIMEOUT
    cell = None
    while time.monotonic() < deadline:
        now = page.evaluate(CELLS_JS, PANEL)[index]
        if NUMBERED.match(now["prompt"]) and now["prompt"] != before:
            cell = now
            break
        time.sleep(0.25)
    page.keyboard.press("Escape")
    return Rerun(first_line, cell, listening(lab))


def run_in_lab(
    page, lab: JupyterLab, notebook: str, screenshot: Path, reruns: tuple[str, ...] = ()
) -> LabRun:
    """Open ``notebook``, clear its outputs, Run All, wait for the end, save it, run the
    cells named in ``reruns`` again one by one (by the start of their first line), take a
    screenshot, shut its kernel down and close it. The kernel is shut down whatever
    happened, and nothing it started may live on."""
    run = LabRun(notebook)
    try:
        _open(page, lab, notebook)
        run.kernel = _wait_kernel_started(lab, notebook)
        run.plain = lab.kernel_is_plain(notebook)
        _wait_kernel_idle(page)
        click_menu(page, "Edit", "Clear Outputs of All Cells")
        leftover = sum(len(c["outputs"]) for c in page.evaluate(CELLS_JS, PANEL))
        if leftover:
            run.problems.append(f"{leftover} outputs remained after Clear Outputs of All Cells")
        click_menu(page, "Run", "Run All Cells")
        started = time.monotonic()
        run.cells = _wait_run_all(page, started + RUN_TIMEOUT)
        run.seconds = time.monotonic() - started
        if any(c["prompt"] == "[*]:" for c in run.cells):
            running = next(i for i, c in enumerate(run.cells, 1) if c["prompt"] == "[*]:")
            run.problems.append(
                f"still running after {RUN_TIMEOUT:g} s: {cell_label(running, run.cells[running - 1])}"
            )
        else:
            _wait_kernel_idle(page)
            run.saved = _save(page, lab.root / notebook)
            run.listening, run.reruns_started = listening(lab), time.time()
            run.reruns = [rerun_cell(page, lab, first) for first in reruns]
    finally:
        try:
            _screenshot(page, screenshot)
        except Exception as exc:  # a broken page must not keep its kernel alive
            run.problems.append(f"no screenshot: {exc}")
        run.problems += _shut_down(page, lab, notebook)
        _close(page)
    return run


def _open(page, lab: JupyterLab, notebook: str) -> None:
    """File > Open from Path… in the running app. The app is loaded first (default layout)
    when the page has none yet, or when an earlier failure left a notebook open."""
    if not page.url.startswith(lab.url) or page.locator(".jp-NotebookPanel").count():
        page.goto(lab.app_url)
    click_menu(page, "File", "Open from Path…")
    page.locator(".jp-Dialog input").fill(notebook)
    page.locator(".jp-Dialog .jp-mod-accept").click()
    page.wait_for_selector(f"{PANEL} .jp-Cell")


def _close(page) -> None:
    """File > Close Tab, discarding changes a failed run left unsaved. Best effort: if the
    notebook stays open, the next ``_open`` reloads the app."""
    try:
        click_menu(page, "File", "Close Tab")
        page.wait_for_function(
            "() => !document.querySelector('.jp-NotebookPanel') || document.querySelector('.jp-Dialog')"
        )
        if page.locator(".jp-Dialog").count():
            page.locator(".jp-Dialog .jp-Dialog-button", has_text="Discard").click()
    except Exception:  # see the docstring
        pass


def _wait_kernel_started(lab: JupyterLab, notebook: str) -> str:
    """Wait until the server has the notebook's session and its kernel is idle; its name."""
    deadline = time.monotonic() + KERNEL_TIMEOUT
    while time.monotonic() < deadline:
        session = lab.session(notebook)
        if session and session["kernel"]["execution_state"] == "idle":
            return session["kernel"]["name"]
        time.sleep(0.25)
    return "(no kernel started)"


def _wait_kernel_idle(page) -> None:
    page.wait_for_selector(
        f'{PANEL} .jp-Notebook-ExecutionIndicator[data-status="idle"]',
        timeout=KERNEL_TIMEOUT * 1000,
    )


def _wait_run_all(page, deadline: float) -> list[dict]:
    """Poll the page until no cell is queued or running: every code cell has its number,
    or one showed an error (JupyterLab then leaves the rest unrun). The cells at the end."""
    while True:
        now = page.evaluate(PROGRESS_JS, PANEL)
        busy = "[*]:" in now["prompts"]
        ran = all(NUMBERED.match(prompt) for prompt in now["prompts"])
        if (not busy and (ran or now["stderr"])) or time.monotonic() > deadline:
            return page.evaluate(CELLS_JS, PANEL)
        time.sleep(0.5)


def _save(page, path: Path) -> nbformat.NotebookNode:
    """File > Save Notebook, wait until the tab is clean, read what JupyterLab wrote."""
    click_menu(page, "File", "Save Notebook")
    page.wait_for_selector(
        ".lm-DockPanel-tabBar .lm-TabBar-tab.jp-mod-current:not(.jp-mod-dirty)",
        timeout=KERNEL_TIMEOUT * 1000,
    )
    return nbformat.read(path, as_version=4)


def _screenshot(page, path: Path) -> None:
    """The whole notebook in one picture: grow the page to its height for the shot."""
    page.keyboard.press("Escape")  # close a menu left open by a failure
    size = page.viewport_size
    height, top = page.evaluate(EXTENT_JS, PANEL)
    page.set_viewport_size(
        {"width": size["width"], "height": min(SCREENSHOT_MAX_HEIGHT, int(height + top + 40))}
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        page.locator(PANEL).screenshot(path=path)
    finally:
        page.set_viewport_size(size)


def _shut_down(page, lab: JupyterLab, notebook: str) -> list[str]:
    """Kernel > Shut Down Kernel; problems if its session stays or anything it started
    (a scoring server, a Dask worker) outlives it. Leftovers are killed either way."""
    problems = []
    # templates the kernel started through the helpers (05, 06) end when it ends, their
    # owner, once their imports are done (tests/integration/test_warmstart.py checks it)
    templates = set(warmstart.templates())
    started = [p for p in lab.processes() if p.pid not in templates]
    try:
        click_menu(page, "Kernel", "Shut Down Kernel")
    except Exception as exc:  # the page may be broken; the REST call below still cleans up
        problems.append(f"Kernel > Shut Down Kernel failed: {exc}")
    deadline = time.monotonic() + KERNEL_TIMEOUT
    while lab.session(notebook) and time.monotonic() < deadline:
        time.sleep(0.25)
    if session := lab.session(notebook):
        problems.append("its kernel was still running after Kernel > Shut Down Kernel")
        lab.api(f"sessions/{session['id']}", method="DELETE")
    left = reap(started)
    if left:
        problems.append("left running after its kernel shut down: " + "; ".join(left))
    return problems
