"""tools/find_python.sh: make install's choice of Python. It takes the newest version
pyproject admits that really runs (a pythonX.Y on PATH first, then pyenv's versions), and
skips a command that only claims a version by its name."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "find_python.sh"
THIS = f"3.{sys.version_info.minor}"


def find(
    tmp_path: Path, *args: str, pyenv: Path | None = None, path: str | None = None
) -> subprocess.CompletedProcess:
    env = {
        "PATH": path or f"{tmp_path / 'bin'}:/usr/bin:/bin",
        "PYENV_ROOT": str(pyenv or tmp_path / "no-pyenv"),
        "HOME": str(tmp_path),
    }
    return subprocess.run(
        ["/bin/bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60
    )


def link(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).symlink_to(sys.executable)
    return folder / name


def test_a_python_on_path_is_found_by_its_version(tmp_path):
    exe = link(tmp_path / "bin", f"python{THIS}")
    found = find(tmp_path, "--all")
    assert found.returncode == 0
    assert str(exe) in found.stdout.splitlines()


def test_a_command_named_for_a_newer_version_that_is_not_it_is_skipped(tmp_path):
    """A python3.13 that is really this Python must not make install use 'Python 3.13'."""
    exe = link(tmp_path / "bin", f"python{THIS}")
    newer = "3.13" if THIS != "3.13" else "3.12"
    link(tmp_path / "bin", f"python{newer}")
    found = find(tmp_path)
    assert found.returncode == 0
    chosen = found.stdout.strip()
    assert not chosen.endswith(f"python{newer}")
    version = subprocess.run(
        [chosen, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True
    ).stdout.strip()
    assert chosen == str(exe) or version != str(sys.version_info[:2]), chosen


def test_pyenv_versions_are_found_when_path_has_none(tmp_path):
    pyenv = tmp_path / "pyenv"
    exe = link(pyenv / "versions" / f"{THIS}.99" / "bin", f"python{THIS}")
    tools = tmp_path / "tools"  # what the script runs besides Python, and no Python
    tools.mkdir()
    for tool in ("ls", "sort"):
        (tools / tool).symlink_to(shutil.which(tool))
    found = find(tmp_path, "--all", pyenv=pyenv, path=str(tools))
    assert found.returncode == 0
    assert str(exe) in found.stdout.splitlines()


def test_nothing_found_fails_and_prints_nothing(tmp_path):
    os.makedirs(tmp_path / "bin")
    found = find(tmp_path, path=str(tmp_path / "bin"))
    assert found.returncode != 0 and found.stdout == ""
