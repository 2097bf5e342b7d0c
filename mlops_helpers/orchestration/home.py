"""``DAGSTER_HOME`` in the workspace (``<workspace>/dagster``): runs, event logs, schedules'
and sensors' state, and the assets' stored outputs, beside the rest of the workbook's state.

The folder and its ``dagster.yaml`` must belong to the caller's uid (as the workspace lock
does, :mod:`mlops_helpers.workbook.workspace_lock`): Dagster loads Python objects from
the stored outputs (pickles) and reads its settings from ``dagster.yaml``, so a folder
another user could write is refused, never used. ``dagster.yaml`` switches Dagster's
telemetry off. Nothing here imports Dagster.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from mlops_helpers import config
from mlops_helpers.errors import WorkbookInputError
from mlops_helpers.storage import atomic_write

FOLDER = "dagster"
DAGSTER_YAML = """\
# Written by mlops_helpers.orchestration (home.py); rewritten when it differs.
telemetry:
  enabled: false
"""
# A marker file per asset, ``<DAGSTER_HOME>/inject-failure/<asset>`` holding N: the first N
# attempts of that asset raise (the retry lesson). Never written by the settings file.
INJECT_FOLDER = "inject-failure"


class DagsterHomeError(WorkbookInputError):
    """DAGSTER_HOME cannot be used: another user's, a symlink, or not a folder."""


def home_path() -> Path:
    """``<workspace>/dagster``; not created."""
    return config.workspace_path() / FOLDER


def _check_owned(path: Path, what: str, kind: int) -> None:
    """Refuse ``path`` unless it is a ``kind`` (S_IFDIR, S_IFREG) of the caller's uid, no
    symlink, and not writable by others."""
    st = os.lstat(path)
    uid = os.getuid()
    if stat.S_IFMT(st.st_mode) != kind:
        shape = (
            "a symlink"
            if stat.S_ISLNK(st.st_mode)
            else "not a " + ("folder" if kind == stat.S_IFDIR else "file")
        )
        raise DagsterHomeError(
            f"{what} {config.show_path(path)} is {shape}; remove it, the workbook makes it again"
        )
    if st.st_uid != uid:
        raise DagsterHomeError(
            f"{what} {config.show_path(path)} belongs to uid {st.st_uid}, not to you (uid "
            f"{uid}): Dagster loads stored objects from it, so it must be yours; use a "
            f"workspace of your own ({config.HOME_ENV}=~/mlops-workspace)"
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise DagsterHomeError(
            f"{what} {config.show_path(path)} can be written by other users (mode "
            f"{stat.S_IMODE(st.st_mode):o}); run: chmod go-w {config.shell_path(path)}"
        )


def check_home() -> Path:
    """DAGSTER_HOME if it exists and is usable (DagsterHomeError otherwise); creates nothing."""
    home = home_path()
    if os.path.lexists(home):
        _check_owned(home, "DAGSTER_HOME", stat.S_IFDIR)
        if os.path.lexists(home / "dagster.yaml"):
            _check_owned(home / "dagster.yaml", "DAGSTER_HOME's dagster.yaml", stat.S_IFREG)
    return home


def ensure_home() -> Path:
    """Create (if needed) and check DAGSTER_HOME and its ``dagster.yaml``; return it."""
    check_home()
    home = config.ensure_workspace(FOLDER)
    os.chmod(home, 0o700)
    check_home()
    settings = home / "dagster.yaml"
    if not settings.is_file() or settings.read_text() != DAGSTER_YAML:
        atomic_write(settings, lambda tmp: tmp.write_text(DAGSTER_YAML))
    check_home()
    return home


def dagster_env() -> dict[str, str]:
    """The variables Dagster's processes need: DAGSTER_HOME (made and checked here)."""
    return {"DAGSTER_HOME": str(ensure_home())}


def instance():
    """A DagsterInstance on DAGSTER_HOME in the workspace (a temp one in the tests)."""
    import dagster as dg

    return dg.DagsterInstance.from_config(str(ensure_home()))


def failure_marker(asset: str) -> Path:
    """The marker file that makes the first attempts of ``asset`` fail."""
    return home_path() / INJECT_FOLDER / asset


def inject_failure(asset: str, attempts: int = 1) -> Path:
    """Make the first ``attempts`` attempts of ``asset`` raise (the retry lesson)."""
    path = failure_marker(asset)
    ensure_home()
    path.parent.mkdir(mode=0o700, exist_ok=True)
    atomic_write(path, lambda tmp: tmp.write_text(f"{attempts}\n"))
    return path


def clear_failure(asset: str) -> None:
    """Remove the injected failure of ``asset`` (nothing if there is none)."""
    failure_marker(asset).unlink(missing_ok=True)


def injected_failures() -> dict[str, int]:
    """``asset: attempts`` of every injected failure in the workspace."""
    folder = home_path() / INJECT_FOLDER
    if not folder.is_dir():
        return {}
    return {p.name: _attempts(p) for p in sorted(folder.iterdir()) if p.is_file()}


def _attempts(path: Path) -> int:
    text = path.read_text().strip()
    return int(text) if text.isdigit() else 1
