"""Where the workbook keeps its files, and the quiet, offline MLflow settings.

Paths come from the package's location (or ``MLOPS_WORKBOOK_HOME``), never from the
current working directory, so a notebook behaves the same in JupyterLab (kernel started
in ``notebooks/``) and under papermill (kernel started wherever the caller is).
"""

from __future__ import annotations

import errno
import os
import shlex
from pathlib import Path

from mlops_helpers.errors import WorkbookInputError

KERNEL = "python3"  # the kernel papermill, nbval, refresh and the notebooks' metadata name
HOME_ENV = "MLOPS_WORKBOOK_HOME"
# Set for kernels nobody watches (papermill, nbval, refresh): notebooks then skip progress
# bars, whose text would change from run to run in the outputs nbval compares.
HEADLESS_ENV = "MLOPS_WORKBOOK_HEADLESS"
# Set by `mlops-workbook ... --tracking-uri`, so notebook kernels use the same store.
TRACKING_URI_ENV = "MLOPS_TRACKING_URI"
# Set by the test suite only: a path where the first new sqlite store is kept, empty and
# migrated, so that later new stores are copies instead of migrations, which take far longer.
STORE_TEMPLATE_ENV = "MLOPS_WORKBOOK_STORE_TEMPLATE"

# Settings MLflow reads from the environment; they must be set before mlflow is imported.
MLFLOW_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_LOGGING_LEVEL": "WARNING",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "GIT_PYTHON_REFRESH": "quiet",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}


def project_root() -> Path:
    """The source checkout this package lives in (the folder holding pyproject.toml)."""
    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file():
        return root
    raise RuntimeError(
        f"mlops_helpers is not installed from a source checkout ({root} has no "
        f"pyproject.toml); set {HOME_ENV} to choose a workspace folder"
    )


def notebooks_dir() -> Path:
    """The folder of the committed notebooks."""
    return project_root() / "notebooks"


def workspace_path() -> Path:
    """The workspace folder (``$MLOPS_WORKBOOK_HOME`` or ``<project>/workspace``); not created."""
    env = os.environ.get(HOME_ENV, "").strip()
    if env:
        return Path(env).expanduser().resolve()
    return project_root() / "workspace"


class WorkspaceError(WorkbookInputError):
    """The workspace folder is a file, or cannot be created or written."""


def check_workspace() -> Path:
    """The workspace folder, checked to be a folder (or creatable) you can write; creates nothing."""
    path = workspace_path()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        kind = FileExistsError if existing == path else NotADirectoryError
        raise WorkspaceError(_unusable(path, kind()))
    if not os.access(existing, os.W_OK | os.X_OK):
        raise WorkspaceError(_unusable(path, PermissionError(errno.EACCES, "permission denied")))
    return path


def make_workspace() -> Path:
    """Create (if needed) the workspace folder and return it; WorkspaceError if unusable."""
    path = check_workspace()
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, "permission denied")
    except OSError as exc:
        raise WorkspaceError(_unusable(path, exc)) from None
    return path


def _unusable(path: Path, exc: OSError) -> str:
    """Why the workspace cannot be used, naming the variable, its value and the fix."""
    if isinstance(exc, FileExistsError):
        why = "it is a file, not a folder"
    elif isinstance(exc, NotADirectoryError):
        why = "a part of it is a file, not a folder"
    else:
        why = f"it cannot be written ({exc.strerror or exc})"
    home = os.environ.get(HOME_ENV, "").strip()
    where = f"{HOME_ENV}={home}" if home else f"the workspace {show_path(path)}"
    return (
        f"{where} is not a usable workspace: {why}; set {HOME_ENV} to a folder you can "
        f"write, e.g. export {HOME_ENV}=$HOME/mlops-workspace"
    )


def ensure_workspace(*parts: str) -> Path:
    """Create (if needed) and return a folder inside the workspace.

    This is where anything is first written into the workspace, so a kernel joins the
    workspace's lock here (:func:`mlops_helpers.workbook.workspace_lock.join`).
    """
    from mlops_helpers.workbook import workspace_lock

    root = make_workspace()
    workspace_lock.join(root)
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def apply_mlflow_env() -> None:
    """Set MLflow's quiet, offline environment defaults (call before importing mlflow)."""
    for key, value in MLFLOW_ENV.items():
        os.environ.setdefault(key, value)
    # Telemetry must be off whatever the caller had set.
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"


def mark_headless() -> None:
    """Declare that kernels started from now on run unattended (inherited by them)."""
    os.environ[HEADLESS_ENV] = "1"


def interactive() -> bool:
    """True when a person runs the notebook (JupyterLab): show progress bars then."""
    return not os.environ.get(HEADLESS_ENV)


# Two printers on purpose, for two readers: show_path says where a file is in words that are
# the same on every machine (notebook outputs, which nbval compares, and messages), so it is
# never absolute and cannot be pasted; shell_path is what to type in this shell, so it must
# resolve from here and be quoted. One function with a flag would return two kinds of text.


def show_path(path: Path) -> str:
    """A path written relative to the workspace (``<workspace>/...``) for printing.

    Notebook outputs must not contain absolute paths: they differ per machine and
    would make nbval comparisons fail.
    """
    path = Path(path).resolve()
    for base, label in ((workspace_path(), "<workspace>"), (_source_root(), "<project>")):
        if base is not None and path.is_relative_to(base):
            rel = path.relative_to(base).as_posix()
            return label if rel == "." else f"{label}/{rel}"
    return path.name


def shell_path(path: Path | str) -> str:
    """``path`` quoted to paste into a shell here: relative under the working directory,
    ``~/...`` under home, else absolute."""
    path = Path(path).absolute()
    cwd, home = Path.cwd(), Path.home()
    if path.is_relative_to(cwd) and path != cwd:
        text = path.relative_to(cwd).as_posix()
        return shlex.quote(f"./{text}" if text.startswith("-") else text)
    if path.is_relative_to(home) and path != home:
        return f"~/{shlex.quote(path.relative_to(home).as_posix())}"
    return shlex.quote(str(path))


def _source_root() -> Path | None:
    try:
        return project_root()
    except RuntimeError:
        return None
