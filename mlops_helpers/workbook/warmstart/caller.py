"""The caller's side: ask a template for a forked process, or start the template."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mlops_helpers.workbook.warmstart.common import (
    FORKED_NAMES,
    MODULE,
    WarmStartUnavailable,
    active,
    address,
    keyed_env,
    owner,
    peer,
    stat,
    template_key,
)


class ForkedProcess:
    """The caller's handle on a forked kernel or server: what jupyter_client and
    :class:`mlops_helpers.workbook.processes.ServerProcess` need of a ``Popen``."""

    stdin = stdout = stderr = None

    def __init__(self, conn: socket.socket, pid: int, pidfd: int) -> None:
        self._conn = conn
        self.pid = pid
        self._pidfd = pidfd  # a pidfd on ``pid``, owned (and closed once) by this handle
        self.returncode: int | None = None

    def poll(self) -> int | None:
        """The exit code once the process has ended, else None."""
        if self.returncode is not None:
            return self.returncode
        ready, _, _ = select.select([self._pidfd], [], [], 0)
        if not ready:
            return None
        self.returncode = self._exit_status()
        self._close()
        return self.returncode

    def _exit_status(self) -> int:
        # The template reaps the kernel and sends its status on the connection.
        self._conn.settimeout(5)
        try:
            data = b""
            while not data.endswith(b"\n"):
                chunk = self._conn.recv(64)
                if not chunk:
                    break
                data += chunk
            return int(data.split()[-1]) if data.startswith(b"exit ") else 1
        except (OSError, ValueError):
            return 1

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the process to end; its exit code."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"process {self.pid}", timeout)
            time.sleep(0.02)
        return self.returncode  # type: ignore[return-value]

    def send_signal(self, signum: int) -> None:
        """Signal the process, through its pidfd (never a reused pid)."""
        if self.returncode is None:
            signal.pidfd_send_signal(self._pidfd, signum)

    def terminate(self) -> None:
        """SIGTERM."""
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL."""
        self.send_signal(signal.SIGKILL)

    def _close(self) -> None:
        """Close the pidfd and the connection, once: poll() and __del__ both call this, and
        a second os.close of the number would close whatever file was opened under it since."""
        pidfd, self._pidfd = self._pidfd, -1
        if pidfd >= 0:
            with contextlib.suppress(OSError):
                os.close(pidfd)
        with contextlib.suppress(OSError):
            self._conn.close()  # a socket object closes its descriptor once

    def __del__(self) -> None:
        self._close()


def connect(name: str, timeout: float) -> socket.socket | None:
    """A connection to the socket ``name``, or None when nothing listens there."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(name)
        return sock
    except OSError:
        sock.close()
        return None


def _template_of_ours(conn: socket.socket) -> int:
    """The pid of the process listening at the other end of ``conn``, a process of this
    user; WarmStartUnavailable when another user holds the name (nothing sent to it)."""
    pid, uid = peer(conn)
    if uid != os.getuid():
        raise WarmStartUnavailable(
            f"the template's socket is held by another user (uid {uid}), not by a template"
        )
    return pid


def _open_child(pid: int, template: int) -> int:
    """A pidfd on ``pid`` if it is a process of this user forked by ``template``;
    WarmStartUnavailable otherwise (a reply naming some other process is not trusted)."""
    pidfd = os.pidfd_open(pid)  # first: /proc/PID below is then this process, not a reuse
    try:
        parent = int(stat(pid)[1])
        uid = os.stat(f"/proc/{pid}").st_uid
    except (OSError, ValueError, IndexError):
        parent = uid = -1
    if parent != template or uid != os.getuid():
        os.close(pidfd)
        raise WarmStartUnavailable(f"the template answered pid {pid}, not a process it forked")
    return pidfd


def _start_template(executable: str, env: dict[str, str], key: str) -> None:
    # what its key covers, and PATH: nothing of one run (its workspace, its store) in the
    # shared template's environment
    template_env = keyed_env(env)
    if "PATH" in env:
        template_env["PATH"] = env["PATH"]
    subprocess.Popen(
        [executable, "-m", MODULE, key, owner(env) or "-"],
        env=template_env,
        cwd="/",
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def prestart(env: dict[str, str] | None = None) -> bool:
    """Start the template that a kernel started here with ``env`` would use, without
    waiting for it, so that its imports overlap with this process's own start-up work (a
    Dask worker before its first item). Returns whether a template was started."""
    if not active():
        return False
    env = dict(os.environ if env is None else env)
    key = template_key(sys.executable, env)
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.bind(address(key))  # free: no template serves this key yet
    except OSError:
        return False
    finally:
        probe.close()
    _start_template(sys.executable, env, key)
    return True


def fork(
    cmd: list[str], env: dict[str, str], cwd: str, streams: tuple[int, int, int] = (0, 1, 2)
) -> ForkedProcess:
    """Ask the template process for ``cmd`` (``python -m`` one of the forkable modules) as
    a forked process whose standard streams are the file descriptors ``streams``."""
    key = template_key(cmd[0], env)
    name = address(key)
    conn = connect(name, timeout=120)
    if conn is None:
        _start_template(cmd[0], env, key)
        deadline = time.monotonic() + 10
        while conn is None and time.monotonic() < deadline:
            time.sleep(0.02)
            conn = connect(name, timeout=120)
        if conn is None:
            raise WarmStartUnavailable("the kernel template process did not start")
    try:
        template = _template_of_ours(conn)  # before anything is sent
        request = json.dumps({"argv": cmd, "env": env, "cwd": cwd}).encode() + b"\n"
        socket.send_fds(conn, [request], list(streams))
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = conn.recv(64)  # waits while the template finishes its imports
            if not chunk:
                raise WarmStartUnavailable("the kernel template process closed the connection")
            reply += chunk
        if not reply.startswith(b"pid "):
            raise WarmStartUnavailable(reply.decode(errors="replace").strip())
        pid = int(reply.split()[1])
        pidfd = _open_child(pid, template)
        conn.settimeout(None)
        return ForkedProcess(conn, pid, pidfd)
    except WarmStartUnavailable:
        conn.close()
        raise
    except (OSError, ValueError) as exc:
        conn.close()
        raise WarmStartUnavailable(str(exc)) from exc


@functools.cache
def devnull() -> int:
    """A file descriptor open on /dev/null (one per process, kept open)."""
    return os.open(os.devnull, os.O_RDWR)


def streams(kwargs: dict[str, Any]) -> tuple[int, int, int] | None:
    """The kernel's stdin, stdout and stderr as this process's file descriptors, as
    ``Popen`` would give them; None for what a fork cannot give (a pipe to read)."""
    fds = []
    for number, name in enumerate(("stdin", "stdout", "stderr")):
        given = kwargs.get(name)
        if given is None:
            fds.append(number)
        elif given == subprocess.DEVNULL:
            fds.append(devnull())
        elif isinstance(given, int) and given >= 0:
            fds.append(given)
        elif hasattr(given, "fileno"):
            fds.append(given.fileno())
        else:
            return None
    return fds[0], fds[1], fds[2]


def _template_commands() -> dict[int, tuple[bytes, int]]:
    """This user's processes whose command line is a template's: pid -> (command, parent)."""
    found: dict[int, tuple[bytes, int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            ppid = int(stat(entry.name)[1])
            uid = entry.stat().st_uid
        except (OSError, ValueError, IndexError):
            continue
        if uid == os.getuid() and argv[1:3] == [b"-m", MODULE.encode()] and len(argv) > 3:
            found[int(entry.name)] = (b" ".join(argv), ppid)
    return found


def templates() -> list[int]:
    """Process ids of this user's template processes (any key), not of their kernels."""
    commands = _template_commands()
    # a forked process keeps its template's command line; its parent is that template
    return [
        pid
        for pid, (command, ppid) in commands.items()
        if commands.get(ppid, (b"", 0))[0] != command
    ]


def forked_as(pid: int) -> str | None:
    """The module (``ipykernel_launcher`` or ``uvicorn``) a process forked from one of this
    user's templates stands for; None for any other process."""
    try:
        parent = int(stat(pid)[1])
        name = (Path("/proc") / str(pid) / "comm").read_text().strip()
    except (OSError, ValueError, IndexError):
        return None
    if parent not in templates():
        return None
    return next((module for module, named in FORKED_NAMES.items() if named == name), None)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and of its ended children it has collected."""
    ticks = sum(int(f) for f in stat(pid)[11:15])  # utime, stime, cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def drain_all(wait: float = 0.0) -> list[int]:
    """Ask every template of this user to end once its processes have: new ones then
    start from a fresh template. Processes running now are not touched. With ``wait``,
    wait up to that many seconds for the templates to be gone (benchmarks: each run pays
    for its own template, as a first run does)."""
    pids = templates()
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait
    while wait and set(templates()) & set(pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return pids
