"""One workspace, one writer: a headless command holds the workspace alone, learners'
kernels share it among themselves.

Decision: the later of two writers is *refused*, at once, naming the holder; two runs
are never merged. The notebooks of a run own the workspace's shared state (05 deletes
and re-registers the model, moves ``champion``, serves it); two of them interleaved fail
each other's checkpoints, or worse pass on the other's model, so "both succeed" would need
every notebook to be isolated from every other, while refusing costs a second run one
``MLOPS_WORKBOOK_HOME=...`` to run in parallel.

How: ``<workspace>/workspace.lock``, locked with ``flock`` (never a pid read from a file,
which outlives its process: the kernel drops a dead holder's lock, so a stale lock never
blocks).

- A writing command (``run``, ``pipeline``, ``batch``, ``deploy``) calls
  :func:`hold_exclusive` before its first side effect: refused with
  :class:`WorkspaceBusy` if anyone else is in the workspace. It writes its pid, start time
  and command into the file (for people: ``cat workspace.lock``) and a random token, which
  it puts in its environment (:data:`TOKEN_ENV`): the kernels, pipelines, Dask workers and
  pytest runs it starts inherit the token and are *inside* the holder, never refused.
- A Jupyter kernel outside any holder (a learner's, in JupyterLab; nbval's) takes the lock
  *shared* the first time it makes a folder in the workspace (:func:`join`, called by
  :func:`mlops_helpers.config.ensure_workspace`) and keeps it for its life: kernels share
  a workspace (06 runs pipelines and a Dask batch from a kernel, 08 runs notebooks), a
  headless command is refused while one works there, and a learner's cell is refused while
  a headless command holds it. Other processes (scripts, the test session, ``serve``) take
  no lock: only kernels are a learner's long-lived writers.

Who holds the lock is read from the kernel (``/proc/locks``), with each holder's command
line and start time from ``/proc``; the file itself is opened only if it belongs to the
caller's uid.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import secrets
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from mlops_helpers import config
from mlops_helpers.errors import WorkbookInputError

LOCK_NAME = "workspace.lock"
# The token of the command holding the workspace, inherited by what it starts.
TOKEN_ENV = "MLOPS_WORKBOOK_WORKSPACE_TOKEN"

_guard = threading.Lock()  # the runner executes notebooks in threads
_held: dict[Path, tuple[int, str]] = {}  # workspace -> (descriptor, "shared" or "exclusive")
_inside: set[Path] = set()  # workspaces whose holder started this process
_scopes: list[contextlib.ExitStack] = []  # the commands running in this process (cli.main)


class WorkspaceBusy(WorkbookInputError):
    """Another command or kernel is writing in this workspace."""


def lock_path(root: Path) -> Path:
    """The lock file of a workspace folder."""
    return root / LOCK_NAME


@contextlib.contextmanager
def command_scope() -> Iterator[None]:
    """Release what :func:`claim` takes inside the block when it ends (around a command)."""
    with contextlib.ExitStack() as stack:
        _scopes.append(stack)
        try:
            yield
        finally:
            _scopes.remove(stack)


def claim(command: list[str] | None = None) -> None:
    """Hold the workspace alone until the command ends; call it before the first write.

    Refused (:class:`WorkspaceBusy`, exit 2) while another command or a kernel works there.
    Outside :func:`command_scope` the workspace is held until this process ends.
    """
    if not _scopes:
        _scopes.append(contextlib.ExitStack())  # never closed: the process's life
    _scopes[-1].enter_context(hold_exclusive(command))


@contextlib.contextmanager
def hold_exclusive(command: list[str] | None = None) -> Iterator[None]:
    """Hold the workspace for this command alone while the block runs; refused if busy."""
    root = config.make_workspace()
    fd, before = _held.get(root, (None, ""))
    if root in _inside or before == "exclusive" or _inside_holder(root):
        yield  # started by the holder, or a command that a command of this process runs
        return
    with _guard:
        fd = _open(root) if fd is None else fd
        if not _try_lock(fd, fcntl.LOCK_EX):
            message = _busy(root, fd, "this command needs it alone", _elsewhere())
            _settle(root, fd, before)
            raise WorkspaceBusy(message)
        _held[root] = (fd, "exclusive")
        token = secrets.token_hex(16)
        _write_record(fd, token, command or sys.argv)
    previous = os.environ.get(TOKEN_ENV)
    os.environ[TOKEN_ENV] = token
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(TOKEN_ENV, None)
        else:
            os.environ[TOKEN_ENV] = previous
        with _guard:
            os.ftruncate(fd, 0)
            _settle(root, fd, before)


def join(root: Path) -> None:
    """Before a write into ``root``: a kernel outside any holder takes the lock shared."""
    if root in _held or root in _inside:
        return
    if _inside_holder(root):
        _inside.add(root)
        return
    if in_a_kernel():
        hold_shared(root)


def hold_shared(root: Path) -> None:
    """Share ``root`` with other kernels for this process's life; refused while a command holds it."""
    with _guard:
        if root in _held:
            return
        fd = _open(root)
        if not _try_lock(fd, fcntl.LOCK_SH):
            message = _busy(
                root,
                fd,
                "this kernel cannot write there now",
                f"start the kernel (JupyterLab) with {config.HOME_ENV} set to another folder",
            )
            os.close(fd)
            raise WorkspaceBusy(message)
        # A process works in one workspace at a time (the test session moves between many):
        # leave the others.
        for other, (other_fd, mode) in list(_held.items()):
            if mode == "shared":
                os.close(other_fd)
                del _held[other]
        _held[root] = (fd, "shared")


def inherited_env() -> dict[str, str]:
    """The variable that puts a process started elsewhere (a Dask worker) inside this holder."""
    token = os.environ.get(TOKEN_ENV)
    return {TOKEN_ENV: token} if token else {}


def in_a_kernel() -> bool:
    """True in a Jupyter kernel's own process (not in what it starts)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return type(shell).__name__ == "ZMQInteractiveShell"


def _open(root: Path) -> int:
    """Open (create) the lock file; refuse one that belongs to another user."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(lock_path(root), flags, 0o600)
    except OSError as exc:
        raise WorkspaceBusy(
            f"cannot open the workspace lock {config.show_path(lock_path(root))} "
            f"({exc.strerror}); {_elsewhere()}"
        ) from None
    owner = os.fstat(fd).st_uid
    if owner != os.getuid():
        os.close(fd)
        raise WorkspaceBusy(
            f"the workspace lock {config.show_path(lock_path(root))} belongs to uid {owner}, "
            f"not to you (uid {os.getuid()}): a workspace is one user's; {_elsewhere()}"
        )
    return fd


def _try_lock(fd: int, mode: int) -> bool:
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _settle(root: Path, fd: int, before: str) -> None:
    """Back to what this process held before: the shared lock, or nothing."""
    # flock converts a lock by dropping it first: take the shared one again
    if before == "shared" and _try_lock(fd, fcntl.LOCK_SH):
        _held[root] = (fd, "shared")
        return
    _held.pop(root, None)
    os.close(fd)


def _write_record(fd: int, token: str, command: list[str]) -> None:
    record = {
        "pid": os.getpid(),
        "since": dt.datetime.now().isoformat(timespec="seconds"),
        "command": _command_text(command),
        "token": token,
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)


def _read_record(root: Path) -> dict:
    """The holder's record, from a lock file of the caller's uid only; {} otherwise."""
    try:
        fd = os.open(lock_path(root), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return {}
    try:
        if os.fstat(fd).st_uid != os.getuid():
            return {}
        record = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return record if isinstance(record, dict) else {}
    except ValueError:
        return {}
    finally:
        os.close(fd)


def _inside_holder(root: Path) -> bool:
    """True when the command holding ``root`` started this process (its token)."""
    token = os.environ.get(TOKEN_ENV)
    return bool(token) and _read_record(root).get("token") == token


def _busy(root: Path, fd: int, consequence: str, parallel: str) -> str:
    """The refusal: who holds the workspace (pid, command, since when) and what to do."""
    holders = [_describe(pid) for pid in _holder_pids(fd) if pid != os.getpid()]
    if not holders:
        record = _read_record(root)
        holders = [f"pid {record.get('pid', '?')} ({record.get('command', '?')}, "
                   f"since {record.get('since', '?')})"]  # fmt: skip
    return (
        f"{_workspace_words()} is in use by {'; '.join(holders)}, so {consequence}; wait "
        f"until it ends, or {parallel}"
    )


def _workspace_words() -> str:
    home = os.environ.get(config.HOME_ENV, "").strip()
    if home:
        return f"the workspace {config.HOME_ENV}={home}"
    return f"the workspace {config.show_path(config.workspace_path())}"


def _elsewhere() -> str:
    return (
        f"run in parallel in a workspace of its own: {config.HOME_ENV}=~/mlops-workspace-2 "
        "mlops-workbook ..."
    )


def _holder_pids(fd: int) -> list[int]:
    """The processes holding a lock on the file open as ``fd``, as the kernel reports them."""
    st = os.fstat(fd)
    inode = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    pids = []
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        fields = line.split()  # "1: FLOCK  ADVISORY  READ 123 fe:00:456 0 EOF"
        held = "->" not in fields and len(fields) >= 6 and fields[1] == "FLOCK"
        if held and fields[5] == inode and fields[4].isdigit() and int(fields[4]) > 0:
            pids.append(int(fields[4]))
    return sorted(set(pids))


def _describe(pid: int) -> str:
    """``pid N (its command line, since HH:MM:SS)`` from /proc."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return f"pid {pid}"
    boot = next(
        int(line.split()[1])
        for line in Path("/proc/stat").read_text().splitlines()
        if line.startswith("btime ")
    )
    since = dt.datetime.fromtimestamp(boot + ticks / os.sysconf("SC_CLK_TCK"))
    from mlops_helpers.workbook import warmstart

    forked = warmstart.forked_as(pid)  # it shows its template's command line: say what it is
    if forked:
        argv = [sys.executable, "-m", forked, "(forked from a warm template)"]
    what = "a Jupyter kernel: " if any("ipykernel_launcher" in a for a in argv) else ""
    return f"pid {pid} ({what}{_command_text(argv)}, since {since:%Y-%m-%d %H:%M:%S})"


def _command_text(argv: list[str]) -> str:
    """A command line to show: absolute paths cut to their last part."""
    words = [Path(a).name if a.startswith("/") else a for a in argv if a]
    return " ".join(words)[:200]
