"""Writing a file so that a reader finds the old version or the new one, never half of one.

A file is written to a temporary name beside it that carries its writer's pid and start
time, fsynced, renamed over the target, and then its folder is fsynced so the rename
survives a power cut (a published partition is the product). A writer killed before its
rename leaves only its temporary file; the next write of that file removes the temporary
files of writers that are gone, and never those of a writer still running.

:func:`atomic_write` does all of that for one file. The ETL publishes several files of a
day together, so it uses the steps (:func:`staged`, :func:`rename_into_place`,
:func:`remove_dead_temps`) under its own lock, with its manifest renamed last.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

# A temp file is named ``.<name>.<pid>-<start>-<token>.tmp``: the writer's pid and start
# time (so a reused pid is not taken for the writer) say whether its writer still lives.
_TEMP = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)(?:-(?P<start>\d+)-[0-9a-f]+)?\.tmp")


def _process_start(pid: int) -> str | None:
    """A live process's start time in clock ticks since boot, or None if gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


def _writer_alive(pid: int, start: str | None) -> bool:
    """True unless the process that named a temp file is gone (or its pid is another's now)."""
    if not Path("/proc/self/stat").is_file():  # no /proc (macOS): the pid alone tells
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # alive, another user's
        return True
    started = _process_start(pid)
    return started is not None and start in (None, "0", started)


def remove_dead_temps(folder: Path, name: str | None = None) -> list[str]:
    """Remove the temp files in ``folder`` (for ``name``, or all) whose writer is gone."""
    removed = []
    for tmp in sorted(Path(folder).glob(".*.tmp")):
        found = _TEMP.fullmatch(tmp.name)
        if found is None or name not in (None, found["name"]):
            continue
        if not _writer_alive(int(found["pid"]), found["start"]):
            tmp.unlink(missing_ok=True)
            removed.append(tmp.name)
    return removed


def fsync_path(path: Path) -> None:
    """Flush a file's or a folder's entries to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_folder(folder: Path) -> None:
    """Create ``folder`` and its missing parents, each parent fsynced so they last."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    for created in reversed(missing):
        fsync_path(created.parent)


def temp_path(path: Path) -> Path:
    """A fresh temporary name beside ``path``, naming this process (see :func:`remove_dead_temps`)."""
    pid = os.getpid()
    token = secrets.token_hex(4)
    return path.with_name(f".{path.name}.{pid}-{_process_start(pid) or 0}-{token}.tmp")


@contextmanager
def staged(path: Path, write: Callable[[Path], None]) -> Iterator[Path]:
    """A temp file next to ``path``, written by ``write`` and fsynced; removed unless renamed."""
    path = Path(path)
    make_folder(path.parent)
    tmp = temp_path(path)
    try:
        write(tmp)
        fsync_path(tmp)
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def rename_into_place(tmp: Path, path: Path) -> None:
    """Rename a staged file over ``path``, then fsync its folder so the rename lasts."""
    os.replace(tmp, path)
    fsync_path(Path(path).parent)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write ``path`` via ``write(tmp)``, then rename it into place; on failure ``path`` is
    untouched. Dead writers' temp files of ``path`` go first."""
    path = Path(path)
    with staged(path, write) as tmp:
        remove_dead_temps(path.parent, path.name)
        rename_into_place(tmp, path)
