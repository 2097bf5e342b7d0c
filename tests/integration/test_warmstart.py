"""Warm starts (mlops_helpers.workbook.warmstart): real ipykernel kernels forked from a real
template process, checked against kernels started the usual way.

Every test here runs under its own template: the module sets an environment variable no
other test sets, and the template key covers the environment.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from jupyter_client.manager import KernelManager

from mlops_helpers.workbook import execute, warmstart
from mlops_helpers.workbook.warmstart import caller, common
from tests.support import NOBODY, as_another_user

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not warmstart.supported(), reason="warm starts need Linux pidfds"),
    # Python 3.12+ warns on forking a multi-threaded process; the impostor test's child
    # (pytest-xdist's threads in the parent) only binds a socket and leaves by os._exit.
    pytest.mark.filterwarnings(
        "ignore:This process .* is multi-threaded, use of fork:DeprecationWarning"
    ),
]

TAG_ENV = "WARMSTART_TEST_TAG"

# What a kernel reports about how it was set up; the same for a forked and a fresh one.
PROBE = r"""
import gc, json, os, signal, sys, threading, weakref
import matplotlib, pandas as pd
class Cycle: pass
cycle = Cycle(); cycle.me = cycle; alive = weakref.ref(cycle); del cycle
print(json.dumps({
    "garbage collected": (gc.isenabled(), gc.collect() >= 0 and alive() is None),
    "cwd": os.getcwd(),
    "argv0": os.path.basename(sys.argv[0]),
    "argv": sys.argv[1:2] + sys.argv[3:],
    "path": sys.path,
    "env": os.environ.get("PROBE_VALUE"),
    "session leader": os.getsid(0) == os.getpid(),
    "SIGINT raises KeyboardInterrupt": signal.getsignal(signal.SIGINT) is signal.default_int_handler,
    "SIGPIPE ignored": signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN,
    "SIGTERM default": signal.getsignal(signal.SIGTERM) == signal.SIG_DFL,
    "SIGCHLD default": signal.getsignal(signal.SIGCHLD) == signal.SIG_DFL,
    "parent poller": any(type(t).__name__ == "ParentPollerUnix" for t in threading.enumerate()),
    "stderr": os.readlink("/proc/self/fd/2"),
    "pandas max_columns": pd.get_option("display.max_columns"),
    "pandas max_columns default": (pd.reset_option("display.max_columns"), pd.get_option("display.max_columns"))[1],
    "matplotlib backend": matplotlib.get_backend(),
    "helpers imported": sorted(m for m in sys.modules if m.startswith("mlops_helpers")),
    "set by importing scikit-learn": (__import__("sklearn"), os.environ.get("KMP_INIT_AT_FORK"))[1],
}))
"""


@pytest.fixture(scope="module")
def own_template():
    """A template key of this module's own (see the module docstring); the template is
    asked to end afterwards."""
    tag = uuid.uuid4().hex
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(TAG_ENV, tag)
        mp.setenv(warmstart.SWITCH, "1")
        yield tag
        for pid in templates_with(tag):
            os.kill(pid, signal.SIGTERM)


def templates_with(tag: str) -> list[int]:
    """Template processes started with this module's tag in their environment."""
    marker = f"{TAG_ENV}={tag}".encode()
    found = []
    for pid in warmstart.templates():
        try:
            if marker in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                found.append(pid)
        except OSError:
            pass
    return found


def alive(pid: int) -> bool:
    """Running (a zombie waiting to be collected counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def listening(address: str) -> bool:
    conn = caller.connect(address, timeout=1)
    if conn is None:
        return False
    conn.close()
    return True


def wait_until(condition, seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def parent_pid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def parent_command(pid: int) -> str:
    return Path(f"/proc/{parent_pid(pid)}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def start(warm: bool, cwd: Path, drop: tuple[str, ...] = (), **env: str) -> KernelManager:
    """A kernel started as nbval starts one (stderr to /dev/null), warm or the usual way,
    with this environment less ``drop`` and plus ``env``."""
    os.environ[warmstart.SWITCH] = "1" if warm else "0"
    try:
        km = KernelManager(kernel_name=execute.KERNEL)
        with open(os.devnull, "w") as devnull:
            km.start_kernel(
                cwd=str(cwd),
                env={**{k: v for k, v in os.environ.items() if k not in drop}, **env},
                stderr=devnull,
                extra_arguments=execute.KERNEL_ARGS,
            )
    finally:
        os.environ[warmstart.SWITCH] = "1"
    return km


def run(km: KernelManager, code: str, timeout: float = 60) -> tuple[str, dict]:
    """Execute ``code``; its stdout and the execute reply's content."""
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=timeout)
        out: list[str] = []

        def keep(msg):
            if msg["msg_type"] == "stream" and msg["content"]["name"] == "stdout":
                out.append(msg["content"]["text"])

        reply = kc.execute_interactive(code, timeout=timeout, output_hook=keep)
        return "".join(out), reply["content"]
    finally:
        kc.stop_channels()


def test_a_forked_kernel_is_set_up_as_a_fresh_kernel_is(own_template, tmp_path):
    reports, managers = {}, {}
    for warm in (False, True):
        km = managers[warm] = start(
            warm, tmp_path, drop=("KMP_INIT_AT_FORK",), PROBE_VALUE="from the caller"
        )
        try:
            text, reply = run(km, PROBE)
            assert reply["status"] == "ok", reply
            reports[warm] = json.loads(text)
            pid = km.provisioner.pid
            assert km.provisioner.warm is warm
            assert (warmstart.MODULE in parent_command(pid)) is warm
            # named, never disguised: ps shows "ipykernel", its command line stays the template's
            assert warmstart.forked_as(pid) == (warmstart.KERNEL_MODULE if warm else None)
            assert (Path(f"/proc/{pid}/comm").read_text().strip() == "ipykernel") is warm
            own_command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            assert (own_command[2] == warmstart.MODULE.encode()) is warm
        finally:
            km.shutdown_kernel(now=True)
        assert wait_until(lambda pid=pid: not alive(pid)), "the kernel outlived its shutdown"
    assert reports[True] == reports[False]
    assert reports[True]["cwd"] == str(tmp_path)
    assert reports[True]["env"] == "from the caller"
    assert reports[True]["stderr"] == os.devnull
    assert reports[True]["pandas max_columns"] == 20  # what pandas picks in a Jupyter kernel
    assert reports[True]["helpers imported"] == []  # the package is imported afresh


def test_forked_kernels_do_not_share_random_state(own_template, tmp_path):
    code = "import random, numpy; print(numpy.random.rand(), random.random())"
    seen = []
    for _ in range(2):
        km = start(True, tmp_path)
        try:
            seen.append(run(km, code)[0])
        finally:
            km.shutdown_kernel(now=True)
    assert seen[0] != seen[1]


def test_an_interrupt_reaches_a_forked_kernel(own_template, tmp_path):
    km = start(True, tmp_path)
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        msg_id = kc.execute("import time; time.sleep(120)")
        while True:  # wait until the cell runs
            msg = kc.get_iopub_msg(timeout=30)
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "busy":
                break
        time.sleep(0.3)
        km.interrupt_kernel()
        reply = kc.get_shell_msg(timeout=30)
        assert reply["parent_header"]["msg_id"] == msg_id
        assert reply["content"]["status"] == "error"
        assert reply["content"]["ename"] == "KeyboardInterrupt"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_the_kernel_of_a_caller_that_dies_is_ended(own_template, tmp_path):
    script = (
        "import os\n"
        "from jupyter_client.manager import KernelManager\n"
        "from mlops_helpers.workbook import warmstart\n"
        "warmstart.enable()\n"
        "km = KernelManager(kernel_name='python3')\n"
        "km.start_kernel()\n"
        "print(km.provisioner.pid, km.provisioner.warm, flush=True)\n"
        "os._exit(0)  # no shutdown\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    pid, warm = done.stdout.split()
    assert warm == "True"
    assert wait_until(lambda: not alive(int(pid))), "the orphaned kernel kept running"


def test_with_the_switch_off_kernels_start_the_usual_way(own_template, tmp_path):
    km = start(False, tmp_path)
    try:
        assert km.provisioner.warm is False
        assert parent_pid(km.provisioner.pid) == os.getpid()  # our own child
    finally:
        km.shutdown_kernel(now=True)


def test_a_draining_template_keeps_its_kernels_and_ends_after_them(own_template, tmp_path):
    first = start(True, tmp_path)
    try:
        old = parent_pid(first.provisioner.pid)
        assert old in warmstart.templates()
        os.kill(old, signal.SIGTERM)
        address = common.address(common.template_key(sys.executable, dict(os.environ)))
        assert wait_until(lambda: not listening(address)), "the template kept taking requests"
        second = start(True, tmp_path)  # the old template takes no new kernel
        try:
            assert second.provisioner.warm
            assert parent_pid(second.provisioner.pid) not in (old, os.getpid())
            assert run(first, "print(6 * 7)")[0].strip() == "42"  # still served
            assert alive(old)
        finally:
            second.shutdown_kernel(now=True)
    finally:
        first.shutdown_kernel(now=True)
    assert wait_until(lambda: not alive(old)), "the drained template did not end"


def ask_template(argv: list[str]) -> str:
    """Send the running template of this environment a request for ``argv``; its answer."""
    env = dict(os.environ)
    km = start(True, Path.cwd())  # makes sure the template for this key runs
    km.shutdown_kernel(now=True)
    address = common.address(common.template_key(sys.executable, env))
    conn = caller.connect(address, timeout=30)
    assert conn is not None
    with conn:
        request = {"argv": argv, "env": env, "cwd": "/"}
        socket.send_fds(conn, [json.dumps(request).encode() + b"\n"], [0, 1, 2])
        return conn.recv(4096).decode()


def test_a_request_for_another_python_is_refused_with_a_reason(own_template):
    reply = ask_template(["/bin/sh", "-m", "ipykernel_launcher"])
    assert reply.startswith("error ValueError: the command names another Python")


def test_only_kernels_and_scoring_servers_are_forked(own_template):
    reply = ask_template([sys.executable, "-m", "http.server"])
    assert reply.startswith("error ValueError: only python -m ipykernel_launcher or uvicorn")


def test_the_template_key_covers_what_imports_can_read():
    env = {"PATH": "/usr/bin", "OPENBLAS_NUM_THREADS": "1"}
    key = common.template_key(sys.executable, env)
    per_run = {
        "MLOPS_WORKBOOK_HOME": "/elsewhere",
        "MLFLOW_TRACKING_URI": "sqlite:///x.db",
        "MLOPS_MODEL_VERSION": "3",  # each endpoint server's own: one template for all
        "MLOPS_PREDICTION_LOG": "/elsewhere/version=3.jsonl",
    }
    assert common.template_key(sys.executable, {**env, **per_run}) == key
    # read by numpy's BLAS when it loads: another template
    assert common.template_key(sys.executable, {**env, "OPENBLAS_NUM_THREADS": "2"}) != key
    # ipykernel sets this in each kernel; kernels started from a kernel share the template
    inline = {**env, "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    assert common.template_key(sys.executable, inline) == key
    assert common.template_key(sys.executable, {**env, "MPLBACKEND": "Agg"}) != key


def test_streams_are_passed_as_popen_would_or_refused():
    with open(os.devnull, "w") as devnull:
        assert caller.streams({"stderr": devnull}) == (0, 1, devnull.fileno())
    fds = caller.streams({"stdout": subprocess.DEVNULL})
    assert os.readlink(f"/proc/self/fd/{fds[1]}") == os.devnull
    assert caller.streams({"stdout": subprocess.PIPE}) is None  # a pipe to read: usual way


def test_prestart_starts_the_template_once_without_waiting(own_template, monkeypatch):
    monkeypatch.setenv(warmstart.PROVISIONER_ENV, warmstart.PROVISIONER)
    monkeypatch.setenv(TAG_ENV, own_template + "-prestart")  # a key nothing has used
    address = common.address(common.template_key(sys.executable, dict(os.environ)))
    assert not listening(address)
    assert warmstart.prestart() is True
    assert wait_until(lambda: listening(address)), "the template did not start"
    assert warmstart.prestart() is False  # one template per key
    km = start(True, Path.cwd())  # and the kernel comes from it
    try:
        assert km.provisioner.warm
    finally:
        km.shutdown_kernel(now=True)
    for pid in templates_with(own_template + "-prestart"):
        os.kill(pid, signal.SIGTERM)


def test_a_learners_kernel_owns_its_templates_and_they_end_with_it(own_template, tmp_path):
    # A process no mlops-workbook command or test session started (a kernel in JupyterLab):
    # what it starts through the helpers is warm, from a template that ends with it.
    script = (
        "import os\n"
        "from jupyter_client.manager import KernelManager\n"
        "from mlops_helpers.workbook import warmstart\n"
        "assert not warmstart.active()\n"
        "on = warmstart.enable_here()\n"
        "km = KernelManager(kernel_name='python3')\n"
        "km.start_kernel()\n"
        "template = int(open(f'/proc/{km.provisioner.pid}/stat').read().rsplit(')', 1)[1].split()[1])\n"
        "command = open(f'/proc/{template}/cmdline', 'rb').read().split(b'\\0')\n"
        "print(on, km.provisioner.warm, km.provisioner.pid, template, os.getpid(), flush=True)\n"
        "print(command[2].decode(), command[4].decode(), flush=True)\n"
        "os._exit(0)  # the kernel is not shut down: a learner's kernel that was killed\n"
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in (warmstart.PROVISIONER_ENV, warmstart.OWNER_ENV)
    }
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
        check=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    on, warm, kernel, template, owner, module, owned_by = done.stdout.split()
    assert (on, warm) == ("True", "True")
    assert module == warmstart.MODULE
    assert owned_by.startswith(f"{owner}:"), "the template names its owner"
    assert wait_until(lambda: not alive(int(kernel)), 10), "the kernel outlived its owner"
    assert wait_until(lambda: not alive(int(template)), 10), "the template outlived its owner"
    assert time.monotonic() - started < warmstart.IDLE_SECONDS / 2  # not its idle timeout


def test_enable_here_keeps_a_session_that_is_already_warm_unowned(monkeypatch):
    monkeypatch.setenv(warmstart.PROVISIONER_ENV, warmstart.PROVISIONER)
    monkeypatch.delenv(warmstart.OWNER_ENV, raising=False)
    assert warmstart.enable_here() is True
    assert warmstart.OWNER_ENV not in os.environ  # its templates keep their idle timeout
    env = {"PATH": "/usr/bin"}
    owned = {**env, warmstart.OWNER_ENV: "1:2"}
    assert common.template_key(sys.executable, owned) != common.template_key(sys.executable, env), (
        "an owned template serves only its owner's processes"
    )


def impostor(address: str):
    """What another user does (in :func:`as_another_user`): bind ``address`` and record what
    callers send (bytes, descriptors) until told to stop."""

    def act(ready, stop_r: int) -> bytes:
        seen = {"uid": os.getuid(), "connections": 0, "bytes": 0, "fds": 0}
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(address)
        listener.listen(8)
        ready(b"x")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            readable, _, _ = select.select([listener, stop_r], [], [], 1)
            if stop_r in readable:
                break
            if listener in readable:
                conn, _ = listener.accept()
                seen["connections"] += 1
                conn.settimeout(5)
                with conn, contextlib.suppress(OSError):
                    while True:  # until the caller closes, or sent a whole request
                        data, fds, _, _ = socket.recv_fds(conn, 1 << 20, 16)
                        seen["bytes"] += len(data)
                        seen["fds"] += len(fds)
                        for fd in fds:
                            os.close(fd)
                        if not data or data.endswith(b"\n"):
                            break
        return json.dumps(seen).encode()

    return act


def test_a_template_name_held_by_another_user_gets_nothing_and_the_kernel_still_starts(
    own_template, monkeypatch, tmp_path
):
    monkeypatch.setenv(TAG_ENV, own_template + "-impostor")  # a key no template serves yet
    monkeypatch.setenv("PROBE_VALUE", "a secret of the caller")  # what it must never see
    address = common.address(common.template_key(sys.executable, dict(os.environ)))
    with as_another_user(impostor(address)) as (ready, outcome):
        assert ready == b"x", "the other user could not bind the name"
        km = start(True, tmp_path)
        try:
            assert run(km, "print(6 * 7)")[0].strip() == "42"
            assert km.provisioner.warm is False, "started by the other user's listener"
            assert parent_pid(km.provisioner.pid) == os.getpid()  # the usual way
        finally:
            km.shutdown_kernel(now=True)
    seen = json.loads(outcome["report"])
    assert seen["uid"] == NOBODY
    assert seen["connections"] >= 1, "the run never tried the name: the test proves nothing"
    assert (seen["bytes"], seen["fds"]) == (0, 0), f"the other user received {seen}"


@contextlib.contextmanager
def answering(address: str, answer: str):
    """A listener of this user at ``address`` (not a template) that answers every request
    with ``answer``."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(address)
    listener.listen(8)
    listener.settimeout(30)

    def serve_one() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            with conn:
                data, fds, _, _ = socket.recv_fds(conn, 1 << 20, 16)
                for fd in fds:
                    os.close(fd)
                conn.sendall(answer.encode())
                conn.recv(1)  # until the caller closes

    thread = threading.Thread(target=serve_one, daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join(timeout=30)
        listener.close()


def test_a_pid_answer_naming_a_process_the_template_did_not_fork_is_refused(
    own_template, monkeypatch
):
    monkeypatch.setenv(TAG_ENV, own_template + "-liar")
    env = dict(os.environ)
    address = common.address(common.template_key(sys.executable, env))
    cmd = [sys.executable, "-m", warmstart.KERNEL_MODULE]
    # the listener is this process: a process it did not fork (our parent) is refused...
    refused = pytest.raises(warmstart.WarmStartUnavailable, match="not a process it forked")
    with answering(address, f"pid {os.getppid()}\n"), refused:
        warmstart.fork(cmd, env, "/")
    # ...one it did fork (a child of this process) is taken
    child = subprocess.Popen(["sleep", "30"])
    try:
        with answering(address, f"pid {child.pid}\n"):
            handle = warmstart.fork(cmd, env, "/")
            assert handle.pid == child.pid and handle.poll() is None
            handle._close()
    finally:
        child.kill()
        child.wait()


def test_a_descriptor_opened_after_a_handle_closed_survives_the_handle():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    ours, template_side = socket.socketpair()
    handle = warmstart.ForkedProcess(ours, child.pid, os.pidfd_open(child.pid))
    number = handle._pidfd
    template_side.sendall(b"exit 0\n")  # what the template sends when it reaps the process
    assert handle.wait(timeout=30) == 0  # poll() saw it end and closed the pidfd
    reused = os.open(os.devnull, os.O_RDONLY)  # a file opened since, under the same number
    if reused != number:
        os.dup2(reused, number, inheritable=False)
        os.close(reused)
    try:
        handle.poll()
        del handle
        gc.collect()
        assert os.readlink(f"/proc/self/fd/{number}") == os.devnull, "closed by the old handle"
    finally:
        with contextlib.suppress(OSError):
            os.close(number)
        template_side.close()
        child.wait()


def test_the_template_forks_with_only_the_threads_its_docstring_names(own_template, tmp_path):
    km = start(True, tmp_path)
    try:
        template = parent_pid(km.provisioner.pid)
        tasks = Path(f"/proc/{template}/task")
        names = sorted((tasks / t / "comm").read_text().strip() for t in os.listdir(tasks))
    finally:
        km.shutdown_kernel(now=True)
    # its main thread and the BLAS pools (named after it), jemalloc's purger; nothing new
    assert set(names) <= {common.TEMPLATE_NAME, "jemalloc_bg_thd"}, names
    assert names.count(common.TEMPLATE_NAME) <= 1 + 2 * max(0, (os.cpu_count() or 1) - 1)


def listening_sockets(pid: int) -> tuple[int, set[str]]:
    """How many TCP sockets ``pid`` listens on, and the paths of its listening Unix ones."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    tcp = 0
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            tcp += fields[3] == "0A" and fields[9] in inodes  # 0A: LISTEN
    unix = set()
    for line in Path(f"/proc/{pid}/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) == 8 and fields[6] in inodes and fields[3] == "00010000":  # listening
            unix.add(fields[7])
    return tcp, unix


@pytest.mark.parametrize("warm", [False, True], ids=["usual", "warm"])
def test_a_headless_kernel_listens_on_unix_sockets_only_this_user_can_reach(
    own_template, tmp_path, monkeypatch, warm
):
    """No loopback port to lose in a race or to another user (see the provisioner)."""
    monkeypatch.setenv(warmstart.SWITCH, "1" if warm else "0")
    km = KernelManager(kernel_name=execute.KERNEL)
    devnull = open(os.devnull, "w")  # noqa: SIM115 - kept open for the restart
    km.start_kernel(cwd=str(tmp_path), stderr=devnull, extra_arguments=execute.KERNEL_ARGS)
    try:
        assert km.provisioner.warm is warm
        folder = Path(km.ip).parent
        assert km.transport == "ipc"
        stat = folder.stat()
        assert stat.st_uid == os.getuid() and stat.st_mode & 0o777 == 0o700
        assert json.loads(Path(km.connection_file).read_text())["transport"] == "ipc"
        assert run(km, "print(6 * 7)")[0] == "42\n"
        tcp, unix = listening_sockets(km.provisioner.pid)
        # the five channels; the one TCP socket is ipykernel's own pipe for the output of
        # processes the kernel forks, bound atomically to a random port and authenticated
        assert unix == {f"{folder}/k-{n}" for n in range(1, 6)}
        assert tcp == 1
        km.restart_kernel(now=True)  # a restart keeps the folder and its sockets
        assert Path(km.ip).parent == folder and km.transport == "ipc"
        assert run(km, "print(6 * 7)")[0] == "42\n"
        assert km.provisioner.warm is warm
    finally:
        km.shutdown_kernel(now=True)
        devnull.close()
    assert not folder.exists(), "the sockets' folder outlived the kernel"
