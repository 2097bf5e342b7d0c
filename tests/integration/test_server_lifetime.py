"""Servers the workbook starts end with the command that started them, however it ends:
``kill -9`` of ``mlops-workbook tracking-server`` or ``serve`` leaves nothing listening, no
process of the server's group, and the same command starts again on the same port.
Real commands, real ``mlflow server`` and scoring servers, real ``kill -9``.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlops_helpers import registry
from mlops_helpers.workbook import warmstart
from mlops_helpers.workbook.processes import HOST, free_port
from tests.support import CLI, NOBODY, as_another_user

pytestmark = pytest.mark.slow

START_TIMEOUT = 120.0  # the machine may be busy: tests check behaviour, not timing
END_TIMEOUT = 15.0  # "within a few seconds", with room for a loaded machine
READY = "Ctrl-C to stop"  # what both commands print once their server answers


def wait_until(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def listener_inodes(port: int) -> set[str]:
    """Socket inodes in LISTEN state on ``port`` (IPv4 and IPv6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            next(fh)
            for line in fh:
                fields = line.split()
                if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A":  # LISTEN
                    found.add(fields[9])
    return found


def stat(pid: int | str) -> list[str]:
    """/proc/PID/stat after the command name: [0] state, [1] ppid, [2] process group."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def listening_group(port: int) -> int | None:
    """The process group of the process that listens on ``port``."""
    inodes = {f"socket:[{i}]" for i in listener_inodes(port)}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in inodes:
                        return int(stat(proc.name)[2])
    return None


def group_members(pgid: int) -> list[int]:
    """Running (not zombie) processes of a process group."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                fields = stat(proc.name)
                if int(fields[2]) == pgid and fields[0] != "Z":
                    found.append(int(proc.name))
    return found


@contextlib.contextmanager
def command(args: list[str], env: dict[str, str], port: int, log: Path):
    """Run ``mlops-workbook ARGS`` until it says it serves on ``port``; yield the command's
    process and the server's process group. Afterwards nothing of either is left running."""
    groups: list[int] = []
    with open(log, "wb") as out:
        proc = subprocess.Popen([*CLI, *args], env=env, stdout=out, stderr=subprocess.STDOUT)

    def ready() -> bool:
        return proc.poll() is not None or READY in log.read_text()

    try:
        started = wait_until(ready, START_TIMEOUT) and proc.poll() is None
        group = listening_group(port)
        assert started and group and proc.poll() is None, log.read_text()[-3000:]
        groups.append(group)
        yield proc, group
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(timeout=30)
        for group in groups:  # a failed test leaves no server behind for the others
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)


def assert_killed_command_leaves_nothing(proc: subprocess.Popen, group: int, port: int) -> None:
    members = group_members(group)
    assert members, "the server's process group was not found"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    ended = wait_until(lambda: not listener_inodes(port) and not group_members(group), END_TIMEOUT)
    assert ended, (
        f"after kill -9 of the command, port {port} listening: {bool(listener_inodes(port))}, "
        f"processes of the server's group left: {group_members(group)} (of {members})"
    )


def assert_starts_again_and_stops(args: list[str], env: dict[str, str], port: int, log: Path):
    with command(args, env, port, log) as (proc, group):
        proc.send_signal(signal.SIGTERM)  # a clean stop still works, and still ends it all
        assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
        assert wait_until(lambda: not group_members(group), END_TIMEOUT)


def test_kill_9_of_tracking_server_leaves_no_mlflow_server_and_it_restarts(tmp_path):
    port = free_port()
    env = {**os.environ, "MLOPS_WORKBOOK_HOME": str(tmp_path / "ws")}
    args = ["tracking-server", "--port", str(port)]
    with command(args, env, port, tmp_path / "first.log") as (proc, group):
        assert len(group_members(group)) >= 2, "mlflow server and its uvicorn"
        assert_killed_command_leaves_nothing(proc, group, port)
    assert_starts_again_and_stops(args, env, port, tmp_path / "second.log")


@pytest.mark.parametrize("warm", ["0", "1"], ids=["warm-starts-off", "warm-started"])
def test_kill_9_of_serve_leaves_no_scoring_server_and_it_restarts(
    warm, tmp_path, store, good_run, make_champion
):
    name, _ = make_champion(good_run, "lifetime")
    port = free_port()
    env = {**os.environ, "MLOPS_WORKBOOK_HOME": str(tmp_path / "ws"), warmstart.SWITCH: warm}
    args = ["serve", "--model", name, "--alias", registry.CHAMPION, "--port", str(port)]
    args += ["--tracking-uri", store.uri]
    with command(args, env, port, tmp_path / "first.log") as (proc, group):
        assert_killed_command_leaves_nothing(proc, group, port)
    if warm == "1":  # starting again does not depend on how the server was started
        assert_starts_again_and_stops(args, env, port, tmp_path / "second.log")


def test_tracking_server_on_a_port_in_use_exits_2_naming_the_port(tmp_path):
    env = {**os.environ, "MLOPS_WORKBOOK_HOME": str(tmp_path / "ws")}
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [*CLI, "tracking-server", "--port", str(port)],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"port {port}" in lines[0] and "another port" in lines[0], lines
    assert not (tmp_path / "ws").exists(), "nothing is created before the check"


@pytest.mark.parametrize("port", ["70000", "0", "-1", "http"])
def test_tracking_server_with_a_bad_port_exits_2_naming_it(port, tmp_path):
    env = {**os.environ, "MLOPS_WORKBOOK_HOME": str(tmp_path / "ws")}
    done = subprocess.run(
        [*CLI, "tracking-server", f"--port={port}"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert f"must be a port from 1 to 65535, got {port!r}" in done.stderr


def answering_on_a_free_port(ready, stop_r: int) -> bytes:
    """What another user does (in :func:`as_another_user`): listen on a free loopback port
    (its number to ``ready``), answer each request 200 and count them until told to stop."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((HOST, 0))
    listener.listen(8)
    ready(str(listener.getsockname()[1]).encode())
    requests = 0
    while stop_r not in select.select([listener, stop_r], [], [], 60)[0]:
        conn, _ = listener.accept()
        with conn, contextlib.suppress(OSError):
            conn.settimeout(5)
            if conn.recv(4096):
                requests += 1
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    return str(requests).encode()


# the child (pytest-xdist's threads in the parent) only listens and leaves by os._exit
@pytest.mark.filterwarnings(
    "ignore:This process .* is multi-threaded, use of fork:DeprecationWarning"
)
def test_a_port_another_user_listens_on_is_refused_without_asking_it(tmp_path):
    """The health check goes only to a listener of this user: another user who binds the
    port before the server does gets no request, and the start fails naming the uid."""
    from mlops_helpers.workbook.processes import ServerError, ServerProcess

    with as_another_user(answering_on_a_free_port) as (ready, outcome):
        port = int(ready or b"0")
        assert port, "the other user could not listen"
        # a server that never binds: only the other user's listener is on the port
        server = ServerProcess(
            "the test server", [sys.executable, "-c", "import time; time.sleep(60)"],
            f"http://{HOST}:{port}/ping", tmp_path / "server.log", dict(os.environ), 10,
        )  # fmt: skip
        with pytest.raises(ServerError, match=f"port {port} .* uid {NOBODY}, not by the test"):
            server.start()
        assert server.process is None  # stopped
        assert server.lost_its_port()  # so a scoring server on a picked port tries another
    assert outcome["report"] == b"0", (
        f"the other user's listener got {outcome['report']!r} requests"
    )
