"""Helpers the tests share: tiny notebooks written into a test's folder, the scoring
servers of a workspace found in /proc, and another local user played by a forked child.

Imported as ``tests.support`` (``pythonpath`` in ``pyproject.toml`` puts the project
root on the path).
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import nbformat
import psutil

from mlops_helpers.config import HOME_ENV, KERNEL
from mlops_helpers.workbook import warmstart

# The workbook's command line, as a test runs it: this interpreter, so the venv under test.
CLI = [sys.executable, "-m", "mlops_helpers.workbook.cli"]

# ------------------------------------------------------------------------ tiny notebooks

UNLUCKY = 13
PARAMETERS = (
    "seed: int = 1  # random seed\n"
    "n_rows: int = 10  # rows; 13 fails inside the notebook\n"
    "pause: float = 0.0  # seconds to sleep, to keep a worker busy\n"
)


def make_notebook(path: Path, parameters: str, *cells: str) -> Path:
    """A notebook for the ``python3`` kernel: a ``parameters`` cell, then code cells."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]})]
    nb.cells += [nbformat.v4.new_code_cell(cell) for cell in cells]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def write_notebook(path: Path, label: str) -> Path:
    """A step for the runner's tests: it appends ``label`` and its parameters to
    ``<workspace>/ran.log`` (see :func:`ran`), sleeps ``pause``, and fails on purpose when
    ``n_rows`` is 13 (a value that passes the type check and the parameter rules but fails
    inside the notebook, as a real bug would)."""
    return make_notebook(
        path,
        PARAMETERS,
        "import os, pathlib, time\n"
        "log = pathlib.Path(os.environ['MLOPS_WORKBOOK_HOME']) / 'ran.log'\n"
        "log.parent.mkdir(parents=True, exist_ok=True)\n"
        "with open(log, 'a') as f:\n"
        f"    f.write(f'{label} seed={{seed}} n_rows={{n_rows}}\\n')\n"
        "time.sleep(pause)",
        f"if n_rows == {UNLUCKY}:\n"
        f"    raise ValueError(f'n_rows {{n_rows}} is unlucky: this step fails on purpose')\n"
        "print(f'done: seed {seed}, n_rows {n_rows}')",
    )


def ran(workspace: Path) -> collections.Counter:
    """How many times each ``label seed=.. n_rows=..`` ran in ``workspace``."""
    log = Path(workspace) / "ran.log"
    lines = log.read_text().splitlines() if log.is_file() else []
    return collections.Counter(lines)


# ------------------------------------------------------------------- processes in /proc


def _listens_on(pid: int, port: int) -> bool:
    with contextlib.suppress(psutil.Error):
        return any(
            c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
            for c in psutil.Process(pid).net_connections(kind="tcp")
        )
    return False


def server_processes(root: Path, port: int | None = None) -> list[tuple[int, str]]:
    """Scoring-server processes (MLflow's launcher, uvicorn, an endpoint's nginx) of the
    workspace ``root`` or a folder inside it, and listening on ``port`` when given: pid and
    command line.

    A server started the usual way says what it is in its command line and has the
    workspace (``MLOPS_WORKBOOK_HOME`` or its sqlite tracking URI) in its environment. A
    server forked from a warm template (:mod:`mlops_helpers.workbook.warmstart`) keeps the
    template's command line and environment: it is named ``uvicorn``, its parent is a
    template, it runs in its log folder in the workspace, and its port is the one it listens on.
    """
    root = Path(root).resolve()
    home = f"{HOME_ENV}={root}".encode()
    store = f"MLFLOW_TRACKING_URI=sqlite:///{root}".encode()
    templates = set(warmstart.templates())
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        pid = int(proc.name)
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
            environ = (proc / "environ").read_bytes().split(b"\0")
            cwd = Path(os.readlink(proc / "cwd"))
            name = (proc / "comm").read_text().strip()
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):  # gone meanwhile, or not ours
            continue
        forked = name == "uvicorn" and parent in templates
        said = any(
            what in cmdline
            for what in (b"models serve", b"mlflow.pyfunc.scoring_server", b"logged_app:app")
        )
        said = said or (name == "nginx" and str(root).encode() in cmdline)  # an endpoint's
        inside = any(e == home or e.startswith(home + b"/") or e.startswith(store) for e in environ)
        inside = inside or cwd == root or root in cwd.parents
        if port is None:
            on_port = True
        elif forked:
            on_port = _listens_on(pid, port)
        else:
            on_port = bool(re.search(rf"(-p|--port) {port}\b".encode(), cmdline))
        if (said or forked) and on_port and inside:
            shown = (
                f"{name} (forked from a warm template)"
                if forked
                else cmdline.decode(errors="replace")
            )
            found.append((pid, shown.strip()))
    return found


# ------------------------------------------------------------------------ exercises


def check_exercise(name: str, answer, **context) -> tuple[bool, str]:
    """Run exercise ``name``'s check on ``answer``: (accepted, the line the learner reads).

    Tests of an exercise call this with its worked solution (accepted) and with plausible
    wrong answers (refused, and the line names the failed case's hint)."""
    import io
    from contextlib import redirect_stdout

    from mlops_helpers.checks import exercise

    out = io.StringIO()
    with redirect_stdout(out):
        accepted = exercise(name, answer, **context)
    return accepted, out.getvalue()


def worked_solution(name: str, **variables):
    """The worked solution from ``solutions/`` (the function itself for a code exercise)."""
    from mlops_helpers.checks import solution

    return solution(name, **variables)


# ------------------------------------------------------------------- another local user

NOBODY = 65534  # another local user, played by a forked child (the tests run as root)


@contextlib.contextmanager
def as_another_user(
    act: Callable[[Callable[[bytes], None], int], bytes],
) -> Iterator[tuple[bytes, dict[str, bytes]]]:
    """Run ``act(ready, stop_fd)`` in a forked child that has become the user nobody.

    ``act`` sets itself up (binds a socket, say), calls ``ready(data)``, works until
    ``stop_fd`` is readable (the block inside has ended) and returns its report. Yields the
    ``data`` (empty when the child failed before it was ready) and a dict that holds the
    report under ``"report"`` after the block. The child only makes system calls and leaves
    by ``os._exit``, so forking the multi-threaded test process is safe.
    """
    (ready_r, ready_w), (stop_r, stop_w), (report_r, report_w) = os.pipe(), os.pipe(), os.pipe()
    child = os.fork()
    if child == 0:
        code = 1
        try:
            for fd in (ready_r, stop_w, report_r):  # the parent's ends: stop_w's close reaches us
                os.close(fd)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            os.write(report_w, act(lambda data: os.write(ready_w, data), stop_r))
            code = 0
        finally:
            os._exit(code)
    for fd in (ready_w, stop_r, report_w):
        os.close(fd)
    outcome: dict[str, bytes] = {}
    try:
        yield os.read(ready_r, 4096), outcome
    finally:
        os.close(stop_w)
        outcome["report"] = os.read(report_r, 1 << 16)
        os.waitpid(child, 0)
        for fd in (ready_r, report_r):
            os.close(fd)
