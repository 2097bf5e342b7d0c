"""Long-running server processes (scoring server, tracking server): started in their own
process group on 127.0.0.1, ready when a health URL answers, log kept, stopped whole, and
never outliving the process that started them."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from mlops_helpers.config import MLFLOW_ENV
from mlops_helpers.errors import WorkbookFailure, WorkbookInputError

T = TypeVar("T")

HOST = "127.0.0.1"
STOPPED = b"stopped"  # the starter tells the watchdog it stopped the server itself

# The watchdog (``python -I -S -c WATCHDOG PGID``, stdlib only, so it starts at once): its
# stdin is the read end of a pipe whose only write end the starter holds, and the kernel
# closes that end however the starter ends (kill -9 included). On end of file without
# STOPPED it ends the server's whole process group, TERM then KILL. PR_SET_PDEATHSIG would
# not do: it fires when the *thread* that forked ends, and never reaches grandchildren
# (``mlflow server`` runs uvicorn as its child). It also leaves once the group is gone by
# itself, so it never signals a process group id the system has since given to others.
WATCHDOG = """
import os, select, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGHUP, signal.SIG_IGN)
group = int(sys.argv[1])
def gone():
    try:
        os.killpg(group, 0)
        return False
    except ProcessLookupError:
        return True
while not select.select([0], [], [], 0.5)[0]:
    if gone():
        sys.exit(0)
try:
    said = os.read(0, 16)
except OSError:
    said = b""
if said:
    sys.exit(0)
for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
    if gone():
        break
    try:
        os.killpg(group, sig)
    except ProcessLookupError:
        break
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and not gone():
        time.sleep(0.05)
"""


class ServerError(WorkbookFailure, RuntimeError):
    """A server could not be started or stopped; the message says why and what to do."""


class PortInUse(ServerError, WorkbookInputError):
    """The port asked for is taken: bad input (exit 2), and a server error for its callers."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def listener_uids(port: int) -> set[int] | None:
    """The uids of the TCP sockets listening on ``port`` (any address), from /proc/net;
    None where it has no such tables (not Linux)."""
    uids: set[int] = set()
    found = False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        found = True
        for line in lines:
            fields = line.split()  # sl local rem st queues timer retr uid timeout inode
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # LISTEN
                uids.add(int(fields[7]))
    return uids if found else None


def check_port_free(port: int) -> None:
    """Raise PortInUse when something listens on ``port`` on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # as the servers bind (uvicorn sets it): connections of a server that has ended,
        # still in TIME_WAIT, do not make the port look taken
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            raise PortInUse(
                f"port {port} on {HOST} is already in use; pass another port "
                "(or none, to pick a free one) or stop what listens there"
            ) from None


def find_nginx() -> str | None:
    """The nginx program (on PATH, or where Debian and Homebrew put it), or None."""
    import shutil

    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).is_file()), None
    )


def venv_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment with the virtualenv's ``bin`` first on PATH and MLflow kept quiet."""
    bindir = str(Path(sys.executable).parent)
    return {
        **os.environ,
        **MLFLOW_ENV,
        "PATH": bindir + os.pathsep + os.environ.get("PATH", ""),
        **(extra or {}),
    }


class ServerProcess:
    """One server process group; ``start`` waits for ``health_url`` to answer 200."""

    def __init__(self, what: str, command: list[str], health_url: str, log_path: Path,
                 env: dict[str, str], ready_timeout: float = 60.0):  # fmt: skip
        self.what, self.command, self.health_url = what, command, health_url
        self.log_path, self.env, self.ready_timeout = log_path, env, ready_timeout
        self.process: subprocess.Popen | None = None
        self.port_held_by_another_user = False
        self._watchdog: tuple[subprocess.Popen, int] | None = None  # and our end of its pipe

    def start(self) -> None:
        """Start the process group and wait until it is ready; stop it on any failure.

        It runs in its log's folder, and ends when this process ends, however it ends: a
        watchdog process (:data:`WATCHDOG`) ends the group then. A scoring server
        (``python -m uvicorn``) is forked from a warm template (:mod:`mlops_helpers.workbook.warmstart`)
        instead, with the same command, environment, folder and log, unless warm starts are
        off; the template ends it when this process's connection to it closes.
        """
        from mlops_helpers.workbook import warmstart

        warmstart.enable_here()
        folder = self.log_path.parent
        folder.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.process = None
            if warmstart.forks(self.command):
                with contextlib.suppress(warmstart.WarmStartUnavailable):
                    streams = (warmstart.devnull(), log.fileno(), log.fileno())
                    self.process = warmstart.fork(self.command, self.env, str(folder), streams)
            if self.process is None:
                self.process = subprocess.Popen(
                    self.command, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                    stdin=subprocess.DEVNULL, start_new_session=True, cwd=folder,
                )  # fmt: skip
        try:
            if not isinstance(self.process, warmstart.ForkedProcess):
                self._watch(self.process.pid)
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _watch(self, group: int) -> None:
        """Start the watchdog that ends process group ``group`` when this process ends."""
        read_end, write_end = os.pipe()  # non-inheritable: no other child holds our end
        try:
            watchdog = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", WATCHDOG, str(group)],
                stdin=read_end, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True,  # outside the server's group, and away from Ctrl-C
            )  # fmt: skip
        except BaseException:
            os.close(write_end)
            raise
        finally:
            os.close(read_end)
        self._watchdog = (watchdog, write_end)

    def _release_watchdog(self) -> None:
        """Tell the watchdog the server was stopped here, and collect it."""
        held, self._watchdog = self._watchdog, None
        if held is None:
            return
        watchdog, write_end = held
        with contextlib.suppress(OSError):  # it may have left already: the group was gone
            os.write(write_end, STOPPED)
        os.close(write_end)
        with contextlib.suppress(subprocess.TimeoutExpired):
            watchdog.wait(timeout=5)

    def lost_its_port(self) -> bool:
        """Whether the start failed because the port was taken: by another user's listener,
        or the server said "Address already in use" (uvicorn and nginx do) in its log."""
        return self.port_held_by_another_user or "address already in use" in (
            self.log_tail(40).lower()
        )

    def _wait_ready(self) -> None:
        port = urllib.parse.urlsplit(self.health_url).port
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(
                    f"{self.what} exited with code {self.process.returncode} before it was "
                    f"ready; its log:\n{self.log_tail()}"
                )
            # Ask only a listener of this user: another local user can bind the port
            # before the server does, and would answer the health check. Once this
            # user listens there, no other user can (SO_REUSEPORT needs the same uid).
            uids = listener_uids(port) if port else None
            if uids is not None and uids - {os.getuid()}:
                self.port_held_by_another_user = True
                raise ServerError(
                    f"port {port} on {HOST} is held by a process of uid "
                    f"{', '.join(map(str, sorted(uids - {os.getuid()})))}, not by {self.what} "
                    f"(you are uid {os.getuid()}); nothing was sent to it. Start again (a new "
                    "port is picked) or pass a port nobody else uses"
                )
            if uids is not None and not uids:  # nothing listens yet
                time.sleep(0.05)
                continue
            try:
                with urllib.request.urlopen(self.health_url, timeout=1) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        raise ServerError(
            f"{self.what} was not ready after {self.ready_timeout:g} s; it was stopped. "
            f"Its log:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the server's log."""
        if not self.log_path.is_file():
            return "(no log)"
        tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return tail or "(the log is empty)"

    def stop(self) -> None:
        """Stop the whole process group (SIGTERM, then SIGKILL after 10 s)."""
        proc, self.process = self.process, None
        if proc is None:
            return
        try:
            self._stop_group(proc)
        finally:
            self._release_watchdog()

    @staticmethod
    def _stop_group(proc: subprocess.Popen) -> None:
        """SIGTERM then SIGKILL the group of ``proc``; return once the whole group is gone."""
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        with contextlib.suppress(ProcessLookupError):  # children left after the leader exited
            os.killpg(proc.pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # return only once the whole group is gone
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)


class LoopbackServer:
    """What a server wrapper shares: its URL on 127.0.0.1, its process, log and stop, and
    use as a context manager. Subclasses set ``port`` and ``server`` and define ``start``."""

    port: int | None
    server: ServerProcess | None

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:5123``."""
        return f"http://{HOST}:{self.port}"

    @property
    def process(self) -> subprocess.Popen | None:
        """The server's process (None when stopped)."""
        return self.server.process if self.server else None

    def start(self):  # pragma: no cover - every subclass defines it
        """Start the server and wait until it is ready."""
        raise NotImplementedError

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the server's log."""
        return self.server.log_tail(lines) if self.server else "(not started)"

    def _on_a_picked_port(self, picked: bool, start: Callable[[], T], pick: Callable[[], int]) -> T:
        """What ``start()`` returns; it starts ``self.server`` on ``self.port``.

        A port picked here (``picked``: none was given) is free when ``pick`` picks it, not
        necessarily when the server binds it a moment later (a busy machine's client
        connections take ports too, and so can another user): a start that lost it
        (:meth:`ServerProcess.lost_its_port`) is made again on another, twice at most.
        ``pick`` is the calling module's ``free_port``, which a test may replace there."""
        for attempt in range(3):
            if picked and (attempt or self.port is None):
                self.port = pick()
            self.server = None
            try:
                return start()
            except ServerError:
                lost = self.server is not None and self.server.lost_its_port()
                if not (picked and attempt < 2 and lost):
                    raise
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def stop(self) -> None:
        """Stop the server's whole process group."""
        if self.server:
            self.server.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
